from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest_service.config import DEFAULT_MAX_UPLOAD_BYTES, ConfigError, Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 2 * 1024**3
    assert settings.api_keys == ()
    assert settings.fsync_uploads is True
    # One API process per CPU this process may use.
    assert settings.process_count == len(os.sched_getaffinity(0))
    assert Settings.from_env({"INGEST_PROCESSES": "3"}).process_count == 3


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "INGEST_PORT": "9000",
            "INGEST_API_KEYS": " a, b ,,",
            "STORAGE_DIR": "/srv/audio",
            "INGEST_FSYNC_UPLOADS": "false",
            "LOG_FORMAT": "JSON",
        }
    )
    assert settings.port == 9000
    assert settings.api_keys == ("a", "b")
    assert settings.storage_dir == Path("/srv/audio")
    assert settings.fsync_uploads is False
    assert settings.log_format == "json"
    assert "api_keys" not in repr(settings)  # keys never reach logs


@pytest.mark.parametrize(
    "env",
    [
        {"INGEST_PORT": "eighty"},
        {"INGEST_MAX_UPLOAD_BYTES": "0"},
        {"INGEST_FSYNC_UPLOADS": "maybe"},
        {"LOG_FORMAT": "xml"},
        {"OUTBOX_POLL_INTERVAL_S": "-1"},
        {"INGEST_PROCESSES": "-1"},
        {"INGEST_PROCESSES": "two"},
    ],
)
def test_bad_values_are_named(env: dict[str, str]) -> None:
    name = next(iter(env))
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)
