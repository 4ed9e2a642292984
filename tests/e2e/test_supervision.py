"""A heavy worker process killed mid-transcribe and mid-diarize: replaced, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LOOPBACK, start_worker
from tests.support.backends import query
from tests.support.jobs import stage, upload, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def ingest(webhook_ingest: IngestServer) -> IngestServer:
    return webhook_ingest


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver({"/hook": [200]})
    yield r
    r.close()


def children(parent: int) -> dict[int, str]:
    """The command lines of `parent`'s child processes, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found[int(entry.name)] = cmdline
    return found


def pool_pids(worker: Worker, queue: str) -> list[int]:
    return [pid for pid, cmd in children(worker.process.pid).items() if f"--queues {queue}" in cmd]


def pool_health(worker: Worker, pool: str) -> dict[str, int | str]:
    port = worker.metrics_ports[pool]
    health: dict[str, int | str] = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    return health


def kill_heavy_and_wait_whole(worker: Worker, api: httpx.Client, job_id: str) -> float:
    """SIGKILL the heavy process; seconds until the pool is whole again, the API answering."""
    [victim] = pool_pids(worker, "transcribe")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        assert api.get(f"/v1/jobs/{job_id}").status_code == 200, "the API kept answering"
        pids = pool_pids(worker, "transcribe")
        health = pool_health(worker, "heavy")
        if pids and victim not in pids and health["ready"] == health["desired"]:
            return time.monotonic() - killed_at
        assert time.monotonic() - killed_at < 30, health
        time.sleep(0.2)


def test_killed_heavy_processes_are_replaced_and_the_job_completes_once(
    ingest: IngestServer,
    isolated_env: IsolatedEnv,
    long_speech: Path,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    worker = start_worker(isolated_env, tmp_path / "worker.log", WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    try:
        with ingest.client() as client:
            wait_for_job_pool = time.monotonic() + 60
            while not pool_pids(worker, "transcribe") or not pool_pids(worker, "split"):
                assert time.monotonic() < wait_for_job_pool, worker.log_text()[-2000:]
                time.sleep(0.2)
            [light] = pool_pids(worker, "split")
            job_id = upload(client, long_speech, webhook_url=receiver.url("/hook"))
            wait_for_job(client, job_id, lambda j: stage(j, "transcribe")["state"] == "running")
            whole_after_transcribe = kill_heavy_and_wait_whole(worker, client, job_id)
            wait_for_job(client, job_id, lambda j: stage(j, "diarize")["state"] == "running")
            whole_after_diarize = kill_heavy_and_wait_whole(worker, client, job_id)
            job = wait_for_job(client, job_id)
            time.sleep(1)  # a second webhook, if one were coming, would be on its way
        assert worker.process.poll() is None, "the supervisor kept running"
        assert pool_pids(worker, "split") == [light], "the light pool was left alone"
        health = pool_health(worker, "heavy")
    finally:
        worker.stop()
    assert whole_after_transcribe < 10
    assert whole_after_diarize < 10
    assert job["status"] == "completed", job
    assert stage(job, "transcribe")["attempts"] >= 2
    assert stage(job, "diarize")["attempts"] >= 2
    assert stage(job, "diarize")["state"] == "succeeded"
    assert (health["deaths"], health["restarts"]) == (2, 2)
    calls = [r for r in receiver.received["/hook"] if json.loads(r.body)["job_id"] == job_id]
    assert len(calls) == 1
    [[results]] = query(
        isolated_env.database_url,
        "SELECT count(*) FROM job_results WHERE job_id = $1::uuid",
        job_id,
    )
    assert results == 1
    assert "worker process died; starting a new one" in worker.log_text()
