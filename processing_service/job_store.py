"""Job, stage, chunk and result state in Postgres, for the workers (through `Database`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from contracts import (
    Analysis,
    JobOptions,
    JobStatus,
    ResultDocument,
    Segment,
    Speaker,
    SpeakerTurn,
    Stage,
    StageState,
)
from contracts.states import PIPELINE
from processing_service.database import Database

#: Stage states after which a stage's output exists (or is knowingly absent).
DONE_STATES = frozenset({StageState.SUCCEEDED, StageState.SKIPPED})
#: Stage states in which the next message may still need sending.
WAITING_STATES = frozenset({StageState.PENDING, StageState.QUEUED})


@dataclass(frozen=True)
class JobRecord:
    id: str
    status: JobStatus
    storage_path: str
    options: JobOptions
    audio: dict[str, Any] | None
    stages: dict[Stage, StageState]


@dataclass(frozen=True)
class StageOutcome:
    state: StageState
    error: str | None
    generation: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    start_s: float
    end_s: float
    audio_path: str
    transcript: Any | None


def _next_stage(stage: Stage) -> Stage | None:
    index = PIPELINE.index(stage)
    return PIPELINE[index + 1] if index + 1 < len(PIPELINE) else None


#: Row-locking check that job $1 is still queued or processing: a stray or late message
#: for a finished job must not rewrite its history.
_LOCK_LIVE_JOB = (
    "SELECT true FROM jobs WHERE id = $1 AND status IN ('queued', 'processing') FOR UPDATE"
)

#: Appends warning $2 to job $1 once, however often a redelivered message says it.
_ADD_WARNING = (
    "UPDATE jobs SET warnings = CASE WHEN warnings ? $2 THEN warnings"
    " ELSE warnings || jsonb_build_array($2) END WHERE id = $1"
)


class JobStore:
    """Blocking access to jobs, stages, chunks and results."""

    def __init__(self, db: Database) -> None:
        self._run = db.run

    # -- reading ---------------------------------------------------------------------

    def load_job(self, job_id: str) -> JobRecord | None:
        async def q(conn: asyncpg.Connection) -> JobRecord | None:
            row = await conn.fetchrow(
                "SELECT id, status, storage_path, options, audio FROM jobs WHERE id = $1",
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
                audio=row["audio"],
                stages={Stage(s["stage"]): StageState(s["state"]) for s in stages},
            )

        return self._run(q)

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        async def q(conn: asyncpg.Connection) -> list[ChunkRecord]:
            rows = await conn.fetch(
                "SELECT idx, start_s, end_s, audio_path, transcript FROM job_chunks"
                " WHERE job_id = $1 ORDER BY idx",
                uuid.UUID(job_id),
            )
            return [ChunkRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows]

        return self._run(q)

    def result(self, job_id: str) -> ResultDocument | None:
        async def q(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(
                "SELECT document FROM job_results WHERE job_id = $1", uuid.UUID(job_id)
            )

        document = self._run(q)
        return None if document is None else msgspec.convert(document, ResultDocument)

    def transcript(self, job_id: str) -> list[Segment]:
        """The stitched transcript as transcribed, before speaker attribution."""

        async def q(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(
                "SELECT transcript FROM job_results WHERE job_id = $1", uuid.UUID(job_id)
            )

        return msgspec.convert(self._run(q) or [], list[Segment])

    def stage_outcome(self, job_id: str, stage: Stage) -> StageOutcome | None:
        async def q(conn: asyncpg.Connection) -> StageOutcome | None:
            row = await conn.fetchrow(
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

        return self._run(q)

    def finish_stage(self, job_id: str, stage: Stage, state: StageState, error: str | None) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            await self._finish(conn, uuid.UUID(job_id), stage, state, error)

        self._run(q)

    # -- stage transitions -------------------------------------------------------------

    def start_stage(self, job_id: str, stage: Stage) -> int:
        """Count an attempt and return the count; the job is `processing` from now on."""

        async def q(conn: asyncpg.Connection) -> int:
            jid = uuid.UUID(job_id)
            attempts: int = await conn.fetchval(
                "UPDATE job_stages SET state = 'running', attempts = attempts + 1,"
                " started_at = coalesce(started_at, now()) WHERE job_id = $1 AND stage = $2"
                " RETURNING attempts",
                jid,
                stage.value,
            )
            await conn.execute(
                "UPDATE jobs SET status = 'processing', started_at = coalesce(started_at, now()),"
                " updated_at = now() WHERE id = $1 AND status IN ('queued', 'processing')",
                jid,
            )
            return attempts

        return self._run(q)

    @staticmethod
    async def _finish(
        conn: asyncpg.Connection, jid: uuid.UUID, stage: Stage, state: StageState, error: str | None
    ) -> None:
        await conn.execute(
            "UPDATE job_stages SET state = $3, error = $4, finished_at = now()"
            " WHERE job_id = $1 AND stage = $2",
            jid,
            stage.value,
            state.value,
            error,
        )
        following = _next_stage(stage)
        if following is not None:
            await conn.execute(
                "UPDATE job_stages SET state = 'queued' WHERE job_id = $1 AND stage = $2"
                " AND state = 'pending'",
                jid,
                following.value,
            )
        await conn.execute("UPDATE jobs SET updated_at = now() WHERE id = $1", jid)

    def complete_split(self, job_id: str, audio: dict[str, Any], chunks: list[ChunkRecord]) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            jid = uuid.UUID(job_id)
            await conn.execute("UPDATE jobs SET audio = $2 WHERE id = $1", jid, audio)
            await conn.executemany(
                "INSERT INTO job_chunks (job_id, idx, start_s, end_s, audio_path)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, idx) DO NOTHING",
                [(jid, c.index, c.start_s, c.end_s, c.audio_path) for c in chunks],
            )
            await self._finish(conn, jid, Stage.SPLIT, StageState.SUCCEEDED, None)

        self._run(q)

    def start_chunk(self, job_id: str, index: int) -> int:
        """Count a start of one chunk's transcription (and of the stage); the chunk's count."""

        async def q(conn: asyncpg.Connection) -> int:
            attempts: int = await conn.fetchval(
                "UPDATE job_chunks SET attempts = attempts + 1 WHERE job_id = $1 AND idx = $2"
                " RETURNING attempts",
                uuid.UUID(job_id),
                index,
            )
            return attempts

        started = self._run(q)
        self.start_stage(job_id, Stage.TRANSCRIBE)
        return started

    def save_chunk_transcript(self, job_id: str, index: int, transcript: Any) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE job_chunks SET transcript = $3, transcribed_at = now()"
                " WHERE job_id = $1 AND idx = $2 AND transcript IS NULL",
                uuid.UUID(job_id),
                index,
                transcript,
            )

        self._run(q)

    def complete_transcription(self, job_id: str, document: ResultDocument) -> bool:
        """Store the stitched transcript once; True for the one caller that did it."""

        async def q(conn: asyncpg.Connection) -> bool:
            jid = uuid.UUID(job_id)
            # The job row lock serialises the chunks' fan-in.
            await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", jid)
            state = await conn.fetchval(
                "SELECT state FROM job_stages WHERE job_id = $1 AND stage = 'transcribe'", jid
            )
            if StageState(state) in DONE_STATES:
                return False
            await conn.execute(
                "INSERT INTO job_results (job_id, document, transcript) VALUES ($1, $2, $3)"
                " ON CONFLICT (job_id) DO UPDATE SET document = $2, transcript = $3,"
                " updated_at = now()",
                jid,
                msgspec.to_builtins(document),
                msgspec.to_builtins(document.segments),
            )
            await self._finish(conn, jid, Stage.TRANSCRIBE, StageState.SUCCEEDED, None)
            return True

        return self._run(q)

    def save_attribution(
        self,
        job_id: str,
        segments: list[Segment],
        speakers: list[Speaker],
        turns: list[SpeakerTurn],
    ) -> None:
        """Replace the result's speaker attribution and complete the diarize stage."""

        async def q(conn: asyncpg.Connection) -> None:
            jid = uuid.UUID(job_id)
            await conn.execute(
                "UPDATE job_results SET document = document || $2::jsonb, updated_at = now()"
                " WHERE job_id = $1",
                jid,
                {
                    "segments": msgspec.to_builtins(segments),
                    "speakers": msgspec.to_builtins(speakers),
                    "turns": msgspec.to_builtins(turns),
                },
            )
            await self._finish(conn, jid, Stage.DIARIZE, StageState.SUCCEEDED, None)

        self._run(q)

    def save_analysis(self, job_id: str, analysis: Analysis, warnings: list[str]) -> None:
        """Store the meeting notes (and warnings about them); complete the analyze stage."""

        async def q(conn: asyncpg.Connection) -> None:
            jid = uuid.UUID(job_id)
            await conn.execute(
                "UPDATE job_results SET updated_at = now(),"
                " document = document || jsonb_build_object('analysis', $2::jsonb)"
                " WHERE job_id = $1",
                jid,
                msgspec.to_builtins(analysis),
            )
            for text in warnings:
                await conn.execute(_ADD_WARNING, jid, text)
            await self._finish(conn, jid, Stage.ANALYZE, StageState.SUCCEEDED, None)

        self._run(q)

    def add_warning(self, job_id: str, warning: str) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(_ADD_WARNING, uuid.UUID(job_id), warning)

        self._run(q)

    def record_attempt_error(self, job_id: str, stage: Stage, error: str) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            if not await conn.fetchval(_LOCK_LIVE_JOB, uuid.UUID(job_id)):
                return
            await conn.execute(
                "UPDATE job_stages SET error = $3 WHERE job_id = $1 AND stage = $2",
                uuid.UUID(job_id),
                stage.value,
                error,
            )

        self._run(q)

    def degrade(
        self,
        job_id: str,
        stage: Stage,
        error: str,
        warning: str,
        state: StageState = StageState.DEAD,
    ) -> bool:
        """An optional stage gave up (or was skipped): the job goes on without its output.

        False, and nothing changed, when the job has ended or the stage has already
        succeeded (a duplicate of its message failing late must not undo that). A
        diarize that gives up also resets the result to the transcript as transcribed.
        """

        async def q(conn: asyncpg.Connection) -> bool:
            jid = uuid.UUID(job_id)
            if not await conn.fetchval(_LOCK_LIVE_JOB, jid):
                return False
            current = await conn.fetchval(
                "SELECT state FROM job_stages WHERE job_id = $1 AND stage = $2", jid, stage.value
            )
            if current in {s.value for s in DONE_STATES}:
                return False
            if stage is Stage.DIARIZE:
                await conn.execute(
                    "UPDATE job_results SET document = document || jsonb_build_object("
                    " 'segments', transcript, 'speakers', '[]'::jsonb, 'turns', '[]'::jsonb),"
                    " updated_at = now() WHERE job_id = $1 AND transcript IS NOT NULL",
                    jid,
                )
            await conn.execute(_ADD_WARNING, jid, warning)
            await self._finish(conn, jid, stage, state, error)
            return True

        return self._run(q)

    def fail_job(self, job_id: str, stage: Stage, error: str, state: StageState) -> bool:
        """A critical stage gave up: fail the job. True if this call changed its status."""

        async def q(conn: asyncpg.Connection) -> bool:
            jid = uuid.UUID(job_id)
            if not await conn.fetchval(_LOCK_LIVE_JOB, jid):
                return False
            await conn.execute(
                "UPDATE job_stages SET state = $3, error = $4, finished_at = now()"
                " WHERE job_id = $1 AND stage = $2",
                jid,
                stage.value,
                state.value,
                error,
            )
            changed = await conn.fetchval(
                "UPDATE jobs SET status = 'failed', error = $2, finished_at = now(),"
                " updated_at = now() WHERE id = $1 AND status IN ('queued', 'processing')"
                " RETURNING true",
                jid,
                f"{stage.value} failed: {error}",
            )
            # What would have come after will not run; notify still tells the client.
            await conn.execute(
                "UPDATE job_stages SET state = CASE WHEN stage = 'notify' THEN 'queued'"
                " ELSE 'skipped' END WHERE job_id = $1 AND state IN ('pending', 'queued')",
                jid,
            )
            return bool(changed)

        return self._run(q)

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

        return self._run(q)
