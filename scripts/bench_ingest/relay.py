"""The outbox relay's progress: how long it takes to publish a run's backlog, and how fast."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.support.backends import query


def outbox_state(database_url: str) -> tuple[int, int]:
    """(unpublished, total) outbox rows."""
    rows = query(
        database_url,
        "SELECT count(*) FILTER (WHERE published_at IS NULL) AS waiting, count(*) AS total"
        " FROM outbox",
    )
    return int(rows[0]["waiting"]), int(rows[0]["total"])


def relay_stats(database_url: str, since: datetime, timeout_s: float) -> dict[str, Any]:
    """Wait for the relay to publish the backlog; its publish rate for rows since `since`."""
    waiting, _ = outbox_state(database_url)
    backlog_at_end = waiting
    started = time.monotonic()
    while waiting and time.monotonic() - started < timeout_s:
        time.sleep(0.25)
        waiting, _ = outbox_state(database_url)
    rows = query(
        database_url,
        "SELECT count(*) AS n, min(published_at) AS first, max(published_at) AS last"
        " FROM outbox WHERE created_at >= $1 AND published_at IS NOT NULL",
        since,
    )
    n, first, last = int(rows[0]["n"]), rows[0]["first"], rows[0]["last"]
    span = (last - first).total_seconds() if n > 1 else 0.0
    # Outbox lag: from the row's commit (the 202) to RabbitMQ's confirm being stamped.
    lag = query(
        database_url,
        "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
        " (ORDER BY extract(epoch FROM published_at - created_at)) AS p, max(published_at"
        " - created_at) AS worst FROM outbox WHERE created_at >= $1 AND published_at IS NOT NULL",
        since,
    )[0]
    p50, p99 = lag["p"] if lag["p"] is not None else (None, None)
    return {
        "outbox_lag_ms": {
            "p50": None if p50 is None else round(1000 * p50, 1),
            "p99": None if p99 is None else round(1000 * p99, 1),
            "max": None if lag["worst"] is None else round(1000 * lag["worst"].total_seconds(), 1),
        },
        "backlog_at_end_of_load": backlog_at_end,
        "drain_s": round(time.monotonic() - started, 2),
        "still_waiting": waiting,
        "published": n,
        "publish_rate_per_s": round(n / span, 1) if span > 0 else None,
    }
