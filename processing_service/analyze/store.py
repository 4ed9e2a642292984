"""The analyze stage's reads and writes: the result in, the meeting notes out."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from contracts import Analysis, ResultDocument, Stage, StageState
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import ADD_WARNING, LOCK_JOB, finish_stage_in


def result(db: Database, job_id: str) -> ResultDocument | None:
    """The job's result document so far (transcript, speakers)."""
    raw = db.fetchval("SELECT document FROM job_results WHERE job_id = $1", uuid.UUID(job_id))
    return None if raw is None else msgspec.convert(raw, ResultDocument)


def save_analysis(db: Database, job_id: str, analysis: Analysis, warnings: list[str]) -> None:
    """Store the meeting notes (and warnings about them); complete the analyze stage."""

    async def q(conn: asyncpg.Connection) -> None:
        jid = uuid.UUID(job_id)
        await conn.execute(LOCK_JOB, jid)
        await conn.execute(
            "UPDATE job_results SET updated_at = now(),"
            " document = document || jsonb_build_object('analysis', $2::jsonb)"
            " WHERE job_id = $1",
            jid,
            msgspec.to_builtins(analysis),
        )
        for text in warnings:
            await conn.execute(ADD_WARNING, jid, text)
        await finish_stage_in(conn, jid, Stage.ANALYZE, StageState.SUCCEEDED, None)

    db.transaction(q)
