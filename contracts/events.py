"""Events for downstream consumers, published to the `audio.events` topic exchange.

Each event is a tagged, versioned msgspec Struct. `event_id` is also the AMQP
`message_id`; it is derived from the job, its generation and what happened, so a
re-published event (a worker redelivered a message) carries the same id and consumers
can de-duplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from contracts.messages import SCHEMA_VERSION

#: Namespace of the deterministic event ids.
EVENT_NAMESPACE = uuid.UUID("5b1f4f8e-8d0c-4a7e-9f65-2b0d3c1e7a90")


def event_id(job_id: str, generation: int, what: str) -> str:
    """The id of the event `what` ('job' or a stage name) of a job generation."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{job_id}/{generation}/{what}"))


class JobFinished(msgspec.Struct, frozen=True, tag="job.finished", tag_field="type"):
    """A job reached a terminal state; routing key `job.completed` or `job.failed`."""

    event_id: str
    job_id: str
    status: str
    occurred_at: datetime
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    #: Where the result document is, relative to the ingest API's base URL.
    result_path: str | None = None
    generation: int = 0
    version: int = SCHEMA_VERSION


class StageFinished(msgspec.Struct, frozen=True, tag="stage.finished", tag_field="type"):
    """A stage of a job reached a final state; routing key `job.stage.<stage>`."""

    event_id: str
    job_id: str
    stage: str
    state: str
    occurred_at: datetime
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None
    generation: int = 0
    version: int = SCHEMA_VERSION


Event = JobFinished | StageFinished

EVENT_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
