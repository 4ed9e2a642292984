"""Audio by URL end to end: the worker fetches from a loopback HTTP server (the allowed
networks opened for the test), through redirects, within limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LOOPBACK, start_worker
from tests.support.jobs import stage, wait_for_job
from tests.support.servers import IngestServer, IsolatedEnv, Worker

pytestmark = pytest.mark.models

SECRET = "Bearer source-token-7f3a91"
#: The worker refuses sources larger than this; the oversized one is twice as large.
FETCH_LIMIT = 1_500_000


class Source:
    """A loopback HTTP server: /audio.wav (needs the secret header), a redirect to it, a
    redirect to a metadata address, an oversized body and a 404; it records requests."""

    def __init__(self, audio: bytes) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                source.requests.append((self.path, dict(self.headers.items())))
                path = self.path.split("?", 1)[0]
                if path == "/audio.wav":
                    if self.headers.get("Authorization") != SECRET:
                        self._answer(401, b"no")
                        return
                    self._answer(200, audio, "audio/wav")
                elif path == "/moved":
                    self._redirect("/audio.wav")
                elif path == "/metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif path == "/huge.wav":
                    self._answer(200, b"RIFF" + b"\0" * (2 * FETCH_LIMIT), "audio/wav")
                else:
                    self._answer(404, b"gone")

            def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def source(short_speech: Path) -> Iterator[Source]:
    s = Source(short_speech.read_bytes())
    yield s
    s.close()


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    env = isolated_env.environ(OUTBOX_POLL_INTERVAL_S="0.2", AUDIO_URL_ALLOWED_NETWORKS=LOOPBACK)
    server = IngestServer(env, tmp_path_factory.mktemp("logs") / "ingest-url.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        isolated_env,
        tmp_path_factory.mktemp("logs") / "worker-url.log",
        AUDIO_URL_ALLOWED_NETWORKS=LOOPBACK,
        FETCH_MAX_BYTES=str(FETCH_LIMIT),
        FETCH_READ_TIMEOUT_S="5",
    )
    yield w
    w.stop()


def submit(ingest: IngestServer, **body: Any) -> dict[str, Any]:
    with ingest.client() as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        return accepted


def test_a_url_job_is_fetched_with_its_headers_and_transcribed(
    ingest: IngestServer, worker: Worker, source: Source, short_speech: Path
) -> None:
    accepted = submit(
        ingest,
        audio_url=source.url("/moved?signature=s3cr3t"),
        source_headers={"Authorization": SECRET},
        language="en",
        metadata={"from": "url"},
    )
    assert accepted["source_url"] == source.url("/moved")
    assert accepted["filename"] == "moved"
    with ingest.client() as client:
        job = wait_for_job(client, accepted["id"], timeout_s=180)
        result = client.get(f"/v1/jobs/{accepted['id']}/result").json()
    assert job["status"] == "completed", job
    assert job["size_bytes"] == short_speech.stat().st_size
    assert job["content_type"] == "audio/wav"
    assert "budget" in result["text"].lower()
    # The redirect kept the origin, so the header went along to the file itself.
    fetched = [headers for path, headers in source.requests if path == "/audio.wav"]
    assert fetched
    assert fetched[-1]["Authorization"] == SECRET
    # Credentials and the signed query string appear in no answer and no log line.
    for text in (str(job), ingest.log_text(), worker.log_text()):
        assert "source-token" not in text
        assert "s3cr3t" not in text


def test_a_source_that_answers_404_fails_the_job_at_once(
    ingest: IngestServer, worker: Worker, source: Source
) -> None:
    accepted = submit(ingest, audio_url=source.url("/missing.wav"))
    with ingest.client() as client:
        job = wait_for_job(client, accepted["id"], timeout_s=60)
    assert job["status"] == "failed"
    assert "404" in job["error"]
    assert stage(job, "split")["attempts"] == 1


def test_a_redirect_to_a_refused_address_fails_the_job(
    ingest: IngestServer, worker: Worker, source: Source
) -> None:
    accepted = submit(ingest, audio_url=source.url("/metadata"))
    with ingest.client() as client:
        job = wait_for_job(client, accepted["id"], timeout_s=60)
    assert job["status"] == "failed"
    assert "169.254.169.254" in job["error"]
    assert stage(job, "split")["attempts"] == 1


def test_an_oversized_source_fails_the_job_and_leaves_no_file(
    ingest: IngestServer, worker: Worker, source: Source, isolated_env: IsolatedEnv
) -> None:
    accepted = submit(ingest, audio_url=source.url("/huge.wav"))
    with ingest.client() as client:
        job = wait_for_job(client, accepted["id"], timeout_s=60)
    assert job["status"] == "failed"
    assert str(FETCH_LIMIT) in job["error"]
    assert [p for p in isolated_env.storage_dir.rglob("*") if accepted["id"] in p.name] == []
