"""Which addresses a webhook may be delivered to (both services enforce it).

Pure logic, no IO: callers resolve host names themselves and ask about each address.
Loopback, private, link-local, shared (CGNAT), multicast, reserved and cloud metadata
addresses are refused unless they fall inside a network the operator allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud instance metadata services, named so the refusal says what it is.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("100.100.100.200"),
        ipaddress.ip_address("fd00:ec2::254"),
    }
)


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """`127.0.0.0/8, ::1` → networks; raises ValueError naming a bad entry."""
    networks = []
    for raw in spec.split(","):
        entry = raw.strip()
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"not an IP network: {entry!r}") from None
    return tuple(networks)


def refusal(address: str | IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook must not go to `address`, or None when it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_private, "a private address"),
        (ip in ipaddress.ip_network("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
    )
    return next((reason for hit, reason in checks if hit), None)
