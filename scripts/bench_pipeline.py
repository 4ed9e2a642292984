"""Pipeline benchmark: end-to-end wall time against bare whisper, and worker memory.

For generated recordings of 60 s and 10 min it measures, side by side in one run:
  - the time from upload to the stitched transcript through the real services (ingest
    API and worker pools as processes, on a database and RabbitMQ vhost of its own),
    and the total to `completed` (diarize, analyze and notify included), and
  - the wall time of a bare in-process `model.transcribe` of the same file with the same
    model, settings and thread count,
and prints their ratio (the pipeline's overhead). Both sides are warmed up first (model
loaded, numba compiled), as a running service would be.

Then it runs a long recording (default 2 h) through the pipeline and samples the resident
memory of every worker process, to show that the peak is set by the model and the chunk
size, not by the recording's length.

Results go to a JSON file (default bench/pipeline.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("BENCH_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")

SENTENCES = [
    "The quarterly review starts with the sales figures from the northern region.",
    "Revenue grew by eight percent while costs stayed flat compared with last year.",
    "The support team answered most tickets within four hours of their arrival.",
    "We agreed to hire two engineers for the data platform before the summer.",
    "Next week the design group will present the new onboarding screens.",
    "Please send your comments on the draft budget to Laura by Thursday evening.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_recording(directory: Path, seconds: float, name: str) -> Path:
    """Speech of about `seconds`: espeak-ng sentences, repeated with sox."""
    base = directory / "sentences.wav"
    if not base.exists():
        parts = []
        for i, text in enumerate(SENTENCES):
            part = directory / f"s{i}.wav"
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(part), text], check=True
            )
            padded = directory / f"s{i}p.wav"
            subprocess.run(
                ["sox", str(part), "-r", "16000", "-c", "1", str(padded), "pad", "0", "0.5"],
                check=True,
            )
            parts.append(str(padded))
        subprocess.run(["sox", *parts, str(base)], check=True)
    unit = float(
        subprocess.run(["soxi", "-D", str(base)], capture_output=True, text=True, check=True).stdout
    )
    repeats = max(0, round(seconds / unit) - 1)
    out = directory / f"{name}.wav"
    subprocess.run(["sox", str(base), str(out), "repeat", str(repeats)], check=True)
    return out


def duration(path: Path) -> float:
    return float(
        subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout
    )


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


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


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples the largest RSS of any single process in a tree, every 200 ms."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_mb = 0.0
        #: The peak of each minute since the sampler started: the shape of memory over time.
        self.per_minute_mb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.2):
            now = max((rss_mb(pid) for pid in tree_pids(self.root)), default=0.0)
            self.peak_mb = max(self.peak_mb, now)
            minute = int((time.monotonic() - started) // 60)
            while len(self.per_minute_mb) <= minute:
                self.per_minute_mb.append(0.0)
            self.per_minute_mb[minute] = max(self.per_minute_mb[minute], now)


class Stack:
    """Ingest API and worker pools as processes, isolated in their own db and vhost."""

    def __init__(self, workdir: Path, model: str, threads: int) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.db = f"audio_bench_{suffix}"
        self.vhost = f"audio-bench-{suffix}"
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=f"{PG_ADMIN.rsplit('/', 1)[0]}/{self.db}",
            AMQP_URL=f"{AMQP_BASE}/{self.vhost}",
            STORAGE_DIR=str(workdir / "storage"),
            INGEST_PORT=str(self.port),
            WHISPER_MODEL=model,
            TORCH_THREADS=str(threads),
            LOG_LEVEL="WARNING",
            OUTBOX_POLL_INTERVAL_S="0.2",
            PYANNOTE_METRICS_ENABLED="false",
        )
        self.logs = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Stack:
        asyncio.run(admin(f'CREATE DATABASE "{self.db}"'))
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
        for module, log in (("ingest_service", "ingest.log"), ("processing_service", "worker.log")):
            with (self.logs / log).open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [PY, "-m", module],
                        cwd=REPO,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("ingest did not start")

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], check=False)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def worker_pid(self) -> int:
        return self.procs[1].pid

    def run_job(self, path: Path, timeout_s: float) -> tuple[float, dict[str, Any]]:
        """Upload `path`, wait for the job to finish; wall time and the job."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            started = time.perf_counter()
            with path.open("rb") as f:
                response = client.post(
                    "/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data={"language": "en"}
                )
            response.raise_for_status()
            job_id = response.json()["id"]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in {"completed", "failed"}:
                    return time.perf_counter() - started, job
                time.sleep(0.2)
        raise TimeoutError(f"job {job_id} did not finish in {timeout_s} s")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def transcript_ready_s(job: dict[str, Any]) -> float:
    """From the job's creation to its transcript being stitched (server clock).

    The comparable span to a bare transcribe: the stages after it (diarize, analyze,
    notify) are work bare whisper does not do, reported apart in `stage_seconds`.
    """
    transcribe = next(s for s in job["stages"] if s["name"] == "transcribe")
    return (_at(transcribe["finished_at"]) - _at(job["created_at"])).total_seconds()


