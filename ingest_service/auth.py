"""API keys: with keys configured, every /v1 route needs `Authorization: Bearer <key>`.

A job belongs to the key that created it (stored as a digest, never the key itself), and
other keys cannot see it. With no keys configured the API is open and owner-less.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from ingest_service.problems import Unauthorized


def key_owner(key: str) -> str:
    """The owner recorded for jobs created with `key`: a digest that does not reveal it."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class ApiKeys:
    """The configured keys, as owner digests."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._owners = tuple(key_owner(k) for k in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._owners)

    def owner_of(self, authorization: str | None) -> str | None:
        """The caller's owner digest (None when the API is open); raises `Unauthorized`."""
        if not self._owners:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("this API needs an API key: send 'Authorization: Bearer <key>'")
        candidate = key_owner(token.strip())
        for owner in self._owners:
            if hmac.compare_digest(owner, candidate):
                return owner
        raise Unauthorized("the API key is not known")


#: Type of a handler's `owner` parameter: the calling key's owner digest, or None.
OwnerDep = NamedDependency[str | None]


async def provide_owner(
    request: Request[Any, Any, Any], api_keys: NamedDependency[SkipValidation[ApiKeys]]
) -> str | None:
    """Litestar dependency: the owner digest of the calling key."""
    return api_keys.owner_of(request.headers.get("authorization"))
