"""The `notify` stage: settle the job, publish its event, deliver its webhook once.

A job generation gets one webhook delivery, whose id is the `webhook-id` on every
attempt. A delivery that succeeded is never sent again, whatever is redelivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import structlog

from contracts import JobStatus, Stage, StageState
from contracts.events import JobFinished, event_id
from contracts.routing import job_event_key
from processing_service import metrics, webhooks
from processing_service.config import Settings
from processing_service.delivery_store import DeliveryStore, Notification
from processing_service.errors import InvalidMessage, StartedTooOften, WebhookRetry
from processing_service.events import EventPublisher
from processing_service.job_store import JobStore

log = structlog.get_logger("processing.notify")

#: Results up to this size travel inside the webhook body; larger ones only as a link.
MAX_INLINE_RESULT_BYTES = 256 * 1024

#: The notify stage is over once it reaches one of these.
FINAL_STATES = frozenset(
    {StageState.SUCCEEDED, StageState.SKIPPED, StageState.FAILED, StageState.DEAD}
)


def webhook_body(facts: Notification, delivery_id: str) -> bytes:
    """The JSON body: what happened, the client's metadata, links, and a small result."""
    links = {"job": f"/v1/jobs/{facts.job_id}", "result": f"/v1/jobs/{facts.job_id}/result"}
    body: dict[str, object] = {
        "type": job_event_key(facts.status),
        "delivery_id": delivery_id,
        "job_id": facts.job_id,
        "status": facts.status.value,
        "generation": facts.generation,
        "metadata": facts.options.metadata,
        "error": facts.error,
        "warnings": facts.warnings,
        "links": links,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    result = facts.result_json
    if facts.status is JobStatus.COMPLETED and result and len(result) <= MAX_INLINE_RESULT_BYTES:
        body["result"] = msgspec.Raw(result.encode())
    return msgspec.json.encode(body)


@dataclass
class Notifier:
    settings: Settings
    store: JobStore
    deliveries: DeliveryStore
    events: EventPublisher

    def notify(self, job_id: str) -> None:
        job = self.store.load_job(job_id)
        if job is None:
            raise InvalidMessage(f"job {job_id} does not exist")
        if job.stages[Stage.NOTIFY] in FINAL_STATES:
            return
        attempts = self.store.start_stage(job_id, Stage.NOTIFY)
        if self.settings.policies[Stage.NOTIFY].started_too_often(attempts):
            raise StartedTooOften(Stage.NOTIFY.value, attempts)
        status = self.store.finalize(job_id)
        facts = self.deliveries.notification(job_id)
        if job.stages[Stage.NOTIFY] in {StageState.PENDING, StageState.QUEUED}:
            outcome = status.value
            if status is JobStatus.COMPLETED and facts.warnings:
                outcome = "completed_with_warnings"
            metrics.JOBS.labels(outcome).inc()
        self.events.publish(
            job_event_key(status),
            JobFinished(
                event_id=event_id(job_id, facts.generation, "job"),
                job_id=job_id,
                status=status.value,
                occurred_at=datetime.now(UTC),
                metadata=facts.options.metadata,
                error=facts.error,
                warnings=facts.warnings,
                result_path=f"/v1/jobs/{job_id}/result" if status is JobStatus.COMPLETED else None,
                generation=facts.generation,
            ),
        )
        state, error = StageState.SUCCEEDED, None
        if facts.options.webhook_url and facts.webhook_secret:
            delivered = self._deliver(facts, facts.options.webhook_url, facts.webhook_secret)
            if delivered != "delivered":
                state, error = StageState.FAILED, f"webhook delivery {delivered}"
        self.store.finish_stage(job_id, Stage.NOTIFY, state, error)
        log.info("job notified", status=status.value, webhook=bool(facts.options.webhook_url))

    def _deliver(self, facts: Notification, url: str, secret: str) -> str:
        """Attempt the webhook unless this generation's delivery is settled; its state."""
        delivery_id, state = self.deliveries.open_delivery(
            facts.job_id, facts.generation, job_event_key(facts.status), url
        )
        if state != "pending":
            return state
        body = webhook_body(facts, delivery_id)
        try:
            attempt = webhooks.post(
                url,
                body,
                message_id=delivery_id,
                secret=secret,
                allowed=self.settings.webhook_allowed_networks,
            )
        except webhooks.WebhookRefused as refused:
            metrics.WEBHOOKS.labels("refused").inc()
            self.deliveries.record_delivery_attempt(
                delivery_id, status_code=None, error=str(refused), duration_ms=0, state="failed"
            )
            return "failed"
        if attempt.delivered:
            state = "delivered"
        elif attempt.retryable:
            state = "pending"
        else:
            state = "failed"
        self.deliveries.record_delivery_attempt(
            delivery_id,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            state=state,
        )
        metrics.WEBHOOKS.labels("retried" if state == "pending" else state).inc()
        log.info(
            "webhook attempt", delivery_id=delivery_id, status_code=attempt.status_code, state=state
        )
        if state == "pending":
            raise WebhookRetry(
                f"webhook attempt failed: {attempt.error}",
                delay_ms=self.retry_delay_ms(attempt.retry_after_s),
            )
        return state

    def retry_delay_ms(self, retry_after_s: float | None) -> int | None:
        """The receiver's Retry-After, capped at notify's longest backoff.

        Dramatiq uses an exception's delay as is, past the policy's bounds, and holds the
        delayed message unacknowledged: a Retry-After of an hour would outlive RabbitMQ's
        consumer timeout and get the message redelivered while it waits.
        """
        if retry_after_s is None:
            return None
        longest = self.settings.policies[Stage.NOTIFY].max_backoff_ms
        return min(int(retry_after_s * 1000), longest)

    def give_up(self, job_id: str, error: str) -> None:
        """The last notify attempt failed: settle the job and bury the delivery."""
        self.store.finalize(job_id)
        self.deliveries.bury_delivery(job_id, error)
        metrics.WEBHOOKS.labels("dead").inc()
        self.store.finish_stage(job_id, Stage.NOTIFY, StageState.DEAD, error)
