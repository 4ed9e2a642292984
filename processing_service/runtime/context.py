"""What a stage function is given: settings, the job store, and a way to send on.

A `StageContext` lives once per worker process; `WorkerResources` (a middleware) builds
it after the process boots. Stage functions are plain functions of a context and a
message, so the in-process tests drive them with a stub broker.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from contracts import Message, Stage, StageRequested, StageState
from contracts.events import StageFinished, event_id
from contracts.layout import work_dir
from contracts.routing import stage_event_key
from contracts.states import FINISHED_STATES, WAITING_STATES
from processing_service.runtime.config import Settings
from processing_service.runtime.database import Database
from processing_service.runtime.errors import InvalidMessage, StartedTooOften
from processing_service.runtime.events import EventPublisher
from processing_service.runtime.jobs import JobRecord, JobStore
from processing_service.runtime.watch import StageWatch

log = structlog.get_logger("processing.stage")

#: Publishes a message to the actor of a stage (persistent, confirmed).
Send = Callable[[Stage, Message], None]


def normalized_audio(job_id: str) -> str:
    """The job's audio as split normalized it (16 kHz mono WAV), relative to storage."""
    return f"{work_dir(job_id)}/audio.wav"


@dataclass(frozen=True)
class StageContext:
    settings: Settings
    db: Database
    jobs: JobStore
    events: EventPublisher
    send: Send

    def live_job(self, job_id: str, generation: int | None = None) -> JobRecord | None:
        """The job, or None (logged) when the message is moot: the job has finished or
        was deleted, or the message belongs to an older `generation` of it."""
        job = self.load(job_id)
        if job is None:
            return None
        if self.stale(job, generation):
            return None
        if job.status.terminal:
            log.info("job already finished; message ignored", status=job.status.value)
            return None
        return job

    def load(self, job_id: str) -> JobRecord | None:
        """The job; None (logged) when it was deleted; `InvalidMessage` when it never was."""
        job = self.jobs.load_job(job_id)
        if job is None:
            if not self.jobs.was_deleted(job_id):
                raise InvalidMessage(f"job {job_id} does not exist")
            log.info("job deleted; message dropped")
        return job

    def watch(self, job_id: str, stage: Stage, part: int | None = None) -> StageWatch:
        """The progress reporter of a running stage (or of its `part`: a transcribe
        chunk, a diarize block), which also notices a cancel."""
        return StageWatch(
            self.db, job_id, stage, part=part, interval_s=self.settings.progress_interval_s
        )

    def drop_work(self, job_id: str) -> None:
        """Remove the job's work files (normalized audio, chunks)."""
        shutil.rmtree(self.path(work_dir(job_id)), ignore_errors=True)

    def stale(self, job: JobRecord, generation: int | None) -> bool:
        """True (logged) when a message of `generation` is older than the job's."""
        if generation is None or generation >= job.generation:
            return False
        log.info(
            "message of an older generation dropped",
            message_generation=generation,
            job_generation=job.generation,
        )
        return True

    def begin(self, job_id: str, stage: Stage, what: str | None = None) -> None:
        """Count an attempt of `stage`; refuse a message that keeps killing its worker."""
        attempts = self.jobs.start_stage(job_id, stage)
        if self.settings.policies[stage].started_too_often(attempts):
            raise StartedTooOften(what or stage.value, attempts)

    def request(self, job: JobRecord, stage: Stage) -> None:
        """Send the message that starts `stage` unless it has started already."""
        if job.stages.get(stage) in WAITING_STATES:
            self.request_now(job.id, stage, job.generation)

    def resend_queued(self, job: JobRecord, stage: Stage) -> None:
        """Send `stage`'s message again if it was queued (by a handler of this message
        that may have stopped before sending it); a stage still waiting for others is not."""
        if job.stages.get(stage) is StageState.QUEUED:
            self.request_now(job.id, stage, job.generation)

    def request_now(self, job_id: str, stage: Stage, generation: int | None) -> None:
        self.send(stage, StageRequested(job_id=job_id, stage=stage.value, generation=generation))

    def publish_stage_event(self, job_id: str, stage: Stage) -> bool:
        """Publish `job.stage.<name>` if `stage` is over; True when published. Its event
        id comes from the generation and stage, so a second publication is a duplicate
        that consumers drop."""
        outcome = self.jobs.stage_outcome(job_id, stage)
        if outcome is None or outcome.state not in FINISHED_STATES:
            return False
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
        return True

    def path(self, relative: str) -> Path:
        """An absolute path in shared storage."""
        return self.settings.storage_dir / relative
