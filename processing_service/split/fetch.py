"""Downloading a job's audio from the URL the client gave, SSRF-guarded at every hop.

Redirects are followed here, not by httpx: each hop's host is resolved and checked
against the same policy as webhooks (`infra.webhook_hosts.pin`), and the request goes
to the address that was checked, so no byte is sent to a refused address, not even by
a redirect. The body streams to a `.part` file next to `dest`, hashed on the way, and
is renamed only once complete and fsync'd; any failure removes it.

The request headers the client gave for the source are credentials: they are sent to
the URL's own origin only (a redirect elsewhere drops them, as browsers drop
`Authorization`) and never logged or written into an error. Error texts name the URL
without its user info, query string or fragment, where signed URLs keep their secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import structlog

from contracts.webhook_policy import IPNetwork
from infra.webhook_hosts import HostRefused, pin
from processing_service.runtime.errors import (
    SourceNotAllowed,
    SourceRefused,
    SourceTooLarge,
    SourceUnavailable,
    TooManyRedirects,
)

log = structlog.get_logger("processing.fetch")

#: Statuses worth retrying besides 5xx (as for webhooks).
RETRY_STATUSES = frozenset({408, 429})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "audio-pipeline-fetch/1"
#: An HTTP header name (an RFC 9110 token) and a value httpx can send (visible ASCII).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")

#: Called with the bytes received so far; an exception it raises stops the download.
Watch = Callable[[int], None]


@dataclass(frozen=True)
class FetchedAudio:
    """A completed download, stored at `path`."""

    path: Path
    size_bytes: int
    sha256: str
    #: The source's Content-Type, or application/octet-stream when it sent none.
    content_type: str
    #: The URL the body came from after redirects, without user info, query string or
    #: fragment: safe to log and to show.
    final_url: str


def safe_url(url: str) -> str:
    """`url` without user info, query string and fragment, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch_audio(
    url: str,
    headers: Mapping[str, str],
    dest: Path,
    *,
    max_bytes: int,
    allowed: Sequence[IPNetwork],
    connect_timeout_s: float,
    read_timeout_s: float,
    max_redirects: int,
    watch: Watch | None = None,
) -> FetchedAudio:
    """Download `url` to `dest` with `headers`, following at most `max_redirects`.

    Raises `SourceNotAllowed`, `SourceRefused` (4xx but 408 and 429), `SourceTooLarge`
    or `TooManyRedirects`, all permanent, or `SourceUnavailable` (timeouts, connection
    errors, 5xx, 408, 429), worth a retry. Nothing is left at `dest` when it raises.
    `read_timeout_s` bounds each wait for the answer or the next bytes, not the whole
    download: the stage's time limit does that.
    """
    _check_headers(headers)
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    origin = _origin(url)
    current = url
    for hop in range(max_redirects + 1):
        given = headers if _origin(current) == origin else {}
        with _get(current, given, hop, allowed, timeout) as response:
            location = _redirect_target(response, current)
            if location is None:
                fetched = _store(response, current, dest, max_bytes, watch)
                log.info(
                    "audio fetched",
                    url=fetched.final_url,
                    redirects=hop,
                    size_bytes=fetched.size_bytes,
                    content_type=fetched.content_type,
                )
                return fetched
        log.debug("audio URL redirected", status=response.status_code, to=safe_url(location))
        current = location
    raise TooManyRedirects(
        f"the audio URL {safe_url(url)} redirected more than {max_redirects} times"
        f" (the last hop went to {safe_url(current)})"
    )


def _check_headers(headers: Mapping[str, str]) -> None:
    # httpx would refuse them later with an error that quotes the value: check first and
    # say nothing of the values.
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise SourceNotAllowed(
                "the request headers given for the audio URL are not valid HTTP headers"
                " (visible ASCII only; values are not shown)"
            )


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return "", "", None
    return parts.scheme, parts.hostname or "", port


