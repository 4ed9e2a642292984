"""The results file's context (machine, file system, commit), derived numbers, the table."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from scripts.bench_ingest import GIB, MIB, REPO_ROOT


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("litestar", "uvicorn", "httptools", "uvloop", "asyncpg", "pika", "multipart"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / MIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": list(os.getloadavg()),
        "packages": versions,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0:1],
    }


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount (device, type, options) that holds `path`: file creation and fsync cost."""
    best: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, options, *_ = line.split()
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[1] if best else ""):
                best = [device, mount, fstype, options]
    return dict(zip(("device", "mount", "type", "options"), best, strict=False))


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def fsync_ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """uploads/s with fsync off over fsync on, per size (means over repeats)."""
    ratios: dict[str, Any] = {}
    for size in dict.fromkeys(run["size"] for run in runs):

        def mean(fsync: bool, size: str = size) -> float | None:
            values = [r["uploads_per_s"] for r in runs if r["size"] == size and r["fsync"] is fsync]
            return sum(values) / len(values) if values else None

        on, off = mean(True), mean(False)
        if on and off:
            ratios[size] = {
                "fsync_on_uploads_per_s": round(on, 1),
                "fsync_off_uploads_per_s": round(off, 1),
                "off_over_on": round(off / on, 2),
            }
    return ratios


def print_summary(results: dict[str, Any]) -> None:
    print()
    print(
        f"ingest benchmark: {results['machine']['nproc']} x {results['machine']['cpu_model']},"
        f" commit {results['git']['commit'][:12]}, {results['config']['connections']}"
        f" connections, {results['config']['duration_s']} s per run,"
        f" LOG_LEVEL={results['config']['log_level']}"
    )
    header = (
        f"{'size':>7} {'fsync':>5} {'uploads/s':>9} {'MiB/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'errors':>6} {'RSS peak':>8} {'ingest%':>7} {'pg%':>5} {'amqp%':>5} {'wrk%':>5}"
        f" {'other%':>6} {'loop%':>5} {'ms/upl':>6}"
        f" {'relay/s':>7}"
    )
    print(header)
    print("-" * len(header))
    for run in results["runs"]:
        cores = run["cpu"]["cores_pct"]
        relay = run["relay"]["publish_rate_per_s"]
        print(
            f"{run['size']:>7} {'on' if run['fsync'] else 'off':>5} {run['uploads_per_s']:>9.1f}"
            f" {run['upload_mib_per_s']:>7.1f} {run['latency_ms']['p50']:>7.1f}"
            f" {run['latency_ms']['p99']:>7.1f} {run['errors']:>6}"
            f" {run['rss_peak_mib']:>6.0f}Mi {cores.get('ingest', 0):>7.0f}"
            f" {cores.get('postgres', 0):>5.0f} {cores.get('rabbitmq', 0):>5.0f}"
            f" {cores.get('wrk', 0):>5.0f}"
            f" {cores.get('other', 0):>6.0f} {run['cpu']['ingest_main_thread_pct']:>5.0f}"
            f" {run['ingest_cpu_ms_per_upload']:>6.2f} {relay if relay is not None else '-':>7}"
        )
    print(
        f"(CPU columns: % of one core, {results['machine']['nproc']} cores in all; loop% ="
        " the ingest event loop's thread; ms/upl = ingest CPU ms per accepted upload;"
        " other% = the rest of the machine, i.e. work unrelated to the benchmark)"
    )
    for size, ratio in results["fsync_ratio"].items():
        print(
            f"fsync off/on at {size}: {ratio['fsync_off_uploads_per_s']:.1f} /"
            f" {ratio['fsync_on_uploads_per_s']:.1f} uploads/s = x{ratio['off_over_on']}"
        )
    big = results.get("large_upload")
    if big:
        print(
            f"{big['bytes'] / GIB:.0f} GiB raw upload: HTTP {big['status']},"
            f" sha256 {'matches' if big['sha256_match'] else 'DIFFERS'},"
            f" {big['total_s']:.1f} s ({big['mib_per_s']:.0f} MiB/s, answer"
            f" {big['answer_after_body_s']:.1f} s after the body); server RSS"
            f" {big['rss_before_mib']:.0f} MiB before, {big['rss_peak_mib']:.0f} MiB peak"
        )
    for mode, prof in results.get("profile", {}).items():
        if not prof.get("profile"):
            continue
        print(
            f"py-spy, {mode} ({prof['uploads_per_s']} uploads/s while profiled),"
            " top frames by own time (% of samples):"
        )
        for name, share in prof["profile"]["self_pct"][:12]:
            print(f"  {share:5.1f}%  {name}")
