"""`python -m scripts.bench_ingest`: the command line, and the order of the runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import scripts.bench_ingest as package
from scripts.bench_ingest import GIB, KIB, MIB, REPO_ROOT
from scripts.bench_ingest.bodies import multipart_body, wav_file_bytes
from scripts.bench_ingest.compare import run_comparisons
from scripts.bench_ingest.load import WRK_LUA, LoadSpec, ensure_wrk
from scripts.bench_ingest.report import (
    comparisons,
    filesystem_of,
    git_info,
    machine_info,
    print_summary,
    targets,
)
from scripts.bench_ingest.runs import Bench, start_ingest
from tests.support.isolation import isolated
from tests.support.servers import IngestServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    doc = package.__doc__
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_ingest",
        description=doc.split("\n\n")[0] if doc else None,
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/ingest.json")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--sizes", default="64KiB,1MiB", help="comma-separated WAV file sizes (KiB/MiB)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument(
        "--processes", type=int, default=0, help="API (and baseline) processes; 0: one per CPU"
    )
    parser.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL")
    parser.add_argument(
        "--big-bytes", type=int, default=GIB, help="size of the streamed upload (0: skip)"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated comparisons to leave out: baseline, workers, processes, fsync",
    )
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--profile", action="store_true", help="also profile with py-spy")
    parser.add_argument(
        "--server-root",
        type=Path,
        default=REPO_ROOT,
        help="run the server from this source tree (with ingest_service/ and contracts/),"
        " to compare two versions with the same venv",
    )
    return parser.parse_args(argv)


def parse_size(text: str) -> tuple[str, int]:
    text = text.strip()
    for suffix, unit in (("KiB", KIB), ("MiB", MIB), ("GiB", GIB)):
        if text.endswith(suffix):
            return text, int(text[: -len(suffix)]) * unit
    return f"{text}B", int(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    processes = args.processes or len(os.sched_getaffinity(0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log")
    log_path.write_text("")
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "git": git_info(),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "log_level": args.log_level,
            "rounds": args.rounds,
            "processes": processes,
            "server": "python -m ingest_service serve (uvicorn, uvloop, httptools)",
            "baseline": "scripts/bench_ingest/baseline_app.py: FastAPI + Celery + Redis"
            " (blocking copy, one INSERT, apply_async, no worker), same uvicorn set-up",
            "request": "multipart POST /v1/jobs, keep-alive, one 'file' part",
            "server_root": str(args.server_root),
        },
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        isolated(Path(tmp) / "storage", kind="bench") as env,
    ):
        workdir = Path(tmp)
        results["machine"]["storage_filesystem"] = filesystem_of(workdir)
        lua = workdir / "upload.lua"
        lua.write_text(WRK_LUA)
        bench = Bench(args=args, wrk=wrk, lua=lua, env=env, workdir=workdir, log_path=log_path)
        for text in args.sizes.split(","):
            label, size = parse_size(text)
            body = workdir / f"body-{label}.bin"
            body.write_bytes(multipart_body(wav_file_bytes(size)))
            bench.specs.append(
                LoadSpec(
                    label, size, body, args.duration, args.warmup, args.connections, args.threads
                )
            )

        def start(n: int, *, fsync: bool = True) -> IngestServer:
            return start_ingest(
                env, log_path, fsync=fsync, log_level=args.log_level, root=args.server_root,
                processes=n,
            )  # fmt: skip

        results.update(run_comparisons(bench, start, processes, skip))
    results["targets"] = targets(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_summary(results)
    print(f"\nwritten to {args.out} (server log: {log_path})")
    errors = [
        (name, side)
        for name, comparison in comparisons(results)
        for side, outcome in comparison.items()
        if outcome["summary"]["errors"]
    ]
    big = results.get("large_upload")
    if errors or (big and (big["status"] != 202 or not big["sha256_match"])):
        print(f"FAILED: some uploads were not accepted: {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
