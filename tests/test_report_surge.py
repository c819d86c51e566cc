"""The report-surge detector: pure decisions, then scenarios through real Redis counters and RQ jobs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from bot.core import defaults
from bot.mastodon.context import Context, redis_from_url
from bot.pipeline.events import drain_with
from bot.pipeline.surges import Decision, SurgeState, settling
from handlers.reports.settings import ReportSurgeSettings
from handlers.reports.surge import (
    EVERYWHERE,
    WindowStats,
    assess,
    backfill_reports,
    handle_report,
    hourly_rate,
    surge_rule,
    window_details,
)
from tests.helpers import alert_jobs, feed, report_event, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.waves import background, burst, iso

CFG = ReportSurgeSettings()
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
T = NOW.timestamp()


# --- pure decisions


@pytest.mark.parametrize(
    ("bucket", "stats", "expected"),
    [
        ("spam.example", WindowStats(count=14, last_hour=14, first_in_hour=T - 900, baseline=0, accounts=10), None),
        ("spam.example", WindowStats(15, 15, T - 900, 0, accounts=10), Decision.OPEN),
        ("spam.example", WindowStats(15, 15, T - 900, 0, accounts=2), None),  # one or two noisy accounts
        # One server's wave alerts on a new install too: only the all-servers bucket waits to learn.
        ("spam.example", WindowStats(15, 15, T - 900, 0, accounts=10, observed_for=900), Decision.OPEN),
        # A server that is always reported a lot: 15 in 3 h is its normal (~16 per 3 h), no alert.
        ("busy.example", WindowStats(15, 5, T - 3000, baseline=3600, accounts=15), None),
        ("busy.example", WindowStats(200, 90, T - 3000, baseline=3600, accounts=150), Decision.OPEN),
        ("local", WindowStats(15, 15, T - 900, 0, accounts=5), Decision.OPEN),
        # Everywhere: needs more reports, and no one server that has its own alert.
        (EVERYWHERE, WindowStats(39, 20, T - 900, 0, accounts=39, top_bucket=3), None),
        (EVERYWHERE, WindowStats(40, 20, T - 900, 0, accounts=40, top_bucket=3), Decision.OPEN),
        (EVERYWHERE, WindowStats(40, 20, T - 900, 0, accounts=40, top_bucket=20), None),
        (EVERYWHERE, WindowStats(40, 20, T - 900, 0, accounts=40, top_bucket=3, observed_for=3600), None),  # learning
    ],
)
def test_assess_opens_a_surge_only_above_thresholds(bucket: str, stats: WindowStats, expected: Decision | None) -> None:
    assert assess(bucket, stats, None, CFG, T) == expected


def test_baseline_rate_is_over_the_span_observed_so_far() -> None:
    expected_in_window = surge_rule("spam.example", CFG).expected_in_window
    settled = WindowStats(10, 5, T - 3000, baseline=56)
    assert expected_in_window(settled.baseline, settled.observed_for) == pytest.approx(56 / (28 * 24) * 3)
    # Two days in: not diluted over 28 days.
    two_days_in = WindowStats(10, 5, T - 3000, baseline=56, observed_for=2 * 86400 + 3 * 3600)
    assert expected_in_window(two_days_in.baseline, two_days_in.observed_for) == pytest.approx(56 / 48 * 3)
    # The first hours: counted as a day at least.
    first_hours = WindowStats(10, 5, T - 3000, baseline=6, observed_for=5 * 3600)
    assert expected_in_window(first_hours.baseline, first_hours.observed_for) == pytest.approx(6 / 24 * 3)


def test_rate_of_a_young_wave_is_measured_over_its_own_span() -> None:
    # 15 reports in the last 17 minutes is ~53/h, not 15/h.
    assert hourly_rate(WindowStats(15, 15, T - 1020, 0), T) == pytest.approx(52.9, abs=0.1)
    # ... but never over less than 15 minutes: 3 reports in one minute are not 180/h.
    assert hourly_rate(WindowStats(3, 3, T - 60, 0), T) == 12.0


def test_escalation_needs_both_more_reports_and_a_faster_rate() -> None:
    state = SurgeState(
        "1", T - 3600, alerts=1, alerted_count=15, alerted_rate=50.0, alerted_at=T - 3600, last_event_at=T
    )
    steady = WindowStats(count=150, last_hour=50, first_in_hour=T - 3590, baseline=0)
    assert assess("spam.example", steady, state, CFG, T) is None  # more reports, same pace: same wave
    faster = WindowStats(count=150, last_hour=120, first_in_hour=T - 3590, baseline=0)
    assert assess("spam.example", faster, state, CFG, T) == Decision.ESCALATE
    # ... and an hour since the last DM.
    assert assess("spam.example", faster, state, CFG, T - 60) is None


def test_a_surge_learns_its_pace_during_the_cooldown_after_a_dm() -> None:
    state = SurgeState("1", T, alerts=1, alerted_count=15, alerted_rate=50.0, alerted_at=T, last_event_at=T)
    assert settling(state, T + 59 * 60, CFG.escalation_cooldown_minutes)
    assert not settling(state, T + 60 * 60, CFG.escalation_cooldown_minutes)
    assert not settling(state, T - 60, CFG.escalation_cooldown_minutes)  # an older event processed late
    assert not settling(None, T, CFG.escalation_cooldown_minutes)


# --- scenarios through Redis


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_weeks_of_background_never_alert(ctx: Context, connection: redis.Redis, seed: int) -> None:
    feed(ctx, background(NOW - timedelta(days=14), days=14, seed=seed))
    assert alert_jobs(connection) == []


def test_spam_wave_alerts_once_early_with_counts_and_impact(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.measures["spam.example"] = (12, 30, 1500)
    mastodon.max_characters = 1000
    feed(ctx, background(NOW - timedelta(days=14), days=14))
    wave = burst(NOW, "spam.example", reports=150, hours=3)
    for event in wave:
        mastodon.add_report(event["object"])
    feed(ctx, wave)
    alerts = alert_jobs(connection)
    assert len(alerts) == 1
    assert alerts[0]["kind"] == "open" and alerts[0]["bucket"] == "spam.example"
    assert alerts[0]["count"] <= 30  # within the wave's first 20-30 reports
    run_jobs(connection)
    [dm] = mastodon.direct_messages()
    assert mastodon.recipients(dm) == ["mod_anna", "mod_ben"]
    text = dm["text"]
    assert "🔔 Report surge: spam.example" in text
    assert f"{alerts[0]['count']} reports in 3.0 h" in text
    assert "Not limited or suspended." in text
    # The three choices, each with what it costs or does: the whole wave as it is when the DM is written.
    accounts = len({event["object"]["target_account"]["id"] for event in wave})
    assert "1. limit spam.example (cuts 12 follows from us to there, 30 from there to us)" in text
    assert f"2. suspend the {accounts} reported accounts of spam.example" in text
    assert "3. resolve the 150 open spam reports of the wave" in text
    assert text.endswith("Reply “approve” (item 1), “approve 1,2” or “dismiss”.")


def test_wave_that_quadruples_its_pace_escalates_once(ctx: Context, connection: redis.Redis) -> None:
    feed(ctx, burst(NOW, "spam.example", reports=40, hours=2, first_id=1000))
    feed(ctx, burst(NOW + timedelta(hours=2), "spam.example", reports=240, hours=1, first_id=2000, seed=3))
    kinds = [(alert["kind"], alert["alert_no"]) for alert in alert_jobs(connection)]
    assert kinds == [("open", 1), ("escalate", 2)]
    run_jobs(connection)


def test_already_limited_server_is_reported_as_such(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.add_block("example.net", severity="silence", reject_media=True)  # a parent domain's block covers it
    feed(ctx, burst(NOW, "spam.example.net", reports=20, hours=1))
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    assert "Already limited, media rejected." in text
    assert "Proposed: limit" not in text


def test_quiet_for_seven_days_proposes_lifting_the_limit(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    feed(ctx, burst(NOW, "spam.example", reports=30, hours=1))
    run_jobs(connection)
    mastodon.add_block("spam.example", severity="silence")
    connection.delete(defaults.CACHE_PREFIX + "domain-blocks")  # days pass: the 60 s cache has long expired
    # Six days later another server's report moves the event clock: not quiet yet.
    feed(ctx, [report_event(9001, iso(NOW + timedelta(days=6)), "other.example", "5")])
    assert alert_jobs(connection) == []
    feed(ctx, [report_event(9002, iso(NOW + timedelta(days=7, hours=2)), "other.example", "6")])
    assert [alert["kind"] for alert in alert_jobs(connection)] == ["quiet"]
    run_jobs(connection)
    quiet = mastodon.direct_texts()[-1]
    assert "✅ Quiet again: spam.example" in quiet
    assert "Proposed: lift the limit on spam.example" in quiet
    # A new wave after that is a new surge with its own alert.
    feed(ctx, burst(NOW + timedelta(days=8), "spam.example", reports=20, hours=1, first_id=7000))
    assert [alert["kind"] for alert in alert_jobs(connection)] == ["open"]


def test_report_updates_keep_open_and_resolved_counts(ctx: Context) -> None:
    wave = burst(NOW, "spam.example", reports=20, hours=1)
    feed(ctx, wave)
    for event in wave[:5]:
        event = {**event, "event": "report.updated", "object": {**event["object"], "action_taken": True}}
        handle_report(ctx, event)
    details = window_details(ctx, "spam.example", datetime.fromisoformat(wave[-1]["created_at"]).timestamp())
    assert (details.open_reports, details.resolved_reports) == (15, 5)


def test_reports_filed_by_the_bot_itself_are_ignored(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    own = [
        {**event, "object": {**event["object"], "account": {**event["object"]["account"], "id": mastodon.bot_id}}}
        for event in burst(NOW, "spam.example", reports=30, hours=1)
    ]
    ctx.mastodon.refresh_bot_account_id()  # as a worker does when it starts
    feed(ctx, own)
    assert alert_jobs(connection) == []
    assert connection.zcard("tocsin:reports:times:spam.example") == 0


def spread_wave(start: datetime) -> list[dict[str, Any]]:
    """50 reports in 25 minutes against 25 servers, two each: no one server stands out."""
    events = []
    for n in range(25):
        events += burst(
            start + timedelta(minutes=n), f"s{n}.example", reports=2, hours=2, first_id=10000 + 10 * n, seed=n
        )
    return sorted(events, key=lambda event: event["created_at"])


def test_wave_spread_over_many_servers_alerts_once_for_everywhere(ctx: Context, connection: redis.Redis) -> None:
    feed(ctx, background(NOW - timedelta(days=14), days=14))
    feed(ctx, spread_wave(NOW))
    assert [(alert["kind"], alert["bucket"]) for alert in alert_jobs(connection)] == [("open", "*")]


def test_no_everywhere_alert_while_learning_what_normal_is(ctx: Context, connection: redis.Redis) -> None:
    """A fresh install of a busy instance: its first hours of ordinary reports are no wave."""
    feed(ctx, spread_wave(NOW))
    assert alert_jobs(connection) == []


def test_local_accounts_are_their_own_bucket(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, burst(NOW, None, reports=20, hours=1))  # type: ignore[arg-type]
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    assert "🔔 Report surge: local accounts" in text
    assert "target_origin=local" in text


def test_replayed_events_raise_no_second_alert(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    wave = burst(NOW, "spam.example", reports=30, hours=1)
    feed(ctx, wave)
    run_jobs(connection)
    feed(ctx, wave)  # a crash before acknowledging: the whole batch is processed again
    run_jobs(connection)
    assert len(mastodon.direct_threads()) == 1


def test_two_workers_draining_at_once_raise_one_alert(ctx: Context, connection: redis.Redis, redis_url: str) -> None:
    for event in burst(NOW, "spam.example", reports=400, hours=3):
        connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    results: list[dict[str, int]] = []

    def drain() -> None:
        own = Context(ctx.settings, redis_from_url(redis_url))
        results.append(drain_with(own))

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result["processed"] for result in results) == 400
    assert all(result["processed"] > 0 for result in results)  # both really worked
    assert [alert["kind"] for alert in alert_jobs(connection)] == ["open"]


def test_dm_shows_the_settled_counts_when_events_were_counted_out_of_order(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    """A backlog drained by several workers counts a wave's later reports before its earlier ones."""
    wave = burst(NOW, "spam.example", reports=60, hours=1, accounts=20)
    feed(ctx, wave[30:])
    [alert] = alert_jobs(connection)
    assert alert["count"] == 15  # what the detector had seen of the window when it decided
    feed(ctx, wave[:30])
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    # 30 earlier reports were counted in the meantime: the DM reports the window as it really was.
    assert "45 reports in 3.0 h" in text
    accounts = len({event["object"]["target_account"]["id"] for event in wave[:45]})
    assert f"{accounts} accounts reported by" in text


