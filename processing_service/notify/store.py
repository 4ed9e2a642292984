"""Webhook deliveries and what `notify` needs to know about a finished job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from contracts import DeliveryState, JobOptions, JobStatus
from processing_service.runtime.database import Database


@dataclass(frozen=True)
class Notification:
    """What `notify` tells the client and downstream consumers about a finished job."""

    job_id: str
    status: JobStatus
    error: str | None
    warnings: list[str]
    generation: int
    options: JobOptions
    webhook_secret: str | None
    #: The result document as JSON text, when the job has one.
    result_json: str | None


class DeliveryStore:
    """Blocking access to webhook deliveries and their attempts."""

    def __init__(self, db: Database) -> None:
        self._run = db.transaction

    def notification(self, job_id: str) -> Notification:
        async def q(conn: asyncpg.Connection) -> Notification:
            jid = uuid.UUID(job_id)
            row = await conn.fetchrow(
                "SELECT status, error, warnings, generation, options, webhook_secret"
                " FROM jobs WHERE id = $1",
                jid,
            )
            document = await conn.fetchval(
                "SELECT document::text FROM job_results WHERE job_id = $1", jid
            )
            return Notification(
                job_id=job_id,
                status=JobStatus(row["status"]),
                error=row["error"],
                warnings=list(row["warnings"]),
                generation=row["generation"],
                options=msgspec.convert(row["options"], JobOptions),
                webhook_secret=row["webhook_secret"],
                result_json=document,
            )

        return self._run(q)

    def claim_delivery(
        self, job_id: str, generation: int, event: str, url: str, lease_s: float
    ) -> tuple[str, DeliveryState, bool]:
        """This job generation's delivery (created on first use): (id, state, claimed).

        `claimed` is True when this caller may POST now: the delivery is pending and no
        other worker holds an unexpired claim on it. One statement takes the claim, so
        two workers cannot both get it; `record_delivery_attempt` gives it back.
        """

        async def q(conn: asyncpg.Connection) -> tuple[str, DeliveryState, bool]:
            jid = uuid.UUID(job_id)
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, job_id, generation, event, url)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, generation) DO NOTHING",
                uuid.uuid4(),
                jid,
                generation,
                event,
                url,
            )
            claimed = await conn.fetchval(
                "UPDATE webhook_deliveries SET claimed_until = now() + make_interval(secs => $3)"
                " WHERE job_id = $1 AND generation = $2 AND state = 'pending'"
                " AND (claimed_until IS NULL OR claimed_until < now()) RETURNING id",
                jid,
                generation,
                lease_s,
            )
            row = await conn.fetchrow(
                "SELECT id, state FROM webhook_deliveries WHERE job_id = $1 AND generation = $2",
                jid,
                generation,
            )
            return str(row["id"]), DeliveryState(row["state"]), claimed is not None

        return self._run(q)

    def record_delivery_attempt(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        state: DeliveryState,
    ) -> None:
        """Record one attempt and the delivery's state after it."""

        async def q(conn: asyncpg.Connection) -> None:
            did = uuid.UUID(delivery_id)
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms)"
                " VALUES ($1, $2, $3, $4)",
                did,
                status_code,
                error,
                duration_ms,
            )
            await conn.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,"
                " state = $3, updated_at = now(), claimed_until = NULL,"
                " delivered_at = CASE WHEN $3 = 'delivered' THEN now() END WHERE id = $1",
                did,
                error,
                state.value,
            )

        self._run(q)

    def bury_delivery(self, job_id: str, error: str) -> None:
        """The last attempt failed: the pending delivery of the current generation is dead."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE webhook_deliveries d SET state = 'dead', last_error = $2,"
                " updated_at = now() FROM jobs j WHERE j.id = $1 AND d.job_id = j.id"
                " AND d.generation = j.generation AND d.state = 'pending'",
                uuid.UUID(job_id),
                error,
            )

        self._run(q)
