"""The JSON shapes the ingest API answers with, shared with its clients.

The API renders its answers with these Structs and the Python client (`audio_client`)
decodes them with the same ones, so a field added here reaches both at once. Like every
contract, new fields get defaults; clients ignore fields they do not know.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.messages import JobOptions
from contracts.result import AudioFacts
from contracts.states import JobStatus


class Links(msgspec.Struct, frozen=True):
    self: str
    result: str


class StageView(msgspec.Struct, frozen=True):
    name: str
    state: str
    attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    #: How far the stage is, 0..1, as its worker last said (1 once it is over).
    progress: float = 0.0


class DeadLetterView(msgspec.Struct, frozen=True):
    """A message a worker gave up on; `make replay-dlq` moves it back."""

    stage: str
    queue: str
    message_id: str
    reason: str
    dead_at: datetime
    replayed_at: datetime | None


class JobView(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    filename: str
    content_type: str
    audio_format: str
    size_bytes: int
    sha256: str
    options: JobOptions
    error: str | None
    warnings: list[str]
    links: Links
    #: What the split stage found; absent until it has run.
    audio: AudioFacts | None = None
    #: Where the audio was fetched from (no query string), for a job submitted by URL.
    source_url: str | None = None
    #: How far the job is, 0..1: its stages weighted by `STAGE_WEIGHTS`, moving during
    #: transcription (audio decoded) and diarization.
    progress: float | None = None
    #: The stage running now (else the next one waiting); absent once the job has ended.
    stage: str | None = None
    stages: list[StageView] | None = None
    dead_letters: list[DeadLetterView] | None = None


class JobAccepted(msgspec.Struct, frozen=True, omit_defaults=True):
    """The 202 answer to an upload."""

    id: str
    status: str
    created_at: datetime
    filename: str
    size_bytes: int
    sha256: str
    audio_format: str
    options: JobOptions
    links: Links
    #: Where the audio will be fetched from (no query string), for a submit by URL.
    source_url: str | None = None
    #: Present once, when the service generated the webhook signing secret.
    webhook_secret: str | None = None


class JobPage(msgspec.Struct, frozen=True):
    items: list[JobView]
    #: Pass as `cursor` to get the next page; null on the last page.
    next_cursor: str | None


class JobUpdate(msgspec.Struct, frozen=True):
    """What an event stream says about a job: where it is now."""

    job_id: str
    status: str
    stage: str | None
    progress: float | None
    error: str | None = None

    @classmethod
    def of(cls, view: JobView) -> JobUpdate:
        return cls(view.id, view.status, view.stage, view.progress, view.error)

    @classmethod
    def deleted(cls, job_id: str) -> JobUpdate:
        return cls(job_id, "deleted", None, None, "the job was deleted")

    @property
    def ended(self) -> bool:
        return self.status == "deleted" or JobStatus(self.status).terminal


class AttemptView(msgspec.Struct, frozen=True):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryView(msgspec.Struct, frozen=True):
    """One webhook delivery: its id is the `webhook-id` header of every attempt."""

    id: str
    generation: int
    event: str
    url: str
    state: str
    attempts: list[AttemptView]
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
