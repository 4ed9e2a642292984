"""Both services as real processes, with real ffmpeg and Whisper weights."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.models import MODEL_CACHE_DIR
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.speech import concatenate, speak

SHORT_TEXT = (
    "Good morning everyone. The quarterly budget review starts at ten o'clock tomorrow, "
    "and please bring your updated spending reports to the meeting."
)
LONG_PARTS = [
    "Welcome to the weekly planning meeting for the mobile application team.",
    "First, the login page redesign is finished and the new version passed every test.",
    "Second, customers reported that notifications arrive late on older phones.",
    "Maria will investigate the notification delay and report back next Tuesday.",
    "Third, we decided to move the public release from March to the middle of April.",
    "Finally, the support team needs two more people before the summer holidays begin.",
]

TERMINAL = {"completed", "failed", "cancelled"}


def worker_env(env: IsolatedEnv, **extra: str) -> dict[str, str]:
    settings = {
        "MODEL_CACHE_DIR": str(MODEL_CACHE_DIR),
        "WHISPER_MODEL": "tiny.en",
        "TORCH_THREADS": "2",
        # Low thresholds so that a ~40 s recording is chunked and stitched.
        "SPLIT_THRESHOLD_S": "20",
        "CHUNK_S": "12",
        "CHUNK_OVERLAP_S": "3",
        "RETRY_MIN_BACKOFF_MS": "300",
        "RETRY_MAX_BACKOFF_MS": "1500",
        "SPLIT_MAX_RETRIES": "3",
        "LIGHT_THREADS": "2",
        "PYANNOTE_METRICS_ENABLED": "false",
    }
    return env.environ(**(settings | extra))


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def short_speech(speech_dir: Path) -> Path:
    return speak(SHORT_TEXT, speech_dir / "short.wav")


@pytest.fixture(scope="session")
def long_speech(speech_dir: Path) -> Path:
    parts = [speak(text, speech_dir / f"long{i}.wav") for i, text in enumerate(LONG_PARTS)]
    return concatenate(parts, speech_dir / "long.wav", gap_s=0.6)


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    server = IngestServer(
        isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"),
        tmp_path_factory.mktemp("logs") / "ingest.log",
    )
    yield server
    server.stop()


def upload(client: httpx.Client, path: Path, **fields: str) -> str:
    with path.open("rb") as f:
        response = client.post("/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data=fields)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_for_job(
    client: httpx.Client, job_id: str, until: Any = None, timeout_s: float = 240
) -> dict[str, Any]:
    """Poll the job until `until(job)` holds (default: a terminal status)."""
    check = until or (lambda job: job["status"] in TERMINAL)
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if check(job):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s} s; last seen: {job}")


def stage(job: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in job["stages"] if s["name"] == name)
    return found


def start_worker(env: IsolatedEnv, log: Path, **extra: str) -> Worker:
    return Worker(worker_env(env, **extra), log)
