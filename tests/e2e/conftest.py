"""Both services as real processes, with real ffmpeg and Whisper weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


#: Webhook receivers in these tests listen on loopback, which the SSRF guard refuses.
LOOPBACK = "127.0.0.0/8,::1/128"


@pytest.fixture(scope="module")
def webhook_ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    """The API with webhooks to loopback allowed."""
    env = isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2", WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    server = IngestServer(env, tmp_path_factory.mktemp("logs") / "ingest-webhooks.log")
    yield server
    server.stop()


def start_worker(env: IsolatedEnv, log: Path, **extra: str) -> Worker:
    return Worker(worker_env(env, **extra), log)
