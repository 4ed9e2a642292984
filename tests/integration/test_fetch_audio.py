"""The audio-URL fetcher against a real HTTP server on loopback.

Every socket the fetcher connects is recorded (and any not to 127.0.0.1 refused), so
the SSRF tests show that nothing was sent to a refused address, not merely that an
error came back.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from contracts.webhook_policy import IPNetwork
from processing_service.runtime.errors import (
    PermanentError,
    ProcessingError,
    SourceNotAllowed,
    SourceRefused,
    SourceTooLarge,
    SourceUnavailable,
    TooManyRedirects,
    TransientError,
)
from processing_service.split.fetch import FetchedAudio, fetch_audio
from tests.support.audio import wav_bytes

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
#: Limit of the size tests; the WAV served is well under it.
MAX_BYTES = 64 * 1024
SECRET = "Bearer s3cret-token-for-the-source"
SOURCE_HEADERS = {"Authorization": SECRET, "X-Source-Key": "k3y-value-9f2e"}
WAV = wav_bytes(0.5)
READ_TIMEOUT_S = 0.5


@dataclass
class AudioSource:
    """A scripted loopback HTTP server: each path answers as `ROUTES` says."""

    server: ThreadingHTTPServer
    #: Request headers (lower-cased names) received, by path without the query string.
    received: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: Set at teardown: lets stalled answers finish.
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def hits(self, path: str) -> int:
        return len(self.received.get(path, []))


Route = Callable[[BaseHTTPRequestHandler, AudioSource], None]


def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(code)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def _redirect(location: str, code: int = 302) -> Route:
    return lambda h, _: _send(h, code, Location=location)


def _chunked_growing(handler: BaseHTTPRequestHandler, source: AudioSource) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "audio/wav")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    piece = b"\0" * 8192
    for _ in range(64):  # 512 KiB in all: 8 times the limit
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.flush()
    handler.wfile.write(b"0\r\n\r\n")


def _stall_before_answer(handler: BaseHTTPRequestHandler, source: AudioSource) -> None:
    source.release.wait(10)
    _send(handler, 200, WAV, Content_Type="audio/wav")


def _stall_mid_body(handler: BaseHTTPRequestHandler, source: AudioSource) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(WAV)))
    handler.end_headers()
    handler.wfile.write(WAV[:1000])
    handler.wfile.flush()
    source.release.wait(10)
    handler.wfile.write(WAV[1000:])


ROUTES: dict[str, Route] = {
    "/audio.wav": lambda h, _: _send(h, 200, WAV, Content_Type="audio/wav"),
    "/moved": _redirect("/audio.wav"),
    "/moved-twice": _redirect("/moved", 307),
    "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
    "/to-private": _redirect("http://10.0.0.1/audio.wav", 301),
    "/to-ftp": _redirect("ftp://127.0.0.1/audio.wav"),
    "/loop": _redirect("/loop"),
    "/no-location": lambda h, _: _send(h, 302),
    "/declared-too-large": lambda h, _: _send(h, 200, b"\0" * (MAX_BYTES + 1)),
    "/growing": _chunked_growing,
    "/stall-before-answer": _stall_before_answer,
    "/stall-mid-body": _stall_mid_body,
}


def _route(path: str) -> Route:
    if path in ROUTES:
        return ROUTES[path]
    code = path.removeprefix("/status/")
    if code.isdigit():
        return lambda h, _: _send(h, int(code), b"nope")
    return lambda h, _: _send(h, 404)


@contextlib.contextmanager
def serving() -> Iterator[AudioSource]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    source = AudioSource(server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self) -> None:
            # The fetcher hangs up on purpose (too large, timed out).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                super().handle()

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            source.received.setdefault(path, []).append(headers)
            _route(path)(self, source)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield source
    finally:
        source.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def source() -> Iterator[AudioSource]:
    with serving() as running:
        yield running


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket connects to in the test; anything but 127.0.0.1 fails."""
    seen: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        seen.append(str(address[0]))
        if address[0] != "127.0.0.1":
            raise OSError(f"the test refuses to connect to {address[0]}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def fetch(url: str, dest: Path, **overrides: Any) -> FetchedAudio:
    kwargs: dict[str, Any] = {
        "max_bytes": MAX_BYTES,
        "allowed": LOOPBACK,
        "connect_timeout_s": 2.0,
        "read_timeout_s": READ_TIMEOUT_S,
        "max_redirects": 5,
        **overrides,
    }
    return fetch_audio(url, SOURCE_HEADERS, dest, **kwargs)


def failure(url: str, dest: Path, **overrides: Any) -> ProcessingError:
    """The error fetching `url` raises; checks that it leaks no header and leaves no file."""
    with capture_logs() as logs, pytest.raises(ProcessingError) as caught:
        fetch(url, dest, **overrides)
    text = str(caught.value)
    logged = "".join(traceback.format_exception(caught.value))  # as a worker logs it
    for value in SOURCE_HEADERS.values():
        assert value not in text
        assert value not in logged
        assert value not in repr(logs)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()
    assert list(dest.parent.iterdir()) == []
    return caught.value


def test_a_wav_is_stored_with_its_hash_and_size(source: AudioSource, tmp_path: Path) -> None:
    dest = tmp_path / "job" / "upload.wav"
    with capture_logs() as logs:
        got = fetch(f"{source.base}/audio.wav?sig=abc", dest)
    assert dest.read_bytes() == WAV
    assert got.path == dest
    assert got.size_bytes == len(WAV)
    assert got.sha256 == hashlib.sha256(WAV).hexdigest()
    assert got.content_type == "audio/wav"
    assert got.final_url == f"{source.base}/audio.wav"  # no query string: it may sign
    assert not dest.with_name("upload.wav.part").exists()
    assert [entry["event"] for entry in logs] == ["audio fetched"]
    assert SECRET not in repr(logs)
    assert "sig=abc" not in repr(logs)


def test_the_given_headers_reach_the_server(source: AudioSource, tmp_path: Path) -> None:
    fetch(f"{source.base}/audio.wav", tmp_path / "a.wav")
    (received,) = source.received["/audio.wav"]
    assert received["authorization"] == SECRET
    assert received["x-source-key"] == "k3y-value-9f2e"
    assert received["host"] == source.base.removeprefix("http://")


def test_redirects_to_loopback_paths_are_followed_with_the_headers(
    source: AudioSource, tmp_path: Path
) -> None:
    got = fetch(f"{source.base}/moved-twice", tmp_path / "a.wav")
    assert got.sha256 == hashlib.sha256(WAV).hexdigest()
    assert got.final_url == f"{source.base}/audio.wav"
    assert [source.hits(p) for p in ("/moved-twice", "/moved", "/audio.wav")] == [1, 1, 1]
    assert source.received["/audio.wav"][0]["authorization"] == SECRET


def test_a_redirect_to_another_origin_does_not_carry_the_headers(
    source: AudioSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving() as other:
        monkeypatch.setitem(ROUTES, "/elsewhere/go", _redirect(f"{other.base}/audio.wav"))
        got = fetch(f"{source.base}/elsewhere/go", tmp_path / "a.wav")
        assert got.final_url == f"{other.base}/audio.wav"
        (received,) = other.received["/audio.wav"]
    assert "authorization" not in received
    assert "x-source-key" not in received
    assert source.received["/elsewhere/go"][0]["authorization"] == SECRET


@pytest.mark.parametrize(
    ("path", "address", "reason"),
    [
        ("/to-metadata", "169.254.169.254", "a cloud metadata address"),
        ("/to-private", "10.0.0.1", "a private address"),
    ],
)
def test_a_redirect_to_a_refused_address_is_refused_before_connecting(
    source: AudioSource,
    tmp_path: Path,
    connections: list[str],
    path: str,
    address: str,
    reason: str,
) -> None:
    error = failure(f"{source.base}{path}", tmp_path / "a.wav")
    assert isinstance(error, SourceNotAllowed)
    assert isinstance(error, PermanentError)
    assert "redirect" in str(error)
    assert f"{address} is {reason}" in str(error)
    assert "AUDIO_URL_ALLOWED_NETWORKS" in str(error)
    assert address not in connections
    assert set(connections) == {"127.0.0.1"}


def test_without_loopback_allowed_the_first_url_is_refused(
    source: AudioSource, tmp_path: Path, connections: list[str]
) -> None:
    for url in (f"{source.base}/audio.wav", source.base.replace("127.0.0.1", "localhost")):
        error = failure(url, tmp_path / "a.wav", allowed=())
        assert isinstance(error, SourceNotAllowed)
        assert "a loopback address" in str(error)
    assert connections == []
    assert source.received == {}


def test_only_http_and_https_are_fetched(source: AudioSource, tmp_path: Path) -> None:
    for url in ("ftp://127.0.0.1/audio.wav", "file:///etc/passwd", "http:///no-host"):
        error = failure(url, tmp_path / "a.wav")
        assert isinstance(error, SourceNotAllowed)
        assert "not an absolute http or https URL" in str(error)
    error = failure(f"{source.base}/to-ftp", tmp_path / "a.wav")
    assert isinstance(error, SourceNotAllowed)
    assert "ftp://127.0.0.1/audio.wav" in str(error)


def test_too_many_redirects_are_refused(source: AudioSource, tmp_path: Path) -> None:
    error = failure(f"{source.base}/loop", tmp_path / "a.wav", max_redirects=3)
    assert isinstance(error, TooManyRedirects)
    assert "more than 3 times" in str(error)
    assert source.hits("/loop") == 4
    error = failure(f"{source.base}/no-location", tmp_path / "a.wav")
    assert isinstance(error, SourceRefused)
    assert "without a Location" in str(error)


@pytest.mark.parametrize("path", ["/declared-too-large", "/growing"])
def test_an_oversized_source_is_refused_and_nothing_is_kept(
    source: AudioSource, tmp_path: Path, path: str
) -> None:
    error = failure(f"{source.base}{path}", tmp_path / "a.wav")
    assert isinstance(error, SourceTooLarge)
    assert str(MAX_BYTES) in str(error)
    assert "FETCH_MAX_BYTES" in str(error)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_a_4xx_answer_is_permanent(source: AudioSource, tmp_path: Path, code: int) -> None:
    error = failure(f"{source.base}/status/{code}?X-Amz-Signature=deadbeef", tmp_path / "a.wav")
    assert isinstance(error, SourceRefused)
    assert str(code) in str(error)
    assert f"{source.base}/status/{code}" in str(error)
    assert "deadbeef" not in str(error)


@pytest.mark.parametrize("code", [500, 502, 503, 408, 429])
def test_5xx_408_and_429_are_transient(source: AudioSource, tmp_path: Path, code: int) -> None:
    error = failure(f"{source.base}/status/{code}", tmp_path / "a.wav")
    assert isinstance(error, SourceUnavailable)
    assert isinstance(error, TransientError)
    assert str(code) in str(error)


@pytest.mark.parametrize("path", ["/stall-before-answer", "/stall-mid-body"])
def test_a_source_that_stalls_past_the_read_timeout_is_transient(
    source: AudioSource, tmp_path: Path, path: str
) -> None:
    error = failure(f"{source.base}{path}", tmp_path / "a.wav")
    assert isinstance(error, SourceUnavailable)
    assert "timed out" in str(error)


def test_a_closed_port_is_transient(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(f"http://127.0.0.1:{port}/audio.wav", tmp_path / "a.wav")
    assert isinstance(error, SourceUnavailable)
    assert "ConnectError" in str(error)
