"""Hostile peers for the scanner and the federation audit, beyond tests/test_fetching.py: a gzip body
although identity was asked for, a 100 MB body, headers that trickle in. Each is refused or bounded
(in bytes and seconds), and counted as unreadable with its reason."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator

import pytest

from bot.fetching import Fetcher, FetchError
from tests.peers import Peer, PeerFleet, nodeinfo

HOSTILE = {
    "gzipped.example": Peer(nodeinfo("mastodon", "4.5.0"), gzip=True),
    "hundred-megabytes.example": Peer(nodeinfo("mastodon", "4.5.0"), declared_bytes=100 * 1024 * 1024),
    "trickling-headers.example": Peer(nodeinfo("mastodon", "4.5.0"), slow_headers=True),
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet(list(HOSTILE))
    fleet.peers.update(HOSTILE)
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        ("gzipped.example", "encoded"),
        ("hundred-megabytes.example", "too-large"),
        ("trickling-headers.example", "timeout"),
    ],
)
def test_a_hostile_peer_is_refused_within_bounds(fleet: PeerFleet, peer: str, reason: str) -> None:
    fetcher = Fetcher(fleet.policy(total_timeout=3.0), resolver=fleet.resolver, ssl_context=fleet.client_context())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(FetchError) as refused:
        asyncio.run(fetcher.get_json(f"https://{peer}/nodeinfo/2.0"))
    assert refused.value.reason == reason
    assert time.monotonic() - started < 4.0  # the total deadline holds
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 20 * 1024  # KiB: no 100 MB read
