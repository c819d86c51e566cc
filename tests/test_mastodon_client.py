"""Tocsin's edge to Mastodon.py: the session every request goes through (what it counts as, what it
records of the rate limit) and the HTTP status read from any error Mastodon.py raises."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mastodon import MastodonAPIError, MastodonError, MastodonNetworkError, MastodonNotFoundError

from bot.core import metrics
from bot.mastodon.client import REQUEST_KINDS, http_status, request_kind, reset_time
from bot.mastodon.context import Context
from bot.mastodon.ratelimit import BudgetExhausted
from tests.mastodon_double import MastodonDouble

SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
TAILS = st.lists(SEGMENT, max_size=4).map(lambda parts: "".join("/" + part for part in parts))


@given(st.sampled_from(["v1", "v2"]), TAILS, st.sampled_from(["", "/mastodon"]))
def test_every_admin_request_is_paced_whatever_it_reads_or_writes(version: str, tail: str, prefix: str) -> None:
    assert request_kind(f"https://social.example{prefix}/api/{version}/admin{tail}?limit=200") == ("admin", True)


@given(
    st.sampled_from(["instance", "statuses", "notifications", "streaming", "accounts", "domain_blocks", "search"]),
    TAILS,
)
def test_only_admin_reads_the_peer_list_and_who_follows_reported_accounts_are_paced(resource: str, tail: str) -> None:
    kind, paced = request_kind(f"https://social.example/api/v1/{resource}{tail}")
    follows_read = resource == "accounts" and (tail == "" or re.fullmatch(r"/[^/]+/followers", tail) is not None)
    assert paced == ((resource == "instance" and tail == "/peers") or follows_read)
    assert kind == (resource if resource in {row[1] for row in REQUEST_KINDS} else "other")


def test_the_peer_list_is_paced_and_the_instance_is_not() -> None:
    assert request_kind("https://social.example/api/v1/instance/peers") == ("instance", True)
    assert request_kind("https://social.example/api/v2/instance") == ("instance", False)
    assert request_kind("https://social.example/api/v1/administrators") == ("other", False)  # not admin/


@given(
    skew=st.floats(-3600, 3600),  # how far the server's clock is off ours
    left=st.floats(1, 900),  # seconds until the window's end
    iso=st.booleans(),
)
def test_the_reset_is_read_by_our_clock_whatever_the_servers(skew: float, left: float, iso: bool) -> None:
    now = 1_700_000_000.0
    server_now = now + skew
    reset = server_now + left
    headers = {
        "Date": format_datetime(datetime.fromtimestamp(int(server_now), UTC), usegmt=True),  # whole seconds
        "X-RateLimit-Reset": (
            datetime.fromtimestamp(reset, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            if iso
            else str(int(reset))
        ),
    }
    found = reset_time(headers, now)
    assert found is not None and abs(found - (now + left)) <= 2  # Date and an epoch reset are whole seconds


def test_a_reset_not_said_or_past_is_none() -> None:
    assert reset_time({}, 1e9) is None
    assert reset_time({"X-RateLimit-Reset": "soon"}, 1e9) is None
    assert reset_time({"X-RateLimit-Reset": "2001-09-09T01:46:00Z"}, 1e9) is None  # 1e9 is 01:46:40


COUNTED = [(kind, status) for kind in ("instance", "admin", "statuses") for status in ("ok", "404", "429", "network")]


def api_calls() -> dict[tuple[str, str], float]:
    """This process's tocsin_mastodon_api_calls, by (kind, status). Read from the counters themselves, not
    from the multiprocess directory, which another test may have emptied (as `tocsin serve` does at
    start) while this process's counters stay mapped to the files it had."""
    return {key: metrics.API_CALLS.labels(*key)._value.get() for key in COUNTED}


def test_every_request_is_counted_once_by_kind_and_answer(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    ctx = make_context(dry_run=False)
    assert ctx.mastodon.client is not None
    before = api_calls()
    ctx.mastodon.client.instance_v2()
    with pytest.raises(MastodonNotFoundError):
        ctx.mastodon.client.admin_account("404404")
    ctx.mastodon.post_status("@mod_anna hello", visibility="direct", idempotency_key="k1")
    mastodon.fail_next_posts = [429]
    with pytest.raises(BudgetExhausted) as throttled:
        ctx.mastodon.post_status("@mod_anna again", visibility="direct", idempotency_key="k2")
    assert 0 < throttled.value.wait < 4  # the injected 429 resets in 2 s; Date has whole seconds (+1)
    after = api_calls()
    counted = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    assert {key: n for key, n in counted.items() if n} == {
        ("instance", "ok"): 1,
        ("admin", "404"): 1,
        ("statuses", "ok"): 1,
        ("statuses", "429"): 1,
    }


ANYTHING = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=5)


@given(st.lists(ANYTHING, max_size=5), st.sampled_from([MastodonError, MastodonAPIError, MastodonNetworkError]))
def test_the_status_is_the_second_argument_when_it_is_one_and_nothing_else(
    args: list[object], kind: type[MastodonError]
) -> None:
    status = http_status(kind(*args))
    second = args[1] if len(args) > 1 else None
    if isinstance(second, int) and not isinstance(second, bool) and 100 <= second <= 599:
        assert status == second
    else:
        assert status is None  # a text, a flag, a number that is no HTTP status: none, never a guess


@given(st.integers(100, 599), st.text(max_size=20), st.none() | st.text(max_size=40))
def test_the_status_of_an_answer_as_mastodon_py_raises_it(status: int, reason: str, detail: str | None) -> None:
    # mastodon/internals.py: raise ex_type('Mastodon API returned error', status_code, reason, error_msg)
    assert http_status(MastodonAPIError("Mastodon API returned error", status, reason, detail)) == status


def test_the_status_of_a_real_answer(ctx: Context) -> None:
    with pytest.raises(MastodonNotFoundError) as missing:
        ctx.mastodon.admin_account("404404")
    assert http_status(missing.value) == 404
