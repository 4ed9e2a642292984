"""The SSRF policy on address parsing alone: nothing is sent anywhere."""

from __future__ import annotations

import pytest

from contracts.webhook_policy import parse_networks, refusal


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal(address)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:85e5", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


def test_allowed_networks_open_exactly_what_they_name() -> None:
    allowed = parse_networks("127.0.0.0/8, ::1/128")
    assert refusal("127.0.0.1", allowed) is None
    assert refusal("::1", allowed) is None
    assert refusal("10.0.0.1", allowed) is not None
    assert refusal("169.254.169.254", allowed) is not None
    with pytest.raises(ValueError, match="banana"):
        parse_networks("127.0.0.0/8,banana")
