"""The diarize stage's reads and writes: the transcript in, the attribution out."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from contracts import Segment, Speaker, SpeakerTurn, Stage, StageState
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import finish_stage_in


def transcript(db: Database, job_id: str) -> list[Segment]:
    """The stitched transcript as transcribed, before speaker attribution."""
    raw = db.fetchval("SELECT transcript FROM job_results WHERE job_id = $1", uuid.UUID(job_id))
    return msgspec.convert(raw or [], list[Segment])


def save_attribution(
    db: Database,
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
        await finish_stage_in(conn, jid, Stage.DIARIZE, StageState.SUCCEEDED, None)

    db.transaction(q)
