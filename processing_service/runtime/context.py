"""What a stage function is given: settings, the job store, and a way to send on.

A `StageContext` lives once per worker process; `WorkerResources` (a middleware) builds
it after the process boots. Stage functions are plain functions of a context and a
message, so the in-process tests drive them with a stub broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from contracts import Message, Stage, StageRequested
from contracts.states import WAITING_STATES
from processing_service.runtime.config import Settings
from processing_service.runtime.database import Database
from processing_service.runtime.errors import InvalidMessage, StartedTooOften
from processing_service.runtime.events import EventPublisher
from processing_service.runtime.jobs import JobRecord, JobStore

log = structlog.get_logger("processing.stage")

#: Publishes a message to the actor of a stage (persistent, confirmed).
Send = Callable[[Stage, Message], None]


def work_dir(job_id: str) -> str:
    """A job's work files, relative to the storage directory."""
    return f"work/{job_id}"


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
        """The job, or None (logged) when the message is moot: the job has finished, or
        the message belongs to an older `generation` of it."""
        job = self.jobs.load_job(job_id)
        if job is None:
            raise InvalidMessage(f"job {job_id} does not exist")
        if self.stale(job, generation):
            return None
        if job.status.terminal:
            log.info("job already finished; message ignored", status=job.status.value)
            return None
        return job

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

    def request_now(self, job_id: str, stage: Stage, generation: int | None) -> None:
        self.send(stage, StageRequested(job_id=job_id, stage=stage.value, generation=generation))

    def path(self, relative: str) -> Path:
        """An absolute path in shared storage."""
        return self.settings.storage_dir / relative
