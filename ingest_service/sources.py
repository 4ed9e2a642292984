"""`POST /v1/jobs` with a JSON body: audio the workers fetch from a URL.

The API stores nothing but the request: it checks the URL (http or https, a host the
SSRF policy lets it reach, as for webhooks) and the request headers for the source, and
records the job; the split stage downloads the audio, checking every redirect again.
The headers often carry credentials: they go to the database for the worker alone,
never into a message, a log line or an answer; the URL is shown without its query
string or user info, where signed URLs keep their secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec
from litestar import Request

from contracts.webhook_policy import IPNetwork
from ingest_service.options import check_destination
from ingest_service.problems import InvalidOptions, InvalidRequest
from ingest_service.text import clean_name

#: Largest JSON body accepted for a URL submit.
MAX_BODY_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
MAX_SOURCE_HEADERS = 20
MAX_HEADER_VALUE_CHARS = 4096
#: Headers the fetcher sets itself.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True)
class SourceRequest:
    """A URL submit: where the audio is, how to ask for it, and the option fields."""

    url: str
    headers: dict[str, str]
    fields: dict[str, str]

    @property
    def shown_url(self) -> str:
        """The URL without user info, query string or fragment."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    @property
    def filename(self) -> str:
        name = unquote(urlsplit(self.url).path.rstrip("/").rpartition("/")[2])
        return clean_name(name, "audio")


def _as_field(name: str, value: Any) -> str:
    """An option given as a JSON value, as the text a form field would carry."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise InvalidOptions(
            f"{name} must not be {msgspec.json.encode(value).decode()}", field=name
        )
    if isinstance(value, int | float):
        return str(value)
    return msgspec.json.encode(value).decode()


def _check_url(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidOptions("audio_url must be an http(s) URL", field="audio_url")
    url = raw.strip()
    message = "audio_url must be an absolute http(s) URL of at most 2048 characters"
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise InvalidOptions(message, field="audio_url") from None
    if len(url) > MAX_URL_CHARS or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidOptions(message, field="audio_url")
    return url


def _check_headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    problem = (
        f"source_headers must be an object of at most {MAX_SOURCE_HEADERS} HTTP headers"
        " (visible ASCII; not Host, Content-Length or hop-by-hop headers)"
    )
    if not isinstance(raw, dict) or len(raw) > MAX_SOURCE_HEADERS:
        raise InvalidOptions(problem, field="source_headers")
    for name, value in raw.items():
        # The values are never quoted back: they are often credentials.
        if (
            not _HEADER_NAME.fullmatch(name)
            or name.lower() in _RESERVED_HEADERS
            or not isinstance(value, str)
            or len(value) > MAX_HEADER_VALUE_CHARS
            or not _HEADER_VALUE.fullmatch(value)
        ):
            raise InvalidOptions(problem, field="source_headers")
    return dict(raw)


async def receive_source(request: Request[Any, Any, Any]) -> SourceRequest:
    """Read and check a JSON submit body."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidRequest(f"a JSON submit body is at most {MAX_BODY_BYTES} bytes")
    try:
        document = msgspec.json.decode(bytes(body))
    except msgspec.DecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidRequest('the body must be a JSON object: {"audio_url": ..., options}')
    url = _check_url(document.pop("audio_url", None))
    headers = _check_headers(document.pop("source_headers", None))
    fields = {str(name): _as_field(str(name), value) for name, value in document.items()}
    return SourceRequest(url=url, headers=headers, fields=fields)


async def check_source_destination(url: str, allowed: tuple[IPNetwork, ...]) -> None:
    """Refuse (422) an audio URL whose host is, or resolves to, an internal address."""
    await check_destination(
        url,
        allowed,
        field="audio_url",
        policy="audio is fetched from public addresses unless AUDIO_URL_ALLOWED_NETWORKS allows it",
    )
