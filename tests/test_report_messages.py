"""What moderators read: each alert kind rendered from fixed inputs, compared in full."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import redis

from bot.core import defaults
from bot.mastodon.client import DomainBlock, Impact
from bot.mastodon.context import Context
from bot.pipeline.events import drain_with
from bot.pipeline.surges import Alert
from handlers.reports.settings import ReportSurgeSettings
from handlers.reports.surge import Wave, WindowDetails, render_alert
from tests.helpers import fixture, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.waves import burst

CFG = ReportSurgeSettings()
INSTANCE = "https://social.example.org"
OPEN = {
    "kind": "open",
    "bucket": "spam.example",
    "surge_id": "1",
    "alert_no": 1,
    "at": 0,
    "count": 17,
    "last_hour": 17,
    "rate": 54.2,
    "baseline": 1,
    "expected": 0.0,
    "previous_count": None,
    "previous_rate": None,
}
DETAILS = WindowDetails(
    reports=17,
    categories=[("spam", 16), ("other", 1)],
    open_reports=16,
    resolved_reports=1,
    accounts=12,
    reporters=15,
    comments=["Crypto giveaway @victim@example.org https://scam.example/x", "same bot again"],
    top_buckets=[("spam.example", 17)],
)


def test_first_alert_for_a_remote_server() -> None:
    text = render_alert(Alert.from_json(OPEN), DETAILS, None, Impact(12, 30, 1500), CFG, INSTANCE, True)
    assert text == (
        "🔔 Report surge: spam.example\n"
        "17 reports in 3.0 h, 54.2/h now (normal: 0.0 per 3.0 h; 1 in the 28 days before).\n"
        "12 accounts reported by 15 reporters · 16 open, 1 resolved · spam 16, other 1\n"
        "Comments (mentions and links disabled):\n"
        "“Crypto giveaway @\u200bvictim@\u200bexample.org https[:]//scam.example/x”\n"
        "“same bot again”\n"
        "Not limited or suspended.\n"
        "Cost of limiting: 12 follows from local accounts to there, 30 from there to local accounts; "
        "1,500 accounts known there.\n"
        "Reports: https://social.example.org/admin/reports?by_target_domain=spam.example\n\n"
        "Reply “approve” to limit spam.example until the wave passes, or “dismiss” if it needs nothing."
    )


def test_escalation_of_an_already_limited_server() -> None:
    escalate = {
        **OPEN,
        "kind": "escalate",
        "alert_no": 2,
        "count": 90,
        "rate": 120.0,
        "previous_count": 40,
        "previous_rate": 50.0,
    }
    block = DomainBlock("spam.example", "silence", reject_media=False, reject_reports=True, created_at=None)
    details = dataclasses.replace(DETAILS, reports=90)
    escalate["baseline_days"] = 27.9
    text = render_alert(Alert.from_json(escalate), details, block, Impact(0, 2, 80), CFG, INSTANCE, True)
    assert text.splitlines()[:3] == [
        "🔔 Report surge escalating: spam.example",
        "90 reports in 3.0 h, 120.0/h now (normal: 0.0 per 3.0 h; 1 in the 27.9 days before).",
        "Last alert: 40 reports, 50.0/h.",
    ]
    assert "Already limited, reports rejected." in text
    assert "Proposed: limit" not in text


def test_alert_without_admin_access_says_what_is_unknown() -> None:
    text = render_alert(Alert.from_json(OPEN), DETAILS, None, None, CFG, INSTANCE, False)
    assert "Federation status unknown (the token cannot read domain blocks)." in text
    assert "Cost of limiting: unknown (needs a token with admin:read)." in text


def test_quiet_again_for_a_limited_server() -> None:
    quiet = {
        "kind": "quiet",
        "bucket": "spam.example",
        "surge_id": "1",
        "alert_no": 1,
        "at": 10 * 86400.0,
        "opened_at": 2 * 86400.0,
        "last_event_at": 2.5 * 86400.0,
        "alerted_count": 150,
    }
    block = DomainBlock("spam.example", "silence", False, False, None)
    assert render_alert(Alert.from_json(quiet), None, block, None, CFG, INSTANCE, True) == (
        "✅ Quiet again: spam.example\n"
        "No report for 7.5 days. The surge began 8.0 days ago; 150 reports in 3.0 h when last alerted.\n"
        "Proposed: lift the limit on spam.example: https://social.example.org/admin/instances/spam.example"
    )


def test_quiet_again_for_local_accounts_says_where_sign_ups_can_be_reopened() -> None:
    """A wave against our own members is over: if sign-ups were put behind approval for it (the admin
    interface does that: no API), the DM says where to lift it; reports still open keep the three choices."""
    quiet = {
        "kind": "quiet",
        "bucket": "local",
        "surge_id": "1",
        "alert_no": 1,
        "at": 10 * 86400.0,
        "opened_at": 2 * 86400.0,
        "last_event_at": 2.5 * 86400.0,
        "alerted_count": 40,
    }
    wave = Wave(0.0, 3 * 86400.0, ("7", "8", "9"), open_spam=4, open_other=0)
    text = render_alert(Alert.from_json(quiet), None, None, None, CFG, INSTANCE, True, wave=wave)
    assert (
        "If you required approval for sign-ups because of it, that can be lifted:"
        " https://social.example.org/admin/settings/registrations" in text
    )
    assert "1. limit (silence) the 3 reported local accounts" in text
    assert "2. suspend the 3 reported local accounts (asks yes: members' accounts)" in text


def test_hostile_comment_never_adds_a_recipient_or_a_link(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    # "½" and "①" before an "@" once slipped through (Python's \w took them; Ruby's [[:word:]] does not).
    hostile = "@victim@example.org @victim look https://phish.example/login ½@eve@evil.example ①@mallory"
    for event in burst(datetime(2026, 11, 20, tzinfo=UTC), "spam.example", 20, 1, comment=hostile):
        connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    drain_with(ctx)
    run_jobs(connection)
    threads = mastodon.direct_threads()
    assert len(threads) == 1
    for status in threads[0]:
        assert mastodon.recipients(status) == ["mod_anna", "mod_ben"]
        assert "https://phish.example" not in status["text"]
    assert "@\u200bvictim@\u200bexample.org" in mastodon.direct_texts()[0]
    assert "½@\u200beve@\u200bevil.example" in mastodon.direct_texts()[0]


def test_example_payload_is_counted_in_its_servers_bucket(ctx: Context, connection: redis.Redis) -> None:
    event = fixture("report.created")
    connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    assert drain_with(ctx)["processed"] == 1
    domain = event["object"]["target_account"]["domain"]
    assert connection.zscore(f"tocsin:reports:times:{domain}", event["object"]["id"]) is not None


def test_operator_template_directory_overrides_the_builtin_text(tmp_path: Path) -> None:
    (tmp_path / "report_surge.txt.j2").write_text("Surge at {{ bucket }}: {{ details.reports }} reports\n")
    text = render_alert(Alert.from_json(OPEN), DETAILS, None, None, CFG, INSTANCE, False, tmp_path)
    assert text.strip() == "Surge at spam.example: 17 reports"
    # Templates the operator did not copy still come from templates/.
    quiet_alert = {**OPEN, "kind": "quiet", "opened_at": 0, "last_event_at": 0, "alerted_count": 17}
    quiet = render_alert(Alert.from_json(quiet_alert), None, None, None, CFG, INSTANCE, False, tmp_path)
    assert "Quiet again: spam.example" in quiet
