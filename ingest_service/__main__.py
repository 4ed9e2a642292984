"""`python -m ingest_service [serve|migrate]`: run the API, or only apply the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator

import structlog
import uvicorn

from infra import postgres
from ingest_service.config import get_settings
from ingest_service.logs import configure_logging

#: Where prometheus_client's multiprocess mode keeps the processes' values.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest_service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "migrate":
        applied = asyncio.run(postgres.migrate(settings.database_url))
        structlog.get_logger("ingest").info("schema up to date", applied=applied)
        return
    processes = settings.process_count
    with _shared_metrics(processes):
        structlog.get_logger("ingest").info("serving", processes=processes, port=settings.port)
        uvicorn.run(
            "ingest_service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=processes,
            log_config=None,
            access_log=False,
            loop="uvloop",
            http="httptools",
        )


@contextlib.contextmanager
def _shared_metrics(processes: int) -> Iterator[None]:
    """With several processes, have prometheus_client keep every process's metrics in a
    shared directory (its multiprocess mode), so /metrics, answered by any one of them,
    counts the whole service. The processes are spawned, so they inherit the setting."""
    if processes == 1 or MULTIPROC_VARIABLE in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ingest-metrics-") as directory:
        os.environ[MULTIPROC_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_VARIABLE]


if __name__ == "__main__":
    main()
