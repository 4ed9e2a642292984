"""Two transactions on one job never deadlock, and a conflict Postgres breaks is retried.

A diarization runs alongside a transcription: its `start_stage` may run while the
failed transcription's `fail_job` settles every stage. Both must take the job row first
(`runtime.jobs.LOCK_JOB`); before that rule, start_stage held the diarize row while it
waited for the job row that fail_job held, and fail_job waited for the diarize row.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from contracts import Stage
from processing_service.runtime.config import Settings
from processing_service.runtime.database import Database
from processing_service.runtime.errors import StageSettled
from processing_service.runtime.jobs import LOCK_JOB, JobStore
from tests.statemachine.harness import FAST_ENV, migrated, record_job
from tests.support.servers import IsolatedEnv


@pytest.fixture
def settings(isolated_env: IsolatedEnv) -> Settings:
    settings = Settings.from_env(FAST_ENV | isolated_env.environ())
    migrated(settings.database_url)
    return settings


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.close()


def test_a_stage_starting_while_the_job_fails_waits_on_the_job_row_alone(
    settings: Settings, db: Database
) -> None:
    job_id = record_job(settings, seconds=2.0).job_id
    jid = uuid.UUID(job_id)
    outcome: dict[str, Any] = {}

    def start_diarize() -> None:
        try:
            outcome["attempts"] = JobStore(db).start_stage(job_id, Stage.DIARIZE)
        except Exception as exc:  # noqa: BLE001 - the test reports what it was
            outcome["error"] = exc

    async def fail_the_job_meanwhile() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            async with conn.transaction():
                await conn.execute(LOCK_JOB, jid)  # what fail_job does first
                starter = threading.Thread(target=start_diarize)
                starter.start()
                # Until start_stage waits on this transaction (for the job row, the only lock
                # it may wait on).
                for _ in range(200):
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM pg_locks"
                        " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.02)
                assert waiting, f"start_stage never queued on the job row: {outcome}"
                # A starter that took the diarize row before the job row would hold it now.
                try:
                    await conn.execute(
                        "SELECT 1 FROM job_stages WHERE job_id = $1 AND stage = 'diarize'"
                        " FOR UPDATE NOWAIT",
                        jid,
                    )
                except asyncpg.LockNotAvailableError:
                    pytest.fail("start_stage locked the stage row before the job row")
                await conn.execute(
                    "UPDATE job_stages SET state = 'skipped' WHERE job_id = $1"
                    " AND stage <> 'notify'",
                    jid,
                )
        finally:
            await conn.close()
        await asyncio.to_thread(starter.join, 30)

    asyncio.run(fail_the_job_meanwhile())
    # Settled meanwhile: the starter sees it and lets go instead of showing it running.
    assert isinstance(outcome.get("error"), StageSettled), outcome


def test_a_transaction_rolled_back_for_a_deadlock_runs_again(db: Database) -> None:
    calls = 0

    async def conflicting(conn: asyncpg.Connection) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            # What Postgres raises in the transaction it aborts to break a deadlock.
            await conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
            )
        value: int = await conn.fetchval("SELECT 7")
        return value

    assert db.transaction(conflicting) == 7
    assert calls == 3


def test_a_conflict_that_persists_is_raised_after_a_few_tries(db: Database) -> None:
    calls = 0

    async def always(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$"
        )

    with pytest.raises(asyncpg.SerializationError):
        db.transaction(always)
    assert 1 < calls <= 10
