"""Pipeline benchmark: end-to-end wall time against bare whisper, and worker memory.

For generated recordings of 60 s and 10 min it measures, side by side in one run:
  - the time from upload to the stitched transcript through the real services (ingest
    API and worker pools as processes, on a database and RabbitMQ vhost of its own),
    and the total to `completed` (diarize, analyze and notify included), and
  - the wall time of a bare in-process `model.transcribe` of the same file with the same
    model, settings and thread count,
and prints their ratio (the pipeline's overhead). Both sides are warmed up first (model
loaded, numba compiled), as a running service would be.

Then, side by side, a 10-minute generated meeting (3 voices) through three stacks: the
sequential chain as it ran before stages overlapped (one heavy process, one thread, all
torch threads: HEAVY_THREADS=1, TORCH_THREADS=cores), one heavy process with the default
layout (a thread per stage, the cores shared out) and two heavy processes (defaults).
Diarization runs alongside transcription in the last two; the ratios of their wall times
to the sequential chain's are what overlapping the stages buys.

Last, a long recording (default 6 h: every 30 min, 5 min of a 3-voice meeting, then
silence) through the pipeline with two heavy processes, sampling the resident memory of
the largest worker process each minute, to show that the peak is set by the model, the
chunk and the diarization block, not by the recording's length, and that it gets speakers.

Results go to a JSON file (default bench/pipeline.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.diarization_audio import long_conversation
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


def make_sparse_meetings(directory: Path, hours: float, every_s: float, speech_s: float) -> Path:
    """`hours` of audio: every `every_s`, `speech_s` of a 3-voice meeting, then silence."""
    meeting = long_conversation(directory / "meeting.wav", speech_s, num_speakers=3).wav
    padded = directory / "meeting-padded.wav"
    pad = max(0.0, every_s - duration_s(meeting))
    subprocess.run(["sox", str(meeting), str(padded), "pad", "0", f"{pad:.3f}"], check=True)
    repeats = max(0, round(hours * 3600 / every_s) - 1)
    out = directory / "sparse-long.wav"
    subprocess.run(["sox", str(padded), str(out), "repeat", str(repeats)], check=True)
    return out


class Stack:
    """Ingest API and worker pools as processes, on a database and vhost of their own.

    `threads` 0 leaves TORCH_THREADS to the supervisor (the CPUs shared out among the
    `heavy_processes`)."""

    def __init__(
        self, env: IsolatedEnv, logs: Path, model: str, threads: int, **extra: str
    ) -> None:
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
        self.env.update(extra)
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


def speaker_overlap(job: dict[str, Any]) -> dict[str, Any]:
    """When diarize ran against transcribe (server clock), from the job's stages."""
    transcribe, diarize = stage(job, "transcribe"), stage(job, "diarize")
    created = _at(job["created_at"])
    return {
        "transcribe_done_s": round((_at(transcribe["finished_at"]) - created).total_seconds(), 2),
        "diarize_started_s": round((_at(diarize["started_at"]) - created).total_seconds(), 2),
        "diarize_done_s": round((_at(diarize["finished_at"]) - created).total_seconds(), 2),
    }


def compare_with_bare(args: argparse.Namespace, work: Path, warm: Path) -> list[dict[str, Any]]:
    """The pipeline's time to the transcript against bare whisper, per file and round."""
    files = [make_recording(work, 60, "60s"), make_recording(work, 600, "10min")]
    rows = []
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
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def speakers_of(stack: Stack, job: dict[str, Any]) -> list[Any]:
    document = httpx.get(f"{stack.url}/v1/jobs/{job['id']}/result", timeout=60).json()
    return list(document.get("speakers") or [])


#: The layouts compared on one 10-minute job: name -> (torch threads, worker environment).
LAYOUTS: dict[str, tuple[int, dict[str, str]]] = {
    "sequential": (os.cpu_count() or 1, {"HEAVY_PROCESSES": "1", "HEAVY_THREADS": "1"}),
    "one_process": (0, {"HEAVY_PROCESSES": "1"}),
    "two_processes": (0, {"HEAVY_PROCESSES": "2"}),
}


