"""Postgres connections as both services open them: json/jsonb as Python values."""

from __future__ import annotations

import asyncpg
import msgspec

from contracts.schema import apply_migrations

_ENCODER = msgspec.json.Encoder()

#: Seconds any one statement may take before asyncpg gives up on it.
COMMAND_TIMEOUT_S = 30
#: Seconds a new connection may take: an unreachable database fails fast, not after 60 s.
CONNECT_TIMEOUT_S = 5


async def init_connection(conn: asyncpg.Connection) -> None:
    """Make json and jsonb columns read and write Python values (through msgspec)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda value: _ENCODER.encode(value).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


async def create_pool(database_url: str, size: int) -> asyncpg.Pool:
    """A connection pool of up to `size` connections with the json codecs."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=size,
        init=init_connection,
        command_timeout=COMMAND_TIMEOUT_S,
        timeout=CONNECT_TIMEOUT_S,
    )
    return pool


async def migrate(database_url: str) -> list[int]:
    """Bring the schema up to date (idempotent; the services share one); versions applied."""
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
