from __future__ import annotations

import json

import pytest

from bot.core.privacy import email_domain, ip_prefix_hash, reduce_event
from tests.helpers import fixture

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("198.51.100.7", "198.51.100.200", True),  # same /24
        ("198.51.100.7", "198.51.101.7", False),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::9", True),  # same /48
        ("2001:db8:1::1", "2001:db8:2::1", False),
        ("::ffff:203.0.113.9", "203.0.113.77", True),  # IPv4-mapped IPv6 is the IPv4 address
    ],
)
def test_ip_prefix_hash_groups_by_network(first: str, second: str, same: bool) -> None:
    assert (ip_prefix_hash(first, KEY) == ip_prefix_hash(second, KEY)) is same


def test_ip_prefix_hash_is_keyed_and_rejects_junk() -> None:
    assert ip_prefix_hash("198.51.100.7", KEY) != ip_prefix_hash("198.51.100.7", b"other-key")
    for junk in ("not an ip", "256.1.1.1", "1.2.3", "", "2001:db8::zz", "192.0.2.1\x00", "\ud800"):
        assert ip_prefix_hash(junk, KEY) is None, junk


def test_email_domain() -> None:
    assert email_domain("Someone@Mail.Example.COM") == "mail.example.com"
    assert email_domain(None) is None and email_domain("nodomain") is None


@pytest.mark.parametrize(
    "name",
    [
        "account.created",
        "account.approved",
        "account.updated",
        "report.created",
        "report.updated",
        "status.created",
        "status.updated",
    ],
)
def test_every_example_payload_loses_its_personal_data(name: str) -> None:
    original = fixture(name)
    reduced = json.dumps(reduce_event(original, KEY))
    for field in ('"email"', '"ip"', '"ips"', '"invite_request"'):
        assert field not in reduced
    for value in ("@mail.example.com", "198.51.100.", "2001:db8"):
        assert value not in reduced
    assert reduce_event(original, KEY)["event"] == name
