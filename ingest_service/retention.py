"""The retention sweep: deletes expired jobs and the files no job owns.

A finished job expires `delete_after` seconds (its own option) or `RETENTION_DAYS` after
it finished. Each pass locks a batch of expired jobs with `FOR UPDATE SKIP LOCKED`, so
that the sweeps of several API processes never take the same job; their rows go in one
transaction, their files after it commits. A file whose job does not exist (an upload
whose job was never committed, or files left by a crash between the two steps) is an
orphan once it is older than the grace period, which keeps the sweep off an upload that
is still arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import structlog

from contracts.layout import INCOMING_DIR, UPLOADS_DIR, WORK_DIR, owning_job
from ingest_service import database, metrics
from ingest_service.storage import remove_job_files

log = structlog.get_logger("ingest.retention")

#: Jobs deleted per transaction of a pass.
BATCH = 100
#: Tombstones of deleted jobs outlive the messages that may still name them: RabbitMQ
#: keeps dead letters 7 days.
TOMBSTONE_TTL = timedelta(days=8)


@dataclass(frozen=True)
class SweepReport:
    jobs: int
    orphan_files: int


class RetentionSweep:
    """Runs `sweep_once` every `interval_s` until cancelled."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        storage_dir: Path,
        *,
        retention_s: float | None,
        interval_s: float,
        orphan_grace_s: float,
    ) -> None:
        self._pool = pool
        self._storage_dir = storage_dir
        self._retention_s = retention_s
        self._interval_s = interval_s
        self._orphan_grace_s = orphan_grace_s

    async def run(self) -> None:
        while True:
            try:
                report = await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                metrics.RETENTION_ERRORS.inc()
                log.warning("retention sweep failed", error=repr(exc))
            else:
                if report.jobs or report.orphan_files:
                    log.info("retention sweep", jobs=report.jobs, orphan_files=report.orphan_files)
            await asyncio.sleep(self._interval_s)

    async def sweep_once(self) -> SweepReport:
        """One pass: expired jobs, stale idempotency keys and tombstones, orphan files."""
        jobs = 0
        while True:
            deleted = await self._delete_expired()
            jobs += len(deleted)
            for job_id, storage_path in deleted:
                await asyncio.to_thread(
                    remove_job_files, self._storage_dir, str(job_id), storage_path
                )
            if len(deleted) < BATCH:
                break
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at <= now() - $1::interval",
                database.IDEMPOTENCY_TTL,
            )
            await conn.execute(
                "DELETE FROM deleted_jobs WHERE deleted_at < now() - $1::interval",
                TOMBSTONE_TTL,
            )
        orphans = await self._remove_orphans()
        metrics.RETENTION_DELETED.labels("job").inc(jobs)
        metrics.RETENTION_DELETED.labels("orphan_file").inc(orphans)
        return SweepReport(jobs=jobs, orphan_files=orphans)

    async def _delete_expired(self) -> list[tuple[uuid.UUID, str | None]]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')"
                " AND finished_at + make_interval(secs =>"
                "   coalesce((options ->> 'delete_after')::double precision, $1)) <= now()"
                " ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._retention_s,
                BATCH,
            )
            return [(row["id"], await database.delete_job(conn, row["id"])) for row in rows]

    async def _remove_orphans(self) -> int:
        candidates = await asyncio.to_thread(self._old_entries)
        if not candidates:
            return 0
        async with self._pool.acquire() as conn:
            owned = {
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM jobs WHERE id = ANY($1::uuid[])", list(candidates)
                )
            }
        removed = 0
        for job_id, paths in candidates.items():
            if job_id in owned:
                continue
            removed += await asyncio.to_thread(_remove, paths)
        return removed

    def _old_entries(self) -> dict[uuid.UUID, list[Path]]:
        """Entries of uploads/, incoming/ and work/ older than the grace period, by owning
        job."""
        cutoff = time.time() - self._orphan_grace_s
        found: dict[uuid.UUID, list[Path]] = {}
        for top in (UPLOADS_DIR, INCOMING_DIR, WORK_DIR):
            directory = self._storage_dir / top
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                job_id = owning_job(entry.name)
                with contextlib.suppress(FileNotFoundError):
                    if job_id is not None and entry.stat().st_mtime < cutoff:
                        found.setdefault(job_id, []).append(entry)
        return found


def _remove(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        if path.is_dir():
            removed += sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
