"""`tocsin replay`: an instance's recorded history (in the Mastodon double: reports open and resolved,
local accounts with their sign-up data, domain blocks with their created_at) through the live detectors,
scored against what the moderators did."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, multiprocess

from bot.core import defaults
from bot.core.privacy import reduce_event
from bot.mastodon.context import Context
from bot.mastodon.ratelimit import BudgetExhausted
from bot.ops.cli import main
from bot.ops.replay import BlockRecord, History, ReplayedAlert, download, duration, judge, parse_since, replay, variants
from bot.pipeline.families import Family, Handler, Registry, registry
from handlers.reports import surge as reports
from handlers.shared.payloads import STATE_FLAGS, AdminAccount, Report, slim_account, slim_report
from handlers.signups import surge as accounts
from tests.helpers import alert_jobs, feed, report_event, run
from tests.mastodon_double import MastodonDouble
from tests.test_ratelimit import limited
from tests.waves import background, burst, iso, signup_background, signup_event

NOW = datetime.now(UTC).replace(microsecond=0)
WAVE = NOW - timedelta(days=16)
"""The crypto wave: after 14 days of ordinary reports, and long enough ago for its surges to go quiet."""
REACTION = timedelta(minutes=40)
"""The brief's moderators limited each server 40 minutes after the alert."""


def record(mastodon: MastodonDouble, events: list[dict[str, Any]], resolved_every: int = 3) -> None:
    """Reports as the admin API lists them: a third of them resolved since."""
    for n, event in enumerate(events):
        mastodon.reports.append({**event["object"], "action_taken": n % resolved_every == 0})


def alert_time(wave: list[dict[str, Any]], min_reports: int = 15) -> datetime:
    """When the detector alerts on a wave against a server without history: at its min_reports-th report."""
    return datetime.fromisoformat(sorted(event["created_at"] for event in wave)[min_reports - 1])


def crypto_wave(mastodon: MastodonDouble) -> None:
    """The brief's incident: ~20 reports a week for 14 days, then bursts from mastodon.social and
    mastodon.world, each limited by the moderators 40 minutes after Tocsin's alert."""
    record(mastodon, background(WAVE - timedelta(days=14), days=14, per_week=20))
    social = burst(WAVE, "mastodon.social", reports=150, hours=3, first_id=500000)
    world = burst(WAVE + timedelta(hours=2), "mastodon.world", reports=120, hours=3, first_id=600000, seed=3)
    record(mastodon, social + world)
    later = background(WAVE + timedelta(days=1), days=14, per_week=20, seed=5)  # ordinary reports go on
    for event in later:
        event["object"]["id"] = str(int(event["object"]["id"]) + 50000)
    record(mastodon, later)
    mastodon.accounts.extend(event["object"] for event in signup_background(WAVE - timedelta(days=14), days=20))
    for domain, wave in (("mastodon.social", social), ("mastodon.world", world)):
        mastodon.add_block(domain, severity="silence", created_at=iso(alert_time(wave) + REACTION))
    mastodon.add_block("old.example", severity="suspend", created_at=iso(NOW - timedelta(days=400)))


def replay_json(tocsin: CliRunner, *args: str) -> dict[str, Any]:
    return json.loads(run(tocsin, "replay", "--json", *args).stdout)  # type: ignore[no-any-return]


def detector(document: dict[str, Any], name: str, run_no: int = 0) -> dict[str, Any]:
    return document["runs"][run_no]["detectors"][name]  # type: ignore[no-any-return]


