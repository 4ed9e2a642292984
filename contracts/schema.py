"""The Postgres schema both services share, as ordered plain-SQL migrations.

The SQL files in `contracts/sql/` are data, like the message types: the database is the
other contract between the two services. `apply_migrations` runs them on a connection
the caller owns (it never opens one), each in its own transaction, under an advisory lock
so that services starting together apply each migration once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

#: Arbitrary constant that names the advisory lock serialising migrations.
MIGRATION_LOCK_KEY = 7_341_902_115

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Connection(Protocol):
    """The part of an asyncpg connection that migrations need."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    def transaction(self) -> Any: ...


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """All migrations shipped with this package, in version order."""
    found = []
    for entry in resources.files("contracts").joinpath("sql").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    if not found:
        raise RuntimeError("no migrations found in contracts/sql: the package is incomplete")
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1..n without gaps, found {versions}")
    return found


async def apply_migrations(conn: Connection) -> list[int]:
    """Apply the migrations not yet recorded in `schema_migrations`; return their versions."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
