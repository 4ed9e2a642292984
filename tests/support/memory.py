"""Resident memory of a process, or of the largest process in a tree, from /proc."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path


def read_status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in KiB (empty once the process is gone)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                found[key] = int(value.split()[0])
    return found


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's VmHWM of `pid` (clear_refs 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class RssSampler:
    """Samples VmRSS every `interval_s` in a background thread, as (seconds, KiB).

    Of the process `pid`; with `tree=True`, of the largest single process among `pid`
    and its descendants (a supervisor and its workers). Use it as a context manager.
    """

    def __init__(self, pid: int, interval_s: float = 0.1, *, tree: bool = False) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.tree = tree
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def _now_kib(self) -> int | None:
        pids = tree_pids(self.pid) if self.tree else [self.pid]
        values = [kib for pid in pids if (kib := read_status_kib(pid).get("VmRSS")) is not None]
        return max(values, default=None)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._now_kib()
            if rss is not None:
                self.samples.append((time.monotonic() - self._t0, rss))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kib(self) -> int:
        return max((kib for _, kib in self.samples), default=0)

    def per_minute_peak_kib(self) -> list[int]:
        """The peak of each minute since the start (0 for a minute without samples)."""
        peaks: list[int] = []
        for seconds, kib in self.samples:
            minute = int(seconds // 60)
            peaks.extend([0] * (minute + 1 - len(peaks)))
            peaks[minute] = max(peaks[minute], kib)
        return peaks
