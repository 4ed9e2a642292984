"""A typed Python client for the ingest API.

Answers decode into the same msgspec Structs the API renders them with (`contracts.api`,
`contracts.result`). Every call is retried with exponential backoff and jitter while the
API answers 503 or 429 (waiting what its `Retry-After` asks) or cannot be reached; a
submit carries an `Idempotency-Key`, generated unless given, that stays the same across
its retries, so a retried upload never makes a second job.
"""

from __future__ import annotations

import mimetypes
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import msgspec

from audio_client import config
from audio_client.errors import ApiError, JobEnded, Problem, ServiceUnreachable
from audio_client.events import parse_events
from contracts import JobOptions, JobStatus, ResultDocument
from contracts.api import JobAccepted, JobPage, JobUpdate, JobView
from contracts.retry_after import retry_after_s
from contracts.routing import JOBS_PATH, job_path, result_path

#: What `result` can render besides the JSON document.
RESULT_FORMATS = ("json", "txt", "srt", "vtt", "rttm")
#: Answers that mean "not now, try again": the request was not acted on.
RETRY_STATUSES = frozenset({429, 503})
#: The header that makes a submit idempotent.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Seconds an event stream may stay silent (the API sends a keep-alive every 15 s).
EVENT_READ_TIMEOUT_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a call is retried."""

    #: Tries in all, the first one included.
    attempts: int = 6
    #: The first backoff; it doubles with every retry, up to `max_backoff_s`.
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    #: The longest `Retry-After` honoured as given; a longer one is cut to this.
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")

    def delay_s(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0 first)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        ceiling: float = min(self.max_backoff_s, self.backoff_s * 2.0**retry)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


class JobEvent(NamedTuple):
    """One server-sent event of a job: `stage`, `progress` or `end`, and where it is."""

    name: str
    update: JobUpdate


def option_values(options: JobOptions | None) -> dict[str, Any]:
    """The options a client set (defaults left out), as JSON values."""
    if options is None:
        return {}
    values = msgspec.to_builtins(options)
    return {name: value for name, value in values.items() if value not in (None, [], {})}


def form_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Option values as multipart form fields: text as is, the rest as JSON."""
    return {
        name: value if isinstance(value, str) else msgspec.json.encode(value).decode()
        for name, value in values.items()
    }


def is_url(audio: str | Path) -> bool:
    return isinstance(audio, str) and audio.lower().startswith(("http://", "https://"))


