"""Fuzzing the peer fetcher with hypothesis against a local hostile HTTPS peer.

Each case is one raw answer, served byte for byte to every request: a status line (valid, in
superscript digits, a redirect, not HTTP), header shapes (padding past the header cap, NUL bytes,
folded lines, lines without a colon), a content type and encoding, a body (JSON, nesting up to thousands
deep, padding up to 32 MiB) framed by Content-Length, by the connection's close, or in chunks (chunk-size
lines valid or broken: negative, too many digits, superscript, over the line cap), dripped slowly or
stalled past the deadline. The fetcher reads it as get_json and as find, the scan as read_peer and the
federation audit as audit_peer. For every case:

- every failure is a FetchError (read_peer's catch-all, "error", never fires; audit_peer returns a verdict);
- a fetch ends within its total deadline and a second's slack (FETCH_SECONDS);
- an answer the generator knows is refused (broken framing, a body over the cap, a foreign encoding or
  content type, JSON nested too deep) is never accepted;
- no case adds more than RSS_CASE_CAP of resident memory while it runs, sampled every few milliseconds
  (a body read past the cap would).

Short form: 40 cases (about 4 s on an idle 2-core machine, twice that on a busy one); `--long`: 3,000.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.fetching import MAX_HEADER_BYTES, MAX_JSON_DEPTH, Fetcher, FetchError
from handlers.federation.audit import Verdict, audit_peer, needles
from handlers.shared.nodeinfo import read_peer
from tests.peers import Peer, PeerFleet, Step

pytestmark = pytest.mark.slow  # long fuzzing against local HTTPS peers (the fast suite has tests/test_fetching.py)

T = TypeVar("T")
PEER = "hostile.example"
TARGET = "threads.net"
MAX_BYTES = 64 * 1024
"""get_json's cap in these cases."""
FIND_MAX_BYTES = 1024 * 1024
"""find's cap in these cases (the audit's own find allows 64 MiB, streamed)."""
TOTAL_TIMEOUT = 0.4
FETCH_SECONDS = TOTAL_TIMEOUT + 1.0
"""A fetch's wall time, deadline included, with slack for a loaded machine."""
RSS_CASE_CAP = 8 * 1024 * 1024
"""Bytes of resident memory one case may add while it runs. The caps are 64 KiB and 1 MiB (64 MiB for the
audit's streamed search), one 64 KiB chunk in memory at a time: a case adds under 5 MiB (3,000 cases). Without
get_json's cap a 32 MiB body adds over 12 MiB before the deadline ends it. (Over thousands of cases the
process grows a little, hypothesis's records and the allocator's fragmentation: a fetch loop alone stays flat.)"""


@dataclass(frozen=True)
class Answer:
    steps: list[Step]
    past_deadline: bool  # some of it comes later than the deadline
    refused: bool  # the generator knows every reading must fail (whatever the reason)
    refused_by_get_json: bool  # … and get_json's (the JSON is parsed, the cap is MAX_BYTES)
    refused_by_find: bool  # … and find's (no parsing, the cap is FIND_MAX_BYTES)


