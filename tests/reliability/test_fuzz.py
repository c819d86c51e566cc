"""Fuzzing the intake and the handlers behind it with hypothesis.

Anything may arrive at the webhook URL: the intake must never answer 5xx (Mastodon would retry it for
two days) and never store a body that is not signed with the secret. A signed body is Mastodon's, but
Mastodon's shapes change between versions and forks: odd types in any field of any event must be
counted as rejected, never crash a handler or a worker.

Short form: 500 cases each; `--long`: 10,000 each (the figures in the README come from the long form).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import defaults
from bot.mastodon.context import Context
from bot.ops.web import create_app
from bot.pipeline.events import drain_with
from tests.helpers import fixture, sign

pytestmark = pytest.mark.slow  # long fuzzing of intake and handlers (the fast suite has tests/test_intake.py)

EVENTS = ["report.created", "report.updated", "account.created", "account.updated", "account.approved"]
EVENTS += ["status.created", "status.updated"]
ODD: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.just("x" * 5000),
    st.just("2026-13-45T99:99:99Z"),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys, list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


PATHS = {name: [path for path in paths(fixture(name)) if path] for name in EVENTS}


@st.composite
def odd_event(draw: st.DrawFn) -> dict[str, Any]:
    """A real event shape with one field (at any depth) replaced by an odd value, or removed."""
    name = draw(st.sampled_from(EVENTS))
    event = copy.deepcopy(fixture(name))
    path = draw(st.sampled_from(PATHS[name]))
    parent = event
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(ODD)
    return event


def cases(long_form: bool) -> int:
    return 10_000 if long_form else 500


@pytest.fixture
def intake(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings)) as client:
        yield client


def deliver(client: TestClient, body: bytes, signature: str | None) -> int:
    headers: dict[str, bytes] = {"Content-Type": b"application/json"}
    if signature is not None:
        headers["X-Hub-Signature"] = signature.encode("latin-1")  # a header may carry any of these bytes
    return client.post("/webhooks/mastodon", content=body, headers=headers).status_code


def run_cases(count: int, test: Callable[..., None], *strategies: st.SearchStrategy[Any]) -> int:
    """Run `test` over `count` generated cases (fixtures stay the same: a function-scoped fixture is fine
    here, every case checks what it changed); how many ran."""
    ran = [0]

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(st.tuples(*strategies))
    def each(values: tuple[Any, ...]) -> None:
        ran[0] += 1
        test(*values)

    each()
    return ran[0]


SIGNATURES = st.one_of(
    st.none(),
    st.just("sha256="),
    st.just("sha256=" + "0" * 64),
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80),
    st.just("valid"),  # replaced by the body's real signature
    st.just("other"),  # a valid signature of another body
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.builds(lambda event: json.dumps(event).encode(), odd_event()),
    st.just(b"[]"),
    st.just(b'{"event": null}'),
    st.just(b'{"event": "report.created", "object": []}'),
    st.just(b'{"event": "domain_block.created", "object": {}}'),  # an event Mastodon may add: 200, ignored
)


def test_intake_never_answers_5xx_and_never_stores_an_unsigned_body(
    intake: TestClient, connection: redis.Redis, long_form: bool
) -> None:
    statuses: set[int] = set()

    def case(body: bytes, signature: str | None) -> None:
        valid = signature == "valid"
        if valid:
            signature = sign(body)
        elif signature == "other":
            signature = sign(body + b" ")
        before = connection.xlen(defaults.EVENT_STREAM)
        status = deliver(intake, body, signature)
        statuses.add(status)
        assert status < 500, status
        if not valid:
            assert status == 401 and connection.xlen(defaults.EVENT_STREAM) == before
        connection.delete(defaults.EVENT_STREAM)  # (no worker here: keep the stream short)

    ran = run_cases(cases(long_form), case, BODIES, SIGNATURES)
    assert ran >= cases(long_form) * 0.9  # hypothesis may stop early once it has tried every small case
    assert {200, 202, 400, 401} <= statuses, statuses
    print(f"\nfuzz intake: {ran:,} cases, statuses {sorted(statuses)}")


def test_signed_odd_events_are_rejected_or_handled_never_a_crash(
    ctx: Context, intake: TestClient, connection: redis.Redis, long_form: bool
) -> None:
    outcomes: dict[str, int] = {"processed": 0, "rejected": 0, "failed": 0, "refused at intake": 0}

    def case(event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        status = deliver(intake, body, sign(body))
        assert status in (200, 202, 400), status
        if status != 202:
            outcomes["refused at intake"] += 1
            return
        counts = drain_with(ctx)  # raises if the worker's drain itself breaks
        for name in ("processed", "rejected", "failed"):
            outcomes[name] += counts[name]
        failed = [json.loads(raw)["error"] for raw in connection.lrange(defaults.FAILED_EVENTS, 0, 2)]
        assert counts["failed"] == 0, f"a handler crashed on {json.dumps(event)[:400]}: {failed}"

    ran = run_cases(cases(long_form), case, odd_event())
    assert ran >= cases(long_form) * 0.9
    assert outcomes["processed"] > 0 and outcomes["rejected"] > 0
    print(f"\nfuzz handlers: {ran:,} cases, {outcomes}")