@pytest.mark.slow  # 900 reports read page by page
def test_backfill_seeds_the_baseline_from_every_page_of_both_listings(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    """A busy server's history, read through the admin API, raises the bar for its next burst."""
    now = datetime.now(UTC)
    for n in range(900):  # ~45 a day against busy.example for 20 days; a third of them resolved
        event = report_event(20000 + n, iso(now - timedelta(days=20) + timedelta(minutes=32 * n)), "busy.example", "7")
        mastodon.reports.append({**event["object"], "action_taken": n % 3 == 0})
    old = report_event(19999, iso(now - timedelta(days=40)), "busy.example", "7")
    mastodon.reports.append(old["object"])  # older than the baseline window: not read
    assert backfill_reports(ctx, days=28) == 900
    assert connection.zcard("tocsin:reports:times:busy.example") == 900
    assert alert_jobs(connection) == []  # history raises no alerts

    # 900 in the baseline window predict 4 per 3 hours: 10x that is 40. 30 in an hour would alert for a
    # server without history, not for this one.
    feed(ctx, burst(now, "busy.example", reports=30, hours=1, first_id=90000))
    assert alert_jobs(connection) == []
    feed(ctx, burst(now, "quiet.example", reports=30, hours=1, first_id=95000))
    assert [alert["bucket"] for alert in alert_jobs(connection)] == ["quiet.example"]


def test_domain_block_of_a_server_on_a_later_page_is_found(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.add_block("spam.example", severity="silence")  # the oldest block: on the last page
    for n in range(450):
        mastodon.add_block(f"other{n}.example", severity="suspend")
    block = ctx.mastodon.block_for("spam.example")
    assert block is not None and block.severity == "silence"
    assert len(ctx.mastodon.domain_blocks()) == 451


def test_report_history_is_capped_oldest_first(
    ctx: Context, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.reports import surge as reports

    monkeypatch.setattr(reports, "REPORT_CAP", 50)
    feed(ctx, background(NOW - timedelta(days=14), days=14, per_week=60))  # 120 reports
    assert connection.zcard(reports.TIMES_PREFIX + reports.EVERYWHERE) == 50
    kept = connection.zrange(reports.TIMES_PREFIX + reports.EVERYWHERE, 0, -1)
    assert len(connection.keys(reports.REPORT_PREFIX + "*")) == 50
    per_bucket = sum(
        connection.zcard(key)
        for key in connection.keys(reports.TIMES_PREFIX + "*")
        if not key.endswith((b"*", b"accounts", b"reporters"))
    )
    assert per_bucket == 50 and all(connection.exists(reports.REPORT_PREFIX + report.decode()) for report in kept)
