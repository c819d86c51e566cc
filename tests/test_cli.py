"""The operator's commands (`tocsin doctor`, `failed`, `outbox`, `pause`/`resume`, `backfill`) against
real Redis and the Mastodon double."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
from click.testing import CliRunner

from bot.core import defaults
from bot.mastodon.context import Context
from bot.mastodon.outbox import Post
from bot.ops.cli import main
from bot.pipeline.events import drain_with
from tests.helpers import report_event, run, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.waves import burst, iso, signup_background


def test_doctor_names_what_is_wrong_and_what_is_fine(tocsin: CliRunner, connection: redis.Redis) -> None:
    result = run(tocsin, "doctor")
    assert result.exit_code == 1  # no worker has been seen
    assert "BAD  0 worker(s) seen" in result.output
    assert "ok   Redis answers" in result.output
    assert "ok   mode: live" in result.output
    assert "ok   alerts go to: @mod_anna, @mod_ben" in result.output
    assert "ok   domain blocks polled: never" in result.output and "ok   peers scanned: never" in result.output
    assert (
        "ok   DM commands: no stream (tocsin listen), polled every 15 s; write scopes: the token has them"
        in result.output
    )


def test_doctor_names_the_configured_moderators_who_are_not_staff_now(
    tocsin: CliRunner, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    tocsin.env["TOCSIN_MODERATORS"] = "mod_anna,mod_ben,someone@elsewhere.example"
    del mastodon.roles["102"]  # mod_ben demoted in Mastodon; nobody edited Tocsin's settings
    result = run(tocsin, "doctor")
    assert "BAD  TOCSIN_MODERATORS not local staff now (no alerts for them): @mod_ben, @someone@elsewhere.example" in (
        result.output
    )
    assert "ok   alerts go to: @mod_anna\n" in result.output


def test_doctor_names_the_scopes_dm_commands_lack(
    tocsin: CliRunner, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.scopes = {"read", "write:statuses", "admin:read", "admin:write:domain_blocks"}
    result = run(tocsin, "doctor")
    assert (
        "BAD  DM commands: no stream (tocsin listen), polled every 15 s; write scopes: the token lacks "
        "admin:write:email_domain_blocks, admin:write:accounts, admin:write:reports: refused"
    ) in result.output
    assert mastodon.domain_blocks == [] and mastodon.email_domain_blocks == []  # the probes changed nothing


def test_failed_lists_and_requeues_an_event_whose_handler_failed(
    tocsin: CliRunner, ctx: Context, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.reports import surge as reports

    def broken_handler(*_args: object) -> None:
        raise RuntimeError("a bug in the handler")

    monkeypatch.setattr(reports, "record_report", broken_handler)  # a handler bug, not Redis: kept, not retried
    broken = report_event(1, "2026-11-20T12:00:00.000Z", "spam.example", "5")
    connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(broken)})
    assert drain_with(ctx)["failed"] == 1
    monkeypatch.undo()  # the fix is deployed
    result = run(tocsin, "failed")
    assert "event report.created: RuntimeError: a bug in the handler" in result.output
    result = run(tocsin, "failed", "--requeue")
    assert "1 events put back on the stream" in result.output
    assert connection.llen(defaults.FAILED_EVENTS) == 0
    [(_id, fields)] = connection.xrange(defaults.EVENT_STREAM)  # the original was acknowledged and deleted
    assert json.loads(fields[b"event"]) == broken


def test_an_unusable_event_is_rejected_and_counted_not_kept_as_failed(
    tocsin: CliRunner, ctx: Context, connection: redis.Redis
) -> None:
    odd = report_event(2, "2026-11-20T12:00:00.000Z", "spam.example", "5")
    odd["object"]["created_at"] = None  # no time: no detector can count it, and retrying will not help
    connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(odd)})
    counts = drain_with(ctx)
    assert (counts["rejected"], counts["failed"]) == (1, 0)
    assert connection.llen(defaults.FAILED_EVENTS) == 0
    assert connection.hget(defaults.REJECTED_EVENTS, "report.created") == b"1"
    assert "events rejected as unusable (odd shapes): report.created 1" in tocsin.invoke(main, ["doctor"]).output


def test_pause_holds_posts_until_resume_and_outbox_shows_them(
    tocsin: CliRunner, ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    assert "paused" in run(tocsin, "pause").output
    ctx.outbox.send(Post(key="held", text="Held back", visibility="direct", mentions=("mod_anna",)))
    assert mastodon.direct_texts() == []
    listing = run(tocsin, "outbox").output
    assert "direct paused held (1/1)\n@mod_anna\nHeld back" in listing
    [entry] = [json.loads(line) for line in run(tocsin, "outbox", "--json").output.splitlines()]
    assert entry["mode"] == "paused"
    assert "PAUSED, 1 post(s) held" in tocsin.invoke(main, ["doctor"]).output
    assert "resumed; 1 held post(s) being sent" in run(tocsin, "resume").output
    run_jobs(connection)
    assert mastodon.direct_texts() == ["@mod_anna\nHeld back"]  # released, once
    ctx.outbox.send(Post(key="sent", text="Sent now", visibility="direct", mentions=("mod_anna",)))
    ctx.outbox.send(Post(key="held", text="Held back", visibility="direct", mentions=("mod_anna",)))  # a retry
    assert mastodon.direct_texts() == ["@mod_anna\nHeld back", "@mod_anna\nSent now"]
    assert "resumed; 0 held post(s)" in run(tocsin, "resume").output


def test_resume_can_drop_what_the_panic_stop_held(
    tocsin: CliRunner, ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    run(tocsin, "pause")
    ctx.outbox.send(Post(key="stale", text="Stale alert", visibility="direct", mentions=("mod_anna",)))
    assert "resumed; 1 held post(s) discarded" in run(tocsin, "resume", "--drop").output
    run_jobs(connection)
    assert mastodon.statuses == []


def test_backfill_command_seeds_the_baseline(
    tocsin: CliRunner, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    now = datetime.now(UTC)
    for n in range(30):
        event = report_event(100 + n, iso(now - timedelta(days=n % 10, hours=1)), f"s{n % 3}.example", str(n))
        mastodon.reports.append(event["object"])
    mastodon.accounts.extend(event["object"] for event in signup_background(now - timedelta(days=5), days=5))
    output = run(tocsin, "backfill").output
    assert "30 reports recorded" in output and "15 sign-ups recorded" in output
    assert connection.zcard("tocsin:reports:times:*") == 30
    assert connection.zcard("tocsin:signups:times") == 15
    assert connection.llen("rq:queue:" + defaults.QUEUE_URGENT) == 0  # history raises no alert


def test_backfill_without_a_token_says_what_it_needs(tocsin: CliRunner) -> None:
    result = tocsin.invoke(main, ["backfill"], env={"TOCSIN_ACCESS_TOKEN": ""})
    assert result.exit_code != 0
    assert "set TOCSIN_ACCESS_TOKEN" in result.output


def test_a_surge_dm_can_be_read_back_from_the_outbox_command(
    tocsin: CliRunner, ctx: Context, connection: redis.Redis
) -> None:
    for event in burst(datetime(2026, 11, 20, 12, tzinfo=UTC), "spam.example", reports=20, hours=1):
        connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    drain_with(ctx)
    run_jobs(connection)
    assert "🔔 Report surge: spam.example" in run(tocsin, "outbox").output
