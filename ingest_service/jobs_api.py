"""`/v1/jobs`: upload audio, follow the job, read its result.

The handlers are thin: the upload is streamed through `intake` into storage, and every
read or write of a job goes through the `JobsService` they are given.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
import structlog
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.exceptions import InternalServerException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from contracts import JobStatus, JobSubmitted, ResultDocument
from contracts.api import DeliveryView, JobAccepted, JobPage, JobUpdate, JobView
from contracts.layout import UPLOADS_DIR
from contracts.routing import JOBS_PATH, job_path
from ingest_service import idempotency, metrics
from ingest_service.auth import OwnerDep, provide_owner
from ingest_service.config import Settings
from ingest_service.database import IdempotencyClaim, IdempotentJob, NewJob
from ingest_service.dependencies import JobChangesDep, JobsDep, RelayDep, SettingsDep
from ingest_service.intake import check_content_type, receive_multipart, receive_raw
from ingest_service.jobs_service import JobsService
from ingest_service.options import check_webhook_destination, parse_options
from ingest_service.problems import IngestError, InvalidRequest, ResultNotReady, as_problem
from ingest_service.renderers import RENDERERS
from ingest_service.sources import check_source_destination, receive_source
from ingest_service.storage import UploadWriter
from ingest_service.text import clean_name
from ingest_service.views import links_for

log = structlog.get_logger("ingest.jobs")

#: `audio_format` of a job whose audio is fetched from a URL (ffprobe tells the rest).
SOURCE_FORMAT = "url"

#: Seconds of silence after which an event stream sends a keep-alive comment.
HEARTBEAT_S = 15.0


class _Replay(Exception):
    """The upload repeats an Idempotency-Key: answer with the job it created."""


class JobsController(Controller):
    path = JOBS_PATH
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {"owner": Provide(provide_owner)}  # noqa: RUF012

    @post(
        "/",
        status_code=202,
        summary="Upload audio and create a job",
        description=(
            "multipart/form-data with a 'file' part and optional fields language, "
            "num_speakers, min_speakers, max_speakers, webhook_url, webhook_secret, metadata "
            "(a JSON object), delete_after (seconds); or a raw body with an audio/* "
            "Content-Type and the same options (plus filename) as query parameters; or "
            'application/json {"audio_url": ..., "source_headers": {...}, options}: the '
            "workers fetch the audio. An Idempotency-Key header makes a retried submit "
            "return the job it created."
        ),
    )
    async def create_job(
        self,
        request: Request[Any, Any, Any],
        owner: OwnerDep,
        settings: SettingsDep,
        jobs: JobsDep,
        relay: RelayDep,
    ) -> Response[JobAccepted]:
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        job_id = str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(job_id=job_id)
        writer = UploadWriter(
            settings.storage_dir, job_id, settings.max_upload_bytes, fsync=settings.fsync_uploads
        )
        try:
            outcome = await _accept(
                request, writer, job_id=job_id, key=key, owner=owner, settings=settings, jobs=jobs
            )
        except IngestError as exc:
            writer.discard()
            metrics.UPLOADS.labels(exc.slug).inc()
            raise
        except InternalServerException:
            # Litestar's signal that the client went away mid-body.
            writer.discard()
            metrics.UPLOADS.labels("aborted").inc()
            raise InvalidRequest("the client disconnected before the upload was complete") from None
        except Exception as exc:
            writer.discard()
            problem = as_problem(exc)
            metrics.UPLOADS.labels(problem.slug if problem else "error").inc()
            if problem is None:
                raise
            raise problem from exc
        except BaseException:
            writer.discard()
            metrics.UPLOADS.labels("aborted").inc()
            raise
        finally:
            metrics.UPLOAD_BYTES.inc(writer.size)

        if isinstance(outcome, IdempotentJob):
            metrics.UPLOADS.labels("replayed").inc()
            log.info("idempotent submit replayed", job_id=str(outcome.job_id))
            return Response(
                msgspec.convert(outcome.response, JobAccepted),
                status_code=202,
                headers={
                    "Location": job_path(str(outcome.job_id)),
                    idempotency.REPLAYED_HEADER: "true",
                },
            )
        relay.wake()
        metrics.UPLOADS.labels("accepted").inc()
        log.info("upload accepted", size_bytes=outcome.size_bytes, format=outcome.audio_format)
        return Response(outcome, status_code=202, headers={"Location": outcome.links.self})

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        owner: OwnerDep,
        jobs: JobsDep,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> JobPage:
        return await jobs.page(owner, status=status, limit=limit, cursor=cursor)

    @get("/{job_id:str}", summary="A job's status, stages and progress")
    async def get_job(self, owner: OwnerDep, jobs: JobsDep, job_id: FromPath[str]) -> JobView:
        return await jobs.view(job_id, owner)

    @get("/{job_id:str}/result", summary="The job's result document, or a rendering of it")
    async def get_result(
        self,
        owner: OwnerDep,
        jobs: JobsDep,
        job_id: FromPath[str],
        result_format: Annotated[str, QueryParameter(name="format")] = "json",
    ) -> Response[bytes]:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        if result_format != "json" and result_format not in RENDERERS:
            raise InvalidRequest(
                f"unknown format {result_format!r}; choose json, {', '.join(RENDERERS)}"
            )
        document = await jobs.result(job_id, owner)
        if result_format == "json":
            return Response(document.encode(), media_type="application/json")
        result = msgspec.json.decode(document, type=ResultDocument)
        if result_format == "rttm" and not result.turns:
            # Only a completed job has a result document.
            raise ResultNotReady(
                f"job {job_id} has no diarization (see its warnings)",
                job_status=JobStatus.COMPLETED.value,
            )
        render, media_type = RENDERERS[result_format]
        return Response(render(result).encode(), media_type=media_type)

    @get("/{job_id:str}/deliveries", summary="The job's webhook deliveries and their attempts")
    async def get_deliveries(
        self, owner: OwnerDep, jobs: JobsDep, job_id: FromPath[str]
    ) -> list[DeliveryView]:
        return await jobs.deliveries(job_id, owner)

    @post(
        "/{job_id:str}/diarize",
        status_code=202,
        summary="Diarize a completed job again with new speaker hints",
        description=(
            "JSON body with any of num_speakers, min_speakers, max_speakers (omitted = no "
            "hint). Runs diarize and the stages after it again, from the stored transcript; "
            "the job is processing until they finish."
        ),
    )
    async def rediarize(
        self,
        request: Request[Any, Any, Any],
        owner: OwnerDep,
        jobs: JobsDep,
        relay: RelayDep,
        job_id: FromPath[str],
    ) -> Response[JobView]:
        view = await jobs.rediarize(job_id, owner, await request.body())
        relay.wake()
        return Response(view, status_code=202, headers={"Location": view.links.self})

    @post(
        "/{job_id:str}/cancel",
        status_code=202,
        summary="Cancel a queued or processing job",
        description=(
            "A queued job never starts; a running one stops at its worker's next progress"
            " check (seconds). The job ends as cancelled and its webhook and job.cancelled"
            " event say so once. 409 once the job has ended."
        ),
    )
    async def cancel_job(
        self, owner: OwnerDep, jobs: JobsDep, relay: RelayDep, job_id: FromPath[str]
    ) -> Response[JobView]:
        view = await jobs.cancel(job_id, owner)
        relay.wake()
        log.info("job cancelled by the client")
        return Response(view, status_code=202, headers={"Location": view.links.self})

    @delete(
        "/{job_id:str}",
        status_code=204,
        summary="Delete a job: its upload, work files, result and every row",
        description="A running job stops first. Afterwards the job is a 404.",
    )
    async def delete_job(self, owner: OwnerDep, jobs: JobsDep, job_id: FromPath[str]) -> None:
        await jobs.delete(job_id, owner)
        log.info("job deleted by the client")

    @get(
        "/{job_id:str}/events",
        summary="Follow a job: server-sent events until it ends",
        description=(
            "text/event-stream. Events `stage` (the current stage or the status changed),"
            " `progress` (the progress moved) and `end` (the job ended, or was deleted),"
            " each with data {job_id, status, stage, progress, error}; the stream closes"
            " after `end`. A comment line keeps a quiet stream alive."
        ),
    )
    async def job_events(
        self, owner: OwnerDep, jobs: JobsDep, job_changes: JobChangesDep, job_id: FromPath[str]
    ) -> ServerSentEvent:
        updates = await jobs.follow(job_id, owner, job_changes, HEARTBEAT_S)
        return ServerSentEvent(_event_stream(updates), headers={"Cache-Control": "no-store"})


async def _event_stream(
    updates: AsyncIterator[JobUpdate | None],
) -> AsyncIterator[ServerSentEventMessage]:
    metrics.EVENT_STREAMS.inc()
    try:
        last: JobUpdate | None = None
        async for update in updates:
            if update is None:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if update.ended:
                name = "end"
            elif last is None or (update.stage, update.status) != (last.stage, last.status):
                name = "stage"
            else:
                name = "progress"
            last = update
            yield ServerSentEventMessage(data=msgspec.json.encode(update).decode(), event=name)
    finally:
        metrics.EVENT_STREAMS.dec()


async def _accept(
    request: Request[Any, Any, Any],
    writer: UploadWriter,
    *,
    job_id: str,
    key: str | None,
    owner: str | None,
    settings: Settings,
    jobs: JobsService,
) -> JobAccepted | IdempotentJob:
    """Receive, validate, store and record one upload: the 202 answer, or the job that
    its Idempotency-Key created before (the bytes just received are then discarded)."""
    kind, boundary = check_content_type(request.headers.get("content-type", ""))
    if kind == "json":
        return await _accept_source(
            request, job_id=job_id, key=key, owner=owner, settings=settings, jobs=jobs
        )
    if kind == "multipart":
        assert boundary is not None
        received = await receive_multipart(request, writer, boundary)
    else:
        received = await receive_raw(request, writer)
    validated = parse_options(received.fields)
    claim = None if key is None else idempotency.fingerprint(validated)
    if key is not None and claim is not None:
        earlier = await jobs.find_idempotent(owner, key)
        if earlier is not None:
            writer.discard()
            idempotency.check_replay(earlier, claim, key)
            return earlier
    if validated.options.webhook_url:
        await check_webhook_destination(
            validated.options.webhook_url, settings.webhook_allowed_networks
        )
    stored = await writer.finish()
    message = JobSubmitted(
        job_id=job_id,
        storage_path=stored.relative_path,
        original_filename=clean_name(received.filename, "upload"),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        content_type=clean_name(received.content_type, "application/octet-stream"),
        submitted_at=datetime.now(UTC),
        options=validated.options,
    )
    accepted = JobAccepted(
        id=job_id,
        status=JobStatus.QUEUED.value,
        created_at=message.submitted_at,
        filename=message.original_filename,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        audio_format=stored.audio_format.value,
        options=validated.options,
        links=links_for(job_id),
        webhook_secret=validated.webhook_secret if validated.secret_generated else None,
    )
    new_job = NewJob(
        message=message,
        owner=owner,
        audio_format=stored.audio_format.value,
        webhook_secret=validated.webhook_secret,
        idempotency=None
        if key is None or claim is None
        else IdempotencyClaim(key, claim, msgspec.to_builtins(accepted)),
    )
    earlier = await _record(jobs, new_job)
    if earlier is not None:
        writer.discard()
        return earlier
    return accepted


async def _record(jobs: JobsService, job: NewJob) -> IdempotentJob | None:
    """Record the job; the job of its Idempotency-Key instead if a concurrent request
    with the same key committed first."""
    try:
        await jobs.record(job)
    except asyncpg.UniqueViolationError:
        claim = job.idempotency
        if claim is None:
            raise
        earlier = await jobs.find_idempotent(job.owner, claim.key)
        if earlier is None:
            raise
        idempotency.check_replay(earlier, claim.fingerprint, claim.key)
        return earlier
    return None


async def _accept_source(
    request: Request[Any, Any, Any],
    *,
    job_id: str,
    key: str | None,
    owner: str | None,
    settings: Settings,
    jobs: JobsService,
) -> JobAccepted | IdempotentJob:
    """Record a job whose audio the workers fetch from a URL (a JSON body)."""
    source = await receive_source(request)
    validated = parse_options(source.fields)
    claim = None if key is None else idempotency.fingerprint(validated, source.url)
    if key is not None and claim is not None:
        earlier = await jobs.find_idempotent(owner, key)
        if earlier is not None:
            idempotency.check_replay(earlier, claim, key)
            return earlier
    await check_source_destination(source.url, settings.audio_url_allowed_networks)
    if validated.options.webhook_url:
        await check_webhook_destination(
            validated.options.webhook_url, settings.webhook_allowed_networks
        )
    message = JobSubmitted(
        job_id=job_id,
        storage_path=f"{UPLOADS_DIR}/{job_id}.source",
        original_filename=source.filename,
        size_bytes=0,
        sha256="",
        content_type="application/octet-stream",
        submitted_at=datetime.now(UTC),
        options=validated.options,
        audio_url=source.url,
    )
    accepted = JobAccepted(
        id=job_id,
        status=JobStatus.QUEUED.value,
        created_at=message.submitted_at,
        filename=message.original_filename,
        size_bytes=0,
        sha256="",
        audio_format=SOURCE_FORMAT,
        options=validated.options,
        links=links_for(job_id),
        source_url=source.shown_url,
        webhook_secret=validated.webhook_secret if validated.secret_generated else None,
    )
    new_job = NewJob(
        message=message,
        owner=owner,
        audio_format=SOURCE_FORMAT,
        webhook_secret=validated.webhook_secret,
        idempotency=None
        if key is None or claim is None
        else IdempotencyClaim(key, claim, msgspec.to_builtins(accepted)),
        source_url=source.shown_url,
        source_headers=source.headers,
    )
    earlier = await _record(jobs, new_job)
    return accepted if earlier is None else earlier
