"""`python -m ingest_service [serve|migrate]`: run the API, or only apply the schema."""

from __future__ import annotations

import argparse
import asyncio

import structlog
import uvicorn

from infra import postgres
from ingest_service.config import get_settings
from ingest_service.logs import configure_logging


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
    uvicorn.run(
        "ingest_service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
