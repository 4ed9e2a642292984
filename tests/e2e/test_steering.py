"""Cancel, delete and follow real jobs: the API and a worker as processes, real models.

The worker runs one heavy process (transcribe and diarize), so a cancelled job that
kept it would hold up the next job: the tests measure how soon the next one starts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.events import JobFinished
from tests.e2e.conftest import LONG_PARTS, LOOPBACK, start_worker
from tests.support.job_events import (
    JOB_TABLES,
    bind_events_queue,
    consume,
    read_events,
    rows_of,
)
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.speech import duration_s, speak
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.models

#: Seconds within which a cancelled stage lets go of its worker: one progress check
#: (PROGRESS_INTERVAL_S, 1 s) after the whisper window or pyannote batch in flight (a
#: 30 s window takes ~2 s for tiny.en here), with room for a loaded CI machine.
LET_GO_S = 10.0


@pytest.fixture(scope="module")
def ingest(webhook_ingest: IngestServer) -> IngestServer:
    return webhook_ingest


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        isolated_env,
        tmp_path_factory.mktemp("logs") / "worker-steering.log",
        WEBHOOK_ALLOWED_NETWORKS=LOOPBACK,
        # Chunks of two whisper windows: a cancel can land inside a chunk.
        SPLIT_THRESHOLD_S="50",
        CHUNK_S="45",
        CHUNK_OVERLAP_S="2",
    )
    yield w
    w.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver({"/cancelled": [200]})
    yield r
    r.close()


@pytest.fixture(scope="module")
def events_queue(isolated_env: IsolatedEnv) -> str:
    return bind_events_queue(isolated_env.amqp_url, "steering-consumer")


@pytest.fixture(scope="module")
def meeting(speech_dir: Path) -> Path:
    """About two minutes of speech: three chunks, a few seconds of diarization."""
    path = speak(" ".join(LONG_PARTS * 4), speech_dir / "steering-meeting.wav")
    assert duration_s(path) > 100
    return path


def wait_for(client: httpx.Client, job_id: str, ready: Any, timeout_s: float = 120) -> Any:
    return wait_for_job(client, job_id, ready, timeout_s=timeout_s, poll_s=0.1)


def let_go_s(job: dict[str, Any], name: str, cancelled_at: float) -> float:
    """Seconds from the cancel to the worker stamping its stop of stage `name`."""
    finished = stage(job, name)["finished_at"]
    assert finished is not None, job
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(finished).timestamp() - cancelled_at


def cancel_while(
    client: httpx.Client, job_id: str, name: str, ready: Any
) -> tuple[dict[str, Any], float]:
    """Wait until stage `name` runs and `ready(job)`, cancel; the job once the worker
    let go, and the seconds it took."""
    wait_for(client, job_id, ready)
    cancelled_at = time.time()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    assert stage(response.json(), name)["state"] == "cancelled"
    job = wait_for(client, job_id, lambda j: stage(j, name)["finished_at"] is not None, 60)
    return job, let_go_s(job, name, cancelled_at)


def test_cancel_while_transcribing_frees_the_worker_and_notifies_once(
    ingest: IngestServer,
    worker: Worker,
    receiver: WebhookReceiver,
    events_queue: str,
    isolated_env: IsolatedEnv,
    meeting: Path,
    short_speech: Path,
) -> None:
    with ingest.client() as client:
        with meeting.open("rb") as f:
            accepted = client.post(
                "/v1/jobs",
                files={"file": ("meeting.wav", f, "audio/wav")},
                data={"webhook_url": receiver.url("/cancelled")},
            ).json()
        job_id = accepted["id"]

        def transcribing(job: dict[str, Any]) -> bool:
            t = stage(job, "transcribe")
            return t["state"] == "running" and 0 < t["progress"] < 0.5

        job, seconds = cancel_while(client, job_id, "transcribe", transcribing)
        print(f"transcribe let go {seconds:.2f} s after the cancel")
        assert 0 <= seconds < LET_GO_S
        assert job["status"] == "cancelled"
        assert job["audio"]["chunks"] >= 3

        # The heavy process is free: the next job is transcribed at once.
        freed_at = time.time()
        next_id = upload(client, short_speech)
        done = wait_for_job(client, next_id, timeout_s=120)
        assert done["status"] == "completed"

        final = wait_for(client, job_id, lambda j: stage(j, "notify")["state"] == "succeeded", 60)
        assert {s["name"]: s["state"] for s in final["stages"]} == {
            "split": "succeeded",
            "transcribe": "cancelled",
            "diarize": "cancelled",
            "analyze": "cancelled",
            "notify": "succeeded",
        }
        # Its chunks are gone, and so is every later stage's work.
        assert not (isolated_env.storage_dir / "work" / job_id).exists()
        assert client.get(f"/v1/jobs/{job_id}/result").status_code == 409
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
        waited_s = time.time() - freed_at
    time.sleep(1.0)  # a duplicate would come within this
    calls = [r for r in receiver.received["/cancelled"] if json.loads(r.body)["job_id"] == job_id]
    assert len(calls) == 1
    assert json.loads(calls[0].body)["type"] == "job.cancelled"
    events = consume(isolated_env.amqp_url, events_queue, job_id, want=10, timeout_s=3)
    finished = [(key, e) for key, e, _ in events if isinstance(e, JobFinished)]
    assert [(key, e.status) for key, e in finished] == [("job.cancelled", "cancelled")]
    assert waited_s < 120


def test_cancel_while_diarizing(
    ingest: IngestServer, worker: Worker, meeting: Path, isolated_env: IsolatedEnv
) -> None:
    with ingest.client() as client:
        job_id = upload(client, meeting)

        def diarizing(job: dict[str, Any]) -> bool:
            return stage(job, "diarize")["state"] == "running"

        _, seconds = cancel_while(client, job_id, "diarize", diarizing)
        print(f"diarize let go {seconds:.2f} s after the cancel")
        assert 0 <= seconds < LET_GO_S
        final = wait_for(client, job_id, lambda j: stage(j, "notify")["state"] == "succeeded", 60)
        assert final["status"] == "cancelled"
        assert stage(final, "diarize")["state"] == "cancelled"
        # Diarization runs alongside transcription: the cancel may have caught both.
        assert stage(final, "transcribe")["state"] in {"succeeded", "cancelled"}
        assert stage(final, "analyze")["state"] == "cancelled"
    assert not (isolated_env.storage_dir / "work" / job_id).exists()


def test_delete_a_running_job_leaves_nothing(
    ingest: IngestServer, worker: Worker, meeting: Path, isolated_env: IsolatedEnv
) -> None:
    with ingest.client() as client:
        job_id = upload(client, meeting)
        wait_for(client, job_id, lambda j: stage(j, "transcribe")["state"] == "running")
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    # The worker notices within its let-go bound and drops the work it had made.
    deadline = time.monotonic() + LET_GO_S
    leftovers = [p for p in isolated_env.storage_dir.rglob("*") if job_id in str(p)]
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = [p for p in isolated_env.storage_dir.rglob("*") if job_id in str(p)]
    assert leftovers == []
    assert rows_of(isolated_env.database_url, job_id) == dict.fromkeys(JOB_TABLES, 0)
    assert "stage stopped: the job was cancelled or deleted" in worker.log_text()


def test_event_stream_of_a_real_job(
    ingest: IngestServer, worker: Worker, short_speech: Path
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech)
        events = read_events(client, job_id, timeout_s=120)
    stages = [data["stage"] for name, data in events if name == "stage" and data["stage"]]
    assert stages[0] == "split"
    assert "transcribe" in stages
    # Transcription and diarization run side by side, so their events interleave; the
    # stages after them, and split before them, keep pipeline order.
    rank = {"split": 0, "transcribe": 1, "diarize": 1, "analyze": 2, "notify": 3}
    assert [rank[s] for s in stages] == sorted(rank[s] for s in stages), stages
    assert events[-1][0] == "end"
    assert events[-1][1]["status"] == "completed"
    assert events[-1][1]["progress"] == 1.0
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress)
    assert uuid.UUID(events[0][1]["job_id"]) == uuid.UUID(job_id)
