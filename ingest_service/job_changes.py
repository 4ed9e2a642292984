"""Following jobs as they change, from any process: Postgres `LISTEN job_changes`.

Every update of a job's status or of a stage's state or progress is announced on the
channel (a trigger, see `contracts/sql/0009_steering.sql`), whichever process made it: a
worker, another API process. Each API process holds one listening connection and wakes
the event streams of the job named; a stream then reads the job again, so nothing it
shows comes from one process's memory. The connection is re-opened when it drops; a
stream also looks again on its own every few seconds, so a notification lost with the
connection delays it at most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator

import asyncpg
import structlog

from infra.postgres import CONNECT_TIMEOUT_S

log = structlog.get_logger("ingest.job_changes")

CHANNEL = "job_changes"
#: Longest pause between attempts to re-open the listening connection.
MAX_BACKOFF_S = 10.0


class JobChanges:
    """Wakes subscribers of a job id when Postgres announces a change of that job."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._subscribers: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the job changes; the caller clears it before reading."""
        event = asyncio.Event()
        self._subscribers.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._subscribers.get(job_id, set())
            waiting.discard(event)
            if not waiting:
                self._subscribers.pop(job_id, None)

    def _on_notification(self, conn: object, pid: int, channel: str, payload: str) -> None:
        for event in self._subscribers.get(payload, ()):
            event.set()

    async def run(self) -> None:
        """Listen until cancelled, re-connecting with backoff."""
        backoff = 0.5
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._database_url, timeout=CONNECT_TIMEOUT_S)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("cannot listen for job changes", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            try:
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(CHANNEL, self._on_notification)
                backoff = 0.5
                # Streams may have missed changes while no connection listened.
                for events in list(self._subscribers.values()):
                    for event in events:
                        event.set()
                await lost.wait()
                log.warning("the job changes connection was lost; re-opening it")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()


def _set(event: asyncio.Event, _conn: object) -> None:
    event.set()
