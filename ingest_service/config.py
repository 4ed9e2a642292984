"""Configuration of the ingest service, read from the environment once.

This is the only module of the service that reads `os.environ`; the README's
configuration table lists every variable below.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from contracts.webhook_policy import IPNetwork, parse_networks

#: 2 GiB: the default largest upload accepted.
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/audio_pipeline"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    storage_dir: Path = Path("var/storage")
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    fsync_uploads: bool = True
    db_pool_size: int = 10
    outbox_poll_interval_s: float = 2.0
    outbox_batch_size: int = 100
    log_level: str = "INFO"
    log_format: str = "auto"
    #: Networks webhooks may reach although the SSRF guard refuses them by default.
    webhook_allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = dict(os.environ) if env is None else env
        defaults = cls()
        log_format = env.get("LOG_FORMAT", defaults.log_format).lower()
        if log_format not in {"auto", "json", "console"}:
            raise ConfigError(f"LOG_FORMAT must be auto, json or console, got {log_format!r}")
        keys = tuple(k.strip() for k in env.get("INGEST_API_KEYS", "").split(",") if k.strip())
        try:
            allowed = parse_networks(env.get("WEBHOOK_ALLOWED_NETWORKS", ""))
        except ValueError as exc:
            raise ConfigError(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from None
        return cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            amqp_url=env.get("AMQP_URL") or defaults.amqp_url,
            storage_dir=Path(env.get("STORAGE_DIR") or defaults.storage_dir),
            host=env.get("INGEST_HOST") or defaults.host,
            port=_int(env, "INGEST_PORT", defaults.port, minimum=1),
            max_upload_bytes=_int(env, "INGEST_MAX_UPLOAD_BYTES", defaults.max_upload_bytes, 1),
            api_keys=keys,
            fsync_uploads=_bool(env, "INGEST_FSYNC_UPLOADS", defaults.fsync_uploads),
            db_pool_size=_int(env, "INGEST_DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            outbox_poll_interval_s=_float(
                env, "OUTBOX_POLL_INTERVAL_S", defaults.outbox_poll_interval_s
            ),
            outbox_batch_size=_int(env, "OUTBOX_BATCH_SIZE", defaults.outbox_batch_size, 1),
            log_level=(env.get("LOG_LEVEL") or defaults.log_level).upper(),
            log_format=log_format,
            webhook_allowed_networks=allowed,
        )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