def compare_heavy_processes(args: argparse.Namespace, work: Path, warm: Path) -> dict[str, Any]:
    """One 10-minute meeting through each layout, alternating, on warm stacks."""
    meeting = long_conversation(work / "meeting-10min.wav", 600, num_speakers=3, seed=7).wav
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stacks:
        started = {}
        for name, (threads, extra) in LAYOUTS.items():
            env = stacks.enter_context(isolated(work / f"storage-{name}", kind="bench"))
            logs = work / name
            logs.mkdir(exist_ok=True)
            started[name] = stacks.enter_context(Stack(env, logs, args.model, threads, **extra))
        for stack in started.values():
            for _ in range(4):  # deliveries alternate: every process loads both models
                stack.run_job(warm, 600)
        for round_no in range(args.rounds):
            for name, stack in started.items():
                load_before = os.getloadavg()[0]
                wall, job = stack.run_job(meeting, 3600)
                assert job["status"] == "completed", job
                row = {
                    "round": round_no + 1,
                    "layout": name,
                    "wall_s": round(wall, 2),
                    **speaker_overlap(job),
                    "stage_seconds": stage_seconds(job),
                    "speakers_found": len(speakers_of(stack, job)),
                    "load_avg_1m_before": round(load_before, 2),
                }
                runs.append(row)
                print(json.dumps(row), flush=True)
    medians = {
        name: statistics.median(r["wall_s"] for r in runs if r["layout"] == name)
        for name in LAYOUTS
    }
    return {
        "audio_s": round(duration_s(meeting), 1),
        "layouts": {
            name: extra | {"TORCH_THREADS": str(t)} for name, (t, extra) in LAYOUTS.items()
        },
        "runs": runs,
        "median_wall_s": medians,
        "ratio_to_sequential": {
            name: round(medians[name] / medians["sequential"], 3) for name in LAYOUTS
        },
    }


def run_long(args: argparse.Namespace, work: Path, warm: Path) -> dict[str, Any]:
    """The long sparse recording with two heavy processes, memory sampled throughout."""
    long_file = make_sparse_meetings(work, args.long_hours, 1800, args.long_speech_minutes * 60)
    with (
        isolated(work / "storage-long", kind="bench") as env,
        Stack(env, work, args.model, 0, HEAVY_PROCESSES="2") as stack,
    ):
        stack.run_job(warm, 600)
        with RssSampler(stack.worker_pid, 0.5, tree=True) as rss:
            wall, job = stack.run_job(long_file, 12 * 3600)
        document = httpx.get(f"{stack.url}/v1/jobs/{job['id']}/result", timeout=60).json()
    audio = duration_s(long_file)
    speech_s = duration_s(work / "meeting.wav")  # at the start of every 30 min
    words = [w for s in document.get("segments") or [] for w in s.get("words") or []]
    return {
        "audio_s": round(audio, 1),
        "recording": (
            f"every 30 min, {args.long_speech_minutes:g} min of a generated 3-voice meeting,"
            " then digital silence"
        ),
        "heavy_processes": 2,
        "status": job["status"],
        "chunks": (job.get("audio") or {}).get("chunks"),
        "pipeline_s": round(wall, 1),
        "real_time_factor": round(wall / audio, 3),
        "stage_seconds": stage_seconds(job),
        "speakers_found": len(document.get("speakers") or []),
        "words": len(words),
        "words_with_speaker": sum(1 for w in words if w.get("speaker")),
        # Words timed in the digital silence, a second clear of the meetings on both sides
        # (the first word of a meeting may start a little before it): hallucinated.
        "words_in_silence": [
            [w["word"], w["start"], w["end"]]
            for w in words
            if speech_s + 1.0 < w["start"] % 1800 < 1800 - 1.0
        ],
        "warnings": document.get("warnings"),
        "worker_peak_rss_mb": round(rss.peak_kib / 1024),
        "worker_rss_mb_per_minute": [round(kib / 1024) for kib in rss.per_minute_peak_kib()],
    }


SECTIONS = ("bare", "heavy", "long")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/pipeline.json")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, bare comparison")
    parser.add_argument("--long-hours", type=float, default=6)
    parser.add_argument("--long-speech-minutes", type=float, default=5, help="per 30 min")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of each comparison")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}"
    )
    args = parser.parse_args()
    sections = {name.strip() for name in args.only.split(",") if name.strip()}
    if not sections <= set(SECTIONS):
        parser.error(f"--only: unknown sections {sorted(sections - set(SECTIONS))}")

    # Sections not run keep their figures from the file, each with the commit it ran at.
    out = REPO / args.out
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    results.update(
        machine={"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        model=args.model,
        torch_threads=args.threads,
    )
    results.pop("commit", None)
    results.setdefault("commits", {}).update(dict.fromkeys(sections, commit))
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        warm = make_recording(work, 10, "warmup")
        if "bare" in sections:
            results["comparisons"] = compare_with_bare(args, work, warm)
        if "heavy" in sections:
            results["heavy_processes"] = compare_heavy_processes(args, work, warm)
            print(json.dumps(results["heavy_processes"]["ratio_to_sequential"]))
        if "long" in sections:
            results["long"] = run_long(args, work, warm)
            print(json.dumps(results["long"]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out} (sections: {', '.join(sorted(sections))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
