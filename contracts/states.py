"""The vocabulary of job and stage states, as stored in Postgres and shown by the API."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job stands. `completed`, `failed` and `cancelled` are terminal."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class Stage(enum.StrEnum):
    """The pipeline's stages, in the order they run."""

    SPLIT = "split"
    TRANSCRIBE = "transcribe"
    DIARIZE = "diarize"
    ANALYZE = "analyze"
    NOTIFY = "notify"


#: Stages in pipeline order; every job gets one stage row per entry.
PIPELINE: tuple[Stage, ...] = tuple(Stage)


class StageState(enum.StrEnum):
    """Where one stage of one job stands."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    DEAD = "dead"
