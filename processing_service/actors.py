"""The Dramatiq actors: thin shells that decode a message and call the pipeline.

Importing this module sets up logging and the broker; `dramatiq processing_service.actors`
(what `python -m processing_service` runs) imports it in every worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import msgspec
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
from processing_service.config import get_settings
from processing_service.database import Database
from processing_service.dead_letters import DeadLetterStore
from processing_service.delivery_store import DeliveryStore
from processing_service.errors import InvalidMessage, PermanentError
from processing_service.events import EventPublisher
from processing_service.job_store import JobStore
from processing_service.logs import configure_logging
from processing_service.metrics import QueueSampler
from processing_service.middleware import JobContext, StageEvents, StageFailures
from processing_service.notification import Notifier
from processing_service.pipeline import Pipeline

M = TypeVar("M", JobSubmitted, ChunkReady, StageRequested)

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)

broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
dramatiq.set_broker(broker)

#: Queue and dead-letter depths for Prometheus, sampled from each worker process.
QueueSampler(settings.amqp_url).start()

_actors: dict[Stage, dramatiq.Actor[[dict[str, Any]], None]] = {}


def send(stage: Stage, message: Message) -> None:
    """Publish `message` to the actor of `stage` (persistent, confirmed)."""
    _actors[stage].send(msgspec.to_builtins(message))


database = Database(settings.database_url)
store = JobStore(database)
events = EventPublisher(settings.amqp_url)
notifier = Notifier(settings, store, DeliveryStore(database), events)
pipeline = Pipeline(settings=settings, store=store, send=send, notifier=notifier)
broker.add_middleware(Prometheus())
broker.add_middleware(JobContext())
# Dramatiq runs `after_*` hooks in reverse order: placed before Retries, this one runs
# after Retries has decided whether the message will be retried or is dead.
broker.add_middleware(StageFailures(pipeline, DeadLetterStore(database)), before=Retries)
# ...and this one after StageFailures has written a dead stage's state.
broker.add_middleware(StageEvents(store, events), before=StageFailures)


def _decode(payload: Any, expected: type[M]) -> M:
    try:
        message = message_from_builtins(payload)
    except ContractError as exc:
        raise InvalidMessage(str(exc)) from None
    if not isinstance(message, expected):
        raise InvalidMessage(f"expected {expected.__name__}, got {type(message).__name__}")
    return message


Handler = Callable[[dict[str, Any]], None]


def _stage_actor(stage: Stage) -> Callable[[Handler], dramatiq.Actor[[dict[str, Any]], None]]:
    policy = settings.policies[stage]
    return dramatiq.actor(
        actor_name=stage.value,
        queue_name=STAGE_QUEUES[stage],
        max_retries=policy.max_retries,
        min_backoff=policy.min_backoff_ms,
        max_backoff=policy.max_backoff_ms,
        time_limit=policy.time_limit_ms,
        throws=(PermanentError,),
    )


@_stage_actor(Stage.SPLIT)
def split(payload: dict[str, Any]) -> None:
    pipeline.split(_decode(payload, JobSubmitted))


@_stage_actor(Stage.TRANSCRIBE)
def transcribe(payload: dict[str, Any]) -> None:
    pipeline.transcribe(_decode(payload, ChunkReady))


@_stage_actor(Stage.DIARIZE)
def diarize(payload: dict[str, Any]) -> None:
    pipeline.diarize(_decode(payload, StageRequested))


@_stage_actor(Stage.ANALYZE)
def analyze(payload: dict[str, Any]) -> None:
    pipeline.analyze(_decode(payload, StageRequested))


@_stage_actor(Stage.NOTIFY)
def notify(payload: dict[str, Any]) -> None:
    pipeline.notify(_decode(payload, StageRequested))


_actors.update(
    {
        Stage.SPLIT: split,
        Stage.TRANSCRIBE: transcribe,
        Stage.DIARIZE: diarize,
        Stage.ANALYZE: analyze,
        Stage.NOTIFY: notify,
    }
)
