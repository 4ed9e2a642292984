"""The client's errors.

ClientError
├── ApiError            the API answered with a problem document (RFC 9457)
├── ServiceUnreachable  no answer after every retry (connection refused, timeouts)
└── JobEnded            waited for a result, but the job failed or was cancelled
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document, with the API's extension members apart."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_response(cls, status: int, body: bytes) -> Problem:
        """The problem an error answer carries (a plain one when its body is not JSON)."""
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            document = None
        if not isinstance(document, dict):
            text = body.decode("utf-8", "replace").strip()[:500]
            return cls(status=status, title=f"HTTP {status}", detail=text)
        members = dict(document)
        return cls(
            status=int(members.pop("status", status)),
            title=str(members.pop("title", f"HTTP {status}")),
            detail=str(members.pop("detail", "")),
            type=str(members.pop("type", "about:blank")),
            extensions=members,
        )


class ClientError(Exception):
    """Base of the client's errors."""


class ApiError(ClientError):
    """The API refused the request; `problem` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem

    @property
    def status(self) -> int:
        return self.problem.status


class ServiceUnreachable(ClientError):
    """The API could not be reached, or stayed unavailable, through every retry."""


class JobEnded(ClientError):
    """The job ended without a result: failed or cancelled (or deleted)."""

    def __init__(self, job_id: str, status: str, error: str | None) -> None:
        super().__init__(f"job {job_id} {status}" + (f": {error}" if error else ""))
        self.job_id = job_id
        self.status = status
        self.error = error
