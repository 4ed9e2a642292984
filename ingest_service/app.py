"""The ingest service's Litestar application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from infra import postgres
from ingest_service.config import Settings, get_settings
from ingest_service.dependencies import DEPENDENCIES, app_state
from ingest_service.health_api import healthz, readyz
from ingest_service.job_changes import JobChanges
from ingest_service.jobs_api import JobsController
from ingest_service.logs import configure_logging
from ingest_service.problems import EXCEPTION_HANDLERS
from ingest_service.relay import OutboxRelay, Publisher
from ingest_service.request_context import RequestContextMiddleware
from ingest_service.retention import RetentionSweep


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; the lifespan migrates the schema and runs the outbox relay, the
    job-changes listener and the retention sweep."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await postgres.migrate(settings.database_url)
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        pool = await postgres.create_pool(settings.database_url, settings.db_pool_size)
        publisher = Publisher(settings.amqp_url)
        relay = OutboxRelay(
            pool,
            publisher,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        changes = JobChanges(settings.database_url)
        sweep = RetentionSweep(
            pool,
            settings.storage_dir,
            retention_s=settings.retention_s,
            interval_s=settings.retention_sweep_interval_s,
            orphan_grace_s=settings.orphan_grace_s,
        )
        # Read back by the providers in `ingest_service.dependencies`.
        app.state.pool = pool
        app.state.relay = relay
        app.state.job_changes = changes
        tasks = [
            asyncio.create_task(relay.run(), name="outbox-relay"),
            asyncio.create_task(changes.run(), name="job-changes"),
            asyncio.create_task(sweep.run(), name="retention-sweep"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await publisher.close()
            await pool.close()

    prometheus = PrometheusConfig(
        app_name="ingest", prefix="ingest_http", group_path=True, exclude=["/metrics"]
    )
    return Litestar(
        route_handlers=[JobsController, healthz, readyz, PrometheusController],
        dependencies=DEPENDENCIES,
        state=app_state(settings),
        lifespan=[lifespan],
        middleware=[RequestContextMiddleware, prometheus.middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        # Uploads are streamed and size-checked by the handler itself.
        request_max_body_size=None,
        openapi_config=OpenAPIConfig(title="Audio pipeline ingest API", version="1.0.0"),
        logging_config=None,
    )