@pytest.mark.slow  # a replay of two months
def test_the_crypto_wave_scores_two_hits_with_their_lead_times_and_no_false_alarm(
    tocsin: CliRunner, mastodon: MastodonDouble, connection: redis.Redis
) -> None:
    crypto_wave(mastodon)
    connection.set("tocsin:live-marker", "1")
    output = run(tocsin, "replay").output

    assert "alerted 40 min before you limited mastodon.social" in output
    assert "alerted 40 min before you limited mastodon.world" in output
    summary = next(line for line in output.splitlines() if line.startswith("report-surge:"))
    assert "2 hits (lead 40 min, 40 min)" in summary and "0 likely false alarms" in summary and "0 misses" in summary
    assert "signup-surge: 0 alerts" in output  # ordinary sign-ups: silent
    # The DMs as the moderators would have read them, marked as a replay, with what `approve` would do.
    assert output.count("[replay: not sent]") >= 2
    assert "| 🔔 Report surge: mastodon.social" in output
    assert "Not limited or suspended." in output  # the block came after the alert
    assert "would have proposed: limit mastodon.social\n" in output  # the three choices of issue 23
    assert "would have proposed: suspend the 36 reported accounts of mastodon.social" in output
    assert re.search(r"quiet\s+mastodon\.social", output)  # and the "quiet again" a week on

    document = replay_json(tocsin)
    scores = detector(document, "report-surge")
    hits = [alert for alert in scores["alerts"] if alert["verdict"] == "hit"]
    assert [(hit["bucket"], hit["lead_seconds"]) for hit in hits] == [
        ("mastodon.social", REACTION.total_seconds()),
        ("mastodon.world", REACTION.total_seconds()),
    ]
    assert scores["summary"]["false_alarms"] == 0 and scores["summary"]["misses"] == 0
    assert scores["summary"]["quiet_again"] >= 2
    # "Quiet again" when the sweep would have sent it: a week after the server's last report, not at the
    # next event that happened to come in.
    social = [report for report in mastodon.reports if report["target_account"]["domain"] == "mastodon.social"]
    last_social = max(report["created_at"] for report in social)
    [quiet] = [alert for alert in scores["alerts"] if alert["kind"] == "quiet" and alert["bucket"] == "mastodon.social"]
    off = datetime.fromisoformat(quiet["at"]) - (datetime.fromisoformat(last_social) + timedelta(days=7))
    assert abs(off) < timedelta(milliseconds=1)

    # Nothing left: no status, no admin write, only reads; the live Redis holds no detector state or job.
    assert mastodon.statuses == []
    assert {method for method, _path in mastodon.requests} == {"GET"}
    assert connection.get("tocsin:live-marker") == b"1"
    assert not [*connection.scan_iter("tocsin:report*"), *connection.scan_iter("tocsin:surge*")]
    assert connection.llen("rq:queue:" + defaults.QUEUE_URGENT) == 0


@pytest.mark.slow  # two replays of two months
def test_a_second_run_reads_the_cache_and_prints_the_same(
    tocsin: CliRunner, mastodon: MastodonDouble, tmp_path: Path
) -> None:
    crypto_wave(mastodon)
    first = run(tocsin, "replay").stdout
    asked = len(mastodon.requests)
    assert asked > 0 and (tmp_path / "data" / defaults.REPLAY_CACHE_FILE).exists()
    assert run(tocsin, "replay").stdout == first  # the same inputs, the same output
    tuned = run(tocsin, "replay", "--set", "TOCSIN_REPORT_RATIO=3,20").output
    assert len(mastodon.requests) == asked  # other settings: no API call
    assert "=== TOCSIN_REPORT_RATIO=3 ===" in tuned and "=== TOCSIN_REPORT_RATIO=20 ===" in tuned
    run(tocsin, "replay", "--refresh")
    assert len(mastodon.requests) > asked


def test_a_quiet_month_raises_no_alert(tocsin: CliRunner, mastodon: MastodonDouble) -> None:
    record(mastodon, background(NOW - timedelta(days=30), days=30, per_week=20))
    mastodon.accounts.extend(event["object"] for event in signup_background(NOW - timedelta(days=30), days=30))
    document = replay_json(tocsin, "--since", "30d")
    assert document["events"] > 150
    for name in ("report-surge", "signup-surge"):
        summary = detector(document, name)["summary"]
        assert summary["alerts"] == summary["escalations"] == summary["false_alarms"] == 0, name


def noisy_days(mastodon: MastodonDouble) -> list[datetime]:
    """A quiet month, and a few afternoons with 5 reports in an hour against one server nobody blocked."""
    record(mastodon, background(NOW - timedelta(days=30), days=30, per_week=20))
    # Further apart than a surge's quiet week: each is a surge of its own.
    afternoons = [NOW - timedelta(days=days, hours=3) for days in (28, 19, 10)]
    for n, start in enumerate(afternoons):
        record(mastodon, burst(start, "noisy.example", reports=5, hours=1, first_id=700000 + 100 * n, accounts=4))
    return afternoons


