"""Sign-up surges: the pure parts (names, clusters, thresholds), then scenarios through Redis."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import defaults
from bot.mastodon.context import Context
from bot.pipeline.events import current_clock
from bot.pipeline.families import registry
from bot.pipeline.surges import Alert
from handlers.shared.young_accounts import (
    ESTABLISHED_PAGES,
    SIGNUP_PREFIX,
    Cluster,
    ClusterKind,
    Signup,
    find_clusters,
    looks_generated,
    mail_providers,
    name_stem,
    provider_refusal,
)
from handlers.signups.settings import SignupSurgeSettings
from handlers.signups.surge import SIGNUPS, SignupStats, backfill_signups, is_surge, propose
from tests.helpers import alert_jobs, feed, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.waves import iso, signup_background, signup_burst, signup_event

CFG = SignupSurgeSettings()
NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
T = NOW.timestamp()
SURGE = Alert(kind="open", bucket="local", surge_id="1", alert_no=1, at=T)


@pytest.mark.parametrize(
    ("username", "stem"),
    [
        ("cryptodeals4821", "cryptodeals"),
        ("crypto_deals_4821", "crypto_deals"),
        ("free_coins_07", "free_coins"),
        ("jane", None),
        ("jane2", None),  # one digit is how people name themselves
        ("ab12", None),  # too short a stem to share
        ("4821", None),
    ],
)
def test_name_stem(username: str, stem: str | None) -> None:
    assert name_stem(username) == stem


@pytest.mark.parametrize(
    ("username", "generated"),
    [
        ("xkqjtvbwpl", True),  # no vowels
        ("a8f3k2l9q1", True),  # letters and digits alternate
        ("mrtkzzbvrbqa", True),  # a long consonant run
        ("hikingclub", False),
        ("birdwatcher", False),
        ("maria_bonita", False),  # not alphanumeric: people's names with underscores
        ("tom2024", False),
        ("quiet", False),  # too short to tell
    ],
)
def test_looks_generated(username: str, generated: bool) -> None:
    assert looks_generated(username) is generated


def signup(n: int, **fields: object) -> Signup:
    return Signup(id=str(n), username=f"person{n}x", created_at=T + n, **fields)  # type: ignore[arg-type]


def test_clusters_are_found_by_each_shared_trait_and_ranked_by_size() -> None:
    bots = [signup(n, email_domain="spam.example", network="aa11", app="7", approved=False) for n in range(8)]
    invited = [signup(100 + n, email_domain="example.org", invite="555") for n in range(5)]
    others = [signup(200 + n, email_domain=f"mail{n}.example") for n in range(6)]
    clusters = find_clusters(bots + invited + others, min_size=5)
    kinds = [(cluster.kind, cluster.value, cluster.size) for cluster in clusters]
    assert kinds == [
        (ClusterKind.APP, "7", 8),
        (ClusterKind.EMAIL_DOMAIN, "spam.example", 8),
        (ClusterKind.NETWORK, "aa11", 8),
        (ClusterKind.EMAIL_DOMAIN, "example.org", 5),
        (ClusterKind.INVITE, "555", 5),
    ]
    assert clusters[1].pending == 8
    assert [member.id for member in clusters[1].members][:2] == ["7", "6"]  # newest first


def test_suspended_accounts_leave_the_cluster_count() -> None:
    members = [signup(n, email_domain="spam.example", suspended=n < 3) for n in range(6)]
    assert find_clusters(members, min_size=5) == []  # 3 active left
    [cluster] = find_clusters(members, min_size=3)
    assert (cluster.size, cluster.suspended) == (3, 3)


def test_a_big_mail_provider_is_flagged_as_shared() -> None:
    [cluster] = find_clusters([signup(n, email_domain="gmail.com") for n in range(5)], min_size=5)
    assert cluster.shared_provider


@pytest.mark.parametrize(
    ("stats", "surge"),
    [
        (SignupStats(15, T - 900, baseline=84, observed_for=28 * 86400), True),
        (SignupStats(14, T - 900, baseline=84, observed_for=28 * 86400), False),  # below the minimum
        (SignupStats(15, T - 900, baseline=84, observed_for=10 * 3600), False),  # still learning
        (SignupStats(40, T - 900, baseline=28 * 24 * 5, observed_for=28 * 86400), False),  # 5/h is normal here
        (SignupStats(60, T - 900, baseline=28 * 24 * 5, observed_for=28 * 86400), True),
    ],
)
def test_surge_needs_count_ratio_and_a_learned_baseline(stats: SignupStats, surge: bool) -> None:
    assert is_surge(stats, CFG) is surge


# --- scenarios through Redis


@pytest.mark.parametrize("seed", [11, 12])
def test_three_signups_a_day_never_alert(ctx: Context, connection: redis.Redis, seed: int) -> None:
    feed(ctx, signup_background(NOW - timedelta(days=28), days=28, seed=seed))
    assert alert_jobs(connection) == []


def test_bot_signup_burst_alerts_once_early_with_clusters(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.max_characters = 2000
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=200, minutes=60))
    [alert] = alert_jobs(connection)
    assert alert["kind"] == "open"
    run_jobs(connection)
    [dm] = mastodon.direct_messages()
    assert mastodon.recipients(dm) == ["mod_anna", "mod_ben"]
    text = dm["text"]
    first_line = text.splitlines()[1]
    count = int(first_line.split(": ")[1].split()[0])
    assert count <= 40, first_line  # within the burst's first ~40 sign-ups
    assert f"🔔 Sign-up surge: {count} local sign-ups in 1.0 h" in text
    assert f"{count} not yet confirmed or approved." in text  # one ordinary sign-up among them, unconfirmed
    assert f"- email domain spam.example: {count - 1} ({count - 1} pending)" in text
    assert "names like cryptodeals + digits" in text
    assert "one network #" in text
    choices = (
        "Tocsin can:\n1. block sign-ups with email addresses at spam.example\n"
        f"2. reject the {count - 1} pending sign-ups of that cluster\n"
        "Reply “approve” (item 1), “approve 1,2” or “dismiss”."
    )
    registrations = f"{mastodon.url}/admin/settings/registrations"
    admin_only = f"In the admin interface:\nRequire approval for sign-ups: {registrations}\n"
    # What a reply carries out first, then a line for each thing only the admin interface does, then details.
    assert text.index(choices) < text.index(admin_only) < text.index("Clusters:")
    assert "Block that network (address on its accounts' pages): " in text
    # The accounts: one admin link to the cluster, filtered (Mastodon matches `email` with LIKE 'value%').
    assert (
        f"- email domain spam.example: {count - 1} ({count - 1} pending), accounts: "
        f"{mastodon.url}/admin/accounts?origin=local&email=%25%40spam.example&order=recent\n"
    ) in text
    assert "/admin/accounts/9" not in text  # no link per account
    assert "203.0.113" not in text and "@spam.example" not in text


def test_escalation_shows_accounts_suspended_meanwhile(
    make_context: Callable[..., Context], connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.max_characters = 2000
    ctx = make_context(signup_escalation_cooldown_minutes=10)
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
    feed(ctx, signup_burst(NOW + timedelta(minutes=25), count=150, minutes=30, first_id=950000, seed=5))
    assert [alert["kind"] for alert in alert_jobs(connection)] == ["escalate"]
    run_jobs(connection)
    escalation = mastodon.direct_texts()[-1]
    assert "🔔 Sign-up surge escalating" in escalation
    assert "Last alert: " in escalation
    assert ", 5 suspended since." in escalation
    assert "- email domain spam.example: " in escalation and ", 5 suspended" in escalation


def test_back_to_normal_after_a_quiet_day_proposes_reopening(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=60, minutes=60))
    run_jobs(connection)
    feed(ctx, [signup_event(1, iso(NOW + timedelta(hours=20)), "lena7", "lena7@example.org", "192.0.2.10")])
    assert alert_jobs(connection) == []  # not quiet for 24 h yet
    registry().sweep(ctx, current_clock(connection) + 5 * 3600)
    [quiet] = alert_jobs(connection)
    assert quiet["kind"] == "quiet"
    run_jobs(connection)
    text = mastodon.direct_texts()[-1]
    assert text.splitlines()[1] == "✅ Sign-ups back to normal"
    assert f"reopen them: {mastodon.url}/admin/settings/registrations" in text


def test_no_alert_while_learning_what_normal_is(ctx: Context, connection: redis.Redis) -> None:
    feed(ctx, signup_burst(NOW, count=60, minutes=60))
    assert alert_jobs(connection) == []


def test_odd_and_old_shapes_are_handled_without_failures(ctx: Context, connection: redis.Redis) -> None:
    minimal = {"event": "account.created", "object": {"id": "5", "created_at": iso(NOW), "username": "x"}}
    nulls = signup_event(6, iso(NOW), "y", "y@example.org", "192.0.2.1")
    for name in ("email", "ip", "ips", "confirmed", "approved", "invite_request", "account", "role"):
        nulls["object"][name] = None
    remote = signup_event(7, iso(NOW), "z", "z@example.org", "192.0.2.2")
    remote["object"]["domain"] = "remote.example"
    unknown_update = {"event": "account.updated", "object": {"id": "8", "suspended": True}}
    approved_no_flags = {"event": "account.approved", "object": {"id": "5"}}
    feed(ctx, [minimal, nulls, remote, unknown_update, approved_no_flags])
    assert connection.llen(defaults.FAILED_EVENTS) == 0
    assert connection.zcard(SIGNUPS) == 2
    assert not connection.exists(SIGNUP_PREFIX + "8")  # an account we never saw sign up is not remembered
    assert connection.hget(SIGNUP_PREFIX + "5", "approved") == b"1"


def test_signups_are_forgotten_beyond_the_cap(
    ctx: Context, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("handlers.signups.surge.KEEP_CAP", 50)
    feed(ctx, signup_background(NOW - timedelta(days=5), days=5, per_day=30))
    assert connection.zcard(SIGNUPS) == 50
    assert len(connection.keys(SIGNUP_PREFIX + "*")) == 50


@pytest.mark.slow  # reads weeks of sign-ups page by page (test_cli.py's backfill stays fast)
def test_backfill_seeds_the_baseline_from_the_admin_api(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    now = datetime.now(UTC)
    for event in signup_background(now - timedelta(days=10), days=10, per_day=30):
        mastodon.accounts.append(event["object"])
    assert backfill_signups(ctx, days=7) == pytest.approx(210, abs=25)  # newest first, stops at 7 days
    assert alert_jobs(connection) == []
    stored = [connection.hgetall(key) for key in connection.keys(SIGNUP_PREFIX + "*")]
    assert all(b"email" not in row and b"ip" not in row for row in stored)
    assert {row[b"email_domain"] for row in stored} <= {
        b"mail.example.com",
        b"example.org",
        b"post.example.net",
        b"gmail.com",
    }


# --- never a big provider, nor a domain members use


PROVIDER_NAMES = sorted({name for provider in mail_providers() for name in (*provider.domains, *provider.mx)})
LABELS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)


@pytest.mark.slow  # long fuzzing (the providers' examples stay fast)
@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(PROVIDER_NAMES), prefix=st.lists(LABELS, max_size=3), cut=st.integers(0, 5))
def test_no_block_is_proposed_on_a_provider_its_mail_servers_their_parents_or_subdomains(
    name: str, prefix: list[str], cut: int
) -> None:
    """Mastodon matches a block against the address's domain, the MX hosts it resolves to, and every
    parent of either: a block on any of these names would refuse a big provider's every address."""
    subdomain = ".".join([*prefix, name])
    labels = name.split(".")
    parent = ".".join(labels[min(cut, len(labels) - 1) :])
    for domain in (name, subdomain, parent, subdomain.upper() + "."):
        assert provider_refusal(domain) is not None, domain
        cluster = Cluster(ClusterKind.EMAIL_DOMAIN, domain, tuple(signup(n, email_domain=domain) for n in range(5)))
        proposal = propose(SURGE, [cluster], {})  # no refusals handed in: the providers are refused anyway
        assert proposal is None or "email_domain_block" not in {action.kind for action in proposal.actions}


