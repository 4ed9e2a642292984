"""py-spy profiles of the server under load, summarised into top frames."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from scripts.bench_ingest import REPO_ROOT
from scripts.bench_ingest.load import LoadSpec
from scripts.bench_ingest.runs import Bench
from tests.support.servers import IngestServer


def _frame_package(frame: str) -> str:
    """`func (litestar/routes/http.py:12)` -> `litestar`; a thread root stays itself."""
    _, _, where = frame.rpartition(" (")
    if not where or frame.startswith("thread ("):
        return "(thread root)"
    path = where.rstrip(")").rsplit(":", 1)[0]
    top = path.split("/", 1)[0]
    return top.removesuffix(".py") if "/" in path or top.endswith(".py") else path


def summarise_profile(raw: Path, top: int = 40) -> dict[str, Any]:
    """Top frames of a py-spy `--format raw` (collapsed stacks) file: self and inclusive."""
    self_counts: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        self_counts[frames[-1]] += count
        packages[_frame_package(frames[-1])] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count

    def pct(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads_pct": pct(threads),
        "self_pct": pct(self_counts),
        "self_by_package_pct": pct(packages),
        "inclusive_pct": pct(inclusive),
    }


def profile_run(
    bench: Bench, server: IngestServer, spec: LoadSpec, *, fsync: bool
) -> dict[str, Any]:
    """A separate run with py-spy attached; its samples aggregated into top frames."""
    py_spy = shutil.which("py-spy") or str(REPO_ROOT / ".venv/bin/py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    key = f"{spec.label}-fsync-{'on' if fsync else 'off'}".lower()
    raw = bench.log_path.with_name(f"{bench.log_path.stem}-profile-{key}.log")
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.process.pid),
            "--duration",  # the warm-up, the pause before the run, and the run
            str(spec.warmup_s + spec.duration_s + 5),
            "--rate",
            "200",
            "--nonblocking",
            "--threads",
            "--function",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # let py-spy attach before the load starts
    result = bench.load_run(server, spec, fsync=fsync)
    spy.wait(timeout=60)
    result["profile"] = summarise_profile(raw) if raw.exists() else None
    result["profile_file"] = str(raw)
    return result
