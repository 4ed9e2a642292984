"""Standard Webhooks signatures: how notify signs a delivery and how a receiver checks it.

Pure logic, no IO. A signature is `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`
keyed by the base64-decoded part of the secret after `whsec_`; the `webhook-signature`
header may carry several, separated by spaces (a receiver accepts any that matches).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

#: Prefix of a webhook signing secret.
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
#: Headers of a signed delivery.
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
#: How far a delivery's timestamp may be from the receiver's clock, as the spec advises:
#: older deliveries are refused so that a captured one cannot be replayed later.
DEFAULT_TOLERANCE_S = 300


class InvalidSignature(ValueError):
    """The delivery is not signed by the secret (the message says why)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; raises InvalidSignature for a malformed one."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("the secret is not 'whsec_' followed by base64") from None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`, keyed by the decoded secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float | None = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received delivery; raises InvalidSignature saying what is wrong.

    `headers` are matched without regard to case. `tolerance_s=None` skips the age check
    (to verify a delivery stored long ago)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [h for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) if h not in lowered]
    if missing:
        raise InvalidSignature(f"missing header(s): {', '.join(missing)}")
    raw_timestamp = lowered[TIMESTAMP_HEADER].strip()
    if not raw_timestamp.isdigit():
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not unix seconds: {raw_timestamp!r}")
    timestamp = int(raw_timestamp)
    if tolerance_s is not None:
        age = (time.time() if now is None else now) - timestamp
        if abs(age) > tolerance_s:
            raise InvalidSignature(
                f"{TIMESTAMP_HEADER} is {abs(age):.0f} s {'old' if age > 0 else 'ahead'},"
                f" beyond the {tolerance_s:.0f} s tolerance"
            )
    expected = sign(secret, lowered[ID_HEADER], timestamp, body).encode()
    offered = [s.encode() for s in lowered[SIGNATURE_HEADER].split() if s.startswith("v1,")]
    if not offered:
        raise InvalidSignature(f"{SIGNATURE_HEADER} has no v1 signature")
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise InvalidSignature("no signature matches the secret and the body")
