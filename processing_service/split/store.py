"""The split stage's writes: the job's audio facts and its chunk rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from contracts import AudioFacts, Stage, StageState
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import LOCK_JOB, finish_stage_in


@dataclass(frozen=True)
class PlannedChunk:
    """A chunk as split cut it: where it lies and where its audio is stored."""

    index: int
    start_s: float
    end_s: float
    audio_path: str


def complete_split(
    db: Database, job_id: str, audio: AudioFacts, chunks: list[PlannedChunk]
) -> None:
    """Record the audio facts and the chunks, and finish the split stage, in one go."""

    async def q(conn: asyncpg.Connection) -> None:
        jid = uuid.UUID(job_id)
        await conn.execute(LOCK_JOB, jid)
        await conn.execute(
            "UPDATE jobs SET audio = $2 WHERE id = $1", jid, msgspec.to_builtins(audio)
        )
        await conn.executemany(
            "INSERT INTO job_chunks (job_id, idx, start_s, end_s, audio_path)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, idx) DO NOTHING",
            [(jid, c.index, c.start_s, c.end_s, c.audio_path) for c in chunks],
        )
        await finish_stage_in(conn, jid, Stage.SPLIT, StageState.SUCCEEDED, None)

    db.transaction(q)


def source_headers(db: Database, job_id: str) -> dict[str, str]:
    """The request headers the client gave for its audio URL (never logged)."""
    headers = db.fetchval("SELECT source_headers FROM jobs WHERE id = $1", uuid.UUID(job_id))
    return dict(headers or {})


def record_fetched(
    db: Database, job_id: str, size_bytes: int, sha256: str, content_type: str
) -> None:
    """What the fetched audio turned out to be: the job shows it like an upload's."""
    db.execute(
        "UPDATE jobs SET size_bytes = $2, sha256 = $3, content_type = $4, updated_at = now()"
        " WHERE id = $1",
        uuid.UUID(job_id),
        size_bytes,
        sha256,
        content_type[:200],
    )