OK_STATUS = (b"HTTP/1.1 200 OK", "ok")
HOSTILE_STATUS = [  # (line, how it must be read: "refused", or None when this claims nothing)
    (b"HTTP/1.1 200", "ok"),
    (b"HTTP/1.0 200 OK", None),
    (b"HTTP/1.1 \xb200 OK", "refused"),  # superscript two: isdigit(), not a digit
    (b"HTTP/1.1 2000 OK", "refused"),
    (b"HTTP/1.1 -200 OK", "refused"),
    (b"HTTP/1.1 302 Found\r\nLocation: https://hostile.example/next", "refused"),  # the same answer: a loop
    (b"HTTP/1.1 302 Found\r\nLocation: https://[::1/", "refused"),
    (b"HTTP/1.1 301 Moved\r\nLocation: https://hostile.example:99999/", "refused"),
    (b"HTTP/1.1 307 Moved\r\nLocation: https://evil.internal/", "refused"),
    (b"HTTP/1.1 302 Found", "refused"),  # no Location
    (b"HTTP/1.1 404 Not Found", "refused"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", None),
    (b"ICY 200 OK", "refused"),
    (b"\x16\x03\x01\x00\x05hello", "refused"),
]
JSON_TYPE = (b"Content-Type: application/json", True)
OTHER_TYPES = [  # (header line or None, is JSON)
    (b"Content-Type: application/json; charset=utf-8", True),
    (b"Content-Type: application/activity+json", True),
    (b"Content-Type: text/html", False),
    (None, False),
]
IDENTITY = (None, True)
OTHER_ENCODINGS = [  # (header line or None, is identity)
    (b"Content-Encoding: identity", True),
    (b"Content-Encoding: gzip", False),
    (b"Content-Encoding: br", False),
    (b"Content-Encoding: identity, gzip", False),
    (b"Content-Encoding: zstd", False),
]
NOISE = st.one_of(
    st.sampled_from(
        [
            b"Server: hostile",
            b"Set-Cookie: a=b",
            b"X-Latin: \xe9t\xe9",
            b"X-Nul: a\x00b",
            b"X-Folded: a\r\n  continued",
            b"no colon at all",
            b": no name",
            b"X-Empty:",
            b"Content-Type: text/plain",  # a second content type: joined, still refused when ours is not JSON
        ]
    ),
    st.integers(1, 3 * MAX_HEADER_BYTES).map(lambda size: b"X-Padding: " + b"a" * size),
)
BROKEN_CHUNK_SIZES = [
    b"-7fffffff",  # counted, it made the bytes received negative: the cap no longer held
    b"-7fffffff",
    b"-1",
    b"+10",
    b"0x10",
    b"g1",
    b"",
    b" 1",
    b"1 2",
    b"\xb2",
    b"1" * 21,  # more hex digits than any body needs
    b"1;" + b"x" * (8 * MAX_HEADER_BYTES),  # a line past the cap, however it is read
]
BROKEN_LENGTHS = [b"\xb2", b"-1", b"1e3", b"0x10", b"", b"1 2", b"9" * 5000, b"+5"]


def json_documents() -> st.SearchStrategy[bytes]:
    values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
    return st.one_of(values.map(orjson.dumps), st.just(b"{}"), st.binary(max_size=60))


@st.composite
def nested(draw: st.DrawFn) -> tuple[bytes, int]:
    """A document nested `depth` deep (closed or not)."""
    depth = draw(st.integers(1, 3000))
    opener = draw(st.sampled_from([b"[", b'{"a":']))
    closer = b"]" if opener == b"[" else b"}"
    return opener * depth + (closer * depth if draw(st.booleans()) else b""), depth


def usually(valid: T, hostile: list[T]) -> st.SearchStrategy[T]:
    """`valid` three times in four, else one of `hostile`: most answers are well formed but for one or two
    things, so that each gets past the first refusal to the next."""
    return st.integers(0, 3).flatmap(lambda roll: st.just(valid) if roll else st.sampled_from(hostile))


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status, status_kind = draw(usually(OK_STATUS, HOSTILE_STATUS))
    content_type, is_json = draw(usually(JSON_TYPE, OTHER_TYPES))
    encoding, is_identity = draw(usually(IDENTITY, OTHER_ENCODINGS))
    noise = draw(st.lists(NOISE, max_size=3)) if draw(st.booleans()) else []
    depth = 0
    if draw(st.integers(0, 4)) == 0:
        document, depth = draw(nested())
    else:
        document = draw(json_documents())
    padding = draw(
        st.sampled_from(["none"] * 5 + ["some"] * 3 + ["large"]).flatmap(
            lambda size: {
                "none": st.just(0),
                "some": st.integers(1, 300_000),
                "large": st.sampled_from([3 * 2**20, 32 * 2**20]),
            }[size]
        )
    )
    body_bytes = padding + len(document)
    framing = draw(usually(draw(st.sampled_from(["length", "close", "chunked"])), ["broken-chunk", "broken-length"]))

    head = [status]
    head += [line for line in (content_type, encoding) if line is not None]
    head += noise
    body: list[Step] = []
    if framing == "length":
        head.append(b"Content-Length: %d" % body_bytes)
        body = [(b" ", padding), document] if padding else [document]
    elif framing == "broken-length":
        head.append(b"Content-Length: " + draw(st.sampled_from(BROKEN_LENGTHS)))
        body = [(b" ", padding), document] if padding else [document]
    elif framing == "close":
        head.append(b"Connection: close")
        body = [(b" ", padding), document] if padding else [document]
    else:
        head.append(b"Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 2**20), max_size=4)) if padding else []
        pieces: list[tuple[int, bytes | None]] = []  # (size, document bytes or None for padding)
        left = padding
        for size in [*sizes, padding]:
            take = min(size, left)
            if take:
                pieces.append((take, None))
                left -= take
        if document:
            pieces.append((len(document), document))
        broken_at = draw(st.integers(0, len(pieces))) if framing == "broken-chunk" else -1
        smuggled = broken_at >= 0 and draw(st.booleans())  # an empty chunk of a broken size, or a broken size
        for index, (size, data) in enumerate(pieces):
            line = b"%x" % size
            if index == broken_at and smuggled:
                body.append(draw(st.sampled_from(BROKEN_CHUNK_SIZES)) + b"\r\n\r\n")
            elif index == broken_at:
                line = draw(st.sampled_from(BROKEN_CHUNK_SIZES))
            body += [line + b"\r\n", (b" ", size) if data is None else data, b"\r\n"]
        end = draw(st.sampled_from(BROKEN_CHUNK_SIZES)) if broken_at == len(pieces) else b"0"
        body.append(end + b"\r\n\r\n")

    head_bytes = b"\r\n".join(head) + b"\r\n\r\n"
    steps: list[Step] = []
    pace = draw(st.integers(0, 15))  # mostly at once; a few trickle, stall, or pass the deadline
    if pace == 1:  # every byte of the status line and the first headers on its own
        steps += [head_bytes[index : index + 1] for index in range(min(200, len(head_bytes)))]
        steps.append(head_bytes[200:])
    elif pace in (2, 3):  # headers that trickle in, in five pieces: quickly, or past the deadline
        pause = 0.01 if pace == 2 else TOTAL_TIMEOUT / 2
        size = len(head_bytes) // 5 + 1
        for start in range(0, len(head_bytes), size):
            steps += [head_bytes[start : start + size], pause]
    else:
        steps.append(head_bytes)
    if pace in (4, 5) and body:  # a body that stops half way, for a moment or past the deadline
        body.insert(len(body) // 2, 0.05 if pace == 4 else 2 * TOTAL_TIMEOUT)
    steps += body

    # What must be refused, whatever else happens (a claim only where the answer's framing is certain).
    framing_sure = status_kind == "ok" and not any(line.startswith(b"X-Padding") for line in noise)
    too_long_head = len(head_bytes) > MAX_HEADER_BYTES + 256  # the cap counts header lines give or take blanks
    refused = (
        status_kind == "refused"
        or too_long_head
        or (status_kind == "ok" and (not is_json or not is_identity))
        or (framing_sure and framing in ("broken-chunk", "broken-length"))
    )
    return Answer(
        steps,
        pace in (3, 5),
        refused,
        refused_by_get_json=refused or (framing_sure and (body_bytes > MAX_BYTES or depth > MAX_JSON_DEPTH)),
        refused_by_find=refused or (framing_sure and body_bytes > FIND_MAX_BYTES),
    )


def cases(long_form: bool) -> int:
    return 3000 if long_form else 40


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The process's resident memory, sampled every few milliseconds while it runs: the most any one case
    added above where that case started (`case_peak`, in `peak_case`), and the most seen overall."""

    def __init__(self) -> None:
        self.start = self.peak = self._case_start = resident_bytes()
        self.case = self.peak_case = 0
        self.case_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def next_case(self) -> None:
        self._case_start = resident_bytes()
        self.case += 1

    def _sample(self) -> None:
        while not self._stop.wait(0.003):
            now = resident_bytes()
            self.peak = max(self.peak, now)
            if now - self._case_start > self.case_peak:
                self.case_peak, self.peak_case = now - self._case_start, self.case

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet([PEER])
    fleet.start()
    yield fleet
    fleet.stop()


def timed(slowest: dict[str, float], what: str, fetches: int, coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a reading of up to `fetches` fetches; it must end within that many deadlines (and slack)."""
    started = time.monotonic()
    try:
        return asyncio.run(coroutine)
    finally:
        took = time.monotonic() - started
        slowest[what] = max(slowest.get(what, 0.0), took)
        assert took < fetches * FETCH_SECONDS, f"{what} took {took:.2f} s"


def test_hostile_answers_are_each_that_peers_fetch_error_within_bounds(fleet: PeerFleet, long_form: bool) -> None:
    fetcher = Fetcher(
        fleet.policy(total_timeout=TOTAL_TIMEOUT, connect_timeout=1.0, max_bytes=MAX_BYTES),
        resolver=fleet.resolver,
        ssl_context=fleet.client_context(),
    )
    url = f"https://{PEER}/api/v1/instance/domain_blocks"
    slowest: dict[str, float] = {}
    ran = [0]

    @settings(
        max_examples=cases(long_form),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(answers())
    def case(answer: Answer) -> None:
        ran[0] += 1
        memory.next_case()
        fleet.peers[PEER] = Peer(raw=answer.steps)
        fleet.requests.clear()  # the fleet's log of requests, not needed here
        try:
            timed(slowest, "get_json", 1, fetcher.get_json(url))
        except FetchError:
            pass
        else:
            assert not answer.refused_by_get_json, "get_json accepted an answer it must refuse"
        try:
            timed(slowest, "find", 1, fetcher.find(url, needles(TARGET), FIND_MAX_BYTES))
        except FetchError:
            pass
        else:
            assert not answer.refused_by_find, "find accepted an answer it must refuse"
        if answer.past_deadline:
            return  # the scan's and the audit's readings would only wait for the same deadlines again
        result = timed(slowest, "read_peer", 2, read_peer(fetcher, PEER))  # discovery, then the document
        assert result.error != "error", "the scan's catch-all caught what the fetcher let escape"
        verdict = timed(slowest, "audit_peer", 4, audit_peer(fetcher, PEER, TARGET, None))
        assert isinstance(verdict, Verdict)

    started = time.monotonic()
    with PeakMemory() as memory:
        case()
    print(
        f"\nfetch fuzz: {ran[0]} cases in {time.monotonic() - started:.1f} s; slowest (s): "
        + ", ".join(f"{what} {seconds:.2f}" for what, seconds in slowest.items())
        + f"; RSS: at most {memory.case_peak / 2**20:.1f} MiB added by one case (case {memory.peak_case}), "
        f"peak {(memory.peak - memory.start) / 2**20:.1f} MiB above the start"
    )
    assert ran[0] >= cases(long_form) * 0.9  # hypothesis may stop early once it has tried every small case
    assert memory.case_peak < RSS_CASE_CAP
