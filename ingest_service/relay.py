"""The outbox relay: publishes recorded jobs to RabbitMQ with publisher confirms.

Uploads commit a job row and an outbox row in one transaction and wake the relay. The
relay locks a batch of unpublished rows (`FOR UPDATE SKIP LOCKED`, so several ingest
instances can run relays side by side), publishes each as a Dramatiq message on the
stage's queue, and stamps the rows confirmed. While RabbitMQ is unreachable rows simply
wait, and the relay retries with exponential backoff; a crash between a confirm and the
stamp republishes the row with the same message id, which the idempotent workers absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from ingest_service import metrics

log = structlog.get_logger("ingest.relay")

#: Longest pause between relay attempts while RabbitMQ or Postgres is failing.
MAX_BACKOFF_S = 30.0


def _tune(parameters: pika.ConnectionParameters) -> None:
    # Fail fast instead of hanging when the broker is gone or blocks publishers.
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 30


class Publisher:
    """Publishes Dramatiq messages with confirms; all pika calls run on one thread."""

    def __init__(self, amqp_url: str) -> None:
        self._amqp_url = amqp_url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-publisher")
        self._broker: RabbitmqBroker | None = None

    def _get_broker(self) -> RabbitmqBroker:
        if self._broker is None:
            broker = RabbitmqBroker(url=self._amqp_url, confirm_delivery=True, middleware=[])
            parameters = broker.parameters
            for each in parameters if isinstance(parameters, list) else [parameters]:
                _tune(each)
            self._broker = broker
        return self._broker

    def _publish_sync(
        self, rows: Sequence[asyncpg.Record]
    ) -> tuple[list[int], BaseException | None]:
        published: list[int] = []
        broker = self._get_broker()
        for row in rows:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=row["queue"],
                actor_name=row["actor"],
                args=(row["payload"],),
                kwargs={},
                options={},
                message_id=str(row["message_id"]),
                message_timestamp=int(row["created_at"].timestamp() * 1000),
            )
            try:
                broker.enqueue(message)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the row for later
                return published, exc
            published.append(row["id"])
        return published, None

    async def publish(
        self, rows: Sequence[asyncpg.Record]
    ) -> tuple[list[int], BaseException | None]:
        """Publish rows in order; return the ids confirmed and the error that stopped it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._publish_sync, rows)

    def _close_sync(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                self._broker.close()
            self._broker = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)


def check_broker(amqp_url: str, timeout_s: float = 3.0) -> None:
    """Open and close one AMQP connection; raises if RabbitMQ does not accept it."""
    parameters = pika.URLParameters(amqp_url)
    _tune(parameters)
    parameters.socket_timeout = timeout_s
    parameters.stack_timeout = timeout_s
    pika.BlockingConnection(parameters).close()


class OutboxRelay:
    """Moves outbox rows to RabbitMQ until cancelled."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        batch_size: int,
        poll_interval_s: float,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a pass now (called after a job commits)."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self._poll_interval_s
        while True:
            self._wake.clear()
            try:
                full_batch = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                metrics.OUTBOX_PUBLISH_ERRORS.inc()
                log.warning("outbox relay pass failed", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = self._poll_interval_s
            if full_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)

    async def relay_once(self) -> bool:
        """Publish one batch; True if the batch was full (more may be waiting)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, message_id, job_id, queue, actor, payload, created_at FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                metrics.OUTBOX_BACKLOG.set(0)
                return False
            published, error = await self._publisher.publish(rows)
            if published:
                await self._mark_published(conn, published)
            if error is not None:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    rows[len(published)]["id"],
                    repr(error)[:1000],
                )
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        metrics.OUTBOX_BACKLOG.set(backlog)
        if error is not None:
            raise error
        return len(rows) == self._batch_size

    async def _mark_published(self, conn: Any, ids: list[int]) -> None:
        stamped = await conn.fetch(
            "UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1,"
            " last_error = NULL WHERE id = ANY($1::bigint[])"
            " RETURNING job_id, extract(epoch FROM published_at - created_at) AS latency_s",
            ids,
        )
        for row in stamped:
            metrics.OUTBOX_PUBLISH_LATENCY.observe(float(row["latency_s"]))
            log.info("job published", job_id=str(row["job_id"]))
        metrics.OUTBOX_PUBLISHED.inc(len(stamped))
