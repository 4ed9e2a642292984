"""Benchmark of the ingest API: upload throughput, latency and memory -> a JSON results file.

`make bench-ingest` runs this. It sets up its own world and tears it down again:

1. a fresh Postgres database (`audio_bench_<hex>`) and RabbitMQ vhost (`audio-bench-<hex>`),
   a temporary storage directory, and the ingest service as a subprocess
   (`python -m ingest_service serve`) on a free loopback port;
2. for each file size (64 KiB and 1 MiB real WAV files: RIFF/WAVE header + 16-bit PCM),
   `wrk` (one thread, N keep-alive connections, a Lua script) sends multipart
   `POST /v1/jobs` for a fixed time after a short warm-up; every answer other than 202
   counts as an error. Meanwhile the ingest process's RSS is sampled every 100 ms and
   the CPU time of every process on the machine is accounted (ingest, Postgres, RabbitMQ,
   wrk, the rest), so the results say what the two cores were spent on. After each run
   the outbox relay is given time to publish the backlog, and its publish rate recorded.
   Stored uploads are kept until the end (see `make_room` for why);
3. a 1 GiB WAV (header + sparse zeros) is streamed as a raw `audio/wav` body with
   `sendfile`, sampling the server's RSS every 100 ms, to show that memory stays flat;
   the answer must be 202 and its sha256 must match the file's;
4. steps 1-2 again with `INGEST_FSYNC_UPLOADS=false`, to put a number on fsync's cost;
5. everything (plus the machine and the git commit) goes to `--out` (JSON), and a table
   to stdout. `--profile` also records a py-spy profile of the server under each load, in
   extra runs (py-spy must be installed: `.venv/bin/pip install py-spy`).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("BENCH_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SAMPLE_RATE = 16_000
WAV_HEADER_BYTES = 44
BOUNDARY = "bench-ingest-boundary-7d4f2a9c"
RESULT_MARKER = "BENCH_RESULT "
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Free disk kept on top of what a run may write (uploads are kept until the end).
RESERVE_BYTES = 2 * GIB
#: Upload rate assumed when estimating how much a run may write.
RATE_FOR_DISK_ESTIMATE = 500

#: The wrk script: multipart POST of a prepared body, every non-202 answer counted.
WRK_LUA = r"""
-- Written by scripts/bench_ingest.py: POST the prepared multipart body, count non-202.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non202 = 0
   last_bad_status = 0
end

function response(status, headers, body)
   if status ~= 202 then
      non202 = non202 + 1
      last_bad_status = status
   end
end

function done(summary, latency, requests)
   local bad, bad_status = 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("non202")
      local s = thread:get("last_bad_status")
      if s ~= 0 then bad_status = s end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes_read": %d, "non_202": %d,'
      .. ' "last_bad_status": %d, "connect_errors": %d, "read_errors": %d,'
      .. ' "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
      .. ' "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, bad, bad_status, e.connect,
      e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
"""


# --- set-up ------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of `wrk`; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            "bench-ingest needs the load generator wrk: install it (Debian: apt-get install wrk)"
        )
    print("installing wrk (apt-get install wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


def wav_header(data_bytes: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header for 16 kHz mono 16-bit PCM."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_file_bytes(total_bytes: int) -> bytes:
    """A valid WAV file of exactly `total_bytes`: a 440 Hz tone."""
    samples = (total_bytes - WAV_HEADER_BYTES) // 2
    tone = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(samples))
    )
    data = tone.tobytes() + b"\0" * ((total_bytes - WAV_HEADER_BYTES) % 2)
    return wav_header(len(data)) + data


def multipart_body(audio: bytes) -> bytes:
    """A multipart/form-data body with the audio as its `file` part."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


def make_big_wav(path: Path, total_bytes: int) -> None:
    """A WAV of `total_bytes`: a real header, then sparse zeros (silence)."""
    with path.open("wb") as f:
        f.write(wav_header(total_bytes - WAV_HEADER_BYTES))
        f.truncate(total_bytes)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- database and broker -----------------------------------------------------------------


