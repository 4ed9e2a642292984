"""CPU accounting from /proc: where the machine's CPU time went during a run."""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.memory import tree_pids

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _process_ticks() -> dict[int, tuple[str, int]]:
    """CPU ticks (user + system) and command name of every process now running."""
    ticks: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (comm, int(fields[11]) + int(fields[12]))
    return ticks


def _thread_ticks(pid: int, tid: int) -> int:
    """CPU ticks (user + system) of one thread (0 once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = _cpu_line()
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _cpu_line() -> list[int]:
    """/proc/stat's `cpu` line: user nice system idle iowait irq softirq steal ..."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuAccount:
    """Where the machine's CPU time went between `start()` and `stop()`, by process group."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        #: The server and its descendants (several API processes under one supervisor).
        self.server_pids: set[int] = {server_pid}
        self._before: dict[int, tuple[str, int]] = {}
        self._machine_before = (0, 0)
        self._children_before = 0.0
        self._main_before = 0
        self._cpu_line_before: list[int] = []
        self._t0 = 0.0

    def _group(self, pid: int, comm: str) -> str:
        if pid in self.server_pids:
            return "ingest"
        if pid == os.getpid():
            return "bench_script"
        if comm.startswith("postgres"):
            return "postgres"
        if comm.startswith(("beam", "erl", "epmd", "inet_gethost")):
            return "rabbitmq"
        if comm.startswith("redis"):
            return "redis"
        return "other"

    def start(self) -> None:
        self.server_pids = set(tree_pids(self.server_pid))
        self._t0 = time.monotonic()
        self._machine_before = _machine_ticks()
        self._cpu_line_before = _cpu_line()
        self._children_before = _children_cpu_s()
        self._before = _process_ticks()
        self._main_before = _thread_ticks(self.server_pid, self.server_pid)

    def stop(self) -> dict[str, Any]:
        main_thread = _thread_ticks(self.server_pid, self.server_pid) - self._main_before
        after = _process_ticks()
        busy1, total1 = _machine_ticks()
        line = [a - b for a, b in zip(_cpu_line(), self._cpu_line_before, strict=False)]
        elapsed = time.monotonic() - self._t0
        groups: Counter[str] = Counter()
        others: Counter[str] = Counter()
        for pid, (comm, ticks) in after.items():
            before = self._before.get(pid)
            if before is None or before[0] != comm:
                continue  # started during the window: counted in "other" via the machine
            group = self._group(pid, comm)
            groups[group] += (ticks - before[1]) / CLK_TCK
            if group == "other":
                others[comm] += (ticks - before[1]) / CLK_TCK
        # wrk has exited by now: its CPU time is in this process's children's usage.
        groups["wrk"] = _children_cpu_s() - self._children_before
        busy0, total0 = self._machine_before
        ncpu = os.cpu_count() or 1
        busy_s = (busy1 - busy0) / CLK_TCK
        # Interrupt time (loopback TCP, block I/O) belongs to no process; steal is time the
        # hypervisor gave this VM's CPUs to someone else.
        groups["kernel_irq"] = (line[5] + line[6]) / CLK_TCK
        groups["vm_steal"] = line[7] / CLK_TCK if len(line) > 7 else 0.0
        known = sum(v for k, v in groups.items() if k != "other")
        groups["other"] = max(busy_s - known, 0.0)
        return {
            "elapsed_s": round(elapsed, 2),
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
            # Per group: CPU seconds per wall second, in % of ONE core (200% = both cores).
            "cores_pct": {k: round(100 * v / elapsed, 1) for k, v in sorted(groups.items())},
            # The event loop runs on the main thread: near 100% means the loop is the bound.
            "ingest_main_thread_pct": round(100 * main_thread / CLK_TCK / elapsed, 1),
            "ingest_cpu_s": round(groups["ingest"], 2),
            "ingest_main_thread_cpu_s": round(main_thread / CLK_TCK, 2),
            "capacity_pct": round(100 * ncpu, 0),
            "other_top_pct": {k: round(100 * v / elapsed, 1) for k, v in others.most_common(5)},
        }


def machine_busy_cores_pct(seconds: float = 1.0) -> float:
    """How busy the machine is over `seconds`, in % of one core (the background load)."""
    busy0, total0 = _machine_ticks()
    time.sleep(seconds)
    busy1, total1 = _machine_ticks()
    ncpu = os.cpu_count() or 1
    return round(100 * ncpu * (busy1 - busy0) / max(total1 - total0, 1), 1)
