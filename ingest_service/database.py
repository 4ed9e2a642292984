"""Postgres access of the ingest API: jobs, stages, results, deliveries and the outbox.

Every function takes the pool and holds a connection only for its own statements; the
pool itself, its json codecs and the migrations come from `infra.postgres`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from contracts import JobOptions, JobStatus, JobSubmitted, Stage, StageRequested, StageState
from contracts.routing import STAGE_QUEUES, SUBMIT_ACTOR, SUBMIT_QUEUE
from contracts.states import PIPELINE
from infra.generations import start_generation


@dataclass(frozen=True)
class NewJob:
    """Everything recorded when an upload is accepted."""

    message: JobSubmitted
    owner: str | None
    audio_format: str
    webhook_secret: str | None


_JOB_COLUMNS = (
    "id, status, original_filename, content_type, audio_format, size_bytes, sha256,"
    " options, audio, error, warnings, created_at, updated_at, started_at, finished_at"
)


async def insert_job(pool: asyncpg.Pool, job: NewJob) -> datetime:
    """Write the job, its stage rows and its outbox row in one transaction."""
    msg = job.message
    job_id = uuid.UUID(msg.job_id)
    async with pool.acquire() as conn, conn.transaction():
        created_at: datetime = await conn.fetchval(
            "INSERT INTO jobs (id, owner, original_filename, content_type, audio_format,"
            " size_bytes, sha256, storage_path, options, webhook_secret, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)"
            " RETURNING created_at",
            job_id,
            job.owner,
            msg.original_filename,
            msg.content_type,
            job.audio_format,
            msg.size_bytes,
            msg.sha256,
            msg.storage_path,
            msgspec.to_builtins(msg.options),
            job.webhook_secret,
            msg.submitted_at,
        )
        await conn.execute(
            "INSERT INTO job_stages (job_id, stage, position, state)"
            " SELECT $1, s.stage, s.ord - 1, CASE WHEN s.ord = 1 THEN $3 ELSE $4 END"
            " FROM unnest($2::text[]) WITH ORDINALITY AS s(stage, ord)",
            job_id,
            [stage.value for stage in PIPELINE],
            StageState.QUEUED.value,
            StageState.PENDING.value,
        )
        await conn.execute(
            "INSERT INTO outbox (message_id, job_id, queue, actor, payload)"
            " VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(),
            job_id,
            SUBMIT_QUEUE,
            SUBMIT_ACTOR,
            msgspec.to_builtins(msg),
        )
    return created_at


def _visible(owner: str | None, first_param: int) -> str:
    return "owner IS NULL" if owner is None else f"owner = ${first_param}"


async def fetch_job(
    pool: asyncpg.Pool, job_id: uuid.UUID, owner: str | None
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """The job and its stages, or None if it does not exist or belongs to someone else."""
    args: list[Any] = [job_id] if owner is None else [job_id, owner]
    async with pool.acquire() as conn:
        job = await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 AND {_visible(owner, 2)}",  # noqa: S608
            *args,
        )
        if job is None:
            return None
        stages = await conn.fetch(
            "SELECT stage, state, attempts, error, started_at, finished_at"
            " FROM job_stages WHERE job_id = $1 ORDER BY position",
            job_id,
        )
    return job, stages


async def list_jobs(
    pool: asyncpg.Pool,
    owner: str | None,
    *,
    status: JobStatus | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[asyncpg.Record]:
    """Jobs newest first, starting strictly after the keyset `after`."""
    args: list[Any] = [] if owner is None else [owner]
    where = [_visible(owner, 1)]
    if status is not None:
        args.append(status.value)
        where.append(f"status = ${len(args)}")
    if after is not None:
        args.extend(after)
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    query = (
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
    )
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    return rows


async def fetch_result(pool: asyncpg.Pool, job_id: uuid.UUID) -> str | None:
    """The job's result document as JSON text, or None while it has none."""
    async with pool.acquire() as conn:
        document: str | None = await conn.fetchval(
            "SELECT document::text FROM job_results WHERE job_id = $1", job_id
        )
    return document


async def request_rediarization(
    pool: asyncpg.Pool, job_id: uuid.UUID, options: JobOptions
) -> str | None:
    """Queue diarize (and what follows) again on a completed job with new options.

    Returns None when queued, else why not (the job's status, or a missing transcript).
    """
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        if status != JobStatus.COMPLETED:
            return f"the job is {status}; only a completed job can be diarized again"
        if not await conn.fetchval(
            "SELECT transcript IS NOT NULL FROM job_results WHERE job_id = $1", job_id
        ):
            return "the job has no stored transcript to diarize again"
        # The new generation's messages carry its number: a notify of the previous one
        # still retrying is dropped by the workers instead of finishing this one early.
        generation = await start_generation(
            conn, job_id, Stage.DIARIZE, options=msgspec.to_builtins(options)
        )
        await conn.execute(
            "INSERT INTO outbox (message_id, job_id, queue, actor, payload)"
            " VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(),
            job_id,
            STAGE_QUEUES[Stage.DIARIZE],
            Stage.DIARIZE.value,
            msgspec.to_builtins(
                StageRequested(job_id=str(job_id), stage=Stage.DIARIZE.value, generation=generation)
            ),
        )
    return None


async def fetch_deliveries(
    pool: asyncpg.Pool, job_id: uuid.UUID
) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
    """The job's webhook deliveries, oldest first, each with its attempts."""
    async with pool.acquire() as conn:
        deliveries = await conn.fetch(
            "SELECT id, generation, event, url, state, attempts, last_error, created_at,"
            " delivered_at FROM webhook_deliveries WHERE job_id = $1 ORDER BY generation",
            job_id,
        )
        attempts = await conn.fetch(
            "SELECT delivery_id, attempted_at, status_code, error, duration_ms"
            " FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY id",
            [d["id"] for d in deliveries],
        )
    return [(d, [a for a in attempts if a["delivery_id"] == d["id"]]) for d in deliveries]


async def fetch_dead_letters(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[asyncpg.Record]:
    """Messages of the job that workers gave up on, oldest first."""
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT stage, queue, message_id, reason, dead_at, replayed_at FROM dead_letters"
            " WHERE job_id = $1 ORDER BY id",
            job_id,
        )
    return rows
