"""Retries, dead letters, invalid messages and a killed worker, end to end."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from contracts.routing import SUBMIT_QUEUE, dead_letter_queue
from tests.e2e.conftest import SHORT_TEXT, start_worker, worker_env
from tests.support.audio import ffmpeg_tone
from tests.support.backends import query
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.volumes import small_volume
from tests.support.wer import word_error_rate

pytestmark = pytest.mark.models


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def workers(isolated_env: IsolatedEnv, logs: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def dead_letters(amqp_url: str, queue: str) -> list[dict[str, object]]:
    """Every message now on the queue's dead-letter queue (left in place)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        bodies = []
        while True:
            method, _props, body = channel.basic_get(dead_letter_queue(queue), auto_ack=False)
            if method is None:
                break
            bodies.append(body)
        channel.basic_recover(requeue=True)
    finally:
        conn.close()
    return [
        json.loads(b) if b.startswith(b"{") else {"raw": b.decode(errors="replace")} for b in bodies
    ]


def stored_upload(env: IsolatedEnv, job_id: str) -> Path:
    return env.storage_dir / "uploads" / f"{job_id}.wav"


def test_missing_upload_is_retried_then_succeeds_or_dead_letters(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    short_speech: Path,
    workers: list[Worker],
    logs: Path,
    tmp_path: Path,
) -> None:
    with ingest.client() as client:
        recovers = upload(client, short_speech)
        vanishes = upload(client, short_speech)
        # Shared storage hiccup: both uploads are gone when the worker looks.
        for job_id in (recovers, vanishes):
            shutil.move(stored_upload(isolated_env, job_id), tmp_path / job_id)
        # Backoff of 0.5-1, 1-2, 1.5-3 s: time to put one file back between attempts.
        workers.append(
            start_worker(
                isolated_env,
                logs / "worker.log",
                RETRY_MIN_BACKOFF_MS="1000",
                RETRY_MAX_BACKOFF_MS="3000",
            )
        )

        retrying = wait_for_job(
            client, recovers, until=lambda j: stage(j, "split")["attempts"] >= 2, timeout_s=60
        )
        assert "not in storage" in stage(retrying, "split")["error"]
        assert retrying["status"] == "processing"
        shutil.move(tmp_path / recovers, stored_upload(isolated_env, recovers))

        recovered = wait_for_job(client, recovers)
        dead = wait_for_job(client, vanishes, timeout_s=60)

    assert recovered["status"] == "completed", recovered
    assert stage(recovered, "split")["attempts"] >= 2
    assert stage(recovered, "split")["state"] == "succeeded"

    assert dead["status"] == "failed"
    assert stage(dead, "split")["state"] == "dead"
    assert stage(dead, "split")["attempts"] == 4  # the first run and SPLIT_MAX_RETRIES=3
    assert "not in storage" in dead["error"]
    parked = dead_letters(isolated_env.amqp_url, SUBMIT_QUEUE)
    assert vanishes in {m["args"][0]["job_id"] for m in parked if "args" in m}


def test_invalid_messages_are_dead_lettered_and_the_worker_carries_on(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    short_speech: Path,
    workers: list[Worker],
    logs: Path,
) -> None:
    workers.append(start_worker(isolated_env, logs / "worker.log"))
    with ingest.client() as client:
        victim = upload(client, short_speech)
        wait_for_job(client, victim)
    bogus_id = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(isolated_env.amqp_url))
    try:
        channel = conn.channel()
        envelope = {
            "queue_name": SUBMIT_QUEUE,
            "actor_name": "split",
            "args": [{"type": "job.exploded", "job_id": victim}],
            "kwargs": {},
            "options": {},
            "message_id": bogus_id,
            "message_timestamp": 0,
        }
        props = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", SUBMIT_QUEUE, json.dumps(envelope).encode(), props)
        channel.basic_publish("", SUBMIT_QUEUE, b"\x00 not json at all", props)
    finally:
        conn.close()

    with ingest.client() as client:
        # The worker survives both and still processes real work.
        after = upload(client, short_speech)
        assert wait_for_job(client, after)["status"] == "completed"
    parked = dead_letters(isolated_env.amqp_url, SUBMIT_QUEUE)
    assert bogus_id in {m.get("message_id") for m in parked}
    assert any("not json" in str(m.get("raw")) for m in parked)
    log = (logs / "worker.log").read_text()
    assert "job.exploded" in log
    assert worker_alive(workers[-1])


def worker_alive(worker: Worker) -> bool:
    return worker.process.poll() is None