@pytest.mark.slow  # replays of a month, one per threshold
def test_a_threshold_set_too_low_lists_the_false_alarms_it_would_have_caused(
    tocsin: CliRunner, mastodon: MastodonDouble
) -> None:
    afternoons = noisy_days(mastodon)
    document = replay_json(tocsin, "--since", "30d", "--set", "TOCSIN_REPORT_MIN_REPORTS=4,15")
    assert [run_["settings"] for run_ in document["runs"]] == [
        {"TOCSIN_REPORT_MIN_REPORTS": "4"},
        {"TOCSIN_REPORT_MIN_REPORTS": "15"},
    ]
    low = detector(document, "report-surge", 0)
    false_alarms = [alert for alert in low["alerts"] if alert["verdict"] == "false alarm"]
    assert [alert["bucket"] for alert in false_alarms] == ["noisy.example"] * 3
    for alert, start in zip(false_alarms, afternoons, strict=True):
        assert start <= datetime.fromisoformat(alert["at"]) <= start + timedelta(hours=1)
    assert detector(document, "report-surge", 1)["summary"]["alerts"] == 0  # the default: silent

    output = run(tocsin, "replay", "--since", "30d", "--brief", "--set", "TOCSIN_REPORT_MIN_REPORTS=4,15").output
    assert output.count("likely false alarm: no block of noisy.example within 7 days") == 3
    table = output[output.index("settings ") :].splitlines()
    assert re.match(r"TOCSIN_REPORT_MIN_REPORTS=4\s+report-surge\s+3\s+0\s+3\s+0", table[1])
    assert re.match(r"TOCSIN_REPORT_MIN_REPORTS=15\s+report-surge\s+0\s+0\s+0\s+0", table[3])


@pytest.mark.slow  # a replay of two months
def test_a_block_after_a_burst_nobody_was_alerted_about_is_a_miss(tocsin: CliRunner, mastodon: MastodonDouble) -> None:
    noisy_days(mastodon)
    start = NOW - timedelta(days=5)
    record(mastodon, burst(start, "sly.example", reports=12, hours=2, first_id=800000, accounts=6))
    blocked = start + timedelta(hours=3)
    mastodon.add_block("sly.example", severity="suspend", created_at=iso(blocked))
    document = replay_json(tocsin, "--since", "30d")
    [miss] = detector(document, "report-surge")["misses"]
    assert miss == {"domain": "sly.example", "blocked_at": iso(blocked).replace(".000Z", "Z"), "reports": 12}
    output = run(tocsin, "replay", "--since", "30d", "--brief").stdout
    assert "MISSED    sly.example  → you blocked it after 12 reports in 24 h, with no alert" in output
    # An alert in time turns the miss into a hit.
    document = replay_json(tocsin, "--since", "30d", "--set", "TOCSIN_REPORT_MIN_REPORTS=10")
    scores = detector(document, "report-surge")
    assert scores["misses"] == [] and scores["summary"]["hits"] == 1


@pytest.mark.slow  # a replay of two months
def test_replayed_dms_and_the_cache_carry_no_email_or_ip(
    tocsin: CliRunner, mastodon: MastodonDouble, tmp_path: Path
) -> None:
    crypto_wave(mastodon)
    output = run(tocsin, "replay", "--set", "TOCSIN_SIGNUP_MIN_SIGNUPS=2", "--set", "TOCSIN_SIGNUP_RATIO=1").output
    cache = (tmp_path / "data" / defaults.REPLAY_CACHE_FILE).read_text()
    assert "Sign-up surge" in output  # the sign-ups' DMs are rendered too (thresholds lowered)
    for account in mastodon.accounts:
        assert account["email"] not in cache and account["email"] not in output
        assert account["ip"] not in cache and account["ip"] not in output
    assert "alice@mail.example.com" not in cache and "198.51.100.7" not in cache  # the reports' reporters


