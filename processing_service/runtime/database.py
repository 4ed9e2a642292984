"""Postgres access for the workers: asyncpg on a private event-loop thread.

Dramatiq runs actors in threads, so the stores offer plain blocking methods. `Database`
runs asyncpg on an event-loop thread of its own, started on first use in each worker
process (after Dramatiq forks). `transaction(fn)` runs `fn(conn)` in one transaction,
and runs it again when Postgres rolled it back for a conflict (a deadlock or a
serialization failure, which its manual asks the application to retry); the
one-statement helpers (`fetchval`, `fetchrow`, `fetch`, `execute`) spare the stores
a closure per query.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from infra.postgres import create_pool

T = TypeVar("T")

#: Seconds a caller waits for one transaction before giving up on it.
CALL_TIMEOUT_S = 90

#: Times a transaction runs when Postgres keeps rolling it back for a conflict.
CONFLICT_TRIES = 4


class Database:
    """A per-process asyncpg pool behind blocking calls."""

    def __init__(self, database_url: str, pool_size: int = 4) -> None:
        self._url = database_url
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: asyncpg.Pool | None = None
        self._thread: threading.Thread | None = None

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, asyncpg.Pool]:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._pool is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="postgres", daemon=True
                )
                self._thread.start()
                connect = create_pool(self._url, self._pool_size)
                self._pool = asyncio.run_coroutine_threadsafe(connect, loop).result(timeout=60)
                self._loop, self._pid = loop, os.getpid()
            return self._loop, self._pool

    def transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn(conn)` in one transaction on the pool and return its result."""
        loop, pool = self._ensure_started()

        async def call() -> T:
            attempt = 1
            while True:
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        return await fn(conn)
                except asyncpg.TransactionRollbackError:
                    if attempt == CONFLICT_TRIES:
                        raise
                    await asyncio.sleep(0.05 * attempt)
                    attempt += 1

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=CALL_TIMEOUT_S)

    def fetchval(self, query: str, *args: Any) -> Any:
        return self.transaction(lambda conn: conn.fetchval(query, *args))

    def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return self.transaction(lambda conn: conn.fetchrow(query, *args))

    def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return self.transaction(lambda conn: conn.fetch(query, *args))

    def execute(self, query: str, *args: Any) -> str:
        status: str = self.transaction(lambda conn: conn.execute(query, *args))
        return status

    def close(self) -> None:
        """Close this process's pool and stop its loop (a later call starts them again)."""
        with self._lock:
            loop, pool = self._loop, self._pool
            self._loop = self._pool = None
        if loop is not None and pool is not None and self._pid == os.getpid():
            asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()
