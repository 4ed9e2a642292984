"""Webhooks (signed, retried, recorded, never sent twice) and events for consumers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from contracts.events import JobFinished, StageFinished
from contracts.routing import dead_letter_queue
from tests.e2e.conftest import LOOPBACK, start_worker
from tests.support.job_events import bind_events_queue, consume
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.webhook_receiver import WebhookReceiver, verify

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def ingest(webhook_ingest: IngestServer) -> IngestServer:
    return webhook_ingest


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver({"/ok": [200], "/flaky": [500, 200], "/reject": [400]})
    yield r
    r.close()


@pytest.fixture(scope="module")
def events_queue(isolated_env: IsolatedEnv) -> str:
    """A queue bound to every job and stage event, as a downstream consumer would bind."""
    return bind_events_queue(isolated_env.amqp_url, "test-consumer")


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        isolated_env,
        tmp_path_factory.mktemp("logs") / "worker-notify.log",
        WEBHOOK_ALLOWED_NETWORKS=LOOPBACK,
        NOTIFY_MAX_RETRIES="2",
        RETRY_MIN_BACKOFF_MS="200",
        RETRY_MAX_BACKOFF_MS="600",
    )
    yield w
    w.stop()


def test_a_completed_job_gets_one_signed_webhook_and_its_events(
    ingest: IngestServer,
    worker: Worker,
    receiver: WebhookReceiver,
    events_queue: str,
    isolated_env: IsolatedEnv,
    short_speech: Path,
) -> None:
    with ingest.client() as client:
        with short_speech.open("rb") as f:
            accepted = client.post(
                "/v1/jobs",
                files={"file": ("short.wav", f, "audio/wav")},
                data={"webhook_url": receiver.url("/ok"), "metadata": json.dumps({"ticket": 7})},
            ).json()
        job_id, secret = accepted["id"], accepted["webhook_secret"]
        job = wait_for_job(client, job_id)
        deliveries = wait_until(
            lambda: client.get(f"/v1/jobs/{job_id}/deliveries").json(),
            lambda d: d and d[0]["state"] == "delivered",
        )
    assert job["status"] == "completed"
    calls = [r for r in receiver.received["/ok"] if json.loads(r.body)["job_id"] == job_id]
    assert len(calls) == 1
    call = calls[0]
    assert verify(secret, call)
    assert not verify("whsec_" + "A" * 32, call)
    body = json.loads(call.body)
    assert body["type"] == "job.completed"
    assert body["status"] == "completed"
    assert body["metadata"] == {"ticket": 7}
    assert body["links"]["result"] == f"/v1/jobs/{job_id}/result"
    assert body["result"]["text"]
    assert call.headers["webhook-id"] == deliveries[0]["id"]
    assert [a["status_code"] for a in deliveries[0]["attempts"]] == [200]
    # The job completes before notify delivers; the stage settles just after.
    with ingest.client() as client:
        job = wait_for_job(client, job_id, until=lambda j: stage(j, "notify")["state"] != "running")
    assert stage(job, "notify")["state"] == "succeeded"

    events = consume(isolated_env.amqp_url, events_queue, job_id, want=6)
    keys = {key for key, _, _ in events}
    assert "job.completed" in keys
    assert {"job.stage.split", "job.stage.transcribe", "job.stage.notify"} <= keys
    for key, event, message_id in events:
        assert event.event_id == message_id
        assert event.metadata == {"ticket": 7}
        if key == "job.completed":
            assert isinstance(event, JobFinished)
            assert event.status == "completed"
            assert event.result_path == f"/v1/jobs/{job_id}/result"
        else:
            assert isinstance(event, StageFinished)
            assert key == f"job.stage.{event.stage}"


def test_a_500_is_retried_and_delivered_once(
    ingest: IngestServer, worker: Worker, receiver: WebhookReceiver, short_speech: Path
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech, webhook_url=receiver.url("/flaky"))
        wait_for_job(client, job_id)
        deliveries = wait_until(
            lambda: client.get(f"/v1/jobs/{job_id}/deliveries").json(),
            lambda d: d and d[0]["state"] != "pending",
        )
    assert deliveries[0]["state"] == "delivered"
    assert [a["status_code"] for a in deliveries[0]["attempts"]] == [500, 200]
    ids = {r.headers["webhook-id"] for r in receiver.received["/flaky"]}
    assert ids == {deliveries[0]["id"]}  # the same delivery id on every attempt


def test_a_400_is_recorded_and_not_retried(
    ingest: IngestServer, worker: Worker, receiver: WebhookReceiver, short_speech: Path
) -> None:
    with ingest.client() as client:
        job_id = upload(client, short_speech, webhook_url=receiver.url("/reject"))
        job = wait_for_job(
            client,
            job_id,
            until=lambda j: stage(j, "notify")["state"] in {"failed", "succeeded", "dead"},
        )
        deliveries = client.get(f"/v1/jobs/{job_id}/deliveries").json()
    assert job["status"] == "completed"
    assert stage(job, "notify")["state"] == "failed"
    assert deliveries[0]["state"] == "failed"
    assert [a["status_code"] for a in deliveries[0]["attempts"]] == [400]


def test_an_unreachable_receiver_is_dead_lettered_after_the_retries(
    ingest: IngestServer, worker: Worker, isolated_env: IsolatedEnv, short_speech: Path
) -> None:
    closed = WebhookReceiver({})
    url = closed.url("/gone")
    closed.close()  # nothing listens there any more: connection refused
    with ingest.client() as client:
        job_id = upload(client, short_speech, webhook_url=url)
        job = wait_for_job(
            client, job_id, until=lambda j: stage(j, "notify")["state"] == "dead", timeout_s=90
        )
        deliveries = client.get(f"/v1/jobs/{job_id}/deliveries").json()
    assert job["status"] == "completed"
    assert deliveries[0]["state"] == "dead"
    assert len(deliveries[0]["attempts"]) == 3  # the first and NOTIFY_MAX_RETRIES=2
    assert all(a["status_code"] is None for a in deliveries[0]["attempts"])
    conn = pika.BlockingConnection(pika.URLParameters(isolated_env.amqp_url))
    try:
        parked = (
            conn.channel()
            .queue_declare(dead_letter_queue("notify"), passive=True)
            .method.message_count
        )
    finally:
        conn.close()
    assert parked >= 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://192.168.0.10:8080/x",
    ],
)
def test_internal_webhook_urls_are_refused_at_upload(
    ingest: IngestServer, url: str, short_speech: Path
) -> None:
    with ingest.client() as client, short_speech.open("rb") as f:
        response = client.post("/v1/jobs", files={"file": ("a.wav", f)}, data={"webhook_url": url})
    assert response.status_code == 422
    assert "webhook_url" in response.json()["detail"]


def wait_until(fetch: Any, ready: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    value = fetch()
    while not ready(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = fetch()
    return value


def test_webhook_outcomes_are_counted(worker: Worker) -> None:
    """After the deliveries above: delivered, retried (the 500), failed (the 400), dead."""
    text = worker.metrics("light")
    counts = {
        outcome: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pipeline_webhook_deliveries_total{")
        for outcome in [line.split('outcome="', 1)[1].split('"', 1)[0]]
    }
    assert counts.get("delivered", 0) >= 2
    assert counts.get("retried", 0) >= 1
    assert counts.get("failed", 0) >= 1
    assert counts.get("dead", 0) >= 1
    assert 'pipeline_jobs_total{outcome="completed' in text