def test_replay_runs_the_handlers_and_detectors_the_worker_registers(
    tmp_path: Path, redis_url: str, connection: redis.Redis, mastodon: MastodonDouble, ctx: Context
) -> None:
    """One path: the replay dispatches every event through the installed registry's handlers, and its
    alerts are the ones the live drain queues for the same events."""
    events = sorted(
        background(WAVE - timedelta(days=14), days=14) + burst(WAVE, "mastodon.social", reports=150, hours=3),
        key=lambda event: event["created_at"],
    )
    feed(ctx, events)  # live: intake's reduction, the stream, a drain
    live = sorted((alert["bucket"], alert["kind"], alert["at"], alert["alert_no"]) for alert in alert_jobs(connection))
    assert live

    installed = registry()
    assert installed.handlers["report.created"] == [("reports", reports.handle_report)]
    seen: list[str] = []

    def recorded(handler: Handler) -> Handler:
        def call(context: Context, event: dict[str, Any]) -> None:
            seen.append(handler.__qualname__)
            handler(context, event)

        return call

    def spy(family: Family) -> Family:
        handlers = {name: recorded(handler) for name, handler in family.handlers.items()}
        return Family(name=family.name, handlers=handlers, detectors=family.detectors)

    history = History(events, [], 0.0, (NOW - timedelta(days=1)).timestamp(), "00" * 32)
    replay_db = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/7")
    alerts, counts = replay(Registry(tuple(spy(f) for f in installed.families)), ctx.settings, replay_db, history)
    replay_db.close()
    assert counts.events == len(events) and counts.failed == counts.rejected == 0
    assert seen.count(reports.handle_report.__qualname__) == len(events)
    opened = sorted((a.bucket, a.kind, a.at, a.alert_no) for a in alerts if a.kind != "quiet")
    assert opened == live
    assert {alert.detector for alert in alerts} <= {reports.SURGES.name, accounts.SURGES.name}


def test_replay_refuses_the_live_database_and_unknown_settings(tocsin: CliRunner, redis_url: str) -> None:
    result = tocsin.invoke(main, ["replay", "--redis-url", redis_url])
    assert result.exit_code != 0 and "live database" in result.output
    result = tocsin.invoke(main, ["replay", "--set", "TOCSIN_MASTODON_URL=https://x.example"])
    assert result.exit_code != 0 and "detector setting" in result.output
    result = tocsin.invoke(main, ["replay", "--set", "TOCSIN_REPORT_RATIO=0.5"])
    assert result.exit_code != 0 and "TOCSIN_REPORT_RATIO" in result.output


def test_setting_variants_are_every_combination() -> None:
    assert variants(["TOCSIN_REPORT_RATIO=3,4", "report_min_reports=10"]) == [
        {"TOCSIN_REPORT_RATIO": "3", "TOCSIN_REPORT_MIN_REPORTS": "10"},
        {"TOCSIN_REPORT_RATIO": "4", "TOCSIN_REPORT_MIN_REPORTS": "10"},
    ]
    assert variants([]) == [{}]
    assert [duration(s) for s in (2400, 7800, 90000, 86400)] == ["40 min", "2 h 10 min", "1 d 1 h", "1 d"]


ids = st.integers(min_value=1, max_value=10**18).map(str)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(iso)
texts = st.one_of(st.none(), st.text(max_size=40), st.integers(), st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    report_id=ids,
    created=moments,
    domain=st.one_of(st.none(), st.sampled_from(["Mastodon.World", "spam.example", ""])),
    comment=texts,
    category=texts,
    resolved=st.one_of(st.none(), st.booleans()),
    reporter=ids,
    target=ids,
)
def test_what_the_history_keeps_of_a_report_parses_as_the_whole(
    report_id: str,
    created: str,
    domain: str | None,
    comment: object,
    category: object,
    resolved: bool | None,
    reporter: str,
    target: str,
) -> None:
    """The cache keeps what the handler reads: the report it parses is the one the whole payload gives."""
    event = report_event(report_id, created, domain, target, reporter_id=reporter)
    event["object"].update(comment=comment, category=category, action_taken=resolved)
    assert Report.from_event({**event, "object": slim_report(event["object"])}) == Report.from_event(event)


