"""Every alert fits two statuses at vanilla Mastodon's 500 characters.

Each part of a threaded DM notifies every moderator again, so an alert may take at most two. Each alert
scenario of the suite — report surge, its escalation, quiet again; sign-up surge, escalation, back to
normal; local spam wave, escalation, over; the peer scan; the federation audit — is run through the
workers, the outbox's real splitter and the Mastodon double at its default `max_characters` of 500.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import defaults
from bot.mastodon.client import DomainBlock, Following, Impact
from bot.mastodon.context import Context
from bot.mastodon.outbox import fitting, split_post, status_length
from bot.pipeline.events import current_clock
from bot.pipeline.families import registry
from bot.pipeline.surges import Alert
from handlers.federation import audit as federation
from handlers.reports import surge as reports
from handlers.reports.settings import ReportSurgeSettings
from handlers.scan.messages import send_scan_messages
from handlers.scan.runs import run_scan
from handlers.shared import young_accounts
from handlers.signups import surge as accounts
from handlers.signups.settings import SignupSurgeSettings
from handlers.spam import wave as statuses
from handlers.spam.settings import SpamWaveSettings
from tests.helpers import alert_jobs, feed, report_event, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.peers import PeerFleet
from tests.test_federation import FLEET, TARGET
from tests.test_federation import federate_with as federate_with_audited
from tests.test_scan import LARGE, build_fleet
from tests.test_scan import federate_with as federate_with_scanned
from tests.waves import (
    background,
    burst,
    iso,
    mention_spam,
    ordinary_posting,
    signup_background,
    signup_burst,
    signup_event,
)

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
LIMIT = 500
MAX_STATUSES = 2


def report_open(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    mastodon.measures["spam.example"] = (12_345, 30_000, 150_000)
    feed(ctx, background(NOW - timedelta(days=14), days=14))
    feed(ctx, burst(NOW, "spam.example", reports=150, hours=3))


def report_escalate(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    mastodon.add_block("example.net", severity="silence", reject_media=True, reject_reports=True)
    feed(ctx, burst(NOW, "spam.example.net", reports=40, hours=2, first_id=1000))
    run_jobs(connection)
    feed(ctx, burst(NOW + timedelta(hours=2), "spam.example.net", reports=240, hours=1, first_id=2000, seed=3))


def report_everywhere(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, background(NOW - timedelta(days=14), days=14))
    for n in range(8):
        feed(ctx, burst(NOW, f"s{n}.example", reports=8, hours=2, first_id=10_000 + 100 * n, seed=n))


def report_local(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, burst(NOW, "local", reports=40, hours=2))


def report_quiet(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, burst(NOW, "spam.example", reports=30, hours=1))
    run_jobs(connection)
    mastodon.add_block("spam.example", severity="silence")
    connection.delete(defaults.CACHE_PREFIX + "domain-blocks")
    feed(ctx, [report_event(9002, iso(NOW + timedelta(days=7, hours=2)), "other.example", "6")])


def signup_open(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=200, minutes=60))


def signup_escalate(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    first = signup_burst(NOW, count=20, minutes=20)
    feed(ctx, first)
    run_jobs(connection)
    suspended = []
    for event in first[:5]:
        update = copy.deepcopy(event)
        update["event"] = "account.updated"
        update["object"]["suspended"] = True
        suspended.append(update)
    feed(ctx, suspended)
    connection.hset("tocsin:surge:signups:local", "last_alert_at", 0)  # the cooldown is not the point here
    feed(ctx, signup_burst(NOW + timedelta(minutes=75), count=400, minutes=30, first_id=950000, seed=5))


def signup_every_cluster(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    """Five kinds of cluster at once (mail domain, network, name stem, invite, app) and some already
    confirmed or suspended: the full DM would take three statuses, so its shorter rendering is sent."""
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    burst = signup_burst(NOW, count=300, minutes=60, mail_domain="free-crypto-giveaways-every-day.example")
    for n, event in enumerate(burst):
        event["object"].update(invited_by_account_id="109876543210987654", created_by_application_id="123456")
        event["object"]["confirmed"] = event["object"]["approved"] = n % 3 == 0
    feed(ctx, burst)


def signup_quiet(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=60, minutes=60))
    run_jobs(connection)
    feed(ctx, [signup_event(1, iso(NOW + timedelta(hours=20)), "lena7", "lena7@example.org", "192.0.2.10")])
    registry().sweep(ctx, current_clock(connection) + 5 * 3600)


def spam_open(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, ordinary_posting(NOW - timedelta(hours=24), hours=24))
    feed(ctx, mention_spam(NOW, posts=60, minutes=30))


def spam_escalate(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, mention_spam(NOW, posts=3, minutes=3, accounts=3))
    run_jobs(connection)
    suspended = signup_event(80000, iso(NOW), "spambot0", "bot@spam.example", "192.0.2.9", event="account.updated")
    suspended["object"]["suspended"] = True
    feed(ctx, [suspended])
    feed(ctx, mention_spam(NOW + timedelta(minutes=61), posts=80, minutes=20, accounts=40, first_id=7_100_000))


def spam_quiet(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    feed(ctx, mention_spam(NOW, posts=10, minutes=10))
    run_jobs(connection)
    registry().sweep(ctx, current_clock(connection) + 24 * 3600)


SCENARIOS: dict[str, Callable[[Context, redis.Redis, MastodonDouble], None]] = {
    "report surge": report_open,
    "report surge escalating, server already limited": report_escalate,
    "report surge over many servers": report_everywhere,
    "report surge of local accounts": report_local,
    "reports quiet again": report_quiet,
    "sign-up surge": signup_open,
    "sign-up surge escalating": signup_escalate,
    "sign-up surge in every kind of cluster": signup_every_cluster,
    "sign-ups back to normal": signup_quiet,
    "local spam wave": spam_open,
    "local spam wave escalating": spam_escalate,
    "local spam wave over": spam_quiet,
}


@pytest.mark.slow  # a whole detector run per scenario (the detectors' own tests stay fast)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_alert_fits_two_statuses_of_500_characters(
    scenario: str, ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    assert mastodon.max_characters == LIMIT  # the double refuses a longer status, as Mastodon does
    SCENARIOS[scenario](ctx, connection, mastodon)
    assert alert_jobs(connection), "the scenario raised no alert"
    run_jobs(connection)
    thread = mastodon.direct_threads()[-1]
    assert_fits(thread)


def assert_fits(thread: list[dict[str, object]]) -> None:
    assert len(thread) <= MAX_STATUSES, [status["text"] for status in thread]
    assert all(status_length(str(status["text"])) <= LIMIT for status in thread)


@pytest.fixture(scope="module")
def scan_fleet() -> Iterator[PeerFleet]:
    fleet = build_fleet()
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def audit_fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet(list(FLEET))
    fleet.peers.update(FLEET)
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
@pytest.mark.parametrize("fleet_size", ["the brief's fleet", "with large servers told, not blocked"])
def test_the_scan_dm_fits_two_statuses_of_500_characters(
    fleet_size: str, ctx: Context, mastodon: MastodonDouble, scan_fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    federate_with_scanned(mastodon, scan_fleet, monkeypatch)
    mastodon.max_characters = LIMIT
    if fleet_size != "the brief's fleet":
        mastodon.peers = [*(mastodon.peers or []), *LARGE]
        for n, domain in enumerate(LARGE):
            mastodon.measures[domain] = (2000 + 300 * n, 1500 + 200 * n, 90000)
    assert send_scan_messages(ctx, run_scan(ctx))
    [thread] = mastodon.direct_threads()
    assert_fits(thread)


@pytest.mark.parametrize("with_proposal", [False, True])
def test_the_federation_audit_dm_fits_two_statuses_of_500_characters(
    with_proposal: bool,
    ctx: Context,
    mastodon: MastodonDouble,
    audit_fleet: PeerFleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    federate_with_audited(mastodon, audit_fleet, monkeypatch)
    assert mastodon.max_characters == LIMIT
    federation.send_dm(ctx, federation.audit(ctx, TARGET), with_proposal=with_proposal)
    [thread] = mastodon.direct_threads()
    assert_fits(thread)


# --- Any alert of bounded size, through the outbox's choice and splitter (pure: no Redis, no HTTP)

MODERATORS = ("mod_anna", "mod_ben")
INSTANCE = "https://social.example.org"
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=5, max_size=20)
domains = st.builds(
    lambda name, tld: f"{name}.{tld}",
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=30),
    st.sampled_from(["example", "example.org", "example.net"]),
)
counts = st.integers(min_value=0, max_value=999_999)
rates = st.floats(min_value=0, max_value=99_999, allow_nan=False).map(lambda rate: round(rate, 1))
texts = st.text(min_size=0, max_size=400)


@st.composite
def surge_alerts(draw: st.DrawFn, bucket: str) -> Alert:
    kind = draw(st.sampled_from(["open", "escalate"]))
    return Alert(
        kind=kind,
        bucket=bucket,
        surge_id="s",
        alert_no=2 if kind == "escalate" else 1,
        at=NOW.timestamp(),
        rate=draw(rates),
        previous_count=draw(counts),
        previous_rate=draw(rates),
        count=draw(counts),
        baseline=draw(counts),
        expected=round(draw(rates), 2),
        baseline_days=draw(st.sampled_from([1.0, 13.8, 27.9, 28.0])),
    )


def assert_one_fits(texts_most_detailed_first: tuple[str, ...]) -> None:
    chosen = fitting(texts_most_detailed_first, MODERATORS, LIMIT)
    assert len(split_post(chosen, MODERATORS, LIMIT)) <= MAX_STATUSES, chosen


@pytest.mark.slow  # fuzzing whole surges
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alert=surge_alerts("local"),
    pools=st.tuples(st.lists(domains, min_size=1, max_size=3), st.lists(labels, min_size=1, max_size=3)),
    size=st.integers(min_value=5, max_value=120),
    invite=st.text("0123456789", min_size=1, max_size=19),
    data=st.data(),
)
def test_any_signup_surge_dm_has_a_rendering_that_fits_two_statuses(
    alert: Alert, pools: tuple[list[str], list[str]], size: int, invite: str, data: st.DataObject
) -> None:
    mail, stems = pools
    signups = [
        young_accounts.Signup(
            id=str(10**17 + n),
            username=f"{data.draw(st.sampled_from(stems))}{n:04d}",
            created_at=NOW.timestamp() - n,
            email_domain=data.draw(st.sampled_from(mail)),
            network=data.draw(st.sampled_from(["ab" * 16, "cd" * 16])),
            invite=data.draw(st.sampled_from([invite, None])),
            app=data.draw(st.sampled_from(["7", "123456"])),
            confirmed=data.draw(st.booleans()),
            approved=data.draw(st.booleans()),
            suspended=data.draw(st.booleans()),
        )
        for n in range(size)
    ]
    cfg = SignupSurgeSettings()
    assert_one_fits(
        tuple(accounts.render_alert(alert, alert.count or 0, signups, cfg, INSTANCE, compact=c) for c in (False, True))
    )


@pytest.mark.slow  # fuzzing whole surges
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alert=surge_alerts("*"),
    bucket=st.one_of(st.just("local"), st.just("*"), domains),
    comments=st.lists(texts, max_size=2),
    categories=st.lists(st.tuples(st.sampled_from(["spam", "violation", "legal", "other"]), counts), max_size=4),
    top=st.lists(st.tuples(domains, counts), max_size=3),
    numbers=st.tuples(counts, counts, counts, counts, counts),
    block=st.sampled_from([None, "silence", "suspend"]),
    impact=st.one_of(st.none(), st.tuples(counts, counts, counts)),
    wave=st.one_of(st.none(), st.tuples(st.integers(0, 5000), counts, counts, counts)),
    following=st.one_of(st.none(), st.tuples(counts, counts, counts, counts)),
    all_read=st.booleans(),
)
def test_any_report_surge_dm_has_a_rendering_that_fits_two_statuses(
    alert: Alert,
    bucket: str,
    comments: list[str],
    categories: list[tuple[str, int]],
    top: list[tuple[str, int]],
    numbers: tuple[int, int, int, int, int],
    block: str | None,
    impact: tuple[int, int, int] | None,
    wave: tuple[int, int, int, int] | None,
    following: tuple[int, int, int, int] | None,
    all_read: bool,
) -> None:
    alert = Alert(**{**alert.to_json(), "bucket": bucket})
    remote = bucket not in ("local", "*")
    opened, resolved, reported, reporters = numbers[1:]
    details = reports.WindowDetails(numbers[0], categories, opened, resolved, reported, reporters, comments, top)
    found = DomainBlock(bucket, block, True, True, None) if block and remote else None
    sized = Impact(*impact) if impact and remote else None
    cfg = ReportSurgeSettings()
    # The three choices (limit, suspend the reported accounts, resolve the wave's reports), at any size.
    choices = None
    if wave is not None:
        accounts, spam, other, assigned = wave
        ids = tuple(str(10**17 + n) for n in range(accounts))
        # And what the DM says of our members following them: any reading, complete or "at least".
        followed = None
        if following is not None:
            asked = max(following)
            read = min(following[1], asked)
            followed = Following(min(following[0], read), following[2], read, asked)
        choices = reports.Wave(alert.at - 3 * 3600, alert.at, ids, spam, other, assigned, all_read, followed)
    assert_one_fits((reports.render_alert(alert, details, found, sized, cfg, INSTANCE, True, wave=choices),))


@pytest.mark.slow  # fuzzing whole waves
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alert=surge_alerts("local"),
    names=st.lists(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=30), min_size=1, max_size=60),
    samples=st.lists(st.tuples(labels, texts), max_size=2),
    posts=counts,
    mail=domains,
    data=st.data(),
)
def test_any_spam_wave_dm_has_a_rendering_that_fits_two_statuses(
    alert: Alert, names: list[str], samples: list[tuple[str, str]], posts: int, mail: str, data: st.DataObject
) -> None:
    flagged = [
        statuses.FlaggedAccount(
            str(10**17 + n), name, ["duplicate", "mentions", "fast"], data.draw(st.booleans()), False
        )
        for n, name in enumerate(names)
    ]
    invites = st.sampled_from(["123456789012345678", None])
    signups = [
        young_accounts.Signup(account.id, account.username, NOW.timestamp(), mail, "ab" * 16, data.draw(invites), "7")
        for account in flagged
    ]
    signs = Counter({"duplicate": len(flagged), "mentions": len(flagged), "fast": len(flagged)})
    details = statuses.WaveDetails(posts, flagged, samples, signs, signups)
    cfg = SpamWaveSettings()
    assert_one_fits(tuple(statuses.render_alert(alert, details, cfg, INSTANCE, compact=c) for c in (False, True)))
