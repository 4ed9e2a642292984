"""The JSON shapes the API answers with (API-only; messages live in `contracts`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from contracts import AudioFacts, JobOptions, JobStatus, Stage
from contracts.routing import job_path, result_path
from contracts.states import FINISHED_STATES, PIPELINE, StageState

#: Stage states that count as all of a stage's share of the progress.
_COMPLETE_STATES = FINISHED_STATES - {StageState.CANCELLED}
#: Each stage's share of a job's progress: roughly its share of the work on a typical
#: recording (transcription dominates, then diarization).
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.SPLIT: 0.05,
    Stage.TRANSCRIBE: 0.6,
    Stage.DIARIZE: 0.25,
    Stage.ANALYZE: 0.05,
    Stage.NOTIFY: 0.05,
}


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


def links_for(job_id: str) -> Links:
    return Links(self=job_path(job_id), result=result_path(job_id))


def _audio_facts(stored: Any) -> AudioFacts | None:
    # The stored jsonb may carry the workers' own keys (the normalized audio's path):
    # converting to the contract keeps them away from clients.
    return None if stored is None else msgspec.convert(stored, AudioFacts)


def job_view(
    job: Any, stages: list[Any] | None = None, dead_letters: list[Any] | None = None
) -> JobView:
    """Render a job row (and, for the detail view, its stage and dead-letter rows)."""
    job_id = str(job["id"])
    stage_views = None
    progress = None
    current = None
    if stages is not None:
        stage_views = [
            StageView(
                name=s["stage"],
                state=s["state"],
                attempts=s["attempts"],
                error=s["error"],
                started_at=s["started_at"],
                finished_at=s["finished_at"],
                # A cancelled stage keeps the progress it had made.
                progress=1.0 if s["state"] in _COMPLETE_STATES else round(s["progress"], 3),
            )
            for s in stages
        ]
        progress, current = job_progress(JobStatus(job["status"]), stage_views)
    return JobView(
        id=job_id,
        status=job["status"],
        created_at=job["created_at"],
        updated_at=job["updated_at"],
        started_at=job["started_at"],
        finished_at=job["finished_at"],
        filename=job["original_filename"],
        content_type=job["content_type"],
        audio_format=job["audio_format"],
        size_bytes=job["size_bytes"],
        sha256=job["sha256"],
        options=msgspec.convert(job["options"], JobOptions),
        error=job["error"],
        warnings=list(job["warnings"]),
        links=links_for(job_id),
        audio=_audio_facts(job["audio"]),
        source_url=job["source_url"],
        progress=progress,
        stage=current,
        stages=stage_views,
        dead_letters=None
        if dead_letters is None
        else [
            DeadLetterView(
                stage=d["stage"],
                queue=d["queue"],
                message_id=d["message_id"],
                reason=d["reason"],
                dead_at=d["dead_at"],
                replayed_at=d["replayed_at"],
            )
            for d in dead_letters
        ],
    )


def job_progress(status: JobStatus, stages: list[StageView]) -> tuple[float, str | None]:
    """The job's weighted progress, and its current stage (None once it has ended)."""
    if status is JobStatus.COMPLETED:
        return 1.0, None
    by_name = {s.name: s for s in stages}
    done = sum(
        STAGE_WEIGHTS[stage] * by_name[stage.value].progress
        for stage in PIPELINE
        if stage.value in by_name
    )
    current = None
    if not status.terminal:
        running = [s.name for s in stages if s.state == StageState.RUNNING]
        waiting = [s.name for s in stages if s.state in {StageState.QUEUED, StageState.PENDING}]
        current = next(iter(running + waiting), None)
    return round(min(done, 1.0), 3), current


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


def delivery_views(rows: list[tuple[Any, list[Any]]]) -> list[DeliveryView]:
    return [
        DeliveryView(
            id=str(d["id"]),
            generation=d["generation"],
            event=d["event"],
            url=d["url"],
            state=d["state"],
            attempts=[
                AttemptView(a["attempted_at"], a["status_code"], a["error"], a["duration_ms"])
                for a in attempts
            ],
            last_error=d["last_error"],
            created_at=d["created_at"],
            delivered_at=d["delivered_at"],
        )
        for d, attempts in rows
    ]
