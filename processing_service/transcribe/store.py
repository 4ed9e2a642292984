"""The transcribe stage's writes: chunk transcripts and the stitched transcript."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from contracts import ResultDocument, Stage, StageState
from contracts.states import DONE_STATES
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import LOCK_JOB, finish_stage_in
from processing_service.transcribe.stitching import ChunkTranscript


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    start_s: float
    end_s: float
    audio_path: str
    transcript: ChunkTranscript | None


def chunks_of(db: Database, job_id: str) -> list[ChunkRecord]:
    """The job's chunks in order, with the transcripts done so far."""
    rows = db.fetch(
        "SELECT idx, start_s, end_s, audio_path, transcript FROM job_chunks"
        " WHERE job_id = $1 ORDER BY idx",
        uuid.UUID(job_id),
    )
    return [
        ChunkRecord(
            r["idx"],
            r["start_s"],
            r["end_s"],
            r["audio_path"],
            None if r["transcript"] is None else msgspec.convert(r["transcript"], ChunkTranscript),
        )
        for r in rows
    ]


def start_chunk(db: Database, job_id: str, index: int) -> int:
    """Count a start of one chunk's transcription, and of the stage; the chunk's count.

    The stage's own attempts count every chunk of the job, so the chunk's count is the
    one that tells a chunk that keeps killing its worker.
    """

    async def q(conn: asyncpg.Connection) -> int:
        jid = uuid.UUID(job_id)
        attempts: int = await conn.fetchval(
            "UPDATE job_chunks SET attempts = attempts + 1 WHERE job_id = $1 AND idx = $2"
            " RETURNING attempts",
            jid,
            index,
        )
        return attempts

    return db.transaction(q)


def save_chunk_transcript(
    db: Database, job_id: str, index: int, transcript: ChunkTranscript
) -> None:
    """Store a chunk's transcript once (a redelivered chunk keeps the first)."""
    db.execute(
        "UPDATE job_chunks SET transcript = $3, transcribed_at = now()"
        " WHERE job_id = $1 AND idx = $2 AND transcript IS NULL",
        uuid.UUID(job_id),
        index,
        msgspec.to_builtins(transcript),
    )


def complete_transcription(
    db: Database, job_id: str, document: ResultDocument
) -> list[Stage] | None:
    """Store the stitched transcript once: for the one caller that did it, the stages
    this queued (see `finish_stage_in`); None for the others."""

    async def q(conn: asyncpg.Connection) -> list[Stage] | None:
        jid = uuid.UUID(job_id)
        # The job row lock serialises the chunks' fan-in.
        await conn.execute(LOCK_JOB, jid)
        state = await conn.fetchval(
            "SELECT state FROM job_stages WHERE job_id = $1 AND stage = 'transcribe'", jid
        )
        if StageState(state) in DONE_STATES:
            return None
        await conn.execute(
            "INSERT INTO job_results (job_id, document, transcript) VALUES ($1, $2, $3)"
            " ON CONFLICT (job_id) DO UPDATE SET document = $2, transcript = $3,"
            " updated_at = now()",
            jid,
            msgspec.to_builtins(document),
            msgspec.to_builtins(document.segments),
        )
        return await finish_stage_in(conn, jid, Stage.TRANSCRIBE, StageState.SUCCEEDED, None)

    return db.transaction(q)