def stage_seconds(job: dict[str, Any]) -> dict[str, float]:
    return {
        s["name"]: round((_at(s["finished_at"]) - _at(s["started_at"])).total_seconds(), 2)
        for s in job["stages"]
        if s["started_at"] and s["finished_at"]
    }


def bare_transcribe(model: str, threads: int, paths: list[Path], warmup: Path) -> dict[str, float]:
    """Whisper in a fresh process, no services: the worker's own transcription call."""
    code = f"""
import json, sys, time
from pathlib import Path
from processing_service.runtime.config import ModelSettings, get_settings
from processing_service.transcribe.whisper import WhisperTranscriber
cache_dir = get_settings().models.cache_dir
transcribe = WhisperTranscriber(ModelSettings(cache_dir, {model!r}, {threads}))
def run(p):
    t = time.perf_counter()
    transcribe(Path(p), None, 0.0)
    return time.perf_counter() - t
run({str(warmup)!r})
print(json.dumps({{p: run(p) for p in sys.argv[1:]}}))
"""
    out = subprocess.run(
        [PY, "-c", code, *map(str, paths)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {Path(k).name: v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/pipeline.json")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--long-minutes", type=float, default=120, help="0 skips the long run")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of each comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        warm = make_recording(work, 10, "warmup")
        files = [make_recording(work, 60, "60s"), make_recording(work, 600, "10min")]
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip(),
            "model": args.model,
            "torch_threads": args.threads,
            "comparisons": [],
        }
        with Stack(work, args.model, args.threads) as stack:
            stack.run_job(warm, 600)  # loads the model, compiles numba
            for round_no in range(args.rounds):
                for path in files:
                    # Each file's bare run right before its pipeline run, so that both
                    # sides of a ratio see the same machine (it may be shared).
                    load_before = os.getloadavg()[0]
                    bare = bare_transcribe(args.model, args.threads, [path], warm)
                    with RssSampler(stack.worker_pid) as rss:
                        wall, job = stack.run_job(path, 3600)
                    assert job["status"] == "completed", job
                    to_transcript = transcript_ready_s(job)
                    row = {
                        "round": round_no + 1,
                        "file": path.name,
                        "audio_s": round(duration(path), 1),
                        "pipeline_to_transcript_s": round(to_transcript, 2),
                        "pipeline_total_s": round(wall, 2),
                        "bare_whisper_s": round(bare[path.name], 2),
                        "overhead_ratio": round(to_transcript / bare[path.name], 3),
                        "stage_seconds": stage_seconds(job),
                        "worker_peak_rss_mb": round(rss.peak_mb),
                        "load_avg_1m_before": round(load_before, 2),
                    }
                    results["comparisons"].append(row)
                    print(json.dumps(row), flush=True)
            if args.long_minutes:
                long_file = make_recording(work, args.long_minutes * 60, "long")
                with RssSampler(stack.worker_pid) as rss:
                    wall, job = stack.run_job(long_file, 4 * 3600)
                document = httpx.get(f"{stack.url}/v1/jobs/{job['id']}/result", timeout=60).json()
                results["long"] = {
                    "audio_s": round(duration(long_file), 1),
                    "status": job["status"],
                    "chunks": (job.get("audio") or {}).get("chunks"),
                    "pipeline_s": round(wall, 1),
                    "real_time_factor": round(wall / duration(long_file), 3),
                    "stage_seconds": stage_seconds(job),
                    "speakers_found": len(document.get("speakers") or []),
                    "warnings": document.get("warnings"),
                    "worker_peak_rss_mb": round(rss.peak_mb),
                    "worker_rss_mb_per_minute": [round(x) for x in rss.per_minute_mb],
                }
                print(json.dumps(results["long"]), flush=True)
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\nfile      audio_s  to_transcript_s  bare_s  ratio  total_s  worker_peak_MB")
    for r in results["comparisons"]:
        print(
            f"{r['file']:<9} {r['audio_s']:>7} {r['pipeline_to_transcript_s']:>16}"
            f" {r['bare_whisper_s']:>7} {r['overhead_ratio']:>6} {r['pipeline_total_s']:>8}"
            f" {r['worker_peak_rss_mb']:>15}"
        )
    if "long" in results:
        lr = results["long"]
        print(
            f"long: {lr['audio_s']} s of audio in {lr['chunks']} chunks, {lr['pipeline_s']} s,"
            f" worker peak {lr['worker_peak_rss_mb']} MB"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
