"""The service's errors, each rendered as an RFC 9457 problem document.

    IngestError (500)
    ├── EmptyUpload (400)          ├── InvalidRequest (400)
    ├── Unauthorized (401)         ├── JobNotFound (404)
    ├── ResultNotReady (409)       ├── UploadTooLarge (413)
    ├── UnsupportedAudio (415)     ├── InvalidOptions (422)
    ├── BrokenAudio (422)          ├── UnstorableInput (422)
    ├── Unavailable (503)          └── InsufficientStorage (507)

Litestar's own HTTP exceptions (bad path parameters, unknown routes, wrong methods) are
rendered the same way. Errors from outside (`as_problem`): Postgres unreachable, timing
out or shutting down is a 503 with `Retry-After`, on every route and without a stack
trace per request; a value Postgres refuses is a 422; a full storage volume is a 507.
Anything else unexpected becomes a logged 500 problem.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, ClassVar

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger("ingest.problems")


class IngestError(Exception):
    """Base of the ingest service's errors: an HTTP status, a title and a detail."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class InvalidRequest(IngestError):
    status, title, slug = 400, "Invalid request", "invalid-request"


class EmptyUpload(IngestError):
    status, title, slug = 400, "Empty upload", "empty-upload"


class Unauthorized(IngestError):
    status, title, slug = 401, "Missing or unknown API key", "unauthorized"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["WWW-Authenticate"] = 'Bearer realm="audio-pipeline"'


class JobNotFound(IngestError):
    status, title, slug = 404, "Job not found", "job-not-found"


class ResultNotReady(IngestError):
    status, title, slug = 409, "Result not ready", "result-not-ready"


class CannotCancel(IngestError):
    status, title, slug = 409, "Job cannot be cancelled", "cannot-cancel"


class IdempotencyConflict(IngestError):
    status, title, slug = 422, "Idempotency-Key reused", "idempotency-key-reused"


class UploadTooLarge(IngestError):
    status, title, slug = 413, "Upload too large", "upload-too-large"


class UnsupportedAudio(IngestError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class InvalidOptions(IngestError):
    status, title, slug = 422, "Invalid job options", "invalid-options"


class BrokenAudio(IngestError):
    status, title, slug = 422, "Broken audio file", "broken-audio"


class UnstorableInput(IngestError):
    status, title, slug = 422, "Unstorable input", "unstorable-input"


#: Seconds a client is asked to wait before retrying during an outage.
RETRY_AFTER_S = 5


class Unavailable(IngestError):
    status, title, slug = 503, "Service unavailable", "unavailable"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["Retry-After"] = str(RETRY_AFTER_S)


class InsufficientStorage(IngestError):
    status, title, slug = 507, "Insufficient storage", "insufficient-storage"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["Retry-After"] = str(RETRY_AFTER_S * 12)


#: Postgres errors that say the database cannot serve now, not that the request is bad.
_DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes a connection that was closed under us
    asyncpg.OperatorInterventionError,  # shutting down, starting up, statement cancelled
    asyncpg.InsufficientResourcesError,  # too many connections, the database's disk full
    asyncpg.exceptions.InternalClientError,
)
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_NETWORK_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (*_DATABASE_DOWN, ConnectionError, TimeoutError, socket.gaierror)):
        return True
    # asyncpg reports a failed connect to several addresses as one OSError without errno.
    return (
        isinstance(exc, OSError)
        and exc.filename is None
        and (exc.errno is None or exc.errno in _NETWORK_ERRNOS)
    )


def as_problem(exc: BaseException) -> IngestError | None:
    """The problem an error from outside the service stands for, or None for a bug."""
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _STORAGE_FULL:
        return InsufficientStorage("the storage volume is full; retry later")
    if _unreachable(exc):
        return Unavailable("the database is unreachable; retry shortly")
    if isinstance(exc, asyncpg.DataError):
        return UnstorableInput(f"the database refused a value of this request: {exc}")
    return None


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[bytes]:
    """An `application/problem+json` response."""
    body: dict[str, Any] = {
        "type": f"urn:audio-pipeline:problem:{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def handle_ingest_error(request: Request[Any, Any, Any], exc: IngestError) -> Response[bytes]:
    if exc.status >= 500 and exc.status not in (503, 507):
        log.error("request failed", error=exc.detail, exc_info=exc)
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        instance=request.url.path,
        headers=exc.headers,
        **exc.extensions,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    extensions: dict[str, Any] = {}
    if isinstance(exc.extra, dict | list) and exc.extra:
        extensions["errors"] = exc.extra
    title = exc.__class__.__name__ if exc.status_code != 400 else "Invalid request"
    return problem_response(
        exc.status_code,
        title,
        exc.detail,
        instance=request.url.path,
        headers=exc.headers,
        **extensions,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    problem = as_problem(exc)
    if problem is not None:
        if problem.status >= 500:
            log.warning("request failed", error=problem.detail, cause=repr(exc))
        return handle_ingest_error(request, problem)
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return problem_response(
        500,
        "Internal server error",
        "The server failed to handle this request; it has been logged.",
        slug="internal-error",
        instance=request.url.path,
    )


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    IngestError: handle_ingest_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
