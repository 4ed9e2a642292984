from __future__ import annotations

import asyncio

from contracts.schema import migrations
from infra.postgres import migrate
from tests.support.backends import query
from tests.support.servers import IsolatedEnv


def test_migrations_apply_once_and_are_recorded(isolated_env: IsolatedEnv) -> None:
    asyncio.run(migrate(isolated_env.database_url))

    # Applying again, even concurrently, changes nothing.
    async def twice() -> list[list[int]]:
        return list(
            await asyncio.gather(
                migrate(isolated_env.database_url), migrate(isolated_env.database_url)
            )
        )

    assert asyncio.run(twice()) == [[], []]
    recorded = query(
        isolated_env.database_url, "SELECT version, name FROM schema_migrations ORDER BY version"
    )
    assert [(r["version"], r["name"]) for r in recorded] == [
        (m.version, m.name) for m in migrations()
    ]
    tables = {
        r[0]
        for r in query(
            isolated_env.database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    assert {"jobs", "job_stages", "job_results", "outbox", "schema_migrations"} <= tables
