"""The audio fetcher's refusals that need no server, its settings, and `pin`.

Nothing here opens a connection: every case is refused before one (any connect fails
the test).
"""

from __future__ import annotations

import ipaddress
import socket
import traceback
from pathlib import Path
from typing import Any

import pytest

from infra.webhook_hosts import HostRefused, pin
from processing_service.runtime.config import ConfigError, FetchSettings, Settings
from processing_service.runtime.errors import PermanentError, SourceNotAllowed
from processing_service.split.fetch import fetch_audio, safe_url

SECRET = "tok-51e8c0ffee"


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)


def _fetch(url: str, headers: dict[str, str], dest: Path) -> None:
    fetch_audio(
        url,
        headers,
        dest,
        max_bytes=1024,
        allowed=(),
        connect_timeout_s=1,
        read_timeout_s=1,
        max_redirects=5,
    )


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        # Values httpx would refuse with an error quoting them.
        ("https://audio.example.org/a.wav", {"Authorization": f"Bearer {SECRET}\r\nX: y"}),
        ("https://audio.example.org/a.wav", {"Authorization": f"Bearer {SECRET}\x00"}),
        ("https://audio.example.org/a.wav", {"Authorization": f"Bearer {SECRET}é"}),
        ("https://audio.example.org/a.wav", {f"X {SECRET}": "v"}),
        # Refused before any request, with good headers.
        ("http://10.0.0.1/a.wav", {"Authorization": f"Bearer {SECRET}"}),
        ("http://169.254.169.254/latest/meta-data/", {"X-Key": SECRET}),
        ("http://[::1]:8080/a.wav", {"X-Key": SECRET}),
        ("ftp://audio.example.org/a.wav", {"X-Key": SECRET}),
        (f"https://user:{SECRET}@10.1.2.3/a.wav?sig={SECRET}", {"X-Key": "v"}),
    ],
)
def test_the_source_headers_never_appear_in_the_error(
    url: str, headers: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(SourceNotAllowed) as caught:
        _fetch(url, headers, tmp_path / "a.wav")
    error = caught.value
    assert isinstance(error, PermanentError)
    # The traceback as a worker logs it, causes and contexts included.
    logged = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error), logged):
        assert SECRET not in text
    assert list(tmp_path.iterdir()) == []


def test_a_refusal_names_the_address_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SourceNotAllowed) as caught:
        _fetch("http://169.254.169.254/latest/meta-data/?x=1", {}, tmp_path / "a.wav")
    text = str(caught.value)
    assert "http://169.254.169.254/latest/meta-data/" in text
    assert "169.254.169.254 is a cloud metadata address" in text
    assert "AUDIO_URL_ALLOWED_NETWORKS" in text


def test_safe_url_drops_credentials_query_and_fragment() -> None:
    assert (
        safe_url("https://u:p@h.example:8443/a/b.wav?sig=1#t") == "https://h.example:8443/a/b.wav"
    )
    assert safe_url("http://[::1/") == "<malformed URL>"


def test_pin_keeps_the_host_name_for_the_host_header_and_tls() -> None:
    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    pinned = pin("https://u:p@127.0.0.1:8443/a.wav?x=1", loopback)
    assert pinned.url == "https://u:p@127.0.0.1:8443/a.wav?x=1"
    assert pinned.host_header == "127.0.0.1:8443"
    assert pin("http://[::1]/a", loopback).url == "http://[::1]/a"
    with pytest.raises(HostRefused, match=r"^10\.0\.0\.1 is a private address$"):
        pin("http://10.0.0.1/", loopback)
    for bad in ("file:///etc/passwd", "http:///x", "http://h.example:99999/"):
        with pytest.raises(ValueError, match="http"):
            pin(bad, ())


def test_fetch_settings_come_from_the_environment() -> None:
    assert Settings.from_env({}).fetch == FetchSettings()
    assert FetchSettings().max_bytes == 2 * 1024**3
    assert FetchSettings().max_redirects == 5
    fetch = Settings.from_env(
        {
            "FETCH_MAX_BYTES": "1000",
            "FETCH_CONNECT_TIMEOUT_S": "2.5",
            "FETCH_READ_TIMEOUT_S": "7",
            "FETCH_MAX_REDIRECTS": "0",
            "AUDIO_URL_ALLOWED_NETWORKS": "127.0.0.0/8, ::1",
        }
    ).fetch
    assert fetch == FetchSettings(
        max_bytes=1000,
        connect_timeout_s=2.5,
        read_timeout_s=7.0,
        max_redirects=0,
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")),
    )


@pytest.mark.parametrize(
    "env",
    [
        {"FETCH_MAX_BYTES": "0"},
        {"FETCH_CONNECT_TIMEOUT_S": "0"},
        {"FETCH_READ_TIMEOUT_S": "soon"},
        {"FETCH_MAX_REDIRECTS": "-1"},
        {"AUDIO_URL_ALLOWED_NETWORKS": "10.0.0.0/8, intranet"},
    ],
)
def test_bad_fetch_settings_are_named(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)
