"""Several API processes on one port (INGEST_PROCESSES): each takes uploads and relays
them, and /metrics, answered by whichever process, counts the whole service."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from contracts.routing import SUBMIT_QUEUE
from tests.support.audio import wav_bytes
from tests.support.backends import wait_for_messages
from tests.support.servers import IngestServer, IsolatedEnv

UPLOADS = 30


def children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def accepted_count(metrics: str) -> float:
    match = re.search(r'^ingest_uploads_total\{outcome="accepted"\} (\S+)$', metrics, re.M)
    assert match, metrics[:2000]
    return float(match[1])


def test_two_processes_share_the_port_the_relay_and_the_metrics(
    isolated_env: IsolatedEnv, tmp_path: Path
) -> None:
    server = IngestServer(
        isolated_env.environ(INGEST_PROCESSES="2", OUTBOX_POLL_INTERVAL_S="0.2"),
        tmp_path / "ingest.log",
    )
    try:
        workers = children(server.process.pid)
        # uvicorn's supervisor, its two workers (and a resource tracker, maybe).
        assert len([p for p in workers if Path(f"/proc/{p}/cmdline").exists()]) >= 2
        audio = wav_bytes(0.2)
        ids = []
        for _ in range(UPLOADS):
            # A new connection each time, so that the kernel hands them to both processes.
            response = httpx.post(
                f"{server.url}/v1/jobs", files={"file": ("a.wav", audio, "audio/wav")}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        wait_for_messages(isolated_env.amqp_url, SUBMIT_QUEUE, ids, timeout_s=30)
        # Each scrape may land on either process; every one counts all uploads.
        for _ in range(6):
            assert accepted_count(httpx.get(f"{server.url}/metrics").text) == UPLOADS
    finally:
        server.stop()
    assert "serving" in server.log_text()
