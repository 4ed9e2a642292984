"""Resolving a webhook's host and checking every address against the SSRF policy.

The ingest service checks at upload time (asynchronously, giving up quietly on a host
that does not resolve yet); the notify stage checks again before every delivery and
connects to the address it checked. The policy itself is `contracts.webhook_policy`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence

from contracts.webhook_policy import IPNetwork, refusal


def literal_address(host: str) -> str | None:
    """`host` normalised if it is an IP address literal, else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _addresses(infos: Iterable[tuple[object, ...]]) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # type: ignore[index]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in resolver order; OSError if it does not."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        return _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc


async def resolve_async(host: str, timeout_s: float) -> list[str]:
    """`resolve` on the running event loop, bounded by `timeout_s` (OSError, TimeoutError)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s)
    return _addresses(infos)


def first_refusal(addresses: Iterable[str], allowed: Sequence[IPNetwork]) -> tuple[str, str] | None:
    """The first (address, reason) the policy refuses, or None when all may be reached."""
    for address in addresses:
        reason = refusal(address, allowed)
        if reason:
            return address, reason
    return None