def test_a_killed_worker_returns_its_message_and_the_job_completes_once(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    short_speech: Path,
    workers: list[Worker],
    logs: Path,
) -> None:
    first = start_worker(isolated_env, logs / "worker1.log")
    with ingest.client() as client:
        job_id = upload(client, short_speech)
        # Kill everything while the chunk is being transcribed (the model loads first).
        wait_for_job(
            client,
            job_id,
            until=lambda j: stage(j, "transcribe")["state"] == "running",
            timeout_s=60,
        )
        first.kill_hard()
        workers.append(start_worker(isolated_env, logs / "worker2.log"))
        job = wait_for_job(client, job_id)
        result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert job["status"] == "completed", job
    assert stage(job, "transcribe")["attempts"] >= 2
    assert word_error_rate(SHORT_TEXT, result["text"]) <= 0.15
    results = query(
        isolated_env.database_url,
        "SELECT count(*) FROM job_results WHERE job_id = $1::uuid",
        job_id,
    )
    assert results[0][0] == 1
    assert len(job["warnings"]) == len(set(job["warnings"]))


def test_a_message_that_keeps_killing_its_worker_is_given_up(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    short_speech: Path,
    workers: list[Worker],
    logs: Path,
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech)
        # As if split had already started 6 times and its worker died each time (the
        # retries never saw an exception): SPLIT_MAX_RETRIES=3 allows 4 starts, plus 2 deaths.
        query(
            isolated_env.database_url,
            "UPDATE job_stages SET attempts = 6 WHERE job_id = $1::uuid AND stage = 'split'",
            job_id,
        )
        workers.append(start_worker(isolated_env, logs / "worker.log"))
        job = wait_for_job(client, job_id, timeout_s=60)
    assert job["status"] == "failed"
    assert "split was started 7 times without finishing" in job["error"]
    assert stage(job, "split")["state"] == "dead"


def test_a_chunk_that_keeps_killing_its_worker_is_given_up(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    long_speech: Path,
    workers: list[Worker],
    logs: Path,
) -> None:
    # Split only (light pool): the chunk messages wait for a heavy pool.
    workers.append(Worker(worker_env(isolated_env), logs / "light.log", pool="light"))
    with ingest.client() as client:
        job_id = upload(client, long_speech)
        wait_for_job(client, job_id, lambda j: stage(j, "split")["state"] == "succeeded")
        # As if chunk 1 had started 6 times and its worker died each time. The stage's
        # own attempts count every chunk, so only the chunk's count can tell:
        # TRANSCRIBE_MAX_RETRIES=3 allows 4 starts, plus 2 deaths.
        query(
            isolated_env.database_url,
            "UPDATE job_chunks SET attempts = 6 WHERE job_id = $1::uuid AND idx = 1",
            job_id,
        )
        workers.append(Worker(worker_env(isolated_env), logs / "heavy.log", pool="heavy"))
        job = wait_for_job(client, job_id, timeout_s=120)
    assert job["status"] == "failed"
    assert "transcribe of chunk 1 was started 7 times without finishing" in job["error"]
    assert stage(job, "transcribe")["state"] == "dead"
    chunks = query(
        isolated_env.database_url,
        "SELECT idx, attempts FROM job_chunks WHERE job_id = $1::uuid ORDER BY idx",
        job_id,
    )
    assert [tuple(row) for row in chunks][:2] == [(0, 1), (1, 7)]


def test_a_full_volume_in_split_is_retried_then_dead_lettered_with_the_reason(
    isolated_env: IsolatedEnv, workers: list[Worker], logs: Path, tmp_path: Path
) -> None:
    # A 60 s FLAC of a tone is ~350 KB on a 1 MiB volume; its 16 kHz WAV (1.9 MB) is not.
    flac = tmp_path / "tone.flac"
    flac.write_bytes(ffmpeg_tone("flac", 60))
    with small_volume(tmp_path / "volume") as volume:
        env = {"STORAGE_DIR": str(volume)}
        ingest = IngestServer(
            isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2", **env), logs / "ingest.log"
        )
        try:
            workers.append(
                Worker(worker_env(isolated_env, **env), logs / "light.log", pool="light")
            )
            with ingest.client() as client:
                with flac.open("rb") as f:
                    response = client.post("/v1/jobs", files={"file": ("tone.flac", f)})
                assert response.status_code == 202, response.text
                job = wait_for_job(client, response.json()["id"], timeout_s=90)
        finally:
            ingest.stop()
            workers.pop().stop()
    assert job["status"] == "failed", job
    assert "storage volume is full" in job["error"], job["error"]
    assert stage(job, "split")["attempts"] == 4  # retried: SPLIT_MAX_RETRIES=3
