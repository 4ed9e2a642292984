"""The measured runs: the server started with the benchmark's settings, a wrk load run
with RSS and CPU accounting, and the streamed large upload."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from scripts.bench_ingest import GIB, KIB, MIB
from scripts.bench_ingest.bodies import make_big_wav, sha256_file
from scripts.bench_ingest.cpu import CpuAccount, machine_busy_cores_pct
from scripts.bench_ingest.load import LoadSpec, run_wrk, stream_raw_upload
from scripts.bench_ingest.relay import relay_stats
from tests.support.isolation import IsolatedEnv
from tests.support.memory import RssSampler, read_status_kib, reset_peak_rss
from tests.support.servers import IngestServer


class Server(Protocol):
    """What a measured run needs of a server: this API or the baseline."""

    url: str
    port: int
    process: subprocess.Popen[bytes]


#: Free disk kept on top of what a run may write (uploads are kept until the end).
RESERVE_BYTES = 2 * GIB
#: Upload rate assumed when estimating how much a run may write.
RATE_FOR_DISK_ESTIMATE = 500


def start_ingest(
    env: IsolatedEnv,
    log_path: Path,
    *,
    fsync: bool,
    log_level: str,
    root: Path,
    processes: int = 1,
) -> IngestServer:
    """`python -m ingest_service serve` from the tree `root`, with the benchmark's settings."""
    environ = {
        **os.environ,
        "INGEST_PROCESSES": str(processes),
        "DATABASE_URL": env.database_url,
        "AMQP_URL": env.amqp_url,
        "STORAGE_DIR": str(env.storage_dir),
        "INGEST_FSYNC_UPLOADS": "true" if fsync else "false",
        "LOG_LEVEL": log_level,
        "LOG_FORMAT": "json",
    }
    with log_path.open("ab") as log:
        log.write(f"\n==== ingest fsync={fsync} processes={processes}\n".encode())
    return IngestServer(environ, log_path, cwd=root, healthy_within_s=60)


def rss_summary(rss: RssSampler) -> dict[str, float]:
    values = [kib for _, kib in rss.samples] or [0]
    return {
        "rss_start_mib": round(values[0] / KIB, 1),
        "rss_peak_mib": round(max(values) / KIB, 1),
        "rss_end_mib": round(values[-1] / KIB, 1),
        "rss_samples": len(values),
    }


def make_room(workdir: Path, storage_dir: Path, needed_bytes: int) -> bool:
    """Remove stored uploads only when the disk could not take `needed_bytes` more.

    Uploads are otherwise kept until the end: deleting thousands of files makes the next
    file creations on the same file system far dearer (ext4 without a journal, as on this
    project's machines, skips recently freed inodes: measured 25 us -> 600 us per create),
    which would charge the benchmark's own clean-up to the server. True if it removed any.
    """
    stat = os.statvfs(workdir)
    if stat.f_bavail * stat.f_frsize >= needed_bytes + RESERVE_BYTES:
        return False
    uploads = storage_dir / "uploads"
    if uploads.exists():
        shutil.rmtree(uploads)
    return True


@dataclass
class Bench:
    """Everything one benchmark invocation needs."""

    args: argparse.Namespace
    wrk: str
    lua: Path
    env: IsolatedEnv
    workdir: Path
    log_path: Path
    specs: list[LoadSpec] = field(default_factory=list)

    def load_run(
        self, server: Server, spec: LoadSpec, *, fsync: bool, relay: bool = True
    ) -> dict[str, Any]:
        """Warm up, then one measured wrk run with RSS and CPU accounting (and, for this
        API, the outbox relay's lag and drain; `relay=False` for the baseline)."""
        if spec.warmup_s:
            run_wrk(self.wrk, self.lua, server.url, spec, spec.warmup_s)
        if relay:
            relay_stats(self.env.database_url, datetime.now(UTC), self.args.drain_timeout)
        seconds_planned = spec.duration_s + spec.warmup_s
        cleared = make_room(
            self.workdir,
            self.env.storage_dir,
            spec.file_bytes * RATE_FOR_DISK_ESTIMATE * seconds_planned,
        )
        background = machine_busy_cores_pct()
        hwm_reset = reset_peak_rss(server.process.pid)
        since = datetime.now(UTC)
        cpu = CpuAccount(server.process.pid)
        with RssSampler(server.process.pid, tree=True) as rss:
            cpu.start()
            result = run_wrk(self.wrk, self.lua, server.url, spec, spec.duration_s)
            cpu_used = cpu.stop()
        status = read_status_kib(server.process.pid)
        relayed = (
            relay_stats(self.env.database_url, since, self.args.drain_timeout) if relay else None
        )
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
            **rss_summary(rss),
            "vmhwm_mib": round(status.get("VmHWM", 0) / KIB, 1),
            "vmhwm_is_per_run": hwm_reset,
            "cpu": {**cpu_used, "background_before_run_cores_pct": background},
            "relay": relayed,
            "uploads_removed_before_run_for_disk_space": cleared,
        }

    def big_upload(self, server: IngestServer) -> dict[str, Any]:
        """Stream a sparse 1 GiB WAV with sendfile; the server's RSS sampled meanwhile."""
        size = self.args.big_bytes
        path = self.workdir / "big.wav"
        make_big_wav(path, size)
        expected = sha256_file(path)
        make_room(self.workdir, self.env.storage_dir, 2 * size)
        reset_peak_rss(server.process.pid)
        before = read_status_kib(server.process.pid).get("VmRSS", 0)
        with RssSampler(server.process.pid) as rss:
            answer = stream_raw_upload(server.port, path, size)
        after = read_status_kib(server.process.pid)
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
            "rss_peak_mib": round(rss.peak_kib / KIB, 1),
            "rss_after_mib": round(after.get("VmRSS", 0) / KIB, 1),
            "vmhwm_mib": round(after.get("VmHWM", 0) / KIB, 1),
            "rss_samples": len(rss.samples),
            "rss_trace_mib": [[round(t, 1), round(kib / KIB, 1)] for t, kib in rss.samples[::5]],
        }
