"""Uploads share directory flushes: each waits for one that started after its rename."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from ingest_service import storage
from ingest_service.storage import DirectorySync


def test_a_burst_shares_flushes_and_each_waits_for_one_that_began_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes: list[tuple[float, float]] = []
    real = storage._fsync_directory
    lock = threading.Lock()

    def recorded(directory: Path) -> None:
        started = time.monotonic()
        time.sleep(0.02)  # a flush that takes a while, as on a real disk under load
        real(directory)
        with lock:
            flushes.append((started, time.monotonic()))

    monkeypatch.setattr(storage, "_fsync_directory", recorded)

    async def upload(delay_s: float) -> tuple[float, float]:
        await asyncio.sleep(delay_s)
        called = time.monotonic()
        await DirectorySync.of(tmp_path).sync()
        return called, time.monotonic()

    async def burst() -> list[tuple[float, float]]:
        return await asyncio.gather(*(upload(i * 0.002) for i in range(40)))

    calls = asyncio.run(burst())
    assert 1 < len(flushes) < 10, flushes
    for called, returned in calls:
        # Some flush began after the call and ended before it returned.
        assert any(called <= start and end <= returned for start, end in flushes)


def test_each_event_loop_gets_its_own(tmp_path: Path) -> None:
    async def one() -> DirectorySync:
        sync = DirectorySync.of(tmp_path)
        await sync.sync()
        return sync

    first, second = asyncio.run(one()), asyncio.run(one())
    assert first is not second
