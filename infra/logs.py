"""structlog set-up: JSON lines when not on a TTY, readable console lines on one.

Context variables bound with `structlog.contextvars` (`request_id`, `job_id`, `stage`)
appear on every line, including lines that standard-library loggers write.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

import structlog

#: Third-party loggers held at a level of their own, whatever LOG_LEVEL says. httpx logs
#: every request's full URL at INFO: an audio URL's query string may be its signature.
DEFAULT_QUIET = {
    "pika": logging.WARNING,
    "numba": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}


def configure_logging(
    level: str = "INFO", fmt: str = "auto", quiet: Mapping[str, int] = DEFAULT_QUIET
) -> None:
    """Route structlog and stdlib logging through one renderer; call once per process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quiet_level in quiet.items():
        logging.getLogger(name).setLevel(quiet_level)
