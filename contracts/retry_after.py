"""Reading an HTTP `Retry-After` header (RFC 9110 §10.2.3): pure logic, no IO.

Notify honours a webhook receiver's, and the Python client honours the API's.
"""

from __future__ import annotations

import email.utils
import time


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait that `value` asks for (delay-seconds or an HTTP date), or None when
    it is absent or unreadable. A date in the past asks for no wait."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
