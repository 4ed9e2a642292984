"""Resolving a webhook's host and checking every address against the SSRF policy.

The ingest service checks at upload time (asynchronously, giving up quietly on a host
that does not resolve yet); the notify stage checks again before every delivery and
connects to the address it checked. The split stage's audio fetcher checks every hop of
a download the same way (`pin`). The policy itself is `contracts.webhook_policy`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

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


class HostRefused(Exception):
    """A URL's host is, or resolves to, an address the SSRF policy refuses."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        what = f"is {reason}" if host == address else f"resolves to {reason} ({address})"
        super().__init__(f"{host} {what}")
        self.host = host
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class PinnedURL:
    """Where a request goes once its host passed the policy.

    `url` has the checked address in place of the host name, so that a DNS answer that
    changes between check and connect cannot send the request elsewhere; the Host header
    and the TLS server name (httpx's `sni_hostname` extension) stay the host name.
    """

    url: str
    host_header: str
    sni_hostname: str


def pin(url: str, allowed: Sequence[IPNetwork]) -> PinnedURL:
    """Check every address of `url`'s host and pin the URL to the first one.

    Raises ValueError for anything but an absolute http(s) URL, `HostRefused` when an
    address is refused, OSError when the host does not resolve. An IP literal is checked
    as written: nothing is resolved or sent before the check.
    """
    parts = urlsplit(url)
    try:
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        port = -1
    if parts.scheme not in {"http", "https"} or not parts.hostname or port == -1:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname
    addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
    refused = first_refusal(addresses, allowed)
    if refused is not None:
        raise HostRefused(host, *refused)
    address = addresses[0]
    userinfo, _, host_port = parts.netloc.rpartition("@")
    pinned = f"[{address}]" if ":" in address else address
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += f"{pinned}:{port}" if port else pinned
    return PinnedURL(urlunsplit(parts._replace(netloc=netloc)), host_port, host)
