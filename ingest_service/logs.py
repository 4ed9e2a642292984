"""The ingest service's logging: the shared structlog set-up plus the API's own quieting.

`infra.logs` renders every line (JSON off a TTY, console on one, with `request_id` and
`job_id` from the context); this module only adjusts the third-party loggers the API
process runs with.
"""

from __future__ import annotations

import logging

from infra import logs

#: aiormq logs every failed connection attempt at ERROR; the relay and the readiness
#: probe report broker outages themselves, once per attempt.
QUIET = {"aiormq": logging.CRITICAL}


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up logging for the API process; call once per process."""
    logs.configure_logging(level, fmt, quiet=QUIET)
    # uvicorn's access log duplicates our one line per request; its error log stays.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
