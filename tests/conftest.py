"""Shared fixtures: an isolated database and RabbitMQ vhost per test run.

Every run creates `audio_test_<hex>` in Postgres and the vhost `audio-test-<hex>` in
RabbitMQ, and drops both at the end, so runs never see each other's rows or messages
(see tests.support.isolation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.isolation import IsolatedEnv, isolated


@pytest.fixture(scope="session")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedEnv]:
    """A fresh database, RabbitMQ vhost and storage directory for this run."""
    with isolated(Path(tmp_path_factory.mktemp("storage"))) as env:
        yield env
