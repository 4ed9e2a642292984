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
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.isolation import IsolatedEnv, isolated
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.memory import RssSampler
from tests.support.servers import IngestServer, Worker
from tests.support.speech import concatenate, duration_s, speak

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

SENTENCES = [
    "The quarterly review starts with the sales figures from the northern region.",
    "Revenue grew by eight percent while costs stayed flat compared with last year.",
    "The support team answered most tickets within four hours of their arrival.",
    "We agreed to hire two engineers for the data platform before the summer.",
    "Next week the design group will present the new onboarding screens.",
    "Please send your comments on the draft budget to Laura by Thursday evening.",
]


def make_recording(directory: Path, seconds: float, name: str) -> Path:
    """Speech of about `seconds`: espeak-ng sentences, repeated with sox."""
    base = directory / "sentences.wav"
    if not base.exists():
        parts = [speak(text, directory / f"s{i}.wav") for i, text in enumerate(SENTENCES)]
        concatenate(parts, base, gap_s=0.5, rate=16000)
    repeats = max(0, round(seconds / duration_s(base)) - 1)
    out = directory / f"{name}.wav"
    subprocess.run(["sox", str(base), str(out), "repeat", str(repeats)], check=True)
    return out


class Stack:
    """Ingest API and worker pools as processes, on a database and vhost of their own."""

    def __init__(self, env: IsolatedEnv, logs: Path, model: str, threads: int) -> None:
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=env.database_url,
            AMQP_URL=env.amqp_url,
            STORAGE_DIR=str(env.storage_dir),
            WHISPER_MODEL=model,
            TORCH_THREADS=str(threads),
            LOG_LEVEL="WARNING",
            OUTBOX_POLL_INTERVAL_S="0.2",
            PYANNOTE_METRICS_ENABLED="false",
        )
        self.logs = logs

    def __enter__(self) -> Stack:
        # The worker first: it starts up while the ingest API comes up and is waited for.
        self.worker = Worker(self.env, self.logs / "worker.log")
        try:
            self.ingest = IngestServer(self.env, self.logs / "ingest.log", healthy_within_s=60)
        except BaseException:
            self.worker.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.ingest.stop()
        self.worker.stop()

    @property
    def url(self) -> str:
        return self.ingest.url

    @property
    def worker_pid(self) -> int:
        return self.worker.process.pid

    def run_job(self, path: Path, timeout_s: float) -> tuple[float, dict[str, Any]]:
        """Upload `path`, wait for the job to finish; wall time and the job."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            started = time.perf_counter()
            job_id = upload(client, path, language="en")
            job = wait_for_job(client, job_id, timeout_s=timeout_s, poll_s=0.2)
            return time.perf_counter() - started, job


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def transcript_ready_s(job: dict[str, Any]) -> float:
    """From the job's creation to its transcript being stitched (server clock).

    The comparable span to a bare transcribe: the stages after it (diarize, analyze,
    notify) are work bare whisper does not do, reported apart in `stage_seconds`.
    """
    transcribe = stage(job, "transcribe")
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
        with (
            isolated(work / "storage", kind="bench") as env,
            Stack(env, work, args.model, args.threads) as stack,
        ):
            stack.run_job(warm, 600)  # loads the model, compiles numba
            for round_no in range(args.rounds):
                for path in files:
                    # Each file's bare run right before its pipeline run, so that both
                    # sides of a ratio see the same machine (it may be shared).
                    load_before = os.getloadavg()[0]
                    bare = bare_transcribe(args.model, args.threads, [path], warm)
                    with RssSampler(stack.worker_pid, 0.2, tree=True) as rss:
                        wall, job = stack.run_job(path, 3600)
                    assert job["status"] == "completed", job
                    to_transcript = transcript_ready_s(job)
                    row = {
                        "round": round_no + 1,
                        "file": path.name,
                        "audio_s": round(duration_s(path), 1),
                        "pipeline_to_transcript_s": round(to_transcript, 2),
                        "pipeline_total_s": round(wall, 2),
                        "bare_whisper_s": round(bare[path.name], 2),
                        "overhead_ratio": round(to_transcript / bare[path.name], 3),
                        "stage_seconds": stage_seconds(job),
                        "worker_peak_rss_mb": round(rss.peak_kib / 1024),
                        "load_avg_1m_before": round(load_before, 2),
                    }
                    results["comparisons"].append(row)
                    print(json.dumps(row), flush=True)
            if args.long_minutes:
                long_file = make_recording(work, args.long_minutes * 60, "long")
                with RssSampler(stack.worker_pid, 0.2, tree=True) as rss:
                    wall, job = stack.run_job(long_file, 4 * 3600)
                document = httpx.get(f"{stack.url}/v1/jobs/{job['id']}/result", timeout=60).json()
                results["long"] = {
                    "audio_s": round(duration_s(long_file), 1),
                    "status": job["status"],
                    "chunks": (job.get("audio") or {}).get("chunks"),
                    "pipeline_s": round(wall, 1),
                    "real_time_factor": round(wall / duration_s(long_file), 3),
                    "stage_seconds": stage_seconds(job),
                    "speakers_found": len(document.get("speakers") or []),
                    "warnings": document.get("warnings"),
                    "worker_peak_rss_mb": round(rss.peak_kib / 1024),
                    "worker_rss_mb_per_minute": [
                        round(kib / 1024) for kib in rss.per_minute_peak_kib()
                    ],
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
