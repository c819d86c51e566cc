"""Tocsin's share of Mastodon's API rate limit: admin calls paced by X-RateLimit-* across processes, a
429 turned into a wait for the reset, posts never held back. Against the double, which enforces the
limit in fixed windows as Mastodon does."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import pytest

from bot.mastodon.actions import is_staff
from bot.mastodon.client import MastodonLink, make_client
from bot.mastodon.context import Context
from bot.mastodon.ratelimit import BUDGET_KEY, BudgetExhausted
from tests.mastodon_double import MastodonDouble


def spend(ctx: Context, calls: int) -> None:
    for n in range(calls):
        ctx.mastodon._read_impact(f"peer{n}.example")


def limited(
    double: MastodonDouble, make_context: Callable[..., Context], limit: int, period: float, **settings: object
) -> Context:
    """The double limiting to `limit` calls per `period`, Tocsin's share half of it; returns at the start
    of a window with at least half of it left, so a test's calls fall in one window. Windows of 3 s: the
    calls take milliseconds, and a longer window only lengthens this wait (up to half of it)."""
    double.rate_limit, double.rate_period = limit, period
    ctx = make_context(api_budget=0.5, **settings)
    while time.time() % period > period / 2:
        time.sleep(0.05)  # polling the clock, not waiting for something to (not) happen
    return ctx


@pytest.mark.slow  # waits out a real rate-limit window
def test_admin_calls_stop_at_the_share_and_resume_after_the_reset(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    ctx = limited(mastodon, make_context, 10, 4.0)
    spend(ctx, 5)  # half of 10
    with pytest.raises(BudgetExhausted) as spent:
        ctx.mastodon._read_impact("one-too-many.example")
    assert 0 < spent.value.wait <= mastodon.rate_period + 1.5  # the window's end (Date has whole seconds)
    measures = [path for _method, path in mastodon.requests if path == "/api/v1/admin/measures"]
    assert len(measures) == 5, "the sixth call was never made"
    time.sleep(spent.value.wait)  # the reset Mastodon announced: the whole point of the wait
    spend(ctx, 1)
    assert mastodon.throttled == 0


def test_every_process_spends_the_same_share(
    mastodon: MastodonDouble, make_context: Callable[..., Context], connection: object
) -> None:
    ctx = limited(mastodon, make_context, 10, 3.0)
    other = MastodonLink(ctx.settings, ctx.redis, make_client(ctx.settings, ctx.redis), is_staff=is_staff)  # a worker
    spend(ctx, 3)
    other._read_impact("a.example")
    other._read_impact("b.example")
    with pytest.raises(BudgetExhausted):
        ctx.mastodon._read_impact("c.example")
    assert int(ctx.redis.hget(BUDGET_KEY, "remaining") or 0) == 5  # type: ignore[arg-type]


def test_a_429_waits_for_the_reset_without_asking_again(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    """Another client of the account spent the window: Mastodon answers 429; Tocsin waits for the reset
    and does not knock again before it."""
    ctx = limited(mastodon, make_context, 6, 3.0)
    moderator_app = {"Authorization": f"Bearer {mastodon.token}"}
    for _ in range(6):
        httpx2.get(f"{mastodon.url}/api/v1/accounts/verify_credentials", headers=moderator_app)
    with pytest.raises(BudgetExhausted) as throttled:
        ctx.mastodon._read_impact("x.example")
    assert mastodon.throttled == 1 and 0 < throttled.value.wait <= mastodon.rate_period + 1.5
    with pytest.raises(BudgetExhausted):
        ctx.mastodon._read_impact("x.example")
    assert mastodon.throttled == 1, "asked Mastodon again before the reset"


def test_posts_are_not_held_back_by_the_share(mastodon: MastodonDouble, make_context: Callable[..., Context]) -> None:
    ctx = limited(mastodon, make_context, 10, 3.0, dry_run=False)
    spend(ctx, 5)
    ctx.mastodon.post_status("@mod_anna alert", visibility="direct", idempotency_key="k1")
    assert len(mastodon.direct_messages()) == 1
    assert int(ctx.redis.hget(BUDGET_KEY, "remaining") or 0) == 4  # type: ignore[arg-type]  # and it counted


def test_bulk_work_leaves_room_for_the_routine_calls(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    """A scan's sizing stops at 80 % of Tocsin's share; the domain-block poll still gets through."""
    ctx = limited(mastodon, make_context, 20, 3.0)
    with ctx.mastodon.bulk():
        spend(ctx, 8)  # 80 % of 10
        with pytest.raises(BudgetExhausted):
            ctx.mastodon._read_impact("bulk.example")
    ctx.mastodon.all_domain_blocks()  # routine: the rest of the share
    ctx.mastodon._read_impact("an-alert.example")
    with pytest.raises(BudgetExhausted):
        ctx.mastodon._read_impact("over.example")
    assert mastodon.throttled == 0
