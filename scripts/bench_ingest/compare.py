"""Side-by-side runs: this API against the FastAPI + Celery baseline, one process against
several, and the API alone against the API beside its own busy workers.

Each comparison alternates its two sides round by round (A B, B A, A B, ...), so that a
machine that gets busier or quieter during the benchmark tilts neither side; figures are
medians over the rounds, and ratios are of those medians.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.bench_ingest import GIB, REPO_ROOT
from scripts.bench_ingest.load import LoadSpec
from scripts.bench_ingest.profile import profile_run
from scripts.bench_ingest.runs import Bench, Server
from tests.support.isolation import IsolatedEnv, free_port
from tests.support.memory import tree_pids
from tests.support.models import MODEL_CACHE_DIR
from tests.support.servers import IngestServer, Worker, wait_healthy

#: The baseline's own environment, pinned; made on first use.
BASELINE_VENV = REPO_ROOT / ".venv-baseline"
BASELINE_PACKAGES = (
    "fastapi==0.121.0",
    "uvicorn==0.54.0",
    "uvloop==0.23.0",
    "httptools==0.9.0",
    "celery==5.5.3",
    "redis==6.4.0",
    "python-multipart==0.0.20",
    "asyncpg==0.32.0",
)
#: The baseline's Celery broker: a Redis database of its own, emptied afterwards.
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15


def ensure_baseline_venv() -> Path:
    """The baseline's Python, installing its packages when they are missing or differ."""
    python = BASELINE_VENV / "bin" / "python"
    stamp = BASELINE_VENV / ".installed"
    wanted = "\n".join(BASELINE_PACKAGES)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making the baseline's environment {BASELINE_VENV}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *BASELINE_PACKAGES],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def ensure_redis() -> str:
    """The baseline broker's URL; starts Redis (without persistence) if nothing answers."""
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1).close()
    except OSError:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit(
                "bench-ingest's baseline needs Redis on 127.0.0.1:6379"
                " (Debian: apt-get install redis-server)"
            ) from None
        subprocess.run(
            [server, "--daemonize", "yes", "--save", "", "--appendonly", "no"], check=True
        )
        time.sleep(1)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def flush_redis() -> None:
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as sock:
        sock.sendall(f"SELECT {REDIS_DB}\r\nFLUSHDB\r\nQUIT\r\n".encode())
        sock.recv(1024)


class BaselineServer:
    """`uvicorn scripts.bench_ingest.baseline_app:app` in the baseline's environment."""

    def __init__(
        self, python: Path, env: IsolatedEnv, redis_url: str, log_path: Path, processes: int
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "BASELINE_DATABASE_URL": env.database_url,
            "BASELINE_REDIS_URL": redis_url,
            "BASELINE_STORAGE_DIR": str(env.storage_dir / "baseline"),
        }
        self._log = log_path.open("ab")
        self._log.write(f"\n==== baseline processes={processes}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [
                python, "-m", "uvicorn", "scripts.bench_ingest.baseline_app:app",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(processes),
                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
                "--no-access-log",
            ],
            cwd=REPO_ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if not wait_healthy(self.url, self.process, 60):
            self.stop()
            raise SystemExit(f"the baseline did not become healthy (see {log_path})")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of the figures the targets speak of."""

    def median(get: Callable[[dict[str, Any]], float | None]) -> float | None:
        values = [v for v in map(get, runs) if v is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "rounds": len(runs),
        "uploads_per_s": median(lambda r: r["uploads_per_s"]),
        "uploads_per_s_each_round": [r["uploads_per_s"] for r in runs],
        "p50_ms": median(lambda r: r["latency_ms"]["p50"]),
        "p99_ms": median(lambda r: r["latency_ms"]["p99"]),
        "server_cpu_ms_per_upload": median(lambda r: r["ingest_cpu_ms_per_upload"]),
        "errors": sum(r["errors"] for r in runs),
        "outbox_lag_p99_ms": median(
            lambda r: r["relay"]["outbox_lag_ms"]["p99"] if r.get("relay") else None
        ),
    }


def alternate(
    bench: Bench,
    spec: LoadSpec,
    sides: dict[str, tuple[Server, bool]],
    rounds: int,
    before_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`rounds` measured runs of each side, alternating which goes first; per side its
    runs and their medians. `sides[name] = (server, relays)`."""
    names = list(sides)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            if before_run is not None:
                before_run(name)
            server, relays = sides[name]
            run = bench.load_run(server, spec, fsync=True, relay=relays)
            run["side"] = name
            runs[name].append(run)
            print(
                f"    {spec.label} {name:<14} round {round_ + 1}:"
                f" {run['uploads_per_s']:>7} uploads/s,"
                f" p99 {run['latency_ms']['p99']} ms, {run['errors']} errors",
                flush=True,
            )
    return {name: {"summary": _summary(r), "runs": r} for name, r in runs.items()}


