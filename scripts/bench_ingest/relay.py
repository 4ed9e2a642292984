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
    return {
        "backlog_at_end_of_load": backlog_at_end,
        "drain_s": round(time.monotonic() - started, 2),
        "still_waiting": waiting,
        "published": n,
        "publish_rate_per_s": round(n / span, 1) if span > 0 else None,
    }
