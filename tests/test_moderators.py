"""Who receives alerts: TOCSIN_MODERATORS checked against who is staff in Mastodon now, at send time.

Alerts quote report comments: a moderator removed, demoted, suspended or disabled in Mastodon must stop
receiving them within a minute (the cache's life), without anyone editing Tocsin's settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bot.core import defaults
from bot.mastodon.context import Context
from bot.pipeline.queue import enqueue_once
from bot.pipeline.surges import Alert, send_alert
from tests.helpers import run_jobs
from tests.mastodon_double import MastodonDouble


def alert(ctx: Context, number: int) -> list[str]:
    """A report-surge alert, sent as a worker sends it; the accts its DM was addressed to."""
    event = Alert(kind="open", bucket="spam.example", surge_id=str(number), alert_no=1, at=0.0, rate=1.0)
    enqueue_once(
        ctx.redis, defaults.QUEUE_URGENT, send_alert, "report-surge", event.to_json(), job_id=f"alert-{number}"
    )
    sent = len(ctx.redis.keys(defaults.OUTBOX_SENT_PREFIX + "*"))
    run_jobs(ctx.redis)
    assert len(ctx.redis.keys(defaults.OUTBOX_SENT_PREFIX + "*")) == sent + 1, "the alert was not sent"
    return [str(acct) for acct in ctx.mastodon.moderators()]


def a_minute_later(connection: redis.Redis) -> None:
    """What the caches' expiry does (their life is checked, not waited for)."""
    cached = [*connection.scan_iter(defaults.CACHE_PREFIX + "moderators:*"), defaults.CACHE_PREFIX + "staff"]
    for key in cached:
        assert 0 < connection.ttl(key) <= defaults.STAFF_ROLE_TTL, key
    connection.delete(*cached)


def demote(mastodon: MastodonDouble) -> None:
    del mastodon.roles["102"]


def suspend(mastodon: MastodonDouble) -> None:
    mastodon.staff_flags["102"] = {"suspended": True}


def disable(mastodon: MastodonDouble) -> None:
    mastodon.staff_flags["102"] = {"disabled": True}  # login disabled: still listed by status=active


def everyone_role(mastodon: MastodonDouble) -> None:
    mastodon.roles["102"] = "everyone"


@pytest.mark.parametrize("change", [demote, suspend, disable, everyone_role])
def test_a_moderator_no_longer_staff_gets_no_more_alerts(
    make_context: Callable[..., Context],
    mastodon: MastodonDouble,
    change: Callable[[MastodonDouble], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = make_context(moderators=["mod_anna", "mod_ben"])
    alert(ctx, 1)
    assert mastodon.recipients(mastodon.direct_messages()[-1]) == ["mod_anna", "mod_ben"]
    change(mastodon)
    a_minute_later(ctx.redis)
    with caplog.at_level(logging.WARNING):
        alert(ctx, 2)
    last = mastodon.direct_messages()[-1]
    assert mastodon.recipients(last) == ["mod_anna"]
    assert "mod_ben" not in last["text"]
    assert "TOCSIN_MODERATORS entry 2 of 2 is not local staff now" in caplog.text
    assert "mod_ben" not in caplog.text  # the log says which entry, not who


def test_staff_roles_beyond_reports_and_this_instance_written_in_full_are_kept(
    make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    """A role that manages federation but not reports is staff (Mastodon's `permissions=staff` list leaves
    it out: looked up by name); `mod_anna@<this instance>` is local; an account elsewhere is not staff here."""
    mastodon.staff = [*mastodon.staff, ("103", "mod_cleo")]
    mastodon.roles["103"] = "federation"
    ctx = make_context(moderators=["mod_anna@social.example.org", "mod_cleo", "mod_ben@elsewhere.example"])
    assert alert(ctx, 1) == ["mod_anna@social.example.org", "mod_cleo"]
    assert mastodon.recipients(mastodon.direct_messages()[-1]) == ["mod_anna@social.example.org", "mod_cleo"]
    assert ("GET", "/api/v1/accounts/lookup") in mastodon.requests


def test_the_checks_cost_one_request_a_minute(make_context: Callable[..., Context], mastodon: MastodonDouble) -> None:
    ctx = make_context(moderators=["mod_anna", "mod_ben"])
    for number in range(5):
        alert(ctx, number)
    assert mastodon.requests.count(("GET", "/api/v2/admin/accounts")) == 1
    assert len(mastodon.direct_threads()) == 5


def test_without_tocsin_moderators_the_staff_list_leaves_out_disabled_accounts_and_the_bot(
    ctx: Context, mastodon: MastodonDouble
) -> None:
    assert alert(ctx, 1) == ["mod_anna", "mod_ben"]
    disable(mastodon)
    a_minute_later(ctx.redis)
    assert alert(ctx, 2) == ["mod_anna"]
    assert mastodon.recipients(mastodon.direct_messages()[-1]) == ["mod_anna"]


def test_an_admin_api_the_token_cannot_read_keeps_the_configured_list(
    make_context: Callable[..., Context], mastodon: MastodonDouble, caplog: pytest.LogCaptureFixture
) -> None:
    mastodon.scopes = {"read", "write:statuses", "admin:read:reports", "admin:read:domain_blocks"}
    ctx = make_context(moderators=["mod_anna", "mod_ben"])
    with caplog.at_level(logging.WARNING):
        assert alert(ctx, 1) == ["mod_anna", "mod_ben"]
    assert "not checked against current staff: the admin API answered 403" in caplog.text
