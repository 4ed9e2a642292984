"""The API under faults and odd input: Postgres gone, hostile strings, broken headers, a
full volume. Each answers with a problem the client can act on, never a 500."""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.audio import ffmpeg_tone, wav_bytes, wav_header
from tests.support.backends import query
from tests.support.jobs import stored_uploads
from tests.support.servers import IngestServer, IsolatedEnv
from tests.support.tcp_proxy import TcpProxy
from tests.support.volumes import small_volume

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def ingest(
    isolated_env: IsolatedEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestServer]:
    server = IngestServer(isolated_env.environ(), tmp_path_factory.mktemp("logs") / "ingest.log")
    yield server
    server.stop()


def job_count(env: IsolatedEnv) -> int:
    return int(query(env.database_url, "SELECT count(*) FROM jobs")[0][0])


def stored(storage_dir: Path) -> list[str]:
    return stored_uploads(storage_dir)


# --- Postgres unreachable --------------------------------------------------------------


@pytest.fixture
def postgres_proxy(isolated_env: IsolatedEnv) -> Iterator[TcpProxy]:
    parts = urlsplit(isolated_env.database_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.open()
    yield proxy
    proxy.close()


def test_every_route_answers_503_with_retry_after_while_postgres_is_away(
    isolated_env: IsolatedEnv, postgres_proxy: TcpProxy, tmp_path: Path
) -> None:
    parts = urlsplit(isolated_env.database_url)
    via_proxy = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{postgres_proxy.port}"))
    storage = tmp_path / "storage"
    server = IngestServer(
        isolated_env.environ(DATABASE_URL=via_proxy, STORAGE_DIR=str(storage)),
        tmp_path / "ingest.log",
    )
    audio = wav_bytes(0.2)
    try:
        with server.client() as client:
            accepted = client.post("/v1/jobs", files={"file": ("a.wav", audio, "audio/wav")})
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["id"]
            files_before = stored(storage)

            postgres_proxy.close()
            requests = [
                ("POST", "/v1/jobs", {"files": {"file": ("b.wav", audio, "audio/wav")}}),
                (
                    "POST",
                    "/v1/jobs?filename=c.wav",
                    {"content": audio, "headers": {"Content-Type": "audio/wav"}},
                ),
                ("GET", "/v1/jobs", {}),
                ("GET", f"/v1/jobs/{job_id}", {}),
                ("GET", f"/v1/jobs/{job_id}/result", {}),
                ("GET", f"/v1/jobs/{job_id}/deliveries", {}),
                ("POST", f"/v1/jobs/{job_id}/diarize", {"json": {"num_speakers": 2}}),
                ("GET", "/readyz", {}),
            ]
            for method, path, kwargs in requests:
                response = client.request(method, path, **kwargs)
                assert response.status_code == 503, (method, path, response.text)
                assert response.headers["content-type"] == PROBLEM, path
                assert int(response.headers["retry-after"]) > 0, path
                assert response.json()["status"] == 503
            assert stored(storage) == files_before, "uploads during the outage left files"
            assert client.get("/healthz").status_code == 200, "the process itself is alive"

            postgres_proxy.open()
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
            again = client.post("/v1/jobs", files={"file": ("d.wav", audio, "audio/wav")})
            assert again.status_code == 202, again.text
    finally:
        server.stop()
    assert "unhandled error" not in server.log_text()


# --- hostile strings -------------------------------------------------------------------


def raw_multipart(filename: str, audio: bytes) -> tuple[bytes, str]:
    """A multipart body with `filename` as raw UTF-8 (httpx would percent-encode controls)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        "\r\nContent-Type: audio/wav\r\n\r\n"
    )
    body = head.encode("utf-8", "surrogatepass") + audio + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("meet\x00ing.wav", "meeting.wav"),
        ("a\tb\x1b[31m\x7fc\x85d.wav", "ab[31mcd.wav"),
        ("\u202egnp.wav", "gnp.wav"),
        ("lone\ud800surrogate.wav", "lonesurrogate.wav"),
        ("x" * 1000 + ".wav", "x" * 255),
        ("\x00\x01", "upload"),
    ],
    ids=["nul", "controls", "bidi-override", "lone-surrogate", "long", "nothing-left"],
)
def test_file_names_are_cleaned(
    ingest: IngestServer, isolated_env: IsolatedEnv, filename: str, expected: str
) -> None:
    body, content_type = raw_multipart(filename, wav_bytes(0.1))
    with ingest.client() as client:
        response = client.post("/v1/jobs", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (202, 400), response.text
        if response.status_code == 400:
            # Bytes that are not UTF-8 at all (an encoded lone surrogate) are refused.
            assert "surrogate" in filename, response.text
            assert response.headers["content-type"] == PROBLEM
            return
        assert response.json()["filename"] == expected
        job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["filename"] == expected
    [[name]] = query(
        isolated_env.database_url,
        "SELECT original_filename FROM jobs WHERE id = $1",
        uuid.UUID(response.json()["id"]),
    )
    assert name == expected


def test_a_raw_upload_name_from_the_query_is_cleaned_too(ingest: IngestServer) -> None:
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs?filename=a%00b%ED%A0%80c.wav",
            content=wav_bytes(0.1),
            headers={"Content-Type": "audio/wav"},
        )
    assert response.status_code == 202, response.text
    assert "\x00" not in response.json()["filename"]
    assert response.json()["filename"].endswith("c.wav")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"metadata": json.dumps({"note": "a\u0000b"})}, "metadata"),
        ({"metadata": json.dumps({"k\u0000": 1})}, "metadata"),
        ({"metadata": '{"a": "\\ud800"}'}, "metadata"),
        ({"webhook_url": "https://example.org/\x00hook"}, "webhook_url"),
        ({"language": "e\x00n"}, "language"),
        ({"language": "en" * 2000}, "language"),
        ({"num_speakers": "2\x00"}, "num_speakers"),
    ],
)
def test_option_values_that_cannot_be_stored_are_refused_by_field(
    ingest: IngestServer, isolated_env: IsolatedEnv, data: dict[str, str], field: str
) -> None:
    jobs_before = job_count(isolated_env)
    files_before = stored(isolated_env.storage_dir)
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1), "audio/wav")}, data=data
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["detail"] or response.json().get("field") == field
    assert job_count(isolated_env) == jobs_before
    assert stored(isolated_env.storage_dir) == files_before


def test_an_unknown_field_name_with_control_characters_is_a_422(ingest: IngestServer) -> None:
    with ingest.client() as client:
        response = client.post(
            "/v1/jobs",
            content=wav_bytes(0.1),
            headers={"Content-Type": "audio/wav"},
            params={"col\x00our": "blue"},
        )
    assert response.status_code == 422, response.text
    assert "unknown field" in response.json()["detail"]


# --- broken container headers ----------------------------------------------------------


def _id3(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + b"\x00" * size


BROKEN = {
    "wav header, no samples": (wav_header(36, 0), "no samples"),
    "wav claiming 4 GB, 1 KB sent": (
        wav_header(4_000_000_036, 4_000_000_000) + b"\x01" * 1024,
        "declares",
    ),
    "wav with no data chunk": (
        wav_header(36, 0)[:36] + b"LIST" + struct.pack("<I", 4) + b"INFO",
        "no data chunk",
    ),
    "id3 tag then garbage": (_id3(64) + b"this is not an mpeg frame" * 20, "MPEG audio frame"),
    "id3 tag, nothing after": (_id3(64), "no audio"),
    "flac cut in its metadata": (b"fLaC\x00\x00\x00\x22" + b"\x00" * 20, "cut short"),
    "ogg cut in its first page": (
        b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\xff" + b"\x01" * 30,
        "cut short",
    ),
    "mp4 cut in its ftyp box": (struct.pack(">I", 32) + b"ftypisom" + b"\x00" * 8, "cut short"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_headers_are_refused_at_once(
    ingest: IngestServer, isolated_env: IsolatedEnv, case: str
) -> None:
    body, reason = BROKEN[case]
    jobs_before = job_count(isolated_env)
    files_before = stored(isolated_env.storage_dir)
    with ingest.client() as client:
        response = client.post("/v1/jobs", files={"file": ("x", body, "application/octet-stream")})
    assert response.status_code == 422, (case, response.text)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("broken-audio")
    assert reason in response.json()["detail"], response.json()["detail"]
    assert job_count(isolated_env) == jobs_before
    assert stored(isolated_env.storage_dir) == files_before


def test_streamed_and_complete_files_of_every_format_pass(ingest: IngestServer) -> None:
    """Headers with "unknown length" placeholders (written to a pipe) are no claim."""
    espeak = subprocess.run(
        ["espeak-ng", "--stdout", "streamed"], capture_output=True, check=True
    ).stdout
    bodies = {
        "ffmpeg wav to a pipe": ffmpeg_tone("wav"),
        "espeak-ng wav to a pipe": espeak,
        "mp3 with an id3 tag": ffmpeg_tone("mp3"),
        "flac": ffmpeg_tone("flac"),
        "ogg vorbis": ffmpeg_tone("ogg"),
        "fragmented mp4": ffmpeg_tone("mp4", 1.0, "-movflags", "frag_keyframe+empty_moov"),
    }
    assert struct.unpack("<I", bodies["ffmpeg wav to a pipe"][4:8])[0] == 0xFFFFFFFF
    with ingest.client() as client:
        for name, body in bodies.items():
            response = client.post("/v1/jobs", files={"file": ("f", body, "audio/x")})
            assert response.status_code == 202, (name, response.text)


# --- a full storage volume -------------------------------------------------------------


@pytest.fixture
def full_volume(tmp_path: Path) -> Iterator[Path]:
    with small_volume(tmp_path / "small") as mount:
        yield mount


def test_a_full_volume_answers_507_and_leaves_no_partial_file(
    isolated_env: IsolatedEnv, full_volume: Path, tmp_path: Path
) -> None:
    server = IngestServer(
        isolated_env.environ(STORAGE_DIR=str(full_volume)), tmp_path / "ingest.log"
    )
    try:
        jobs_before = job_count(isolated_env)
        with server.client() as client:
            big = client.post("/v1/jobs", files={"file": ("big.wav", wav_bytes(40.0), "audio/wav")})
            assert big.status_code == 507, big.text
            assert big.headers["content-type"] == PROBLEM
            assert int(big.headers["retry-after"]) > 0
            assert "storage" in big.json()["detail"]
            assert stored(full_volume) == []
            assert job_count(isolated_env) == jobs_before
            small = client.post(
                "/v1/jobs", files={"file": ("small.wav", wav_bytes(0.5), "audio/wav")}
            )
            assert small.status_code == 202, "the space was given back"
    finally:
        server.stop()
        for top in ("uploads", "incoming"):
            with contextlib.suppress(OSError):
                shutil.rmtree(full_volume / top)
