"""The worker, declared: a broker, its middleware, and one thin actor per stage.

`dramatiq processing_service.worker:setup` (what `python -m processing_service` runs)
calls `setup` in every worker process. Importing this module opens nothing; a worker
process's resources are created by `WorkerResources` after the process boots. Tests
call `create_broker` with Dramatiq's `StubBroker` and fake model adapters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Retries
from dramatiq.middleware.prometheus import Prometheus

from contracts import (
    ChunkReady,
    ContractError,
    JobSubmitted,
    Message,
    Stage,
    StageRequested,
    message_from_builtins,
)
from contracts.routing import STAGE_QUEUES
from infra.logs import configure_logging
from processing_service.analyze import stage as analyze_stage
from processing_service.diarize import stage as diarize_stage
from processing_service.diarize.diarizer import PyannoteDiarize
from processing_service.notify import stage as notify_stage
from processing_service.runtime import metrics
from processing_service.runtime.config import Settings, get_settings
from processing_service.runtime.context import StageContext
from processing_service.runtime.errors import (
    InvalidMessage,
    JobCancelled,
    PermanentError,
    StageSettled,
)
from processing_service.runtime.middleware import (
    JobContext,
    StageEvents,
    StageFailures,
    WorkerResources,
)
from processing_service.split import stage as split_stage
from processing_service.transcribe import stage as transcribe_stage
from processing_service.transcribe.engine import make_transcriber
from processing_service.transcribe.whisper import Transcriber

__all__ = ["Models", "create_broker", "setup"]

log = structlog.get_logger("processing.worker")

Handler = Callable[[StageContext, Any], None]


@dataclass(frozen=True)
class Models:
    """The model adapters the heavy stages call; tests pass small fakes."""

    transcriber: Transcriber
    diarize: diarize_stage.Diarize

    @classmethod
    def real(cls, settings: Settings) -> Models:
        """The configured transcription engine and pyannote.audio, each loaded on first call."""
        return cls(
            transcriber=make_transcriber(settings.models),
            diarize=PyannoteDiarize(settings.models, settings.diarization),
        )


def stage_handlers(models: Models) -> dict[Stage, tuple[type[Message], Handler]]:
    """Each stage's message type and stage function."""
    return {
        Stage.SPLIT: (JobSubmitted, split_stage.run),
        Stage.TRANSCRIBE: (
            ChunkReady,
            functools.partial(transcribe_stage.run, transcriber=models.transcriber),
        ),
        Stage.DIARIZE: (
            StageRequested,
            functools.partial(diarize_stage.run, diarize=models.diarize),
        ),
        Stage.ANALYZE: (StageRequested, analyze_stage.run),
        Stage.NOTIFY: (StageRequested, notify_stage.run),
    }


def _decode(payload: Any, expected: type[Message]) -> Message:
    try:
        message = message_from_builtins(payload)
    except ContractError as exc:
        raise InvalidMessage(str(exc)) from None
    if not isinstance(message, expected):
        raise InvalidMessage(f"expected {expected.__name__}, got {type(message).__name__}")
    return message


def _actor(
    resources: WorkerResources, stage: Stage, expected: type[Message], handler: Handler
) -> Callable[[dict[str, Any]], None]:
    def run(payload: dict[str, Any]) -> None:
        message = _decode(payload, expected)
        try:
            handler(resources.context, message)
        except JobCancelled:
            _let_go(resources.context, stage, message)
        except StageSettled as exc:
            log.info("stage settled meanwhile; message dropped", reason=str(exc))

    return run


def _let_go(ctx: StageContext, stage: Stage, message: Message) -> None:
    """The job was cancelled or deleted mid-stage: stamp the stop, drop the work files.

    The message is acknowledged: nothing is left to do for it.
    """
    ctx.jobs.settle_cancelled(message.job_id, stage)
    ctx.drop_work(message.job_id)
    metrics.CANCELLED_STOPS.labels(stage.value).inc()
    log.info("stage stopped: the job was cancelled or deleted")


def create_broker(
    settings: Settings,
    broker: dramatiq.Broker | None = None,
    models: Models | None = None,
) -> dramatiq.Broker:
    """`broker` (default: RabbitMQ with confirms) with the middleware and the five actors."""
    real = broker is None
    broker = broker or RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    resources = WorkerResources(settings, sample_queues=real)
    broker.add_middleware(resources)
    if real:
        broker.add_middleware(Prometheus())
    broker.add_middleware(JobContext())
    # Dramatiq runs `after_*` hooks in reverse order: placed before Retries, this one runs
    # after Retries has decided whether the message will be retried or is dead.
    broker.add_middleware(StageFailures(resources, notify_stage.give_up), before=Retries)
    # ...and this one after StageFailures has written a dead stage's state.
    broker.add_middleware(StageEvents(resources), before=StageFailures)
    for stage, (expected, handler) in stage_handlers(models or Models.real(settings)).items():
        policy = settings.policies[stage]
        declare = dramatiq.actor(
            broker=broker,
            actor_name=stage.value,
            queue_name=STAGE_QUEUES[stage],
            max_retries=policy.max_retries,
            min_backoff=policy.min_backoff_ms,
            max_backoff=policy.max_backoff_ms,
            time_limit=policy.time_limit_ms,
            throws=(PermanentError,),
        )
        declare(_actor(resources, stage, expected, handler))
    return broker


def setup() -> None:
    """Dramatiq's entry point in each worker process: logging, then the global broker."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    dramatiq.set_broker(create_broker(settings))