async def _pg(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def pg(url: str, sql: str, *args: Any) -> Any:
    """Run one statement on its own connection; return the rows."""
    return asyncio.run(_pg(url, sql, *args))


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Isolated:
    """The benchmark's own database, vhost and storage directory."""

    suffix: str
    database_url: str
    amqp_url: str
    workdir: Path

    @property
    def db_name(self) -> str:
        return f"audio_bench_{self.suffix}"

    @property
    def vhost(self) -> str:
        return f"audio-bench-{self.suffix}"

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "storage"


@contextlib.contextmanager
def isolated(workdir: Path) -> Iterator[Isolated]:
    """Create the database and vhost; drop both on the way out."""
    suffix = uuid.uuid4().hex[:12]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    env = Isolated(
        suffix=suffix,
        database_url=f"{base}/audio_bench_{suffix}",
        amqp_url=f"{AMQP_BASE}/{quote(f'audio-bench-{suffix}', safe='')}",
        workdir=workdir,
    )
    pg(PG_ADMIN_URL, f'CREATE DATABASE "{env.db_name}"')
    try:
        rabbitmqctl("add_vhost", env.vhost)
        try:
            rabbitmqctl("set_permissions", "-p", env.vhost, "guest", ".*", ".*", ".*")
            yield env
        finally:
            rabbitmqctl("delete_vhost", env.vhost)
    finally:
        pg(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{env.db_name}" WITH (FORCE)')


# --- the server and what it uses ---------------------------------------------------------


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


class RssSampler:
    """Samples a process's VmRSS in a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = read_status_kib(self.pid).get("VmRSS")
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

    def summary(self) -> dict[str, float]:
        values = [kib for _, kib in self.samples] or [0]
        return {
            "rss_start_mib": round(values[0] / KIB, 1),
            "rss_peak_mib": round(max(values) / KIB, 1),
            "rss_end_mib": round(values[-1] / KIB, 1),
            "rss_samples": len(values),
        }


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
        self._before: dict[int, tuple[str, int]] = {}
        self._machine_before = (0, 0)
        self._children_before = 0.0
        self._main_before = 0
        self._cpu_line_before: list[int] = []
        self._t0 = 0.0

    def _group(self, pid: int, comm: str) -> str:
        if pid == self.server_pid:
            return "ingest"
        if pid == os.getpid():
            return "bench_script"
        if comm.startswith("postgres"):
            return "postgres"
        if comm.startswith(("beam", "erl", "epmd", "inet_gethost")):
            return "rabbitmq"
        return "other"

    def start(self) -> None:
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


class IngestProcess:
    """`python -m ingest_service serve` with the benchmark's environment."""

    def __init__(
        self, env: Isolated, log_path: Path, *, fsync: bool, log_level: str, root: Path
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "DATABASE_URL": env.database_url,
            "AMQP_URL": env.amqp_url,
            "STORAGE_DIR": str(env.storage_dir),
            "INGEST_HOST": "127.0.0.1",
            "INGEST_PORT": str(self.port),
            "INGEST_FSYNC_UPLOADS": "true" if fsync else "false",
            "LOG_LEVEL": log_level,
            "LOG_FORMAT": "json",
        }
        self._log = log_path.open("ab")
        self._log.write(f"\n==== ingest fsync={fsync} log_level={log_level}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [str(REPO_ROOT / ".venv/bin/python"), "-m", "ingest_service", "serve"],
            cwd=root,
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid
        self._wait_healthy(log_path)

    def _wait_healthy(self, log_path: Path, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"ingest exited with {self.process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"ingest did not answer /healthz within {timeout_s} s; see {log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --- measurements ------------------------------------------------------------------------


@dataclass
class LoadSpec:
    """One wrk run: which body, how long, how many connections."""

    label: str
    file_bytes: int
    body_path: Path
    duration_s: int
    warmup_s: int
    connections: int
    threads: int


def run_wrk(wrk: str, lua: Path, url: str, spec: LoadSpec, duration_s: int) -> dict[str, Any]:
    """Run wrk once; return what the Lua `done` hook printed."""
    env = {
        **os.environ,
        "BENCH_BODY": str(spec.body_path),
        "BENCH_CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
    }
    command = [
        wrk,
        f"--threads={spec.threads}",
        f"--connections={spec.connections}",
        f"--duration={duration_s}s",
        "--timeout=60s",
        f"--script={lua}",
        f"{url}/v1/jobs",
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=duration_s + 120
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            return result
    raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def outbox_state(database_url: str) -> tuple[int, int]:
    """(unpublished, total) outbox rows."""
    rows = pg(
        database_url,
        "SELECT count(*) FILTER (WHERE published_at IS NULL) AS waiting, count(*) AS total"
        " FROM outbox",
    )
    return int(rows[0]["waiting"]), int(rows[0]["total"])


def relay_stats(database_url: str, since: datetime, timeout_s: float) -> dict[str, Any]:
    """Wait for the relay to publish the backlog; its publish rate for rows since `since`."""
    waiting, _ = outbox_state(database_url)
    backlog_at_end = waiting
    started = time.monotonic()
    while waiting and time.monotonic() - started < timeout_s:
        time.sleep(0.25)
        waiting, _ = outbox_state(database_url)
    rows = pg(
        database_url,
        "SELECT count(*) AS n, min(published_at) AS first, max(published_at) AS last"
        " FROM outbox WHERE created_at >= $1 AND published_at IS NOT NULL",
        since,
    )
    n, first, last = int(rows[0]["n"]), rows[0]["first"], rows[0]["last"]
    span = (last - first).total_seconds() if n > 1 else 0.0
    return {
        "backlog_at_end_of_load": backlog_at_end,
        "drain_s": round(time.monotonic() - started, 2),
        "still_waiting": waiting,
        "published": n,
        "publish_rate_per_s": round(n / span, 1) if span > 0 else None,
    }


def make_room(env: Isolated, needed_bytes: int) -> bool:
    """Remove stored uploads only when the disk could not take `needed_bytes` more.

    Uploads are otherwise kept until the end: deleting thousands of files makes the next
    file creations on the same file system far dearer (ext4 without a journal, as on this
    project's machines, skips recently freed inodes: measured 25 us -> 600 us per create),
    which would charge the benchmark's own clean-up to the server. True if it removed any.
    """
    stat = os.statvfs(env.workdir)
    if stat.f_bavail * stat.f_frsize >= needed_bytes + RESERVE_BYTES:
        return False
    uploads = env.storage_dir / "uploads"
    if uploads.exists():
        shutil.rmtree(uploads)
    return True


@dataclass
class Bench:
    """Everything one benchmark invocation needs."""

    args: argparse.Namespace
    wrk: str
    lua: Path
    env: Isolated
    log_path: Path
    specs: list[LoadSpec] = field(default_factory=list)

    def load_run(self, server: IngestProcess, spec: LoadSpec, *, fsync: bool) -> dict[str, Any]:
        """Warm up, then one measured wrk run with RSS and CPU accounting."""
        if spec.warmup_s:
            run_wrk(self.wrk, self.lua, server.url, spec, spec.warmup_s)
        relay_stats(self.env.database_url, datetime.now(UTC), self.args.drain_timeout)
        seconds_planned = spec.duration_s + spec.warmup_s
        cleared = make_room(self.env, spec.file_bytes * RATE_FOR_DISK_ESTIMATE * seconds_planned)
        background = machine_busy_cores_pct()
        hwm_reset = reset_peak_rss(server.pid)
        since = datetime.now(UTC)
        cpu = CpuAccount(server.pid)
        with RssSampler(server.pid) as rss:
            cpu.start()
            result = run_wrk(self.wrk, self.lua, server.url, spec, spec.duration_s)
            cpu_used = cpu.stop()
        status = read_status_kib(server.pid)
        relay = relay_stats(self.env.database_url, since, self.args.drain_timeout)
        seconds = result["duration_us"] / 1e6
        errors = (
            result["non_202"]
            + result["connect_errors"]
            + result["read_errors"]
            + result["write_errors"]
            + result["timeouts"]
        )
        ok = result["requests"] - result["non_202"]
        return {
            "size": spec.label,
            "file_bytes": spec.file_bytes,
            "request_bytes": spec.body_path.stat().st_size,
            "fsync": fsync,
            "log_level": self.args.log_level,
            "connections": spec.connections,
            "duration_s": round(seconds, 2),
            "requests": result["requests"],
            "accepted_202": ok,
            "errors": errors,
            "error_detail": {
                k: result[k]
                for k in (
                    "non_202",
                    "last_bad_status",
                    "connect_errors",
                    "read_errors",
                    "write_errors",
                    "timeouts",
                )
            },
            "uploads_per_s": round(ok / seconds, 1),
            # CPU the server spent per accepted upload: steadier than uploads/s on a
            # machine shared with other work.
            "ingest_cpu_ms_per_upload": round(1000 * cpu_used["ingest_cpu_s"] / max(ok, 1), 3),
            "main_thread_cpu_ms_per_upload": round(
                1000 * cpu_used["ingest_main_thread_cpu_s"] / max(ok, 1), 3
            ),
            "upload_mib_per_s": round(ok * spec.file_bytes / MIB / seconds, 1),
            "latency_ms": {
                "p50": round(result["p50_us"] / 1000, 2),
                "p90": round(result["p90_us"] / 1000, 2),
                "p99": round(result["p99_us"] / 1000, 2),
                "max": round(result["max_us"] / 1000, 2),
                "mean": round(result["mean_us"] / 1000, 2),
            },
            **rss.summary(),
            "vmhwm_mib": round(status.get("VmHWM", 0) / KIB, 1),
            "vmhwm_is_per_run": hwm_reset,
            "cpu": {**cpu_used, "background_before_run_cores_pct": background},
            "relay": relay,
            "uploads_removed_before_run_for_disk_space": cleared,
        }

    def profile_run(self, server: IngestProcess, spec: LoadSpec, *, fsync: bool) -> dict[str, Any]:
        """A separate run with py-spy attached; its samples aggregated into top frames."""
        py_spy = shutil.which("py-spy") or str(REPO_ROOT / ".venv/bin/py-spy")
        if not Path(py_spy).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        key = f"{spec.label}-fsync-{'on' if fsync else 'off'}".lower()
        raw = self.log_path.with_name(f"{self.log_path.stem}-profile-{key}.log")
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
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
        result = self.load_run(server, spec, fsync=fsync)
        spy.wait(timeout=60)
        result["profile"] = summarise_profile(raw) if raw.exists() else None
        result["profile_file"] = str(raw)
        return result

    def big_upload(self, server: IngestProcess) -> dict[str, Any]:
        """Stream a sparse 1 GiB WAV with sendfile; the server's RSS sampled meanwhile."""
        size = self.args.big_bytes
        path = self.env.workdir / "big.wav"
        make_big_wav(path, size)
        expected = sha256_file(path)
        make_room(self.env, 2 * size)
        reset_peak_rss(server.pid)
        before = read_status_kib(server.pid).get("VmRSS", 0)
        with RssSampler(server.pid) as rss:
            answer = stream_raw_upload(server.port, path, size)
        after = read_status_kib(server.pid)
        path.unlink()
        return {
            "bytes": size,
            "status": answer["status"],
            "sha256_match": answer["body"].get("sha256") == expected,
            "size_match": answer["body"].get("size_bytes") == size,
            "send_s": round(answer["send_s"], 2),
            "total_s": round(answer["total_s"], 2),
            "answer_after_body_s": round(answer["total_s"] - answer["send_s"], 2),
            "mib_per_s": round(size / MIB / answer["total_s"], 1),
            "rss_before_mib": round(before / KIB, 1),
            "rss_peak_mib": round(max([kib for _, kib in rss.samples] or [0]) / KIB, 1),
            "rss_after_mib": round(after.get("VmRSS", 0) / KIB, 1),
            "vmhwm_mib": round(after.get("VmHWM", 0) / KIB, 1),
            "rss_samples": len(rss.samples),
            "rss_trace_mib": [[round(t, 1), round(kib / KIB, 1)] for t, kib in rss.samples[::5]],
        }


def stream_raw_upload(port: int, path: Path, size: int) -> dict[str, Any]:
    """POST `path` as a raw audio/wav body with sendfile; parse the answer."""
    head = (
        "POST /v1/jobs?filename=big.wav HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: audio/wav\r\n"
        f"Content-Length: {size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(head)
        with path.open("rb") as f:
            sock.sendfile(f)
        sent = time.monotonic()
        received = bytearray()
        while data := sock.recv(64 * KIB):
            received += data
    finished = time.monotonic()
    header_blob, _, body = bytes(received).partition(b"\r\n\r\n")
    status = int(header_blob.split(b" ", 2)[1])
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {"raw": body[:500].decode(errors="replace")}
    return {
        "status": status,
        "body": parsed,
        "send_s": sent - started,
        "total_s": finished - started,
    }


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


# --- reporting ---------------------------------------------------------------------------


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


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/ingest.json")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--sizes", default="64KiB,1MiB", help="comma-separated WAV file sizes (KiB/MiB)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="measured runs per size")
    parser.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL")
    parser.add_argument(
        "--big-bytes", type=int, default=GIB, help="size of the streamed upload (0: skip)"
    )
    parser.add_argument("--no-fsync-compare", action="store_true", help="skip the fsync=false")
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
            "repeat": args.repeat,
            "server": "python -m ingest_service serve (1 uvicorn process, uvloop, httptools)",
            "request": "multipart POST /v1/jobs, keep-alive, one 'file' part",
            "server_root": str(args.server_root),
        },
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, isolated(Path(tmp)) as env:
        workdir = Path(tmp)
        results["machine"]["storage_filesystem"] = filesystem_of(workdir)
        lua = workdir / "upload.lua"
        lua.write_text(WRK_LUA)
        bench = Bench(args=args, wrk=wrk, lua=lua, env=env, log_path=log_path)
        for text in args.sizes.split(","):
            label, size = parse_size(text)
            body = workdir / f"body-{label}.bin"
            body.write_bytes(multipart_body(wav_file_bytes(size)))
            bench.specs.append(
                LoadSpec(
                    label, size, body, args.duration, args.warmup, args.connections, args.threads
                )
            )
        for fsync in (True,) if args.no_fsync_compare else (True, False):
            print(f"ingest with INGEST_FSYNC_UPLOADS={str(fsync).lower()}", flush=True)
            server = IngestProcess(
                env, log_path, fsync=fsync, log_level=args.log_level, root=args.server_root
            )
            try:
                for spec in bench.specs:
                    for _ in range(args.repeat):
                        run = bench.load_run(server, spec, fsync=fsync)
                        print(
                            f"  {spec.label}: {run['uploads_per_s']} uploads/s,"
                            f" p50 {run['latency_ms']['p50']} ms,"
                            f" p99 {run['latency_ms']['p99']} ms, {run['errors']} errors,"
                            f" RSS peak {run['rss_peak_mib']} MiB",
                            flush=True,
                        )
                        results["runs"].append(run)
                if fsync and args.big_bytes:
                    print(f"  streaming a {args.big_bytes / GIB:.2f} GiB raw upload", flush=True)
                    results["large_upload"] = bench.big_upload(server)
                for spec in bench.specs if args.profile else []:
                    print(f"  profiling the {spec.label} load with py-spy", flush=True)
                    key = f"{spec.label}_fsync_{'on' if fsync else 'off'}"
                    results.setdefault("profile", {})[key] = bench.profile_run(
                        server, spec, fsync=fsync
                    )
            finally:
                server.stop()
    results["fsync_ratio"] = fsync_ratios(results["runs"])
    peaks = [r["vmhwm_mib"] for r in results["runs"]]
    if "large_upload" in results:
        peaks.append(results["large_upload"]["vmhwm_mib"])
    results["server_peak_rss_mib"] = max(peaks, default=None)
    results["finished_at"] = datetime.now(UTC).isoformat()
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_summary(results)
    print(f"\nwritten to {args.out} (server log: {log_path})")
    failed = [r for r in results["runs"] if r["errors"]]
    big = results.get("large_upload")
    if failed or (big and (big["status"] != 202 or not big["sha256_match"])):
        print("FAILED: some uploads were not accepted (see errors above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
