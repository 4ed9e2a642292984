"""Webhook delivery: Standard Webhooks signatures, one attempt at a time, SSRF-guarded.

The receiver's host name is resolved here and every address it resolves to must pass
`contracts.webhook_policy`; the request then goes to the address that was checked (the
Host header and TLS server name stay the host name), so a DNS answer that changes
between check and connect cannot redirect it. Redirects are not followed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from contracts import retry_after
from contracts.webhook_policy import IPNetwork
from contracts.webhook_signature import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from infra.webhook_hosts import first_refusal, resolve
from processing_service.runtime.errors import PermanentError

#: Per-attempt timeout, as the issue asks.
TIMEOUT_S = 10.0
#: Statuses worth retrying besides 5xx.
RETRY_STATUSES = frozenset({408, 429})


class WebhookRefused(PermanentError):
    """The webhook URL resolves to an address the policy forbids."""


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt got back."""

    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Connection errors, timeouts, 5xx, 408 and 429 are worth another attempt."""
        code = self.status_code
        return code is None or code >= 500 or code in RETRY_STATUSES


def checked_address(url: str, allowed: Sequence[IPNetwork]) -> str:
    """Resolve the URL's host and return an address to connect to, or raise WebhookRefused."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookRefused(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(parts.hostname, port)
    refused = first_refusal(addresses, allowed)
    if refused:
        address, reason = refused
        raise WebhookRefused(f"the webhook host {parts.hostname} resolves to {reason} ({address})")
    return addresses[0]


def post(
    url: str,
    body: bytes,
    *,
    message_id: str,
    secret: str,
    allowed: Sequence[IPNetwork],
    timeout_s: float = TIMEOUT_S,
) -> Attempt:
    """Make one signed delivery attempt; never raises for what the receiver does."""
    started = time.perf_counter()
    address = checked_address(url, allowed)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    pinned = f"[{address}]" if ":" in address else address
    target = urlunsplit(parts._replace(netloc=f"{pinned}{port}"))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "audio-pipeline-webhooks/1",
        "Host": parts.netloc.rsplit("@", 1)[-1],
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
    }
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(
                target, content=body, headers=headers, extensions={"sni_hostname": host}
            )
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], _ms(started))
    error = None if response.is_success else f"HTTP {response.status_code}"
    return Attempt(
        response.status_code,
        error,
        _ms(started),
        retry_after.retry_after_s(response.headers.get("retry-after")),
    )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
