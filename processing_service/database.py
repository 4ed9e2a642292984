"""Postgres access for the workers: asyncpg on a private event-loop thread.

Dramatiq runs actors in threads, so the stores offer plain blocking methods. `Database`
runs asyncpg on an event-loop thread of its own, created lazily in each worker process
(after Dramatiq forks); each call is one short transaction.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import msgspec

from contracts.schema import apply_migrations

T = TypeVar("T")
_ENCODER = msgspec.json.Encoder()


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: _ENCODER.encode(v).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


class Database:
    """A per-process asyncpg pool behind a blocking `run`."""

    def __init__(self, database_url: str, pool_size: int = 4) -> None:
        self._url = database_url
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: asyncpg.Pool | None = None

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, asyncpg.Pool]:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._pool is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="job-store", daemon=True).start()

                async def connect() -> asyncpg.Pool:
                    pool: asyncpg.Pool = await asyncpg.create_pool(
                        self._url,
                        min_size=1,
                        max_size=self._pool_size,
                        init=_init,
                        command_timeout=30,
                    )
                    return pool

                self._pool = asyncio.run_coroutine_threadsafe(connect(), loop).result(timeout=60)
                self._loop, self._pid = loop, os.getpid()
            return self._loop, self._pool

    def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        loop, pool = self._ensure_started()

        async def call() -> T:
            async with pool.acquire() as conn, conn.transaction():
                return await fn(conn)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=90)


async def apply_schema(database_url: str) -> list[int]:
    """Apply pending migrations (idempotent; the services share one schema)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
