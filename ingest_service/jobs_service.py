"""The jobs as the API sees them: lookups scoped to the caller's key, over one pool.

The controller asks this service for views and documents and never touches the pool;
the SQL lives in `ingest_service.database`. Errors come out as the service's problems
(404 for a job another key owns, 409 for a result not there yet); database errors are
classified by `ingest_service.problems.as_problem` (503 while Postgres is unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import msgspec
import structlog

from contracts import JobOptions, JobStatus
from contracts.api import DeliveryView, JobPage, JobUpdate, JobView
from ingest_service import database, metrics
from ingest_service.database import NewJob
from ingest_service.job_changes import JobChanges
from ingest_service.options import speaker_hints
from ingest_service.paging import decode_cursor, encode_cursor
from ingest_service.problems import CannotCancel, InvalidRequest, JobNotFound, ResultNotReady
from ingest_service.storage import remove_job_files
from ingest_service.views import delivery_views, job_view

#: A stream reads its job again at least this often, notification or not.
STREAM_RECHECK_S = 5.0

_Found = tuple[asyncpg.Record, list[asyncpg.Record]]


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequest(f"{raw!r} is not a job id (a UUID)") from None


class JobsService:
    """Jobs, their results and their deliveries, for one caller (`owner`) at a time."""

    def __init__(self, pool: asyncpg.Pool, storage_dir: Path) -> None:
        self._pool = pool
        self._storage_dir = storage_dir

    async def record(self, job: NewJob) -> datetime:
        """Record an accepted upload (job, stages, outbox row)."""
        return await database.insert_job(self._pool, job)

    async def find_idempotent(self, owner: str | None, key: str) -> database.IdempotentJob | None:
        """The job an Idempotency-Key of `owner` created within its lifetime."""
        return await database.find_idempotent(self._pool, owner, key)

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

    async def cancel(self, job_id: str, owner: str | None) -> JobView:
        """Cancel a queued or processing job; 409 once it has ended (or is ending)."""
        job, _ = await self.find(job_id, owner)
        refused = await database.cancel_job(self._pool, job["id"])
        if refused is not None:
            raise CannotCancel(
                f"job {job_id} cannot be cancelled: {refused}", job_status=job["status"]
            )
        metrics.JOBS_STEERED.labels("cancelled").inc()
        return await self.view(job_id, owner)

    async def delete(self, job_id: str, owner: str | None) -> None:
        """Delete the job: its rows at once (a running job's worker stops when it sees it
        gone), then its files. Files a crash leaves behind go with the retention sweep."""
        job, _ = await self.find(job_id, owner)
        async with self._pool.acquire() as conn, conn.transaction():
            storage_path = await database.delete_job(conn, job["id"])
        if storage_path is None:
            raise JobNotFound(f"no job {job_id}")
        await asyncio.to_thread(remove_job_files, self._storage_dir, job_id, storage_path)
        metrics.JOBS_STEERED.labels("deleted").inc()

    async def follow(
        self, job_id: str, owner: str | None, changes: JobChanges, heartbeat_s: float
    ) -> AsyncIterator[JobUpdate | None]:
        """The job's state now and after every change, until it ends; None when nothing
        changed for `heartbeat_s` (a keep-alive). Raises 404 before the first item."""
        await self.find(job_id, owner)
        return self._updates(job_id, owner, changes, heartbeat_s)

    async def _updates(
        self, job_id: str, owner: str | None, changes: JobChanges, heartbeat_s: float
    ) -> AsyncIterator[JobUpdate | None]:
        with changes.subscribe(job_id) as changed:
            last: JobUpdate | None = None
            quiet_s = 0.0
            while True:
                changed.clear()
                try:
                    view = await self.view(job_id, owner)
                except JobNotFound:
                    yield JobUpdate.deleted(job_id)
                    return
                update = JobUpdate.of(view)
                if update != last:
                    quiet_s = 0.0
                    yield update
                    last = update
                elif quiet_s >= heartbeat_s:
                    quiet_s = 0.0
                    yield None
                if update.ended:
                    return
                wait_s = min(STREAM_RECHECK_S, heartbeat_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait_s)
                    continue
                quiet_s += wait_s
