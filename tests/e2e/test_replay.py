"""Dead letters are recorded on the job, and `make replay-dlq` brings them back to work."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from contracts.routing import dead_letter_queue
from tests.e2e.conftest import start_worker, worker_env
from tests.support.audio import undecodable_wav
from tests.support.backends import query
from tests.support.isolation import isolated
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import REPO_ROOT, IngestServer, IsolatedEnv, Worker

pytestmark = pytest.mark.models

JUNK = undecodable_wav()


@pytest.fixture(scope="module")
def replay_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedEnv]:
    """A vhost of its own: the dead-letter queues hold only this module's messages."""
    with isolated(Path(tmp_path_factory.mktemp("replay-storage"))) as env:
        yield env


@pytest.fixture(scope="module")
def ingest(
    replay_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    server = IngestServer(
        replay_env.environ(OUTBOX_POLL_INTERVAL_S="0.2"),
        tmp_path_factory.mktemp("logs") / "ingest-replay.log",
    )
    yield server
    server.stop()


def replay(env: IsolatedEnv, **variables: str) -> str:
    done = subprocess.run(
        ["make", "-s", "replay-dlq", *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO_ROOT,
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def xq_depth(env: IsolatedEnv, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    try:
        count: int = (
            conn.channel()
            .queue_declare(dead_letter_queue(queue), passive=True)
            .method.message_count
        )
    finally:
        conn.close()
    return count


def dead_in_split(
    client: httpx.Client, env: IsolatedEnv, speech: Path, tmp_path: Path
) -> tuple[dict[str, Any], Worker]:
    """A job whose upload vanished before any worker ran: with no retries, its split dies
    at once. The upload is kept in `tmp_path/kept.wav`; the worker is left running."""
    job_id = upload(client, speech)
    shutil.move(env.storage_dir / "uploads" / f"{job_id}.wav", tmp_path / "kept.wav")
    worker = start_worker(env, tmp_path / "worker.log", SPLIT_MAX_RETRIES="0")
    job = wait_for_job(client, job_id)
    assert job["status"] == "failed", job
    return job, worker


def test_dead_letters_are_recorded_listed_and_replayed(
    ingest: IngestServer, replay_env: IsolatedEnv, short_speech: Path, tmp_path: Path
) -> None:
    uploads = replay_env.storage_dir / "uploads"
    worker: Worker | None = None
    try:
        with ingest.client() as client:
            # A: its upload vanishes before any worker runs; with no retries it dies at once.
            failed, worker = dead_in_split(client, replay_env, short_speech, tmp_path)
            recovers = failed["id"]
            # B: undecodable, so it fails (permanently) now and again after a replay.
            response = client.post("/v1/jobs", files={"file": ("junk.wav", JUNK, "audio/wav")})
            hopeless = response.json()["id"]
            assert wait_for_job(client, hopeless)["status"] == "failed"

            job = client.get(f"/v1/jobs/{recovers}").json()
            assert stage(job, "split")["state"] == "dead"
            [dead] = job["dead_letters"]
            assert dead["queue"] == "split"
            assert "not in storage" in dead["reason"]
            assert dead["replayed_at"] is None
            assert xq_depth(replay_env, "split") == 2

            listing = replay(replay_env, QUEUE="split", DRY_RUN="1")
            assert "split.XQ: 2 message(s)" in listing
            assert "not in storage" in listing
            assert "could not be read as audio" in listing
            assert "would move 2" in listing
            assert xq_depth(replay_env, "split") == 2
            assert client.get(f"/v1/jobs/{recovers}").json()["status"] == "failed"

            # The file is back: replay the oldest dead letter only.
            shutil.move(tmp_path / "kept.wav", uploads / f"{recovers}.wav")
            moved = replay(replay_env, QUEUE="split", LIMIT="1")
            assert f"(job {recovers}) to split" in moved
            assert xq_depth(replay_env, "split") == 1
            job = wait_for_job(client, recovers)
            assert job["status"] == "completed", job
            assert stage(job, "split")["state"] == "succeeded"
            assert job["dead_letters"][0]["replayed_at"] is not None
            generation = query(
                replay_env.database_url,
                "SELECT generation FROM jobs WHERE id = $1",
                uuid.UUID(recovers),
            )
            assert generation[0][0] == 1

            # B goes back and dies again, with its reason recorded a second time.
            assert "moved 1 message(s) in all" in replay(replay_env)
            job = wait_for_job(
                client,
                hopeless,
                until=lambda j: j["status"] == "failed" and len(j.get("dead_letters", [])) == 2,
            )
            first, second = job["dead_letters"]
            assert first["replayed_at"] is not None
            assert second["replayed_at"] is None
            assert "could not be read as audio" in second["reason"]
            assert stage(job, "split")["attempts"] == 1  # counted afresh after the replay
        assert xq_depth(replay_env, "split") == 1
    finally:
        if worker is not None:
            worker.stop()


def test_replaying_a_dead_chunk_brings_back_the_chunks_its_failure_dropped(
    ingest: IngestServer, replay_env: IsolatedEnv, long_speech: Path, tmp_path: Path
) -> None:
    env = replay_env
    light = Worker(worker_env(env), tmp_path / "light.log", pool="light")
    heavy: Worker | None = None
    try:
        with ingest.client() as client:
            job_id = upload(client, long_speech, language="en")
            # Split only (no heavy pool yet): the chunk messages wait in the queue.
            job = wait_for_job(client, job_id, lambda j: stage(j, "split")["state"] == "succeeded")
            chunks = query(
                env.database_url,
                "SELECT idx, audio_path FROM job_chunks WHERE job_id = $1 ORDER BY idx",
                uuid.UUID(job_id),
            )
            assert len(chunks) >= 3, chunks
            first = env.storage_dir / chunks[0][1]
            shutil.move(first, tmp_path / "chunk0.wav")
            # Chunk 0 dies at once and fails the job; the other chunks, consumed after it,
            # are dropped as belonging to a finished job.
            heavy = Worker(
                worker_env(env, TRANSCRIBE_MAX_RETRIES="0"), tmp_path / "heavy.log", "heavy"
            )
            failed = wait_for_job(client, job_id)
            assert failed["status"] == "failed"
            assert "chunk-0000.wav is not in storage" in failed["error"], failed["error"]
            wait_for_job(
                client, job_id, lambda _: queue_depth(env, "transcribe") == 0, timeout_s=60
            )
            untranscribed = query(
                env.database_url,
                "SELECT count(*) FROM job_chunks WHERE job_id = $1 AND transcript IS NULL",
                uuid.UUID(job_id),
            )[0][0]
            assert untranscribed == len(chunks)  # chunks 1.. were never transcribed

            shutil.move(tmp_path / "chunk0.wav", first)
            moved = replay(env, QUEUE="transcribe")
            assert f"(job {job_id}) to transcribe" in moved
            assert f"re-send the untranscribed chunks of job {job_id}" in moved
            job = wait_for_job(client, job_id)
        assert job["status"] == "completed", job
        assert stage(job, "transcribe")["state"] == "succeeded"
        result = query(
            env.database_url,
            "SELECT document->>'text' FROM job_results WHERE job_id = $1",
            uuid.UUID(job_id),
        )[0][0]
        assert "planning meeting" in result.lower()
        assert "two more people" in result.lower()  # the last chunk's words are there
    finally:
        light.stop()
        if heavy is not None:
            heavy.stop()


def queue_depth(env: IsolatedEnv, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    try:
        count: int = conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()
    return count


def drop_from_xq(env: IsolatedEnv, queue: str, job_id: str) -> int:
    """Remove the job's messages from the queue's dead-letter queue (as its TTL would)."""
    conn = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    dropped = 0
    try:
        channel = conn.channel()
        while True:
            method, _props, body = channel.basic_get(dead_letter_queue(queue), auto_ack=False)
            if method is None:
                break
            if job_id.encode() in body:
                channel.basic_ack(method.delivery_tag)
                dropped += 1
        channel.basic_recover(requeue=True)
    finally:
        conn.close()
    return dropped


def test_a_dead_letter_rabbitmq_no_longer_holds_is_rebuilt_from_postgres(
    ingest: IngestServer, replay_env: IsolatedEnv, short_speech: Path, tmp_path: Path
) -> None:
    uploads = replay_env.storage_dir / "uploads"
    worker: Worker | None = None
    try:
        with ingest.client() as client:
            failed, worker = dead_in_split(client, replay_env, short_speech, tmp_path)
            job_id = failed["id"]
            [dead] = failed["dead_letters"]
            # Seven days on: RabbitMQ dropped the dead letter; Postgres still has it.
            deadline = time.monotonic() + 10
            while drop_from_xq(replay_env, "split", job_id) == 0:
                assert time.monotonic() < deadline, "the dead letter never reached split.XQ"
                time.sleep(0.2)
            query(
                replay_env.database_url,
                "UPDATE dead_letters SET dead_at = dead_at - interval '8 days' WHERE job_id = $1",
                uuid.UUID(job_id),
            )
            listing = replay(replay_env, QUEUE="split", DRY_RUN="1")
            assert "1 more recorded in Postgres that RabbitMQ no longer holds" in listing
            assert "rebuild 1" in listing

            shutil.move(tmp_path / "kept.wav", uploads / f"{job_id}.wav")
            moved = replay(replay_env, QUEUE="split")
            assert f"rebuilt {dead['message_id']}" in moved, moved
            assert f"(job {job_id}) from Postgres to split" in moved
            job = wait_for_job(client, job_id)
            assert job["status"] == "completed", job
            assert job["dead_letters"][0]["replayed_at"] is not None
            # Replayed once: a second run finds nothing more to rebuild for it.
            again = replay(replay_env, QUEUE="split", DRY_RUN="1")
            assert "no longer holds" not in again
    finally:
        if worker is not None:
            worker.stop()
