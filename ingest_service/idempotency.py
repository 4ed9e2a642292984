"""`Idempotency-Key` on `POST /v1/jobs`: a retried submit gets the job it created first.

The key is scoped to the API key that sent it and stands for 24 hours. It is recorded in
the job's own transaction, with a fingerprint of the request's options and the 202 answer
as it was sent; the same key again replays that answer (no second upload is kept, no
second job made), and the same key with other options is a 422 problem.
"""

from __future__ import annotations

import hashlib

import msgspec

from ingest_service.database import IdempotentJob
from ingest_service.options import ValidatedOptions
from ingest_service.problems import IdempotencyConflict, InvalidRequest

HEADER = "idempotency-key"
#: Set on an answer replayed for a repeated key.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255


def parse_key(raw: str | None) -> str | None:
    """The header's key, or None without one; 400 for a key that cannot be one."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} printable ASCII characters"
        )
    return key


def fingerprint(validated: ValidatedOptions, source: str | None = None) -> str:
    """What makes two submits the same request: their options (and audio URL). A webhook
    secret the service generated differs every time, so only a client's own counts."""
    secret = None if validated.secret_generated else validated.webhook_secret
    canonical = msgspec.json.encode(
        {"options": validated.options, "webhook_secret": secret, "source": source},
        order="sorted",
    )
    return hashlib.sha256(canonical).hexdigest()


def check_replay(earlier: IdempotentJob, current: str, key: str) -> None:
    """Refuse (422) a key reused with a different request."""
    if earlier.fingerprint != current:
        raise IdempotencyConflict(
            f"the Idempotency-Key {key!r} was used for job {earlier.job_id} with other"
            " options; use a new key for a new request",
            job_id=str(earlier.job_id),
        )
