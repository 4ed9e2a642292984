"""Dramatiq middleware: per-message log context, and failures recorded on the job."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import dramatiq
import structlog
from dramatiq.broker import MessageProxy

from contracts import Stage, StageState
from contracts.events import StageFinished, event_id
from contracts.routing import stage_event_key
from processing_service import metrics
from processing_service.dead_letters import DeadLetterStore
from processing_service.events import EventPublisher
from processing_service.job_store import JobStore
from processing_service.pipeline import Pipeline

log = structlog.get_logger("processing.worker")

STAGE_NAMES = frozenset(stage.value for stage in Stage)
FINAL_STAGE_STATES = frozenset(
    {StageState.SUCCEEDED, StageState.SKIPPED, StageState.FAILED, StageState.DEAD}
)


def job_id_of(message: MessageProxy) -> str | None:
    """The job id in a message's payload, if it has a well-formed one."""
    payload = message.args[0] if message.args else None
    raw = payload.get("job_id") if isinstance(payload, dict) else None
    try:
        return str(uuid.UUID(raw)) if isinstance(raw, str) else None
    except ValueError:
        return None


def describe(exception: BaseException) -> str:
    text = str(exception).strip()
    return text if text else type(exception).__name__


class JobContext(dramatiq.Middleware):
    """Binds job_id, stage and message_id for every log line; one line per message."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            job_id=job_id_of(message), stage=message.actor_name, message_id=message.message_id
        )
        message.options["_started"] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = message.options.pop("_started", None)
        elapsed = round(time.perf_counter() - started, 3) if started else None
        retries = message.options.get("retries", 0)
        if exception is None:
            if elapsed is not None and message.actor_name in STAGE_NAMES:
                metrics.STAGE_DURATION.labels(message.actor_name).observe(elapsed)
            log.info("message processed", seconds=elapsed, retries=retries)
        else:
            log.warning(
                "message failed",
                seconds=elapsed,
                retries=retries,
                dead=message.failed,
                error=describe(exception),
                exc_info=exception,
            )
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)


class StageFailures(dramatiq.Middleware):
    """Records each failed attempt on the job, and settles the job when one is final.

    Its `after_process_message` must run after that of Dramatiq's `Retries`, which marks
    a message `failed` when it will not be retried (a permanent error, or retries
    exhausted); such a message is then dead-lettered to `<queue>.XQ`, and recorded in
    Postgres with its reason.
    """

    def __init__(self, pipeline: Pipeline, dead_letters: DeadLetterStore) -> None:
        self.pipeline = pipeline
        self.dead_letters = dead_letters

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or message.actor_name not in STAGE_NAMES:
            return
        stage = Stage(message.actor_name)
        job_id = job_id_of(message)
        reason = describe(exception)
        try:
            if message.failed:
                self.dead_letters.record(
                    job_id, stage, message.queue_name, message.message_id, reason
                )
            if job_id is None:
                log.error("dead-lettering a message without a job id", error=reason)
                return
            self.pipeline.on_failure(stage, job_id, reason, final=message.failed)
        except Exception:  # the message is retried or dead-lettered regardless
            log.exception("could not record the failure on the job")


class StageEvents(dramatiq.Middleware):
    """Publishes `job.stage.<name>` when a message leaves its stage in a final state.

    Runs after StageFailures, so a stage that just died is seen dead. The event id is
    derived from the job generation and stage: a re-published event keeps its id.
    """

    def __init__(self, store: JobStore, events: EventPublisher) -> None:
        self.store = store
        self.events = events

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        job_id = job_id_of(message)
        if job_id is None or message.actor_name not in STAGE_NAMES:
            return
        stage = Stage(message.actor_name)
        try:
            outcome = self.store.stage_outcome(job_id, stage)
            if outcome is None or outcome.state not in FINAL_STAGE_STATES:
                return
            self.events.publish(
                stage_event_key(stage),
                StageFinished(
                    event_id=event_id(job_id, outcome.generation, stage.value),
                    job_id=job_id,
                    stage=stage.value,
                    state=outcome.state.value,
                    occurred_at=datetime.now(UTC),
                    metadata=outcome.metadata,
                    error=outcome.error,
                    generation=outcome.generation,
                ),
            )
        except Exception:
            log.exception("could not publish the stage event")
