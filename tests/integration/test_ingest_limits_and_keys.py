"""Upload size limit and API-key isolation, on a server configured for both."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from tests.support.audio import wav_bytes
from tests.support.backends import query
from tests.support.jobs import stored_uploads
from tests.support.servers import IngestServer, IsolatedEnv

LIMIT = 1024 * 1024
KEY_A, KEY_B = "key-alpha-0123456789", "key-bravo-9876543210"


@pytest.fixture(scope="module")
def server(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    log = tmp_path_factory.mktemp("logs") / "ingest-keys.log"
    env = isolated_env.environ(
        INGEST_MAX_UPLOAD_BYTES=str(LIMIT), INGEST_API_KEYS=f"{KEY_A}, {KEY_B}"
    )
    srv = IngestServer(env, log)
    yield srv
    srv.stop()


def _leftovers(env: IsolatedEnv) -> list[str]:
    return stored_uploads(env.storage_dir)


def _request_head(port: int, headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY_A}\r\n"
        f"Content-Type: audio/wav\r\n{headers}\r\n".encode()
    )
    return sock


def test_declared_oversize_is_refused_before_the_body_is_sent(server: IngestServer) -> None:
    with _request_head(server.port, f"Content-Length: {LIMIT * 10}\r\n") as sock:
        reply = sock.recv(65536)
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line
    assert b"application/problem+json" in rest


def test_streamed_oversize_is_cut_off_when_the_limit_is_crossed(
    server: IngestServer, isolated_env: IsolatedEnv
) -> None:
    jobs_before = query(isolated_env.database_url, "SELECT count(*) FROM jobs")[0][0]
    before = _leftovers(isolated_env)
    body = wav_bytes(0.5)
    chunk = body + b"\0" * (65536 - len(body))
    sent, reply = 0, b""
    with _request_head(server.port, "Transfer-Encoding: chunked\r\n") as sock:
        # Keep sending (up to 64x the limit) until the server answers.
        for _ in range(64 * LIMIT // len(chunk)):
            try:
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
            chunk = b"\0" * 65536
            if select.select([sock], [], [], 0)[0]:
                break
        reply = sock.recv(65536)
    assert b" 413 " in reply.partition(b"\r\n")[0]
    # The answer came long before the client was done; what was sent past the limit
    # is only what the sockets buffered.
    assert sent < 16 * LIMIT
    assert _leftovers(isolated_env) == before
    assert query(isolated_env.database_url, "SELECT count(*) FROM jobs")[0][0] == jobs_before


def test_multipart_just_over_the_limit_is_refused(
    server: IngestServer, isolated_env: IsolatedEnv
) -> None:
    before = _leftovers(isolated_env)
    audio = wav_bytes(0.1)
    too_big = audio + b"\0" * (LIMIT + 1 - len(audio))
    with server.client(KEY_A) as client:
        response = client.post("/v1/jobs", files={"file": ("big.wav", too_big)})
        assert response.status_code == 413
        assert response.json()["max_bytes"] == LIMIT
        at_limit = audio + b"\0" * (LIMIT - len(audio))
        assert client.post("/v1/jobs", files={"file": ("ok.wav", at_limit)}).status_code == 202
    assert len(_leftovers(isolated_env)) == len(before) + 1


def test_keys_are_required_and_jobs_are_private_to_their_key(server: IngestServer) -> None:
    with server.client() as anonymous:
        response = anonymous.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1))})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/v1/jobs").status_code == 401
        assert anonymous.get("/healthz").status_code == 200
    with server.client("not-a-key") as stranger:
        assert stranger.get("/v1/jobs").status_code == 401

    with server.client(KEY_A) as alice, server.client(KEY_B) as bob:
        job_id = alice.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1))}).json()["id"]
        assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
        assert bob.get(f"/v1/jobs/{job_id}").status_code == 404
        assert bob.get(f"/v1/jobs/{job_id}/result").status_code == 404
        assert job_id in {j["id"] for j in alice.get("/v1/jobs").json()["items"]}
        assert job_id not in {j["id"] for j in bob.get("/v1/jobs").json()["items"]}
