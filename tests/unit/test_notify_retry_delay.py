"""A webhook receiver's Retry-After sets the next attempt's delay, within notify's bounds."""

from __future__ import annotations

from typing import Any

from processing_service.notify.stage import retry_delay_ms
from processing_service.runtime.config import Settings
from processing_service.runtime.context import StageContext


def _context(**env: str) -> StageContext:
    unused: Any = None  # the delay needs neither the stores nor the event publisher
    return StageContext(Settings.from_env(env), unused, unused, unused, unused)


def test_retry_after_is_honoured_up_to_the_longest_backoff() -> None:
    ctx = _context(RETRY_MAX_BACKOFF_MS="60000")
    assert retry_delay_ms(ctx, None) is None  # the policy's own backoff
    assert retry_delay_ms(ctx, 2.5) == 2_500
    assert retry_delay_ms(ctx, 3600) == 60_000  # an hour would outlive the consumer timeout
    assert retry_delay_ms(_context(), 3600) == 300_000  # the default longest backoff
