"""A world of its own for a test run or a benchmark: free loopback ports, and a fresh
Postgres database and RabbitMQ vhost that are dropped again afterwards.

`isolated(storage_dir, kind="test")` creates `audio_test_<hex>` and `audio-test-<hex>`;
with `kind="bench"`, `audio_bench_<hex>` and `audio-bench-<hex>`. The admin connection
and the broker come from `<KIND>_PG_ADMIN_URL` and `<KIND>_AMQP_BASE` (so
`TEST_PG_ADMIN_URL` for the tests, `BENCH_PG_ADMIN_URL` for the benchmarks), by default
the local Postgres and RabbitMQ.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.support.backends import query

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"


@dataclass(frozen=True)
class IsolatedEnv:
    database_url: str
    amqp_url: str
    storage_dir: Path

    def environ(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            AMQP_URL=self.amqp_url,
            STORAGE_DIR=str(self.storage_dir),
            LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
            # One API process unless a test asks for more (INGEST_PROCESSES defaults to
            # one per CPU): quicker to start, one stream of logs.
            INGEST_PROCESSES="1",
        )
        env.update(extra)
        return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def isolated(storage_dir: Path, kind: str = "test") -> Iterator[IsolatedEnv]:
    """A fresh database and RabbitMQ vhost, dropped on exit."""
    pg_admin_url = os.environ.get(f"{kind.upper()}_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL)
    amqp_base = os.environ.get(f"{kind.upper()}_AMQP_BASE", DEFAULT_AMQP_BASE)
    suffix = uuid.uuid4().hex[:12]
    db_name = f"audio_{kind}_{suffix}"
    vhost = f"audio-{kind}-{suffix}"
    env = IsolatedEnv(
        database_url=f"{pg_admin_url.rsplit('/', 1)[0]}/{db_name}",
        amqp_url=f"{amqp_base}/{quote(vhost, safe='')}",
        storage_dir=storage_dir,
    )
    query(pg_admin_url, f'CREATE DATABASE "{db_name}"')
    try:
        rabbitmqctl("add_vhost", vhost)
        try:
            rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            yield env
        finally:
            rabbitmqctl("delete_vhost", vhost)
    finally:
        query(pg_admin_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