@settings(max_examples=200, deadline=None, database=None)
@given(labels=st.lists(LABELS, min_size=1, max_size=3))
def test_a_spam_domain_of_its_own_is_still_proposed(labels: list[str]) -> None:
    domain = ".".join([*labels, "example"])  # reserved: no provider is under it
    assert provider_refusal(domain) is None
    cluster = Cluster(ClusterKind.EMAIL_DOMAIN, domain, tuple(signup(n, email_domain=domain) for n in range(5)))
    proposal = propose(SURGE, [cluster], {})
    assert proposal is not None and [action.target for action in proposal.actions] == [domain]


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("google.com", "it covers the mail servers of Gmail / Google Workspace"),
        ("protection.outlook.com", "it covers the mail servers of Outlook.com / Microsoft 365"),
        ("mail.protection.outlook.com", "it covers the mail servers of Outlook.com / Microsoft 365"),
        ("eu.gmail.com", "a subdomain of a big mail provider's (Gmail / Google Workspace)"),
        ("yahoodns.net", "it covers the mail servers of Yahoo / AOL"),
    ],
)
def test_a_surge_at_a_providers_mail_servers_is_shown_but_no_block_is_proposed(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble, domain: str, why: str
) -> None:
    mastodon.max_characters = 3000
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=60, minutes=60, mail_domain=domain))
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    assert f"- email domain {domain}: " in text and f"— no block proposed: {why}" in text
    assert "block sign-ups with email addresses at" not in text
    assert "Reply “approve” to reject the " in text  # the pending sign-ups are still offered