@contextmanager
def busy_workers(env: IsolatedEnv, log_path: Path) -> Iterator[Callable[[bool], None]]:
    """The stack's worker pools on the benchmark's queues, working through the uploads;
    yields `run(on)`, which resumes (SIGCONT) or pauses (SIGSTOP) every worker process,
    so that the API's rate alone and beside busy workers alternate without restarts."""
    worker = Worker(
        env.environ(
            MODEL_CACHE_DIR=str(MODEL_CACHE_DIR),
            WHISPER_MODEL=os.environ.get("BENCH_WHISPER_MODEL", "tiny.en"),
            PYANNOTE_METRICS_ENABLED="false",
            LOG_LEVEL="WARNING",
        ),
        log_path,
    )

    def run(on: bool) -> None:
        for pid in tree_pids(worker.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT if on else signal.SIGSTOP)

    try:
        time.sleep(20)  # the pools load their models and take messages
        yield run
    finally:
        run(True)
        worker.stop()


#: Starts this API: `start(processes, fsync=True)`.
StartIngest = Callable[..., IngestServer]


def run_comparisons(
    bench: Bench, start: StartIngest, processes: int, skip: set[str]
) -> dict[str, Any]:
    """Every comparison not in `skip`, then the large upload: the results' sections."""
    found: dict[str, Any] = {}
    api = start(processes)
    try:
        if "baseline" not in skip:
            found["versus_baseline"] = versus_baseline(bench, api, processes)
        if "workers" not in skip:
            print("this API alone, and beside the stack's busy workers", flush=True)
            with busy_workers(bench.env, bench.log_path) as workers_run:
                found["workers_busy"] = alternate(
                    bench, bench.specs[0], {"alone": (api, True), "workers_busy": (api, True)},
                    bench.args.rounds, before_run=lambda side: workers_run(side == "workers_busy"),
                )  # fmt: skip
        for spec in bench.specs if bench.args.profile else []:
            print(f"  profiling the {spec.label} load with py-spy", flush=True)
            found.setdefault("profile", {})[spec.label] = profile_run(bench, api, spec, fsync=True)
    finally:
        api.stop()
    if "processes" not in skip and processes > 1:
        print(f"1 API process against {processes}", flush=True)
        found["processes"] = _pair(bench, {"1": start(1), str(processes): start(processes)})
    if "fsync" not in skip:
        print("1 API process with and without fsync", flush=True)
        found["fsync"] = _pair(bench, {"fsync": start(1), "no_fsync": start(1, fsync=False)})
    if bench.args.big_bytes:
        print(f"streaming a {bench.args.big_bytes / GIB:.2f} GiB raw upload", flush=True)
        single = start(1)
        try:
            found["large_upload"] = bench.big_upload(single)
        finally:
            single.stop()
    return found


def versus_baseline(bench: Bench, api: IngestServer, processes: int) -> dict[str, Any]:
    print(f"this API against the baseline, {processes} process(es) each", flush=True)
    redis_url = ensure_redis()
    baseline = BaselineServer(
        ensure_baseline_venv(), bench.env, redis_url, bench.log_path, processes
    )
    try:
        return {
            spec.label: alternate(
                bench, spec, {"api": (api, True), "baseline": (baseline, False)}, bench.args.rounds
            )
            for spec in bench.specs
        }
    finally:
        baseline.stop()
        flush_redis()


def _pair(bench: Bench, servers: dict[str, IngestServer]) -> dict[str, Any]:
    """Two API servers, alternated on the first body size, then stopped."""
    try:
        sides = {name: (server, True) for name, server in servers.items()}
        return alternate(bench, bench.specs[0], sides, bench.args.rounds)
    finally:
        for server in servers.values():
            server.stop()
