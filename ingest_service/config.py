"""Configuration of the ingest service, read from the environment once.

This is the only module of the service that reads `os.environ`; the README's
configuration table lists every variable named beside the fields below.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts.webhook_policy import IPNetwork, parse_networks
from infra.env import LOG_FORMATS, ConfigError, Env

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "ConfigError", "Settings", "get_settings"]

#: 2 GiB: the default largest upload accepted.
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from the environment, grouped by concern."""

    # Where the service's state lives.
    #: DATABASE_URL
    database_url: str = "postgresql://postgres@127.0.0.1:5432/audio_pipeline"
    #: INGEST_DB_POOL_SIZE: connections the API may hold open at once.
    db_pool_size: int = 10
    #: AMQP_URL
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    #: STORAGE_DIR: shared with the workers; uploads go under `uploads/`.
    storage_dir: Path = Path("var/storage")

    # The HTTP server and what it accepts.
    #: INGEST_HOST
    host: str = "127.0.0.1"
    #: INGEST_PORT
    port: int = 8000
    #: INGEST_PROCESSES: API processes sharing the port, each with its own outbox relay,
    #: event-stream listener and retention sweep; 0 (the default) starts one per CPU
    #: this process may run on.
    processes: int = 0
    #: INGEST_MAX_UPLOAD_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    #: INGEST_API_KEYS: comma-separated; none means an open API. Kept out of `repr` so
    #: that logging the settings never leaks a key.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: INGEST_FSYNC_UPLOADS: make each upload durable before answering 202.
    fsync_uploads: bool = True
    #: WEBHOOK_ALLOWED_NETWORKS: networks webhooks may reach although the SSRF guard
    #: refuses them by default.
    webhook_allowed_networks: tuple[IPNetwork, ...] = ()
    #: AUDIO_URL_ALLOWED_NETWORKS: networks audio URLs may point to although the SSRF
    #: guard refuses them by default (the workers read the same variable).
    audio_url_allowed_networks: tuple[IPNetwork, ...] = ()

    # The outbox relay.
    #: OUTBOX_POLL_INTERVAL_S: how often the relay looks for rows nobody woke it for.
    outbox_poll_interval_s: float = 2.0
    #: OUTBOX_BATCH_SIZE: rows published per relay pass.
    outbox_batch_size: int = 100

    # What the service keeps, and for how long.
    #: RETENTION_DAYS: finished jobs (rows and files) are deleted this long after they
    #: finish, unless a job's own `delete_after` says otherwise; 0 keeps them for ever.
    retention_days: float = 30.0
    #: RETENTION_SWEEP_INTERVAL_S: how often each API process runs the retention sweep.
    retention_sweep_interval_s: float = 600.0
    #: ORPHAN_GRACE_S: age after which a stored file that no job owns is deleted.
    orphan_grace_s: float = 3600.0

    # Logging.
    #: LOG_LEVEL
    log_level: str = "INFO"
    #: LOG_FORMAT: auto (JSON unless on a TTY), json or console.
    log_format: str = "auto"

    @property
    def process_count(self) -> int:
        """How many API processes to run: INGEST_PROCESSES, or one per usable CPU."""
        return self.processes or len(os.sched_getaffinity(0))

    @property
    def retention_s(self) -> float | None:
        """Seconds a finished job is kept by default; None: for ever."""
        return self.retention_days * 86400 if self.retention_days > 0 else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        read = Env(os.environ if env is None else env)
        defaults = cls()
        allowed = _networks(read, "WEBHOOK_ALLOWED_NETWORKS")
        return cls(
            database_url=read.text("DATABASE_URL", defaults.database_url),
            db_pool_size=read.integer("INGEST_DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            amqp_url=read.text("AMQP_URL", defaults.amqp_url),
            storage_dir=Path(read.text("STORAGE_DIR", str(defaults.storage_dir))),
            host=read.text("INGEST_HOST", defaults.host),
            port=read.integer("INGEST_PORT", defaults.port, minimum=1),
            processes=read.integer("INGEST_PROCESSES", defaults.processes, minimum=0),
            max_upload_bytes=read.integer(
                "INGEST_MAX_UPLOAD_BYTES", defaults.max_upload_bytes, minimum=1
            ),
            api_keys=read.items("INGEST_API_KEYS"),
            fsync_uploads=read.flag("INGEST_FSYNC_UPLOADS", defaults.fsync_uploads),
            webhook_allowed_networks=allowed,
            audio_url_allowed_networks=_networks(read, "AUDIO_URL_ALLOWED_NETWORKS"),
            outbox_poll_interval_s=read.number(
                "OUTBOX_POLL_INTERVAL_S", defaults.outbox_poll_interval_s, positive=True
            ),
            outbox_batch_size=read.integer(
                "OUTBOX_BATCH_SIZE", defaults.outbox_batch_size, minimum=1
            ),
            retention_days=read.number("RETENTION_DAYS", defaults.retention_days),
            retention_sweep_interval_s=read.number(
                "RETENTION_SWEEP_INTERVAL_S", defaults.retention_sweep_interval_s, positive=True
            ),
            orphan_grace_s=read.number("ORPHAN_GRACE_S", defaults.orphan_grace_s),
            log_level=read.text("LOG_LEVEL", defaults.log_level).upper(),
            log_format=read.choice("LOG_FORMAT", defaults.log_format, LOG_FORMATS),
        )


def _networks(read: Env, name: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(read.text(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
