"""Keyset cursors for the job list: opaque to clients, `(created_at, id)` to the database."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from ingest_service.problems import InvalidRequest

#: Where the next page starts: strictly after this job in newest-first order.
Keyset = tuple[datetime, uuid.UUID]


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> Keyset:
    """The keyset a cursor stands for; `InvalidRequest` for one this API did not return."""
    try:
        created_at, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment = datetime.fromisoformat(created_at)
        # Postgres stores UTC: a time that cannot be converted to it is not ours either.
        moment.astimezone(UTC)
        return moment, uuid.UUID(job_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned") from None