@contextlib.contextmanager
def _get(
    url: str,
    headers: Mapping[str, str],
    hop: int,
    allowed: Sequence[IPNetwork],
    timeout: httpx.Timeout,
) -> Iterator[httpx.Response]:
    """Check `url`'s host, then GET it from the checked address, streaming.

    A client per hop, so that no connection made for one host name carries a request
    for another. An httpx error, also one while the body is read, becomes ours.
    """
    what = "the audio URL" if hop == 0 else f"a redirect of the audio URL (hop {hop})"
    try:
        pinned = pin(url, allowed)
    except HostRefused as exc:
        raise SourceNotAllowed(
            f"{what} {safe_url(url)} was refused: its host {exc}; audio URLs go to public"
            " addresses unless AUDIO_URL_ALLOWED_NETWORKS allows it"
        ) from None
    except ValueError:
        raise SourceNotAllowed(
            f"{what} is not an absolute http or https URL: {safe_url(url)}"
        ) from None
    except OSError as exc:
        raise SourceUnavailable(f"{what} {safe_url(url)}: {exc}") from None
    request_headers = {
        "User-Agent": USER_AGENT,
        **{k: v for k, v in headers.items() if k.lower() != "host"},
        "Host": pinned.host_header,
    }
    extensions = {"sni_hostname": pinned.sni_hostname}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET", pinned.url, headers=request_headers, extensions=extensions
            ) as response,
        ):
            yield response
    except httpx.HTTPError as exc:
        raise _unavailable(url, exc) from None


def _unavailable(url: str, exc: httpx.HTTPError) -> SourceRefused | SourceUnavailable:
    if isinstance(exc, httpx.LocalProtocolError):
        # Its text quotes what it could not send, which may be a header value.
        return SourceRefused(f"the request for {safe_url(url)} could not be sent as given")
    if isinstance(exc, httpx.TimeoutException):
        return SourceUnavailable(f"fetching {safe_url(url)} timed out ({type(exc).__name__})")
    detail = str(exc)[:200] or "no details"
    return SourceUnavailable(f"fetching {safe_url(url)} failed: {type(exc).__name__} ({detail})")


def _redirect_target(response: httpx.Response, url: str) -> str | None:
    """The absolute URL a redirect points to, None for a success; raise for an error."""
    code = response.status_code
    if response.is_success:
        return None
    where = safe_url(url)
    if code in REDIRECT_STATUSES:
        location = response.headers.get("location", "").strip()
        if not location:
            raise SourceRefused(f"the audio URL {where} answered HTTP {code} without a Location")
        return urljoin(url, str(location)).partition("#")[0]
    if code >= 500 or code in RETRY_STATUSES:
        raise SourceUnavailable(f"the audio URL {where} answered HTTP {code}")
    raise SourceRefused(f"the audio URL {where} answered HTTP {code}")


def _store(
    response: httpx.Response, url: str, dest: Path, max_bytes: int, watch: Watch | None
) -> FetchedAudio:
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceTooLarge(
            f"the audio at {safe_url(url)} is {int(declared)} bytes, more than the"
            f" {max_bytes} accepted (FETCH_MAX_BYTES)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with partial.open("wb") as out:
            size, sha256 = _copy(response, out, max_bytes, url, watch)
            out.flush()
            os.fsync(out.fileno())
        partial.rename(dest)
    except BaseException:
        # Also a time limit or a cancel raised into the loop: never leave a partial file.
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return FetchedAudio(
        path=dest,
        size_bytes=size,
        sha256=sha256,
        content_type=response.headers.get("content-type", "application/octet-stream"),
        final_url=safe_url(url),
    )


def _copy(
    response: httpx.Response, out: BinaryIO, max_bytes: int, url: str, watch: Watch | None
) -> tuple[int, str]:
    """Write the body to `out`: its size and SHA-256 (hex)."""
    digest = hashlib.sha256()
    size = 0
    for piece in response.iter_bytes():
        size += len(piece)
        if size > max_bytes:
            raise SourceTooLarge(
                f"the audio at {safe_url(url)} is larger than the {max_bytes} bytes"
                " accepted (FETCH_MAX_BYTES)"
            )
        digest.update(piece)
        out.write(piece)
        if watch is not None:
            watch(size)
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
