"""`audio-client` end to end: the CLI as a process against the API and a worker.

`submit --wait --format srt` follows the job's event stream to the end and writes a valid
SRT file; `verify-webhook` accepts the webhook the job sent and refuses a tampered one.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LOOPBACK, start_worker
from tests.support.servers import IngestServer, IsolatedEnv, Worker
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.models

SECRET = "whsec_" + base64.b64encode(b"cli-test-secret-0123").decode()
SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
SRT_BLOCK = re.compile(rf"(\d+)\n{SRT_TIME} --> {SRT_TIME}\n(.+?)(?:\n\n|\n?$)", re.S)


@pytest.fixture(scope="module")
def ingest(webhook_ingest: IngestServer) -> IngestServer:
    return webhook_ingest


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        isolated_env,
        tmp_path_factory.mktemp("logs") / "worker-cli.log",
        WEBHOOK_ALLOWED_NETWORKS=LOOPBACK,
    )
    yield w
    w.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver({"/cli": [200]})
    yield r
    r.close()


def cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m audio_client` with a clean client environment."""
    prefix = ["--url", url] if url else []
    return subprocess.run(
        [sys.executable, "-m", "audio_client", *prefix, *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """The cues of an SRT file; fails on anything that is not one."""
    blocks = text.strip().split("\n\n")
    cues = []
    for number, block in enumerate(blocks, 1):
        match = SRT_BLOCK.fullmatch(block + "\n\n")
        assert match, f"not an SRT cue: {block!r}"
        assert int(match[1]) == number
        cues.append((seconds(*match.groups()[1:5]), seconds(*match.groups()[5:9]), match[10]))
    return cues


def test_cancel_and_list_from_the_cli(ingest: IngestServer, short_speech: Path) -> None:
    # First in the module, before the worker starts: the job is still queued.
    submitted = cli("submit", str(short_speech), url=ingest.url)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    listed = cli("list", "--limit", "50", url=ingest.url)
    assert job_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    cancelled = cli("cancel", job_id, url=ingest.url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    again = cli("cancel", job_id, url=ingest.url)
    assert again.returncode == 3
    assert "409" in again.stderr
    unreachable = cli("submit", str(short_speech), url="http://127.0.0.1:9")
    assert unreachable.returncode == 3
    assert "127.0.0.1:9" in unreachable.stderr


def test_submit_wait_writes_a_valid_srt_and_the_webhook_verifies(
    ingest: IngestServer,
    worker: Worker,
    receiver: WebhookReceiver,
    short_speech: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "meeting.srt"
    done = cli(
        "submit", str(short_speech), "--language", "en", "--webhook-url", receiver.url("/cli"),
        "--webhook-secret", SECRET, "--metadata", '{"from": "cli"}',
        "--wait", "--timeout", "200", "--format", "srt", "-o", str(out),
        url=ingest.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The progress fed by the event stream: the stages in turn, then the end.
    assert "transcribe" in done.stderr
    assert "100% completed" in done.stderr
    cues = parse_srt(out.read_text())
    assert cues
    assert all(start < end for start, end, _ in cues)
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    assert "budget" in " ".join(text for _, _, text in cues).lower()
    job_id = re.search(r"job (\S+) accepted", done.stderr)[1]  # type: ignore[index]

    status = cli("status", job_id, url=ingest.url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "completed"
    text = cli("result", job_id, "--format", "txt", url=ingest.url)
    assert "budget" in text.stdout.lower()

    # The webhook the job sent verifies with the secret; a changed body does not.
    delivery = receiver.received["/cli"][0]
    body = tmp_path / "webhook.json"
    body.write_bytes(delivery.body)
    headers = [
        arg
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        for arg in ("-H", f"{name}: {delivery.headers[name]}")
    ]
    valid = cli("verify-webhook", "--secret", SECRET, "--body", str(body), *headers)
    assert valid.returncode == 0, valid.stderr
    body.write_bytes(delivery.body.replace(b'"cli"', b'"clj"'))
    tampered = cli("verify-webhook", "--secret", SECRET, "--body", str(body), *headers)
    assert tampered.returncode == 1
    assert "no signature matches" in tampered.stderr

    assert cli("delete", job_id, url=ingest.url).returncode == 0
    gone = cli("status", job_id, url=ingest.url)
    assert gone.returncode == 3
    assert "404" in gone.stderr
