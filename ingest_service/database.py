"""Postgres access of the ingest API: jobs, stages, results, deliveries and the outbox.

Every function takes the pool and holds a connection only for its own statements; the
pool itself, its json codecs and the migrations come from `infra.postgres`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from contracts import JobOptions, JobStatus, JobSubmitted, Stage, StageRequested, StageState
from contracts.routing import STAGE_QUEUES, SUBMIT_ACTOR, SUBMIT_QUEUE
from contracts.states import PIPELINE, WAITING_STATES
from infra.generations import start_generation


@dataclass(frozen=True)
class NewJob:
    """Everything recorded when an upload is accepted."""

    message: JobSubmitted
    owner: str | None
    audio_format: str
    webhook_secret: str | None
    #: The client's Idempotency-Key, if it sent one, with the fingerprint of its request.
    idempotency: IdempotencyClaim | None = None
    #: For audio by URL: the URL as shown (no query string) and the source's headers.
    source_url: str | None = None
    source_headers: dict[str, str] | None = None


@dataclass(frozen=True)
class IdempotencyClaim:
    """An Idempotency-Key as recorded with the job it created, and the answer it got."""

    key: str
    fingerprint: str
    response: dict[str, Any]


@dataclass(frozen=True)
class IdempotentJob:
    """The job an Idempotency-Key created within its lifetime."""

    job_id: uuid.UUID
    fingerprint: str
    response: dict[str, Any]


#: How long an Idempotency-Key stands for the job it created.
IDEMPOTENCY_TTL = timedelta(hours=24)


_JOB_COLUMNS = (
    "id, status, original_filename, content_type, audio_format, size_bytes, sha256,"
    " options, audio, error, warnings, created_at, updated_at, started_at, finished_at,"
    " source_url"
)


#: The job, its stage rows, its outbox row and its Idempotency-Key claim, written by one
#: statement: one round trip, one transaction. With a key ($16 not null) the job is
#: written only if the claim is: a key whose last use has lapsed is taken over, a live
#: one claims nothing, and then nothing at all is written.
_INSERT_JOB = """
WITH claim AS (
    INSERT INTO idempotency_keys (owner, key, job_id, fingerprint, response)
    SELECT $15::text, $16::text, $1::uuid, $17::text, $18::jsonb WHERE $16::text IS NOT NULL
    ON CONFLICT (owner, key) DO UPDATE SET
        job_id = EXCLUDED.job_id, fingerprint = EXCLUDED.fingerprint,
        response = EXCLUDED.response, created_at = now()
    WHERE idempotency_keys.created_at <= now() - $19::interval
    RETURNING true AS claimed
), job AS (
    INSERT INTO jobs (id, owner, original_filename, content_type, audio_format, size_bytes,
        sha256, storage_path, options, webhook_secret, created_at, updated_at, source_url,
        source_headers)
    SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::text,
        $8::text, $9::jsonb, $10::text, $11::timestamptz, $11::timestamptz, $12::text,
        $13::jsonb
    WHERE $16::text IS NULL OR EXISTS (SELECT FROM claim)
    RETURNING id, created_at
), stages AS (
    INSERT INTO job_stages (job_id, stage, position, state)
    SELECT job.id, s.stage, s.ord - 1, CASE WHEN s.ord = 1 THEN $20::text ELSE $21::text END
    FROM job, unnest($14::text[]) WITH ORDINALITY AS s(stage, ord)
), queued AS (
    INSERT INTO outbox (message_id, job_id, queue, actor, payload)
    SELECT $22::uuid, job.id, $23::text, $24::text, $25::jsonb FROM job
)
SELECT created_at FROM job
"""


async def insert_job(pool: asyncpg.Pool, job: NewJob) -> datetime:
    """Write the job, its stage rows and its outbox row (and its Idempotency-Key) in one
    statement. Raises UniqueViolationError when the key is in use by another job: a
    concurrent request with the same key won the race."""
    msg = job.message
    claim = job.idempotency
    async with pool.acquire() as conn:
        created_at: datetime | None = await conn.fetchval(
            _INSERT_JOB,
            uuid.UUID(msg.job_id),
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
            job.source_url,
            job.source_headers,
            [stage.value for stage in PIPELINE],
            job.owner or "",
            None if claim is None else claim.key,
            None if claim is None else claim.fingerprint,
            None if claim is None else claim.response,
            IDEMPOTENCY_TTL,
            StageState.QUEUED.value,
            StageState.PENDING.value,
            uuid.uuid4(),
            SUBMIT_QUEUE,
            SUBMIT_ACTOR,
            msgspec.to_builtins(msg),
        )
    if created_at is None:
        raise asyncpg.UniqueViolationError("idempotency key in use")
    return created_at


async def find_idempotent(pool: asyncpg.Pool, owner: str | None, key: str) -> IdempotentJob | None:
    """The job that `key` created for `owner` within the last 24 hours, if any."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT job_id, fingerprint, response FROM idempotency_keys"
            " WHERE owner = $1 AND key = $2 AND created_at > now() - $3::interval",
            owner or "",
            key,
            IDEMPOTENCY_TTL,
        )
    return (
        None if row is None else IdempotentJob(row["job_id"], row["fingerprint"], row["response"])
    )


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
            "SELECT stage, state, attempts, error, started_at, finished_at, progress"
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


async def cancel_job(pool: asyncpg.Pool, job_id: uuid.UUID) -> str | None:
    """Cancel a queued or processing job; None when done, else why it cannot be.

    Stages that have not run are cancelled; a running one is marked cancelled at once
    but keeps `finished_at` empty until its worker notices and lets go. Notify is queued
    (its message goes through the outbox) to tell the client, once, by webhook and event.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT j.status, j.generation, s.state AS notify FROM jobs j"
            " JOIN job_stages s ON s.job_id = j.id AND s.stage = $2"
            " WHERE j.id = $1 FOR UPDATE OF j",
            job_id,
            Stage.NOTIFY.value,
        )
        if row is None:
            return "the job no longer exists"
        if JobStatus(row["status"]).terminal:
            return f"the job is {row['status']} already"
        if row["notify"] not in {s.value for s in WAITING_STATES}:
            return "the job is finishing: its end is being notified"
        await conn.execute(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled by the client',"
            " finished_at = now(), updated_at = now() WHERE id = $1",
            job_id,
        )
        await conn.execute(
            "UPDATE job_stages SET state = CASE WHEN stage = $2 THEN 'queued' ELSE 'cancelled'"
            " END, finished_at = CASE WHEN state = 'running' THEN NULL ELSE now() END"
            " WHERE job_id = $1 AND state IN ('pending', 'queued', 'running')",
            job_id,
            Stage.NOTIFY.value,
        )
        await conn.execute(
            "INSERT INTO outbox (message_id, job_id, queue, actor, payload)"
            " VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(),
            job_id,
            STAGE_QUEUES[Stage.NOTIFY],
            Stage.NOTIFY.value,
            msgspec.to_builtins(
                StageRequested(
                    job_id=str(job_id), stage=Stage.NOTIFY.value, generation=row["generation"]
                )
            ),
        )
    return None


async def delete_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> str | None:
    """Delete the job and every row of it (in the caller's transaction), leaving a
    tombstone; its upload's storage path, or None when there was no such job."""
    storage_path: str | None = await conn.fetchval(
        "DELETE FROM jobs WHERE id = $1 RETURNING storage_path", job_id
    )
    if storage_path is not None:
        await conn.execute(
            "INSERT INTO deleted_jobs (id) VALUES ($1) ON CONFLICT DO NOTHING", job_id
        )
    return storage_path


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
