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
    #: Stopped, or never run, because the job was cancelled.
    CANCELLED = "cancelled"


#: Stage states after which a stage's output exists (or is knowingly absent).
DONE_STATES = frozenset({StageState.SUCCEEDED, StageState.SKIPPED})
#: Stage states in which the stage's message may still need sending.
WAITING_STATES = frozenset({StageState.PENDING, StageState.QUEUED})
#: Stage states a stage does not leave by itself: it is over, one way or another.
FINISHED_STATES = frozenset(
    {
        StageState.SUCCEEDED,
        StageState.SKIPPED,
        StageState.FAILED,
        StageState.DEAD,
        StageState.CANCELLED,
    }
)


#: The stages each stage waits for. Diarization needs only the normalized audio, so it
#: runs alongside transcription; it finishes by attributing the transcript's words, once
#: both are there. Analysis waits for both.
REQUIRES: dict[Stage, tuple[Stage, ...]] = {
    Stage.SPLIT: (),
    Stage.TRANSCRIBE: (Stage.SPLIT,),
    Stage.DIARIZE: (Stage.SPLIT,),
    Stage.ANALYZE: (Stage.TRANSCRIBE, Stage.DIARIZE),
    Stage.NOTIFY: (Stage.ANALYZE,),
}


def followers(stage: Stage) -> tuple[Stage, ...]:
    """The stages that wait for `stage`, in pipeline order."""
    return tuple(s for s in PIPELINE if stage in REQUIRES[s])


class DeliveryState(enum.StrEnum):
    """Where the webhook delivery of one job generation stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"


#: Between a warning's stage and its text: `diarize: failed: ...`. Both services parse
#: it back (in SQL) to drop the warnings of a stage that runs again.
WARNING_SEPARATOR = ": "


def stage_warning(stage: Stage, text: str) -> str:
    """A job warning that names its stage, so that a re-run of the stage can clear it."""
    return f"{stage.value}{WARNING_SEPARATOR}{text}"