class Client:
    """The ingest API at `base_url` (else `AUDIO_PIPELINE_URL`, else 127.0.0.1:8000),
    with `api_key` (else `AUDIO_PIPELINE_API_KEY`, else none)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = config.from_env(config.URL_VARIABLE, base_url) or config.DEFAULT_URL
        key = config.from_env(config.API_KEY_VARIABLE, api_key)
        headers = {"User-Agent": "audio-pipeline-client/1"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- submitting ------------------------------------------------------------------

    def submit(
        self,
        audio: str | Path,
        options: JobOptions | None = None,
        *,
        webhook_secret: str | None = None,
        source_headers: Mapping[str, str] | None = None,
        filename: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Submit a file (uploaded, streamed from disk) or an http(s) URL (fetched by the
        workers, with `source_headers`); the 202 answer. The same idempotency key (one
        is generated unless given) goes with every retry."""
        key = idempotency_key or str(uuid.uuid4())
        headers = {IDEMPOTENCY_HEADER: key}
        values = option_values(options)
        if webhook_secret:
            values["webhook_secret"] = webhook_secret
        if is_url(audio):
            body = {"audio_url": str(audio), **values}
            if source_headers:
                body["source_headers"] = dict(source_headers)
            content = msgspec.json.encode(body)
            json_headers = headers | {"Content-Type": "application/json"}

            def send() -> httpx.Response:
                return self._http.post(f"{JOBS_PATH}/", content=content, headers=json_headers)

        else:
            if source_headers:
                raise ValueError("source_headers go with an audio URL, not a file")
            path = Path(audio)
            name = filename or path.name
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            fields = form_fields(values)

            def send() -> httpx.Response:
                # Opened per attempt: a retry sends the file from its start again.
                with path.open("rb") as stream:
                    return self._http.post(
                        f"{JOBS_PATH}/",
                        files={"file": (name, stream, content_type)},
                        data=fields,
                        headers=headers,
                    )

        response = self._call(send, retry_transport=True)
        return msgspec.json.decode(response.content, type=JobAccepted)

    # -- reading ---------------------------------------------------------------------

    def job(self, job_id: str) -> JobView:
        """The job's status, stages, progress, error and warnings."""
        return self._get(job_path(job_id), JobView)

    def jobs(
        self, *, status: JobStatus | str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of jobs, newest first; pass `next_cursor` on for the next."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = str(JobStatus(status).value)
        if cursor:
            params["cursor"] = cursor
        return self._get(f"{JOBS_PATH}/", JobPage, params=params)

    def result(self, job_id: str) -> ResultDocument:
        """The completed job's result document (an ApiError 409 before it completed)."""
        return self._get(result_path(job_id), ResultDocument)

    def rendered(self, job_id: str, result_format: str) -> bytes:
        """The result in one of RESULT_FORMATS, as the API renders it."""
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(RESULT_FORMATS)}")
        path = result_path(job_id)
        response = self._call(
            lambda: self._http.get(path, params={"format": result_format}), retry_transport=True
        )
        return response.content

    # -- steering --------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued or running job (an ApiError 409 once it has ended)."""
        path = f"{job_path(job_id)}/cancel"
        response = self._call(lambda: self._http.post(path), retry_transport=False)
        return msgspec.json.decode(response.content, type=JobView)

    def delete(self, job_id: str) -> None:
        """Delete the job and everything of it (a running one is stopped first)."""
        path = job_path(job_id)
        self._call(lambda: self._http.delete(path), retry_transport=False)

    # -- following -------------------------------------------------------------------

    def events(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[JobEvent]:
        """The job's server-sent events until `end`, reconnecting when the stream
        breaks (the API starts each stream with where the job is now)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        path = f"{job_path(job_id)}/events"
        failures = 0
        while True:
            try:
                for event in self._stream(path, deadline):
                    failures = 0
                    yield event
                    if event.name == "end":
                        return
            except (httpx.TransportError, _Retry) as exc:
                failures += 1
                if failures >= self._retry.attempts:
                    raise ServiceUnreachable(
                        f"the event stream of job {job_id} broke: {exc}"
                    ) from exc
                after = exc.after if isinstance(exc, _Retry) else None
                self._sleep(self._retry.delay_s(failures - 1, after))
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not end within {timeout_s} s")

    def _stream(self, path: str, deadline: float | None) -> Iterator[JobEvent]:
        """One connection's events; _Retry when the API asks to come back later."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=EVENT_READ_TIMEOUT_S)
        headers = {"Accept": "text/event-stream"}
        with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code in RETRY_STATUSES:
                response.read()
                raise _Retry(retry_after_s(response.headers.get("retry-after")))
            if response.is_error:
                response.read()
                raise ApiError(Problem.from_response(response.status_code, response.content))
            for event in parse_events(_until(response.iter_lines(), deadline)):
                yield JobEvent(event.event, msgspec.json.decode(event.data, type=JobUpdate))
        # The caller stops at `end`: a stream that got here closed before the job ended.
        raise _Retry(None, "the event stream closed before the job ended")

    def wait(
        self,
        job_id: str,
        *,
        on_event: Callable[[JobEvent], None] | None = None,
        timeout_s: float | None = None,
    ) -> JobView:
        """Follow the job until it ends and return it; JobEnded when it was deleted."""
        for event in self.events(job_id, timeout_s=timeout_s):
            if on_event is not None:
                on_event(event)
            if event.name == "end" and event.update.status == "deleted":
                raise JobEnded(job_id, "deleted", event.update.error)
        return self.job(job_id)

    # -- transport -------------------------------------------------------------------

    def _get(self, path: str, kind: type[T], params: Mapping[str, Any] | None = None) -> T:
        response = self._call(lambda: self._http.get(path, params=params), retry_transport=True)
        return msgspec.json.decode(response.content, type=kind)

    def _call(self, send: Callable[[], httpx.Response], *, retry_transport: bool) -> httpx.Response:
        """`send()` until it gets an answer that is not 503/429, within the retry policy.

        A connection that could not be made is always retried (nothing was sent); other
        transport errors only for calls safe to repeat (`retry_transport`)."""
        for retry in range(self._retry.attempts):
            last = retry == self._retry.attempts - 1
            try:
                response = send()
            except httpx.TransportError as exc:
                if last or not (retry_transport or isinstance(exc, httpx.ConnectError)):
                    raise ServiceUnreachable(
                        f"{self.base_url}: {type(exc).__name__}: {exc}"
                    ) from exc
                self._sleep(self._retry.delay_s(retry, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                self._sleep(
                    self._retry.delay_s(retry, retry_after_s(response.headers.get("retry-after")))
                )
                continue
            if response.is_error:
                raise ApiError(Problem.from_response(response.status_code, response.content))
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


class _Retry(Exception):
    """Connect to the event stream again (after `after` seconds when the API said)."""

    def __init__(self, after: float | None, reason: str = "the API asked to retry later") -> None:
        super().__init__(reason)
        self.after = after


def _until(lines: Iterator[str], deadline: float | None) -> Iterator[str]:
    """The lines, stopping with TimeoutError once `deadline` has passed (checked as each
    line, keep-alive comments included, arrives)."""
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the job did not end in time")
        yield line
