"""A running stage's line to its job: reports progress, and notices a cancel.

The heavy stages call their `StageWatch` as they go (whisper after each 30 s window,
pyannote after each batch). At most every `interval_s` the call writes the stage's
progress and reads the job's status in one transaction; once the job is cancelled or
deleted it raises `JobCancelled`, so the worker lets go within one window or batch of
the cancel (seconds) instead of finishing the stage. In between, a call costs nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from contracts import Stage
from processing_service.runtime.database import Database
from processing_service.runtime.errors import JobCancelled

#: Default pause between two looks at the job from one running stage.
DEFAULT_INTERVAL_S = 1.0

_LIVE = "SELECT status IN ('queued', 'processing') FROM jobs WHERE id = $1"
#: The same, locking the job row first as every writer of its rows does (`runtime.jobs`).
_LOCK_LIVE = _LIVE + " FOR UPDATE"


class StageWatch:
    """Called with how far a stage is (0..1, or seconds of a chunk's audio decoded)."""

    def __init__(
        self,
        db: Database,
        job_id: str,
        stage: Stage,
        *,
        part: int | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._db = db
        self._job_id = uuid.UUID(job_id)
        self._stage = stage
        self._part = part
        self._interval_s = interval_s
        self._next_check = time.monotonic() + interval_s

    def __call__(self, done: float) -> None:
        """Report `done`: a fraction of the stage (of the block, for a diarize block), or
        for a transcribe chunk the seconds of its audio decoded so far. A part's progress
        counts by its length towards the stage's. Raises `JobCancelled` once the job is
        gone."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._interval_s
        if not self._db.transaction(self._report(done)):
            raise JobCancelled(f"job {self._job_id} was cancelled or deleted")

    def check(self) -> None:
        """Raise `JobCancelled` now if the job is cancelled or deleted (no progress)."""
        if not self._db.fetchval(_LIVE, self._job_id):
            raise JobCancelled(f"job {self._job_id} was cancelled or deleted")

    def _report(self, done: float) -> Callable[[asyncpg.Connection], Awaitable[bool]]:
        async def q(conn: asyncpg.Connection) -> bool:
            live = await conn.fetchval(_LOCK_LIVE, self._job_id)
            if not live:
                return False
            if self._part is not None and self._stage is Stage.TRANSCRIBE:
                await conn.execute(
                    "UPDATE job_chunks SET decoded_s = least($3, end_s - start_s)"
                    " WHERE job_id = $1 AND idx = $2",
                    self._job_id,
                    self._part,
                    done,
                )
                fraction = await conn.fetchval(
                    "SELECT coalesce(sum(CASE WHEN transcript IS NULL THEN decoded_s"
                    " ELSE end_s - start_s END) / nullif(sum(end_s - start_s), 0), 0)"
                    " FROM job_chunks WHERE job_id = $1",
                    self._job_id,
                )
            elif self._part is not None:
                await conn.execute(
                    "UPDATE job_speaker_blocks b SET progress = least(greatest($3::real, 0), 1)"
                    " FROM jobs j WHERE b.job_id = $1 AND b.idx = $2 AND j.id = b.job_id"
                    " AND b.generation = j.generation",
                    self._job_id,
                    self._part,
                    done,
                )
                fraction = await conn.fetchval(
                    "SELECT coalesce(sum(CASE WHEN result IS NULL THEN progress ELSE 1 END"
                    " * (end_s - start_s)) / nullif(sum(end_s - start_s), 0), 0)"
                    " FROM job_speaker_blocks b JOIN jobs j ON j.id = b.job_id"
                    " AND b.generation = j.generation WHERE b.job_id = $1",
                    self._job_id,
                )
            else:
                fraction = done
            await conn.execute(
                "UPDATE job_stages SET progress = least(greatest($3::real, 0), 1)"
                " WHERE job_id = $1 AND stage = $2 AND state = 'running'",
                self._job_id,
                self._stage.value,
                fraction,
            )
            return True

        return q
