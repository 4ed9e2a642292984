"""Shared fixtures: an isolated database and RabbitMQ vhost per test run.

Every run creates `audio_test_<hex>` in Postgres and the vhost `audio-test-<hex>` in
RabbitMQ, and drops both at the end, so runs never see each other's rows or messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.support.servers import IsolatedEnv

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def isolated(storage_dir: Path) -> Iterator[IsolatedEnv]:
    """A fresh database and RabbitMQ vhost, dropped on exit."""
    suffix = uuid.uuid4().hex[:12]
    db_name = f"audio_test_{suffix}"
    vhost = f"audio-test-{suffix}"
    asyncio.run(_admin(f'CREATE DATABASE "{db_name}"'))
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    env = IsolatedEnv(
        database_url=f"{base}/{db_name}",
        amqp_url=f"{AMQP_BASE}/{quote(vhost, safe='')}",
        storage_dir=storage_dir,
    )
    try:
        yield env
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedEnv]:
    """A fresh database, RabbitMQ vhost and storage directory for this run."""
    with isolated(Path(tmp_path_factory.mktemp("storage"))) as env:
        yield env
