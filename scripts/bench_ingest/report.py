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
    wrk_lines: list[str] = []
    with contextlib.suppress(OSError):  # no wrk: the other benchmarks run without it
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        wrk_lines = (done.stdout or done.stderr).splitlines()[0:1]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / MIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": list(os.getloadavg()),
        "packages": versions,
        "wrk": wrk_lines,
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


def comparisons(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every side-by-side comparison of the results, named."""
    found = [
        (f"versus_baseline {size}", c) for size, c in results.get("versus_baseline", {}).items()
    ]
    found += [
        (name, results[name]) for name in ("workers_busy", "processes", "fsync") if name in results
    ]
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figures that decide it and whether it holds."""
    found: dict[str, Any] = {}
    for size, comparison in results.get("versus_baseline", {}).items():
        api, base = comparison["api"]["summary"], comparison["baseline"]["summary"]
        speedup = _ratio(api["uploads_per_s"], base["uploads_per_s"])
        found[f"throughput_vs_baseline_{size}"] = {
            "api_uploads_per_s": api["uploads_per_s"],
            "baseline_uploads_per_s": base["uploads_per_s"],
            "ratio": speedup,
            "api_p99_ms": api["p99_ms"],
            "baseline_p99_ms": base["p99_ms"],
            "api_cpu_ms_per_upload": api["server_cpu_ms_per_upload"],
            "baseline_cpu_ms_per_upload": base["server_cpu_ms_per_upload"],
            "target": ">= 2x the baseline's uploads/s, p99 no worse",
            "met": bool(speedup and speedup >= 2 and api["p99_ms"] <= base["p99_ms"]),
        }
        found[f"outbox_lag_{size}"] = {
            "p99_ms": api["outbox_lag_p99_ms"],
            "target": "p99 <= 1 s at the sustained rate",
            "met": api["outbox_lag_p99_ms"] is not None and api["outbox_lag_p99_ms"] <= 1000,
        }
    if "workers_busy" in results:
        alone = results["workers_busy"]["alone"]["summary"]["uploads_per_s"]
        busy = results["workers_busy"]["workers_busy"]["summary"]["uploads_per_s"]
        share = _ratio(busy, alone)
        found["rate_with_workers_busy"] = {
            "alone_uploads_per_s": alone,
            "workers_busy_uploads_per_s": busy,
            "ratio": share,
            "target": ">= 0.8x the rate alone",
            "met": bool(share and share >= 0.8),
        }
    if "processes" in results:
        one, many = (c["summary"]["uploads_per_s"] for c in results["processes"].values())
        found["processes"] = {"ratio_many_over_one": _ratio(many, one)}
    if "fsync" in results:
        on = results["fsync"]["fsync"]["summary"]["uploads_per_s"]
        off = results["fsync"]["no_fsync"]["summary"]["uploads_per_s"]
        found["fsync_cost"] = {"ratio_off_over_on": _ratio(off, on)}
    big = results.get("large_upload")
    if big:
        found["memory_during_1gib_upload"] = {
            "rss_before_mib": big["rss_before_mib"],
            "rss_peak_mib": big["rss_peak_mib"],
            "target": "flat (peak within 32 MiB of the start)",
            "met": big["rss_peak_mib"] - big["rss_before_mib"] <= 32,
        }
    return found


def print_summary(results: dict[str, Any]) -> None:
    print()
    print(
        f"ingest benchmark: {results['machine']['nproc']} x {results['machine']['cpu_model']},"
        f" commit {results['git']['commit'][:12]}, {results['config']['connections']}"
        f" connections, {results['config']['duration_s']} s per run,"
        f" {results['config']['rounds']} alternating rounds, medians"
    )
    header = (
        f"{'comparison':<22} {'side':<14} {'uploads/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'cpu ms/upl':>10} {'lag p99 ms':>10} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, comparison in comparisons(results):
        for side, outcome in comparison.items():
            m = outcome["summary"]
            lag = m["outbox_lag_p99_ms"]
            print(
                f"{name:<22} {side:<14} {m['uploads_per_s']:>9} {m['p50_ms']:>7} {m['p99_ms']:>7}"
                f" {m['server_cpu_ms_per_upload']:>10} {lag if lag is not None else '-':>10}"
                f" {m['errors']:>6}"
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
    print("targets:")
    for name, target in results["targets"].items():
        verdict = {True: "MET", False: "NOT MET"}.get(target.get("met"), "-")
        figures = {k: v for k, v in target.items() if k not in ("target", "met")}
        print(f"  {name}: {verdict} {target.get('target', '')} {figures}")
    for mode, prof in results.get("profile", {}).items():
        if not prof.get("profile"):
            continue
        print(
            f"py-spy, {mode} ({prof['uploads_per_s']} uploads/s while profiled),"
            " top frames by own time (% of samples):"
        )
        for name, share in prof["profile"]["self_pct"][:12]:
            print(f"  {share:5.1f}%  {name}")
