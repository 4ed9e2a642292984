"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Response, get

from ingest_service.config import Settings
from ingest_service.dependencies import PoolDep, SettingsDep
from ingest_service.problems import RETRY_AFTER_S, problem_response
from ingest_service.relay import check_broker

#: A dependency that does not answer within this time counts as down.
PROBE_TIMEOUT_S = 3.0


@get("/healthz", summary="The process is alive", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_postgres(pool: asyncpg.Pool) -> None:
    async with pool.acquire(timeout=PROBE_TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT_S)


async def _check_rabbitmq(settings: Settings) -> None:
    await check_broker(settings.amqp_url, PROBE_TIMEOUT_S)


@get("/readyz", summary="Postgres and RabbitMQ are reachable", tags=["health"])
async def readyz(pool: PoolDep, settings: SettingsDep) -> Response[Any]:
    results = await asyncio.gather(
        _check_postgres(pool), _check_rabbitmq(settings), return_exceptions=True
    )
    checks = {
        name: "ok" if result is None else f"unreachable: {result!r}"
        for name, result in zip(("postgres", "rabbitmq"), results, strict=True)
    }
    if all(value == "ok" for value in checks.values()):
        return Response({"status": "ready", "checks": checks})
    down = ", ".join(name for name, value in checks.items() if value != "ok")
    return problem_response(
        503,
        "Not ready",
        f"cannot reach {down}",
        slug="not-ready",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        checks=checks,
    )