@pytest.mark.slow  # long fuzzing (the report's twin stays fast)
@settings(max_examples=200, deadline=None)
@given(
    account_id=ids,
    created=moments,
    name=st.text(min_size=1, max_size=20),
    flags=st.fixed_dictionaries({flag: st.one_of(st.none(), st.booleans()) for flag in STATE_FLAGS}),
    invite=st.one_of(st.none(), ids),
    app=st.one_of(st.none(), ids),
)
def test_what_the_history_keeps_of_a_sign_up_parses_as_the_whole(
    account_id: str,
    created: str,
    name: str,
    flags: dict[str, bool | None],
    invite: str | None,
    app: str | None,
) -> None:
    event = signup_event(account_id, created, name, f"{name}@mail.example.com", "203.0.113.9")
    event["object"].update(flags, invited_by_account_id=invite, created_by_application_id=app)
    key = b"k" * 32
    whole = AdminAccount.from_event(reduce_event(event, key))
    kept = AdminAccount.from_event(reduce_event({**event, "object": slim_account(event["object"])}, key))
    assert kept == whole


@pytest.mark.slow  # waits out real rate-limit windows
def test_reading_the_history_is_bulk_work_within_the_share(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    """The download stops at bulk work's part of Tocsin's share (the command then waits for the reset),
    so the live workers keep their room and Mastodon never answers 429."""
    record(mastodon, background(NOW - timedelta(days=30), days=30, per_week=700))  # 3,000 reports: 15 pages
    ctx = limited(mastodon, make_context, 20, 30.0)  # the share: 10 calls; bulk work: 8
    with pytest.raises(BudgetExhausted):
        download(ctx, registry(), (NOW - timedelta(days=31)).timestamp())
    assert 0 < len([path for _method, path in mastodon.requests if path == "/api/v1/admin/reports"]) <= 8
    assert mastodon.throttled == 0


def live_counts() -> dict[str, float]:
    """What the live processes' /metrics adds up from the multiprocess directory, per counter sample."""
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in collected.collect()
        for sample in family.samples
        if sample.name.startswith(("tocsin_events", "tocsin_surge_transitions"))
    }


@pytest.mark.slow  # a replay of a month
def test_replayed_events_and_surges_are_not_counted_in_the_live_metrics(
    tocsin: CliRunner, mastodon: MastodonDouble
) -> None:
    crypto_wave(mastodon)
    before = live_counts()
    assert "2 hits" in run(tocsin, "replay", "--brief", "--set", "TOCSIN_REPORT_RATIO=3,10").stdout
    assert live_counts() == before


@settings(max_examples=300, deadline=None)
@given(
    alert_at=st.floats(min_value=1e9, max_value=2e9),
    offset=st.floats(min_value=-30 * 86400, max_value=30 * 86400),
    blocked=st.sampled_from(["mastodon.world", "world", "ld", "a.mastodon.world", "xmastodon.world"]),
)
def test_an_alert_is_judged_by_the_block_covering_its_server(alert_at: float, offset: float, blocked: str) -> None:
    alert = ReplayedAlert("report-surge", "open", "mastodon.world", alert_at, 1, "", ())
    block = BlockRecord(blocked, "silence", alert_at + offset)
    outcome = judge(alert, [block], within=7 * 86400)
    covering = blocked in ("mastodon.world", "world")  # Mastodon's rule: the domain and its subdomains
    delta = block.created_at - alert_at
    if not covering or delta > 7 * 86400:
        assert outcome.verdict == "false alarm"
    elif delta <= 0:
        assert outcome.verdict == "already blocked"
    else:
        assert outcome.verdict == "hit" and outcome.lead == block.created_at - alert_at and outcome.block == block
    for unscored in (
        ReplayedAlert("report-surge", "open", "local", alert_at, 1, "", ()),
        ReplayedAlert("report-surge", "quiet", "mastodon.world", alert_at, 1, "", ()),
    ):
        assert judge(unscored, [block], within=7 * 86400).verdict == "not scored"


def test_since_reads_days_weeks_and_hours() -> None:
    assert [parse_since(text) for text in ("90d", "12w", "36h", "2")] == [90 * 86400, 84 * 86400, 36 * 3600, 2 * 86400]
    for wrong in ("", "d", "-3d", "nand", "infd", "3y"):
        with pytest.raises(click.BadParameter):
            parse_since(wrong)
