"""Reading an upload request, multipart or raw, into an `UploadWriter` and option fields.

The body is consumed as a stream with the same push parser Litestar uses, so a file part
goes to storage chunk by chunk instead of being spooled to a temporary file first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from litestar import Request
from multipart import (
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
)

from ingest_service.problems import InvalidRequest, UnsupportedAudio, UploadTooLarge
from ingest_service.sniffing import ACCEPTED_FORMATS
from ingest_service.storage import UploadWriter

#: Room for form fields and part headers on top of the file itself, when judging a
#: multipart request by its Content-Length before reading it.
MULTIPART_OVERHEAD_BYTES = 256 * 1024
#: Largest text field accepted in a multipart form.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
FILE_FIELD = "file"


@dataclass
class ReceivedUpload:
    """What came with the file: its name and type as the client gave them, and options."""

    filename: str
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)


def _declared_length(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        raise InvalidRequest("Content-Length is not a number") from None


def _reject_oversized(request: Request[Any, Any, Any], max_bytes: int, overhead: int) -> None:
    length = _declared_length(request)
    if length is not None and length > max_bytes + overhead:
        raise UploadTooLarge(
            f"the upload ({length} bytes) exceeds the limit of {max_bytes} bytes",
            max_bytes=max_bytes,
        )


def _filename_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    for param in value.split(";"):
        key, _, raw = param.strip().partition("=")
        if key.lower() == "filename*" and "''" in raw:
            return unquote(raw.split("''", 1)[1])
        if key.lower() == "filename":
            return raw.strip().strip('"')
    return None


async def receive_raw(request: Request[Any, Any, Any], writer: UploadWriter) -> ReceivedUpload:
    """Stream a raw `audio/*` body; options come from the query string."""
    _reject_oversized(request, writer.max_bytes, 0)
    async for chunk in request.stream():
        writer.write(chunk)
    filename = (
        request.query_params.get("filename")
        or _filename_from_disposition(request.headers.get("content-disposition"))
        or "upload"
    )
    fields = {k: v for k, v in request.query_params.items() if k != "filename"}
    content_type = request.headers.get("content-type", "application/octet-stream")
    return ReceivedUpload(filename=filename, content_type=content_type, fields=fields)


class _FormReader:
    """Routes the parser's events: the file part to the writer, text parts to fields."""

    def __init__(self, writer: UploadWriter) -> None:
        self.writer = writer
        self.fields: dict[str, str] = {}
        self.upload: ReceivedUpload | None = None
        self._segment: MultipartSegment | None = None
        self._text = bytearray()

    def on_segment(self, segment: MultipartSegment) -> None:
        self._segment = segment
        if segment.name == FILE_FIELD:
            if self.upload is not None:
                raise InvalidRequest("send exactly one 'file' part")
            self.upload = ReceivedUpload(
                filename=segment.filename or "upload",
                content_type=segment.content_type or "application/octet-stream",
            )
        elif segment.filename:
            raise InvalidRequest(f"unexpected file part {segment.name!r}; the audio goes in 'file'")

    def on_data(self, data: bytes) -> None:
        assert self._segment is not None
        if self._segment.name == FILE_FIELD:
            self.writer.write(data)
            return
        self._text += data
        if len(self._text) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"form field {self._segment.name!r} is longer than {MAX_FIELD_BYTES} bytes"
            )

    def on_end(self) -> None:
        segment = self._segment
        assert segment is not None
        if segment.name != FILE_FIELD:
            if segment.name in self.fields:
                raise InvalidRequest(f"form field {segment.name!r} appears twice")
            charset = segment.charset or "utf-8"
            try:
                self.fields[segment.name] = self._text.decode(charset)
            except LookupError:
                raise InvalidRequest(
                    f"form field {segment.name!r}: unknown charset {charset!r}"
                ) from None
            except UnicodeDecodeError:
                raise InvalidRequest(
                    f"form field {segment.name!r} is not valid {charset}"
                ) from None
        self._text = bytearray()
        self._segment = None


async def receive_multipart(
    request: Request[Any, Any, Any], writer: UploadWriter, boundary: str
) -> ReceivedUpload:
    """Stream a `multipart/form-data` body: the `file` part to storage, the rest as fields."""
    _reject_oversized(request, writer.max_bytes, MULTIPART_OVERHEAD_BYTES)
    form = _FormReader(writer)
    try:
        with PushMultipartParser(boundary, max_segment_count=MAX_PARTS, strict=True) as parser:
            async for chunk in _chunks(request.stream()):
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        form.on_segment(event)
                    elif event:
                        form.on_data(event)
                    else:
                        form.on_end()
                if parser.closed:
                    break
    except ParserLimitReached:
        raise InvalidRequest(f"the form has more than {MAX_PARTS} parts") from None
    except (ParserError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed multipart/form-data: {exc}") from None
    if form.upload is None:
        raise InvalidRequest(
            f"the form has no 'file' part; send the audio ({ACCEPTED_FORMATS}) as 'file'"
        )
    form.upload.fields = form.fields
    return form.upload


async def _chunks(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        if chunk:
            yield chunk


def check_content_type(content_type: str) -> tuple[str, str | None]:
    """Classify the request's Content-Type: ('multipart', boundary), ('raw', None) or
    ('json', None) (audio by URL)."""
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "multipart/form-data":
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                return "multipart", value.strip('"')
        raise InvalidRequest("multipart/form-data without a boundary")
    if media_type == "application/json":
        return "json", None
    if media_type.startswith("audio/") or media_type in {
        "video/webm",
        "video/mp4",
        "application/ogg",
    }:
        return "raw", None
    raise UnsupportedAudio(
        f"send multipart/form-data with a 'file' part, a raw body with an audio/* "
        f"Content-Type, or application/json with an audio_url; got"
        f" {media_type or 'no Content-Type'}"
    )
