"""Hostile peers for the scanner and the federation audit, beyond tests/test_fetching.py: a gzip body
although identity was asked for, a 100 MB body, headers that trickle in, and answers that are not quite
HTTP/1.1 or JSON (a negative chunk size, a chunk-size line longer than the header cap, a status or
Content-Length in superscript digits, 256 KiB of nested brackets). Each is refused or bounded (in bytes
and seconds), and counted as unreadable with its reason: a FetchError, never another exception."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator

import pytest

from bot.core.fetching import MAX_JSON_DEPTH, Fetcher, FetchError
from handlers.shared.nodeinfo import read_peer
from tests.peers import CHUNKED_HEAD, JSON_HEAD, MALFORMED_ANSWERS, Peer, PeerFleet, bracket_bomb, nodeinfo

pytestmark = pytest.mark.slow  # peers that stall up to the fetch deadline (the fast suite: test_fetching.py)

MAX_BYTES = 256 * 1024
"""The production cap (TOCSIN_SCAN_MAX_BYTES' default)."""
DEEP = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)

HOSTILE = {
    "gzipped.example": Peer(nodeinfo("mastodon", "4.5.0"), gzip=True),
    "hundred-megabytes.example": Peer(nodeinfo("mastodon", "4.5.0"), declared_bytes=100 * 1024 * 1024),
    "trickling-headers.example": Peer(nodeinfo("mastodon", "4.5.0"), slow_headers=True),
    **{f"{name}.example": Peer(raw=answer) for name, answer in MALFORMED_ANSWERS.items()},
    "bracket-bomb.example": Peer(raw=bracket_bomb(MAX_BYTES)),  # as much as the cap lets through
    # 24 KiB of headers in one write: h11 bounds a head still arriving, not one that arrives whole.
    "wide-headers.example": Peer(
        raw=[JSON_HEAD + b"X-Padding: " + b"a" * 24 * 1024 + b"\r\nContent-Length: 2\r\n\r\n{}"]
    ),
    "declares-too-much.example": Peer(raw=[JSON_HEAD + b"Content-Length: 104857600\r\n\r\n", 60.0]),  # refused unread
    "endless-headers.example": Peer(raw=[JSON_HEAD, (b"X-Padding: 0123456789abcdef\r\n", 4096)]),  # 116 KiB
    "cut-short.example": Peer(raw=[JSON_HEAD + b"Content-Length: 100\r\n\r\n[1, 2, 3"]),  # then it hangs up
    "reset.example": Peer(raw=[JSON_HEAD + b"Content-Length: 100\r\n\r\n[1, 2, 3", 0.1, None]),
    # 1 byte of body a chunk, 10 KiB of chunk extension each: 2 MB on the wire for 200 bytes of body.
    "extended-chunks.example": Peer(
        raw=[CHUNKED_HEAD, (b"1;" + b"x" * 10240 + b"\r\n \r\n", 200), b"2\r\n{}\r\n0\r\n\r\n"]
    ),
    "deep.example": Peer(raw=[JSON_HEAD + f"Content-Length: {len(DEEP)}\r\n\r\n".encode() + DEEP]),
}
REASONS = {
    "gzipped.example": "encoded",
    "hundred-megabytes.example": "too-large",
    "trickling-headers.example": "timeout",
    "negative-chunk.example": "malformed",
    "long-chunk-line.example": "malformed",
    "superscript-length.example": "malformed",
    "superscript-status.example": "malformed",
    "bracket-bomb.example": "invalid-json",
    "wide-headers.example": "too-large",
    "declares-too-much.example": "too-large",
    "endless-headers.example": "too-large",
    "cut-short.example": "broken-response",
    "reset.example": "broken-response",
    "extended-chunks.example": "too-large",
    "deep.example": "invalid-json",  # parses, but deeper than any caller should walk
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet(list(HOSTILE))
    fleet.peers.update(HOSTILE)
    fleet.start()
    yield fleet
    fleet.stop()


def fetcher(fleet: PeerFleet) -> Fetcher:
    return Fetcher(
        fleet.policy(total_timeout=3.0, max_bytes=MAX_BYTES),
        resolver=fleet.resolver,
        ssl_context=fleet.client_context(),
    )


@pytest.mark.parametrize(("peer", "reason"), list(REASONS.items()))
def test_a_hostile_peer_is_refused_within_bounds(fleet: PeerFleet, peer: str, reason: str) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(FetchError) as refused:
        asyncio.run(fetcher(fleet).get_json(f"https://{peer}/nodeinfo/2.0"))
    assert refused.value.reason == reason
    assert time.monotonic() - started < 4.0  # the total deadline holds
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 20 * 1024  # KiB: no 100 MB read


@pytest.mark.parametrize(
    ("peer", "reason"), [item for item in REASONS.items() if item[1] in ("malformed", "invalid-json")]
)
def test_the_scan_counts_a_malformed_answer_as_that_peers_unreadable(fleet: PeerFleet, peer: str, reason: str) -> None:
    result = asyncio.run(read_peer(fetcher(fleet), peer))
    assert (result.software, result.error) == (None, reason)  # not "error": the fetcher said what was wrong
