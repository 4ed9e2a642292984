"""A webhook receiver's Retry-After sets the next attempt's delay, within notify's bounds."""

from __future__ import annotations

from typing import Any

from processing_service.config import Settings
from processing_service.notification import Notifier


def _notifier(**env: str) -> Notifier:
    unused: Any = None  # the delay needs neither the stores nor the event publisher
    return Notifier(Settings.from_env(env), unused, unused, unused)


def test_retry_after_is_honoured_up_to_the_longest_backoff() -> None:
    notifier = _notifier(RETRY_MAX_BACKOFF_MS="60000")
    assert notifier.retry_delay_ms(None) is None  # the policy's own backoff
    assert notifier.retry_delay_ms(2.5) == 2_500
    assert notifier.retry_delay_ms(3600) == 60_000  # an hour would outlive the consumer timeout
    assert _notifier().retry_delay_ms(3600) == 300_000  # the default longest backoff