def established(count: int, domain: str, **changes: object) -> list[dict[str, object]]:
    """Members who signed up in 2024 with addresses at `domain`, as GET /api/v2/admin/accounts lists them."""
    members = []
    for n in range(count):
        event = signup_event(400000 + n, "2024-05-01T10:00:00.000Z", f"member{n}", f"member{n}@{domain}", "192.0.2.7")
        members.append({**event["object"], "confirmed": True, "approved": True, **changes})
    return members


@pytest.mark.parametrize(
    ("members", "proposed"),
    [
        (established(3, "uni.example"), False),
        (established(2, "uni.example") + established(1, "cs.uni.example"), False),  # a block covers subdomains
        (established(2, "uni.example"), True),
        (established(3, "uni.example", confirmed=False), True),
        (established(3, "uni.example", suspended=True), True),
        (established(3, "uni.example.org"), True),  # Mastodon's `%uni.example%` finds it; not the same domain
        (established(3, "uni.example", created_at="2026-11-20T13:30:00.000Z"), True),  # joined with the surge
    ],
)
def test_a_domain_established_members_use_is_not_proposed(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble, members: list[dict[str, object]], proposed: bool
) -> None:
    mastodon.max_characters = 3000
    mastodon.accounts.extend(members)
    feed(ctx, signup_background(NOW - timedelta(days=14), days=14))
    feed(ctx, signup_burst(NOW, count=60, minutes=60, mail_domain="uni.example"))
    mastodon.requests.clear()
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    assert ("block sign-ups with email addresses at uni.example" in text) is proposed
    if not proposed:
        assert "- email domain uni.example: " in text
        assert "— no block proposed: 3+ established members (confirmed, joined before this) use it" in text
    assert mastodon.requests.count(("GET", "/api/v2/admin/accounts")) <= 1 + ESTABLISHED_PAGES  # staff + count
