"""The `notify` stage: settle the job, publish its event, deliver its webhook once.

A job generation gets one webhook delivery, whose id is the `webhook-id` on every
attempt. A delivery that succeeded is never sent again, whatever is redelivered.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import structlog

from contracts import DeliveryState, JobStatus, Stage, StageRequested, StageState
from contracts.events import JobFinished, event_id
from contracts.routing import job_event_key, job_path, result_path
from contracts.states import FINISHED_STATES, WAITING_STATES
from processing_service.notify import webhook
from processing_service.notify.store import DeliveryStore, Notification
from processing_service.runtime import metrics
from processing_service.runtime.context import StageContext
from processing_service.runtime.errors import WebhookRetry

log = structlog.get_logger("processing.notify")

#: Results up to this size travel inside the webhook body; larger ones only as a link.
MAX_INLINE_RESULT_BYTES = 256 * 1024
#: How long a claim on a delivery holds: past one POST's timeout, so that it only lapses
#: when the worker holding it died mid-attempt.
CLAIM_LEASE_S = 3 * webhook.TIMEOUT_S
#: How long a duplicate waits before it looks at a claimed delivery again.
CLAIM_WAIT_MS = 2_000


def webhook_body(facts: Notification, delivery_id: str) -> bytes:
    """The JSON body: what happened, the client's metadata, links, and a small result."""
    links = {"job": job_path(facts.job_id), "result": result_path(facts.job_id)}
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


def run(ctx: StageContext, message: StageRequested) -> None:
    """Settle the job, publish its event, deliver its webhook (runs for failed jobs too)."""
    job_id = message.job_id
    job = ctx.load(job_id)
    if job is None:
        return
    if ctx.stale(job, message.generation) or job.stages[Stage.NOTIFY] in FINISHED_STATES:
        return
    ctx.begin(job_id, Stage.NOTIFY)
    status = ctx.jobs.finalize(job_id)
    if status is JobStatus.CANCELLED:
        # Chunks waiting in a queue when the cancel came: nothing will read them now.
        ctx.drop_work(job_id)
    deliveries = DeliveryStore(ctx.db)
    facts = deliveries.notification(job_id)
    if job.stages[Stage.NOTIFY] in WAITING_STATES:
        outcome = status.value
        if status is JobStatus.COMPLETED and facts.warnings:
            outcome = "completed_with_warnings"
        metrics.JOBS.labels(outcome).inc()
    ctx.events.publish(
        job_event_key(status),
        JobFinished(
            event_id=event_id(job_id, facts.generation, "job"),
            job_id=job_id,
            status=status.value,
            occurred_at=datetime.now(UTC),
            metadata=facts.options.metadata,
            error=facts.error,
            warnings=facts.warnings,
            result_path=result_path(job_id) if status is JobStatus.COMPLETED else None,
            generation=facts.generation,
        ),
    )
    state, error = StageState.SUCCEEDED, None
    if facts.options.webhook_url and facts.webhook_secret:
        delivered = _deliver(
            ctx, deliveries, facts, facts.options.webhook_url, facts.webhook_secret
        )
        if delivered is not DeliveryState.DELIVERED:
            state, error = StageState.FAILED, f"webhook delivery {delivered.value}"
    ctx.jobs.finish_stage(job_id, Stage.NOTIFY, state, error)
    log.info("job notified", status=status.value, webhook=bool(facts.options.webhook_url))


def _deliver(
    ctx: StageContext, deliveries: DeliveryStore, facts: Notification, url: str, secret: str
) -> DeliveryState:
    """Attempt the webhook unless this generation's delivery is settled; its state.

    The attempt is claimed first: while another worker's POST of the same delivery is
    in flight (a duplicate notify message), this one waits and looks again.
    """
    delivery_id, state, claimed = deliveries.claim_delivery(
        facts.job_id, facts.generation, job_event_key(facts.status), url, CLAIM_LEASE_S
    )
    if state is not DeliveryState.PENDING:
        return state
    if not claimed:
        raise WebhookRetry("another worker is delivering this webhook now", delay_ms=CLAIM_WAIT_MS)
    body = webhook_body(facts, delivery_id)
    try:
        attempt = webhook.post(
            url,
            body,
            message_id=delivery_id,
            secret=secret,
            allowed=ctx.settings.webhook_allowed_networks,
        )
    except webhook.WebhookRefused as refused:
        metrics.WEBHOOKS.labels("refused").inc()
        deliveries.record_delivery_attempt(
            delivery_id,
            status_code=None,
            error=str(refused),
            duration_ms=0,
            state=DeliveryState.FAILED,
        )
        return DeliveryState.FAILED
    if attempt.delivered:
        state = DeliveryState.DELIVERED
    elif attempt.retryable:
        state = DeliveryState.PENDING
    else:
        state = DeliveryState.FAILED
    deliveries.record_delivery_attempt(
        delivery_id,
        status_code=attempt.status_code,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
        state=state,
    )
    retrying = state is DeliveryState.PENDING
    metrics.WEBHOOKS.labels("retried" if retrying else state.value).inc()
    log.info(
        "webhook attempt",
        delivery_id=delivery_id,
        status_code=attempt.status_code,
        state=state.value,
    )
    if retrying:
        raise WebhookRetry(
            f"webhook attempt failed: {attempt.error}",
            delay_ms=retry_delay_ms(ctx, attempt.retry_after_s),
        )
    return state


def retry_delay_ms(ctx: StageContext, retry_after_s: float | None) -> int | None:
    """The receiver's Retry-After, capped at notify's longest backoff.

    Dramatiq uses an exception's delay as is, past the policy's bounds, and holds the
    delayed message unacknowledged: a Retry-After of an hour would outlive RabbitMQ's
    consumer timeout and get the message redelivered while it waits.
    """
    if retry_after_s is None:
        return None
    longest = ctx.settings.policies[Stage.NOTIFY].max_backoff_ms
    return min(int(retry_after_s * 1000), longest)


def give_up(ctx: StageContext, job_id: str, error: str) -> None:
    """The last notify attempt failed: settle the job and bury the delivery."""
    ctx.jobs.finalize(job_id)
    DeliveryStore(ctx.db).bury_delivery(job_id, error)
    metrics.WEBHOOKS.labels("dead").inc()
    ctx.jobs.finish_stage(job_id, Stage.NOTIFY, StageState.DEAD, error)
