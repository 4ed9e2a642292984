"""The diarize stage's reads and writes: its blocks, the linked turns, the attribution.

A job generation's diarization is planned as blocks (`job_speaker_blocks`), each
diarized by one message; the last block to finish links them into the generation's
turns (`job_speaker_turns`). Attribution merges those turns into the transcript once
both exist, under the job's row lock, so that exactly one of the transcript's fan-in
and the diarization's does it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from contracts import Segment, SpeakerTurn, Stage, StageState
from contracts.states import DONE_STATES, FINISHED_STATES
from processing_service.diarize.attribution import Attribution
from processing_service.diarize.found import BlockDiarization
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import LOCK_LIVE_JOB, finish_stage_in


@dataclass(frozen=True)
class BlockRecord:
    index: int
    start_s: float
    end_s: float
    result: BlockDiarization | None


def blocks_of(db: Database, job_id: str, generation: int) -> list[BlockRecord]:
    """The blocks planned for this generation of the job, in order (none yet: [])."""
    rows = db.fetch(
        "SELECT idx, start_s, end_s, result FROM job_speaker_blocks"
        " WHERE job_id = $1 AND generation = $2 ORDER BY idx",
        uuid.UUID(job_id),
        generation,
    )
    return [
        BlockRecord(
            r["idx"],
            r["start_s"],
            r["end_s"],
            None if r["result"] is None else msgspec.convert(r["result"], BlockDiarization),
        )
        for r in rows
    ]


def plan(
    db: Database, job_id: str, generation: int, spans: list[tuple[float, float]]
) -> list[BlockRecord]:
    """Record the generation's blocks (a plan already recorded stands); drop older plans."""

    async def q(conn: asyncpg.Connection) -> None:
        jid = uuid.UUID(job_id)
        await conn.execute(
            "DELETE FROM job_speaker_blocks WHERE job_id = $1 AND generation <> $2",
            jid,
            generation,
        )
        await conn.executemany(
            "INSERT INTO job_speaker_blocks (job_id, generation, idx, start_s, end_s)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(jid, generation, i, start, end) for i, (start, end) in enumerate(spans)],
        )

    db.transaction(q)
    return blocks_of(db, job_id, generation)


def start_block(db: Database, job_id: str, generation: int, index: int) -> int:
    """Count a start of one block's diarization; the block's count."""
    attempts: int = db.fetchval(
        "UPDATE job_speaker_blocks SET attempts = attempts + 1"
        " WHERE job_id = $1 AND generation = $2 AND idx = $3 RETURNING attempts",
        uuid.UUID(job_id),
        generation,
        index,
    )
    return attempts


def save_block(
    db: Database, job_id: str, generation: int, index: int, result: BlockDiarization
) -> None:
    """Store a block's diarization once (a redelivered block keeps the first)."""
    db.execute(
        "UPDATE job_speaker_blocks SET result = $4, progress = 1, finished_at = now()"
        " WHERE job_id = $1 AND generation = $2 AND idx = $3 AND result IS NULL",
        uuid.UUID(job_id),
        generation,
        index,
        msgspec.to_builtins(result),
    )


def has_turns(db: Database, job_id: str, generation: int) -> bool:
    return bool(
        db.fetchval(
            "SELECT true FROM job_speaker_turns WHERE job_id = $1 AND generation = $2",
            uuid.UUID(job_id),
            generation,
        )
    )


def save_turns(db: Database, job_id: str, generation: int, turns: list[SpeakerTurn]) -> None:
    """Store the generation's linked turns once; they replace an older generation's."""
    db.execute(
        "INSERT INTO job_speaker_turns (job_id, generation, turns) VALUES ($1, $2, $3)"
        " ON CONFLICT (job_id) DO UPDATE SET generation = EXCLUDED.generation,"
        " turns = EXCLUDED.turns, created_at = now()"
        " WHERE job_speaker_turns.generation <> EXCLUDED.generation",
        uuid.UUID(job_id),
        generation,
        msgspec.to_builtins(turns),
    )


#: Merges turns into the transcript (`attribution.attribute`).
Merge = Callable[[list[Segment], list[SpeakerTurn]], Attribution]


@dataclass(frozen=True)
class Joined:
    attribution: Attribution
    #: The stages that finishing diarize queued (analyze, unless the job says otherwise).
    queued: list[Stage]


def attribute_when_ready(db: Database, job_id: str, merge: Merge) -> Joined | None:
    """Attribute the transcript's words and complete diarize, if both the transcript and
    the current generation's turns are there and nobody has done it; else None."""

    async def q(conn: asyncpg.Connection) -> Joined | None:
        jid = uuid.UUID(job_id)
        if not await conn.fetchval(LOCK_LIVE_JOB, jid):
            return None
        states = {
            Stage(r["stage"]): StageState(r["state"])
            for r in await conn.fetch(
                "SELECT stage, state FROM job_stages WHERE job_id = $1"
                " AND stage IN ('transcribe', 'diarize')",
                jid,
            )
        }
        if states[Stage.TRANSCRIBE] not in DONE_STATES or states[Stage.DIARIZE] in FINISHED_STATES:
            return None
        row = await conn.fetchrow(
            "SELECT t.turns, r.transcript FROM job_speaker_turns t"
            " JOIN jobs j ON j.id = t.job_id AND j.generation = t.generation"
            " JOIN job_results r ON r.job_id = t.job_id WHERE t.job_id = $1",
            jid,
        )
        if row is None:
            return None
        attribution = merge(
            msgspec.convert(row["transcript"] or [], list[Segment]),
            msgspec.convert(row["turns"], list[SpeakerTurn]),
        )
        await conn.execute(
            "UPDATE job_results SET document = document || $2::jsonb, updated_at = now()"
            " WHERE job_id = $1",
            jid,
            {
                "segments": msgspec.to_builtins(attribution.segments),
                "speakers": msgspec.to_builtins(attribution.speakers),
                "turns": msgspec.to_builtins(attribution.turns),
            },
        )
        queued = await finish_stage_in(conn, jid, Stage.DIARIZE, StageState.SUCCEEDED, None)
        return Joined(attribution, queued)

    return db.transaction(q)
