"""The generic job-state transitions every stage shares, in Postgres.

A stage's own outputs (chunks, transcript, speakers, notes, deliveries) are written by
the store of its package; what is written here is the state machine: a job is loaded,
a stage started, finished, degraded or failed, and the job finalized.

Lock order: every transaction that writes a job's rows (its stages, chunks, blocks,
results) locks the job row first (`LOCK_JOB`, or `LOCK_LIVE_JOB`). Two of them then
queue on that one lock instead of taking the same rows in opposite orders, a deadlock
Postgres would break by aborting one of them (for instance a diarization starting while
a failed transcription fails the job).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from contracts import AudioFacts, JobOptions, JobStatus, Stage, StageState
from contracts.states import FINISHED_STATES, REQUIRES, followers
from processing_service.runtime.database import Database
from processing_service.runtime.errors import JobCancelled, StageSettled


@dataclass(frozen=True)
class JobRecord:
    id: str
    status: JobStatus
    storage_path: str
    options: JobOptions
    audio: AudioFacts | None
    stages: dict[Stage, StageState]
    generation: int


@dataclass(frozen=True)
class StageOutcome:
    state: StageState
    error: str | None
    generation: int
    metadata: dict[str, Any]


#: Locks job $1's row: taken first by every transaction that writes the job's rows.
LOCK_JOB = "SELECT true FROM jobs WHERE id = $1 FOR UPDATE"

#: Row-locking check that job $1 is still queued or processing: a stray or late message
#: for a finished job must not rewrite its history.
LOCK_LIVE_JOB = (
    "SELECT true FROM jobs WHERE id = $1 AND status IN ('queued', 'processing') FOR UPDATE"
)

_FINISHED = sorted(s.value for s in FINISHED_STATES)

#: Appends warning $2 to job $1 once, however often a redelivered message says it.
ADD_WARNING = (
    "UPDATE jobs SET warnings = CASE WHEN warnings ? $2 THEN warnings"
    " ELSE warnings || jsonb_build_array($2) END WHERE id = $1"
)


async def finish_stage_in(
    conn: asyncpg.Connection, jid: uuid.UUID, stage: Stage, state: StageState, error: str | None
) -> list[Stage]:
    """Settle `stage`, inside the caller's transaction, and queue each stage that waited
    for it and for nothing else still unfinished (`contracts.states.REQUIRES`).

    Returns the stages queued: the caller sends their messages once this commits.
    """
    await conn.execute(LOCK_JOB, jid)  # a no-op when the caller holds it already
    # A stage that a cancel stopped stays cancelled, whatever its worker finished.
    await conn.execute(
        "UPDATE job_stages SET state = $3, error = $4, finished_at = now()"
        " WHERE job_id = $1 AND stage = $2 AND state <> 'cancelled'",
        jid,
        stage.value,
        state.value,
        error,
    )
    queued = []
    for following in followers(stage):
        flipped = await conn.fetchval(
            "UPDATE job_stages SET state = 'queued' WHERE job_id = $1 AND stage = $2"
            " AND state = 'pending' AND NOT EXISTS (SELECT 1 FROM job_stages r"
            " WHERE r.job_id = $1 AND r.stage = ANY($3::text[]) AND r.state <> ALL($4::text[]))"
            " RETURNING true",
            jid,
            following.value,
            [s.value for s in REQUIRES[following]],
            _FINISHED,
        )
        if flipped:
            queued.append(following)
    await conn.execute("UPDATE jobs SET updated_at = now() WHERE id = $1", jid)
    return queued


class JobStore:
    """Blocking access to jobs and their stage rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_job(self, job_id: str) -> JobRecord | None:
        async def q(conn: asyncpg.Connection) -> JobRecord | None:
            row = await conn.fetchrow(
                "SELECT id, status, storage_path, options, audio, generation FROM jobs"
                " WHERE id = $1",
                uuid.UUID(job_id),
            )
            if row is None:
                return None
            stages = await conn.fetch(
                "SELECT stage, state FROM job_stages WHERE job_id = $1", row["id"]
            )
            return JobRecord(
                id=job_id,
                status=JobStatus(row["status"]),
                storage_path=row["storage_path"],
                options=msgspec.convert(row["options"], JobOptions),
                audio=None if row["audio"] is None else msgspec.convert(row["audio"], AudioFacts),
                stages={Stage(s["stage"]): StageState(s["state"]) for s in stages},
                generation=row["generation"],
            )

        return self.db.transaction(q)

    def was_deleted(self, job_id: str) -> bool:
        """True when the job existed and was deleted (by its client or by retention)."""
        return bool(
            self.db.fetchval("SELECT true FROM deleted_jobs WHERE id = $1", uuid.UUID(job_id))
        )

    def settle_cancelled(self, job_id: str, stage: Stage) -> None:
        """Stamp when the worker of a cancelled stage let go of it."""
        self.db.execute(
            "UPDATE job_stages SET finished_at = now() WHERE job_id = $1 AND stage = $2"
            " AND state = 'cancelled' AND finished_at IS NULL",
            uuid.UUID(job_id),
            stage.value,
        )

    def stage_outcome(self, job_id: str, stage: Stage) -> StageOutcome | None:
        row = self.db.fetchrow(
            "SELECT s.state, s.error, j.generation, j.options -> 'metadata' AS metadata"
            " FROM job_stages s JOIN jobs j ON j.id = s.job_id"
            " WHERE s.job_id = $1 AND s.stage = $2",
            uuid.UUID(job_id),
            stage.value,
        )
        if row is None:
            return None
        return StageOutcome(
            StageState(row["state"]), row["error"], row["generation"], row["metadata"] or {}
        )

    def start_stage(self, job_id: str, stage: Stage) -> int:
        """Count an attempt and return the count; the job is `processing` from now on."""

        async def q(conn: asyncpg.Connection) -> int:
            jid = uuid.UUID(job_id)
            await conn.execute(LOCK_JOB, jid)
            # Not a stage settled meanwhile: a diarization running alongside a
            # transcription that failed the job must not show it running again.
            attempts: int | None = await conn.fetchval(
                "UPDATE job_stages SET state = 'running', attempts = attempts + 1,"
                " started_at = coalesce(started_at, now()) WHERE job_id = $1 AND stage = $2"
                " AND state <> ALL($3::text[]) RETURNING attempts",
                jid,
                stage.value,
                _FINISHED,
            )
            if attempts is None:
                state = await conn.fetchval(
                    "SELECT state FROM job_stages WHERE job_id = $1 AND stage = $2",
                    jid,
                    stage.value,
                )
                if state is None or state == StageState.CANCELLED:
                    raise JobCancelled(f"job {job_id} was cancelled or deleted")
                raise StageSettled(f"{stage.value} of job {job_id} is {state} already")
            await conn.execute(
                "UPDATE jobs SET status = 'processing', started_at = coalesce(started_at, now()),"
                " updated_at = now() WHERE id = $1 AND status IN ('queued', 'processing')",
                jid,
            )
            return attempts

        return self.db.transaction(q)

    def finish_stage(
        self, job_id: str, stage: Stage, state: StageState, error: str | None
    ) -> list[Stage]:
        """Settle `stage`; the stages this queued (see `finish_stage_in`)."""
        return self.db.transaction(
            lambda conn: finish_stage_in(conn, uuid.UUID(job_id), stage, state, error)
        )

    def add_warning(self, job_id: str, warning: str) -> None:
        self.db.execute(ADD_WARNING, uuid.UUID(job_id), warning)

    def record_attempt_error(self, job_id: str, stage: Stage, error: str) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            if not await conn.fetchval(LOCK_LIVE_JOB, uuid.UUID(job_id)):
                return
            await conn.execute(
                "UPDATE job_stages SET error = $3 WHERE job_id = $1 AND stage = $2",
                uuid.UUID(job_id),
                stage.value,
                error,
            )

        self.db.transaction(q)

    def degrade(
        self,
        job_id: str,
        stage: Stage,
        error: str,
        warning: str,
        state: StageState = StageState.DEAD,
    ) -> list[Stage] | None:
        """An optional stage gave up (or was skipped): the job goes on without its output.

        Returns the stages this queued (their messages are the caller's to send); None,
        and nothing changed, when the job has ended or the stage has already finished
        (a duplicate of its message failing late must not undo that). A diarize that
        gives up also resets the result to the transcript as transcribed.
        """

        async def q(conn: asyncpg.Connection) -> list[Stage] | None:
            jid = uuid.UUID(job_id)
            if not await conn.fetchval(LOCK_LIVE_JOB, jid):
                return None
            current = await conn.fetchval(
                "SELECT state FROM job_stages WHERE job_id = $1 AND stage = $2", jid, stage.value
            )
            if current in _FINISHED:
                return None
            if stage is Stage.DIARIZE:
                await conn.execute(
                    "UPDATE job_results SET document = document || jsonb_build_object("
                    " 'segments', transcript, 'speakers', '[]'::jsonb, 'turns', '[]'::jsonb),"
                    " updated_at = now() WHERE job_id = $1 AND transcript IS NOT NULL",
                    jid,
                )
            await conn.execute(ADD_WARNING, jid, warning)
            return await finish_stage_in(conn, jid, stage, state, error)

        return self.db.transaction(q)

    def fail_job(self, job_id: str, stage: Stage, error: str) -> bool:
        """A critical stage gave up: fail the job. True if this call changed its status."""

        async def q(conn: asyncpg.Connection) -> bool:
            jid = uuid.UUID(job_id)
            if not await conn.fetchval(LOCK_LIVE_JOB, jid):
                return False
            await conn.execute(
                "UPDATE job_stages SET state = 'dead', error = $3, finished_at = now()"
                " WHERE job_id = $1 AND stage = $2",
                jid,
                stage.value,
                error,
            )
            changed = await conn.fetchval(
                "UPDATE jobs SET status = 'failed', error = $2, finished_at = now(),"
                " updated_at = now() WHERE id = $1 AND status IN ('queued', 'processing')"
                " RETURNING true",
                jid,
                f"{stage.value} failed: {error}",
            )
            # What would have come after will not run, nor will a diarization running
            # alongside (its worker lets go at its next look at the job); notify still
            # tells the client.
            await conn.execute(
                "UPDATE job_stages SET state = CASE WHEN stage = 'notify' THEN 'queued'"
                " ELSE 'skipped' END, finished_at = CASE WHEN state = 'running' THEN now()"
                " ELSE finished_at END"
                " WHERE job_id = $1 AND state IN ('pending', 'queued', 'running')",
                jid,
            )
            return bool(changed)

        return self.db.transaction(q)

    def finalize(self, job_id: str) -> JobStatus:
        """Mark a job that is still running as completed; stamp the result document."""

        async def q(conn: asyncpg.Connection) -> JobStatus:
            jid = uuid.UUID(job_id)
            row = await conn.fetchrow(
                "UPDATE jobs SET status = CASE WHEN status IN ('queued', 'processing')"
                " THEN 'completed' ELSE status END,"
                " finished_at = coalesce(finished_at, now()), updated_at = now()"
                " WHERE id = $1 RETURNING status, warnings",
                jid,
            )
            await conn.execute(
                "UPDATE job_results SET document = document"
                " || jsonb_build_object('status', $2::text, 'warnings', $3::jsonb),"
                " updated_at = now() WHERE job_id = $1",
                jid,
                row["status"],
                row["warnings"],
            )
            return JobStatus(row["status"])

        return self.db.transaction(q)
