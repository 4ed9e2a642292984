"""`/v1/jobs`: upload audio, follow the job, read its result."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import InternalServerException
from litestar.params import Parameter

from contracts import JobOptions, JobStatus, JobSubmitted, ResultDocument
from ingest_service import metrics, store
from ingest_service.auth import provide_owner
from ingest_service.config import Settings
from ingest_service.intake import check_content_type, receive_multipart, receive_raw
from ingest_service.options import check_webhook_destination, parse_options, speaker_hints
from ingest_service.problems import (
    IngestError,
    InvalidRequest,
    JobNotFound,
    ResultNotReady,
    Unavailable,
)
from ingest_service.renderers import RENDERERS
from ingest_service.storage import UploadWriter
from ingest_service.views import (
    DeliveryView,
    JobAccepted,
    JobPage,
    JobView,
    delivery_views,
    job_view,
    links_for,
)

log = structlog.get_logger("ingest.jobs")

#: Errors that mean the database is unreachable or failing, not that the input is bad.
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequest(f"{raw!r} is not a job id (a UUID)") from None


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment = datetime.fromisoformat(created_at)
        # Postgres stores UTC: a time that cannot be converted to it is not ours either.
        moment.astimezone(UTC)
        return moment, uuid.UUID(job_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned") from None


async def visible_job(pool: Any, job_id: str, owner: str | None) -> tuple[Any, list[Any]]:
    """The job and its stages, or a 404 when it does not exist or belongs to another key."""
    structlog.contextvars.bind_contextvars(job_id=job_id)
    found = await store.fetch_job(pool, parse_job_id(job_id), owner)
    if found is None:
        raise JobNotFound(f"no job {job_id}")
    return found


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {"owner": Provide(provide_owner)}  # noqa: RUF012

    @post(
        "/",
        status_code=202,
        summary="Upload audio and create a job",
        description=(
            "multipart/form-data with a 'file' part and optional fields language, "
            "num_speakers, min_speakers, max_speakers, webhook_url, webhook_secret, metadata "
            "(a JSON object); or a raw body with an audio/* Content-Type and the same "
            "options (plus filename) as query parameters."
        ),
    )
    async def create_job(
        self, request: Request[Any, Any, Any], owner: str | None
    ) -> Response[JobAccepted]:
        settings: Settings = request.app.state.settings
        job_id = str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(job_id=job_id)
        writer = UploadWriter(
            settings.storage_dir, job_id, settings.max_upload_bytes, fsync=settings.fsync_uploads
        )
        try:
            kind, boundary = check_content_type(request.headers.get("content-type", ""))
            if kind == "multipart":
                assert boundary is not None
                received = await receive_multipart(request, writer, boundary)
            else:
                received = await receive_raw(request, writer)
            validated = parse_options(received.fields)
            if validated.options.webhook_url:
                await check_webhook_destination(
                    validated.options.webhook_url, settings.webhook_allowed_networks
                )
            stored = await writer.finish()
            message = JobSubmitted(
                job_id=job_id,
                storage_path=stored.relative_path,
                original_filename=received.filename[:255],
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                content_type=received.content_type[:255],
                submitted_at=datetime.now(UTC),
                options=validated.options,
            )
            try:
                created_at = await store.insert_job(
                    request.app.state.pool,
                    store.NewJob(
                        message=message,
                        owner=owner,
                        audio_format=stored.audio_format.value,
                        webhook_secret=validated.webhook_secret,
                    ),
                )
            except DATABASE_ERRORS as exc:
                raise Unavailable("the job could not be recorded; retry the upload") from exc
        except IngestError as exc:
            writer.discard()
            metrics.UPLOADS.labels(exc.slug).inc()
            raise
        except InternalServerException:
            # Litestar's signal that the client went away mid-body.
            writer.discard()
            metrics.UPLOADS.labels("aborted").inc()
            raise InvalidRequest("the client disconnected before the upload was complete") from None
        except BaseException:
            writer.discard()
            metrics.UPLOADS.labels("error").inc()
            raise
        finally:
            metrics.UPLOAD_BYTES.inc(writer.size)

        request.app.state.relay.wake()
        metrics.UPLOADS.labels("accepted").inc()
        log.info("upload accepted", size_bytes=stored.size_bytes, format=stored.audio_format)
        accepted = JobAccepted(
            id=job_id,
            status=JobStatus.QUEUED.value,
            created_at=created_at,
            filename=message.original_filename,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            audio_format=stored.audio_format.value,
            options=validated.options,
            links=links_for(job_id),
            webhook_secret=validated.webhook_secret if validated.secret_generated else None,
        )
        return Response(accepted, status_code=202, headers={"Location": accepted.links.self})

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        owner: str | None,
        status: JobStatus | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> JobPage:
        after = decode_cursor(cursor) if cursor else None
        rows = await store.list_jobs(
            request.app.state.pool, owner, status=status, limit=limit + 1, after=after
        )
        items = [job_view(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return JobPage(items=items, next_cursor=next_cursor)

    @get("/{job_id:str}", summary="A job's status, stages and progress")
    async def get_job(
        self, request: Request[Any, Any, Any], owner: str | None, job_id: str
    ) -> JobView:
        pool = request.app.state.pool
        job, stages = await visible_job(pool, job_id, owner)
        return job_view(job, stages, await store.fetch_dead_letters(pool, job["id"]))

    @get("/{job_id:str}/result", summary="The job's result document, or a rendering of it")
    async def get_result(
        self,
        request: Request[Any, Any, Any],
        owner: str | None,
        job_id: str,
        result_format: Annotated[str, Parameter(query="format")] = "json",
    ) -> Response[bytes]:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        if result_format != "json" and result_format not in RENDERERS:
            raise InvalidRequest(
                f"unknown format {result_format!r}; choose json, {', '.join(RENDERERS)}"
            )
        pool = request.app.state.pool
        job, _ = await visible_job(pool, job_id, owner)
        document = None
        if job["status"] == JobStatus.COMPLETED:
            document = await store.fetch_result(pool, job["id"])
        if document is None:
            reason = f": {job['error']}" if job["error"] else ""
            raise ResultNotReady(
                f"job {job_id} is {job['status']} and has no result{reason}",
                job_status=job["status"],
            )
        if result_format == "json":
            return Response(document.encode(), media_type="application/json")
        result = msgspec.json.decode(document, type=ResultDocument)
        if result_format == "rttm" and not result.turns:
            raise ResultNotReady(
                f"job {job_id} has no diarization (see its warnings)", job_status=job["status"]
            )
        render, media_type = RENDERERS[result_format]
        return Response(render(result).encode(), media_type=media_type)

    @get("/{job_id:str}/deliveries", summary="The job's webhook deliveries and their attempts")
    async def get_deliveries(
        self, request: Request[Any, Any, Any], owner: str | None, job_id: str
    ) -> list[DeliveryView]:
        pool = request.app.state.pool
        job, _ = await visible_job(pool, job_id, owner)
        return delivery_views(await store.fetch_deliveries(pool, job["id"]))

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
        self, request: Request[Any, Any, Any], owner: str | None, job_id: str
    ) -> Response[JobView]:
        pool = request.app.state.pool
        job, _ = await visible_job(pool, job_id, owner)
        options = speaker_hints(await request.body(), msgspec.convert(job["options"], JobOptions))
        refused = await store.request_rediarization(pool, job["id"], options)
        if refused is not None:
            raise ResultNotReady(refused, job_status=job["status"])
        request.app.state.relay.wake()
        view = job_view(*await visible_job(pool, job_id, owner))
        return Response(view, status_code=202, headers={"Location": view.links.self})
