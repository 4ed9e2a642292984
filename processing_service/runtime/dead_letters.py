"""Dead letters in Postgres: recorded when a worker gives up, reopened when replayed."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from contracts import Stage
from contracts.routing import SUBMIT_QUEUE
from infra.generations import start_generation
from processing_service.runtime.database import Database
from processing_service.runtime.jobs import LOCK_JOB


class DeadLetterStore:
    def __init__(self, db: Database) -> None:
        self._run = db.transaction

    def record(
        self,
        job_id: str | None,
        stage: Stage,
        queue: str,
        message_id: str,
        reason: str,
        *,
        payload: dict[str, Any] | None = None,
    ) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            jid = uuid.UUID(job_id) if job_id else None
            exists = jid is not None and await conn.fetchval(
                "SELECT true FROM jobs WHERE id = $1", jid
            )
            await conn.execute(
                "INSERT INTO dead_letters (job_id, stage, queue, message_id, reason, payload)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                jid if exists else None,
                stage.value,
                queue,
                message_id,
                reason[:2000],
                payload,
            )

        self._run(q)

    def reasons(self, message_ids: list[str]) -> dict[str, str]:
        """The latest recorded reason of each message id that has one."""

        async def q(conn: asyncpg.Connection) -> dict[str, str]:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (message_id) message_id, reason FROM dead_letters"
                " WHERE message_id = ANY($1::text[]) ORDER BY message_id, id DESC",
                message_ids,
            )
            return {row["message_id"]: row["reason"] for row in rows}

        return self._run(q)

    def expired(
        self, stage: Stage, present: set[str], older_than_s: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Dead letters of `stage` not replayed yet whose message RabbitMQ no longer holds
        (not in `present`), with a job and a recorded payload: (message id, job id, payload).

        Only those dead for `older_than_s`: a message that was just recorded may not have
        reached the dead-letter queue yet.
        """

        async def q(conn: asyncpg.Connection) -> list[tuple[str, str, dict[str, Any]]]:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (message_id) message_id, job_id, payload FROM dead_letters"
                " WHERE stage = $1 AND replayed_at IS NULL AND payload IS NOT NULL"
                " AND job_id IS NOT NULL AND dead_at < now() - make_interval(secs => $2)"
                " AND message_id <> ALL($3::text[]) ORDER BY message_id, id DESC",
                stage.value,
                older_than_s,
                sorted(present),
            )
            found = [(r["message_id"], str(r["job_id"]), r["payload"]) for r in rows]
            return sorted(found, key=lambda row: row[0])

        return self._run(q)

    def submission(self, job_id: str) -> Any:
        """The payload of the job's original JobSubmitted message (from the outbox)."""

        async def q(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(
                "SELECT payload FROM outbox WHERE job_id = $1 AND queue = $2 ORDER BY id LIMIT 1",
                uuid.UUID(job_id),
                SUBMIT_QUEUE,
            )

        return self._run(q)

    def reopen(self, job_id: str, stage: Stage, message_id: str) -> int | None:
        """A dead message of `stage` goes back to its queue: the job shows it queued again.

        Replaying notify only re-opens the delivery. Replaying an earlier stage puts the
        job back to processing in a new generation (it will finish, and notify, again),
        with that stage queued and the stages after it pending. Returns the generation
        the replayed message must carry (None when the job is gone).
        """

        async def q(conn: asyncpg.Connection) -> int | None:
            jid = uuid.UUID(job_id)
            await conn.execute(LOCK_JOB, jid)
            await conn.execute(
                "UPDATE dead_letters SET replayed_at = now() WHERE message_id = $1"
                " AND replayed_at IS NULL",
                message_id,
            )
            if stage is Stage.NOTIFY:
                await conn.execute(
                    "UPDATE webhook_deliveries d SET state = 'pending', updated_at = now()"
                    " FROM jobs j WHERE j.id = $1 AND d.job_id = j.id"
                    " AND d.generation = j.generation AND d.state = 'dead'",
                    jid,
                )
                # A replay starts the stage's attempts afresh (dead_letters keeps them).
                await conn.execute(
                    "UPDATE job_stages SET state = 'queued', error = NULL, finished_at = NULL,"
                    " attempts = 0 WHERE job_id = $1 AND stage = $2",
                    jid,
                    stage.value,
                )
                current: int | None = await conn.fetchval(
                    "SELECT generation FROM jobs WHERE id = $1", jid
                )
                return current
            generation = await start_generation(conn, jid, stage)
            if stage is Stage.TRANSCRIBE:
                await conn.execute(
                    "UPDATE job_chunks SET attempts = 0 WHERE job_id = $1 AND transcript IS NULL",
                    jid,
                )
            return generation

        return self._run(q)
