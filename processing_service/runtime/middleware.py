"""Dramatiq middleware: per-process resources, per-message log context, and failures
recorded on the job."""

from __future__ import annotations

import time
import uuid
from typing import Any

import dramatiq
import msgspec
import structlog
from dramatiq.broker import MessageProxy

from contracts import Message, Stage
from processing_service.runtime import metrics
from processing_service.runtime.config import Settings
from processing_service.runtime.context import StageContext
from processing_service.runtime.database import Database
from processing_service.runtime.dead_letters import DeadLetterStore
from processing_service.runtime.events import EventPublisher
from processing_service.runtime.failures import GiveUp, on_failure
from processing_service.runtime.jobs import JobStore

log = structlog.get_logger("processing.worker")

STAGE_NAMES = frozenset(stage.value for stage in Stage)


def payload_of(message: MessageProxy) -> dict[str, Any] | None:
    """The message's payload (its one argument), if it is a JSON object."""
    payload = message.args[0] if message.args else None
    return payload if isinstance(payload, dict) else None


def job_id_of(message: MessageProxy) -> str | None:
    """The job id in a message's payload, if it has a well-formed one."""
    raw = (payload_of(message) or {}).get("job_id")
    try:
        return str(uuid.UUID(raw)) if isinstance(raw, str) else None
    except ValueError:
        return None


def generation_of(message: MessageProxy) -> int | None:
    """The job generation a message carries, if any."""
    value = (payload_of(message) or {}).get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe(exception: BaseException) -> str:
    text = str(exception).strip()
    return text if text else type(exception).__name__


class WorkerResources(dramatiq.Middleware):
    """Creates a worker process's resources once it has booted, as Dramatiq's own
    Prometheus middleware does: the Postgres pool, the event publisher and the queue
    sampler (with a real broker). Nothing is opened at import or in the parent process.
    """

    def __init__(self, settings: Settings, *, sample_queues: bool) -> None:
        self.settings = settings
        self.sample_queues = sample_queues
        self._context: StageContext | None = None

    @property
    def context(self) -> StageContext:
        if self._context is None:
            raise RuntimeError("the worker process has not booted: no stage context yet")
        return self._context

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        database = Database(self.settings.database_url)

        def send(stage: Stage, message: Message) -> None:
            broker.get_actor(stage.value).send(msgspec.to_builtins(message))

        self._context = StageContext(
            settings=self.settings,
            db=database,
            jobs=JobStore(database),
            events=EventPublisher(self.settings.amqp_url),
            send=send,
        )
        if self.sample_queues:
            metrics.QueueSampler(self.settings.amqp_url).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._context is not None:
            self._context.events.close()
            self._context.db.close()


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

    def __init__(self, resources: WorkerResources, give_up: GiveUp) -> None:
        self.resources = resources
        self.give_up = give_up

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
            ctx = self.resources.context
            if message.failed:
                DeadLetterStore(ctx.db).record(
                    job_id,
                    stage,
                    message.queue_name,
                    message.message_id,
                    reason,
                    payload=payload_of(message),
                )
            if job_id is None:
                log.error("dead-lettering a message without a job id", error=reason)
                return
            on_failure(
                ctx,
                stage,
                job_id,
                reason,
                final=message.failed,
                give_up=self.give_up,
                generation=generation_of(message),
            )
        except Exception:  # the message is retried or dead-lettered regardless
            log.exception("could not record the failure on the job")


class StageEvents(dramatiq.Middleware):
    """Publishes `job.stage.<name>` when a message leaves its stage in a final state.

    Runs after StageFailures, so a stage that just died is seen dead. The event id is
    derived from the job generation and stage: a re-published event keeps its id.
    """

    def __init__(self, resources: WorkerResources) -> None:
        self.resources = resources

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
        try:
            self.resources.context.publish_stage_event(job_id, Stage(message.actor_name))
        except Exception:
            log.exception("could not publish the stage event")
