"""The jobs as the API sees them: lookups scoped to the caller's key, over one pool.

The controller asks this service for views and documents and never touches the pool;
the SQL lives in `ingest_service.database`. Errors come out as the service's problems
(404 for a job another key owns, 409 for a result not there yet); database errors are
classified by `ingest_service.problems.as_problem` (503 while Postgres is unreachable).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec
import structlog

from contracts import JobOptions, JobStatus
from ingest_service import database
from ingest_service.database import NewJob
from ingest_service.options import speaker_hints
from ingest_service.paging import decode_cursor, encode_cursor
from ingest_service.problems import InvalidRequest, JobNotFound, ResultNotReady
from ingest_service.views import DeliveryView, JobPage, JobView, delivery_views, job_view

_Found = tuple[asyncpg.Record, list[asyncpg.Record]]


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequest(f"{raw!r} is not a job id (a UUID)") from None


class JobsService:
    """Jobs, their results and their deliveries, for one caller (`owner`) at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, job: NewJob) -> datetime:
        """Record an accepted upload (job, stages, outbox row)."""
        return await database.insert_job(self._pool, job)

    async def find(self, job_id: str, owner: str | None) -> _Found:
        """The job and its stages, or a 404 when it does not exist or belongs to another key."""
        structlog.contextvars.bind_contextvars(job_id=job_id)
        found = await database.fetch_job(self._pool, parse_job_id(job_id), owner)
        if found is None:
            raise JobNotFound(f"no job {job_id}")
        return found

    async def view(self, job_id: str, owner: str | None) -> JobView:
        """The job with its stages, progress and dead letters."""
        job, stages = await self.find(job_id, owner)
        return job_view(job, stages, await database.fetch_dead_letters(self._pool, job["id"]))

    async def page(
        self, owner: str | None, *, status: JobStatus | None, limit: int, cursor: str | None
    ) -> JobPage:
        """Up to `limit` jobs, newest first, after `cursor`; the next cursor if more exist."""
        after = decode_cursor(cursor) if cursor else None
        # One row more than asked for tells whether another page follows.
        rows = await database.list_jobs(
            self._pool, owner, status=status, limit=limit + 1, after=after
        )
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return JobPage(items=[job_view(row) for row in rows[:limit]], next_cursor=next_cursor)

    async def result(self, job_id: str, owner: str | None) -> str:
        """The completed job's result document as JSON text; 409 while it has none."""
        job, _ = await self.find(job_id, owner)
        document = None
        if job["status"] == JobStatus.COMPLETED:
            document = await database.fetch_result(self._pool, job["id"])
        if document is None:
            reason = f": {job['error']}" if job["error"] else ""
            raise ResultNotReady(
                f"job {job_id} is {job['status']} and has no result{reason}",
                job_status=job["status"],
            )
        return document

    async def deliveries(self, job_id: str, owner: str | None) -> list[DeliveryView]:
        job, _ = await self.find(job_id, owner)
        return delivery_views(await database.fetch_deliveries(self._pool, job["id"]))

    async def rediarize(self, job_id: str, owner: str | None, body: bytes) -> JobView:
        """Queue diarize again with the speaker hints of `body`; 409 if the job cannot be."""
        job, _ = await self.find(job_id, owner)
        options = speaker_hints(body, msgspec.convert(job["options"], JobOptions))
        refused = await database.request_rediarization(self._pool, job["id"], options)
        if refused is not None:
            raise ResultNotReady(refused, job_status=job["status"])
        return job_view(*await self.find(job_id, owner))
