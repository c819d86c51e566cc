"""Local spam waves: what a post looks like (pure), then scenarios through Redis."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from bot.core import defaults
from bot.core.scripting import Lua
from bot.mastodon.context import Context
from bot.ops import sweep
from bot.pipeline.events import current_clock
from bot.pipeline.families import registry
from handlers.shared.payloads import Status
from handlers.spam import wave as statuses
from handlers.spam.content import examine, fingerprints, parse_content
from handlers.spam.settings import SpamWaveSettings
from handlers.spam.wave import FEATURE_FIRST, FEATURE_INDEX
from tests.helpers import alert_jobs, feed, fixture, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.waves import burst, day_of, iso, mention_spam, ordinary_posting, signup_event, status_event

CFG = SpamWaveSettings()
NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
HOST = "social.example.org"


def test_content_without_mentions_and_its_links() -> None:
    status = fixture("status.created")["object"]
    text, links = parse_content(status["content"])
    assert text == "First tomatoes of the season! Thanks for the seeds #gardening"
    assert links == []  # the mention and the hashtag are not links of the post
    html = '<p>Win <a href="https://Scam.example/x?ref=1">scam.example/x</a> now @bob@other.example.net</p>'
    assert parse_content(html) == ("Win scam.example/x now", ["https://Scam.example/x?ref=1"])


def test_same_text_modulo_mentions_and_whitespace_has_one_fingerprint() -> None:
    one = status_event(
        1, iso(NOW), "5", "a", day_of(NOW), "Free   crypto giveaway, claim yours", mentions=["x@a.example"]
    )
    two = status_event(
        2, iso(NOW), "6", "b", day_of(NOW), "free crypto giveaway, CLAIM yours", mentions=["y@b.example"]
    )
    assert fingerprints(Status.parse(one["object"]), HOST) == fingerprints(Status.parse(two["object"]), HOST)
    assert len(fingerprints(Status.parse(one["object"]), HOST)) == 1


def test_links_by_host_and_path_and_images_by_blurhash() -> None:
    one = status_event(1, iso(NOW), "5", "a", day_of(NOW), "hi", link="https://www.scam.example/win?u=1", blurhash="L1")
    two = status_event(2, iso(NOW), "6", "b", day_of(NOW), "yo", link="https://scam.example/win?u=2", blurhash="L1")
    shared = set(fingerprints(Status.parse(one["object"]), HOST)) & set(fingerprints(Status.parse(two["object"]), HOST))
    assert sorted(fingerprint.split(":")[0] for fingerprint in shared) == ["link", "media"]
    own = status_event(3, iso(NOW), "7", "c", day_of(NOW), "hi", link=f"https://{HOST}/about")
    kinds = [fingerprint.split(":")[0] for fingerprint in fingerprints(Status.parse(own["object"]), HOST)]
    assert kinds == ["text"]  # no link to this instance


def test_examine_ignores_the_bot_itself_boosts_and_odd_shapes() -> None:
    post = status_event(1, iso(NOW), "900", "tocsin", day_of(NOW - timedelta(days=400)), "a DM to moderators")
    assert examine(post, "900", HOST, CFG) is None
    boost = copy.deepcopy(post)
    boost["object"]["account"]["id"] = "5"
    boost["object"]["reblog"] = copy.deepcopy(post["object"])
    assert examine(boost, "900", HOST, CFG) is None
    no_account = {"event": "status.created", "object": {"id": "1", "created_at": iso(NOW), "account": None}}
    assert examine(no_account, "900", HOST, CFG) is None
    with pytest.raises(ValueError):
        examine({"event": "status.created", "object": None}, "900", HOST, CFG)


def test_young_is_measured_from_the_sign_up_day() -> None:
    fresh = status_event(1, iso(NOW), "5", "a", day_of(NOW - timedelta(days=2)), "hello there everyone")
    facts = examine(fresh, None, HOST, CFG)
    assert facts is not None and facts.young and facts.fingerprints
    old = status_event(2, iso(NOW), "6", "b", day_of(NOW - timedelta(days=30)), "hello there everyone")
    facts = examine(old, None, HOST, CFG)
    assert facts is not None and not facts.young and facts.fingerprints == []


# --- scenarios through Redis


@pytest.mark.parametrize("seed", [21, pytest.param(22, marks=pytest.mark.slow)])  # a second day of posting: slow
def test_ordinary_posting_never_alerts(ctx: Context, connection: redis.Redis, seed: int) -> None:
    feed(ctx, ordinary_posting(NOW - timedelta(hours=24), hours=24, seed=seed))
    assert alert_jobs(connection) == []


def test_mention_spam_wave_alerts_once_early(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    mastodon.max_characters = 3000
    feed(ctx, ordinary_posting(NOW - timedelta(hours=24), hours=24))
    feed(ctx, mention_spam(NOW, posts=60, minutes=30))
    [alert] = alert_jobs(connection)
    assert alert["kind"] == "open"
    assert alert["at"] == datetime.fromisoformat(mention_spam(NOW, posts=60, minutes=30)[2]["created_at"]).timestamp()
    run_jobs(connection)
    [dm] = mastodon.direct_messages()
    assert mastodon.recipients(dm) == ["mod_anna", "mod_ben"]
    text = dm["text"]
    assert "🔔 Local spam wave: 60 flagged posts from 10 young accounts in 6.0 h" in text
    assert "- 10 accounts posting with 5+ mentions at once" in text
    assert "- 10 accounts posting the same text, link or image" in text  # the same image
    assert "Samples (mentions and links disabled):\n“Look at this! #59” (spambot9)\n" in text
    reply = "\n\nReply “approve” to suspend these 10 accounts, or “dismiss” if it needs nothing.\n"
    assert text.index(reply) < text.index("Samples")  # what a reply does comes before the details
    assert text.endswith(  # the accounts behind one admin link, not a link each
        "Accounts: spambot9, spambot8, spambot7 and 7 more (newest local accounts first): "
        f"{mastodon.url}/admin/accounts?origin=local&order=recent"
    )
    assert "victim" not in text  # the mentioned accounts are neither named nor mentioned


@pytest.mark.slow  # a wave and its escalation (the first alert stays fast)
def test_escalation_counts_more_accounts_and_shows_suspensions(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.max_characters = 3000
    feed(ctx, mention_spam(NOW, posts=3, minutes=3, accounts=3))
    run_jobs(connection)
    suspended = signup_event(80000, iso(NOW), "spambot0", "bot@spam.example", "192.0.2.9", event="account.updated")
    suspended["object"]["suspended"] = True
    feed(ctx, [suspended])
    feed(ctx, mention_spam(NOW + timedelta(minutes=61), posts=80, minutes=20, accounts=40, first_id=7_100_000))
    assert [alert["kind"] for alert in alert_jobs(connection)] == ["escalate"]
    run_jobs(connection)
    text = mastodon.direct_texts()[-1]
    assert "🔔 Local spam wave escalating" in text
    assert "Last alert: " in text
    assert "1 of them suspended since." in text
    assert "Accounts: spambot39, spambot38, spambot37 and 36 more (" in text  # the suspended one is not counted


def test_near_duplicates_from_five_young_accounts(ctx: Context, connection: redis.Redis) -> None:
    text = "Double your coins in 24 hours, guaranteed returns"
    posts = [
        status_event(100 + n, iso(NOW + timedelta(minutes=n)), str(60 + n), f"fresh{n}", day_of(NOW), text)
        for n in range(5)
    ]
    feed(ctx, posts[:4])
    assert alert_jobs(connection) == []
    feed(ctx, posts[4:])
    [alert] = alert_jobs(connection)
    assert alert["kind"] == "open"


def test_a_young_account_flooding_alerts(ctx: Context, connection: redis.Redis) -> None:
    feed(ctx, ordinary_posting(NOW - timedelta(hours=24), hours=24))
    flood = [
        status_event(200 + n, iso(NOW + timedelta(minutes=2 * n)), "77", "floody", day_of(NOW), f"post number {n}")
        for n in range(25)
    ]
    feed(ctx, flood[:19])
    assert alert_jobs(connection) == []
    feed(ctx, flood[19:])
    [alert] = alert_jobs(connection)
    assert alert["kind"] == "open"


def test_the_bots_own_dms_never_count(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    own = [
        status_event(
            300 + n, iso(NOW), mastodon.bot_id, "tocsin", day_of(NOW), "Report surge", mentions=["mod_anna@" + HOST] * 8
        )
        for n in range(10)
    ]
    feed(ctx, own)
    assert alert_jobs(connection) == []


def test_quiet_after_a_day_without_flagged_posts(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    feed(ctx, mention_spam(NOW, posts=10, minutes=10))
    run_jobs(connection)
    registry().sweep(ctx, current_clock(connection) + 23 * 3600)
    assert alert_jobs(connection) == []
    registry().sweep(ctx, current_clock(connection) + 24 * 3600)
    [quiet] = alert_jobs(connection)
    assert quiet["kind"] == "quiet"
    run_jobs(connection)
    assert mastodon.direct_texts()[-1].splitlines()[1] == "✅ Local spam wave over"


def test_fingerprints_are_bounded(ctx: Context, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handlers.spam.wave.FEATURE_CAP", 50)
    posts = [
        status_event(
            400 + n, iso(NOW + timedelta(seconds=n)), str(n), f"u{n}", day_of(NOW), f"unique text number {n:04}"
        )
        for n in range(120)
    ]
    feed(ctx, posts)
    assert connection.zcard(FEATURE_INDEX) == 50
    assert connection.hlen(FEATURE_FIRST) == 50
    assert connection.llen(defaults.FAILED_EVENTS) == 0


def test_record_young_post_refuses_a_missing_misspelt_or_null_name(
    ctx: Context, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key and argument handle_status passes by name: left out, misspelt or null, the script fails
    naming it before writing anything (it never reads a nil as "no mentions" or "no fingerprints")."""
    script = statuses.RECORD_YOUNG_POST
    calls: list[tuple[dict[str, str], dict[str, Any]]] = []

    def recording(connection: redis.Redis, keys: dict[str, str], args: dict[str, Any]) -> Any:
        calls.append((keys, args))
        return Lua.call(script, connection, keys, args)

    monkeypatch.setattr(script, "call", recording)
    feed(ctx, mention_spam(NOW, posts=1, minutes=1))
    [(keys, args)] = calls
    state = {key: connection.dump(key) for key in connection.scan_iter()}

    def refused(keys: dict[str, str], args: dict[str, Any], error: str) -> None:
        with pytest.raises(redis.ResponseError, match=rf"record_young_post: {error}\b"):
            Lua.call(script, connection, keys, args)

    for name in keys:
        refused({key: value for key, value in keys.items() if key != name}, args, f"key missing: {name}")
        misspelt = {key + "s" if key == name else key: value for key, value in keys.items()}
        refused(misspelt, args, f"key missing: {name}")
    for name in args:
        refused(keys, {key: value for key, value in args.items() if key != name}, f"argument missing: {name}")
        refused(keys, {**args, name: None}, f"argument missing: {name}")
    refused(keys, {**args, "mass_mentions": True}, "argument not declared: mass_mentions")
    assert {key: connection.dump(key) for key in connection.scan_iter()} == state


def test_odd_and_old_shapes_never_fail_a_job(ctx: Context, connection: redis.Redis) -> None:
    young = day_of(NOW)
    minimal = {"event": "status.created", "created_at": iso(NOW), "object": {"id": "1", "created_at": iso(NOW),
               "account": {"id": "5", "created_at": young}}}  # fmt: skip
    nulls = status_event(2, iso(NOW), "6", "b", young, "hello there everyone, nice to be here")
    for name in ("mentions", "media_attachments", "card", "content", "spoiler_text", "tags"):
        nulls["object"][name] = None
    odd = status_event(3, iso(NOW), "7", "c", young, "x")
    odd["object"]["mentions"] = [None, "text", {"acct": None}]
    odd["object"]["media_attachments"] = [{"blurhash": None}, "junk"]
    odd["object"]["content"] = "<p><a href='javascript:alert(1)'>x</a><a class='u-url mention'><span"  # cut HTML
    no_account_date = status_event(4, iso(NOW), "8", "d", young, "hello")
    no_account_date["object"]["account"]["created_at"] = None
    feed(ctx, [minimal, nulls, odd, no_account_date])
    assert connection.llen(defaults.FAILED_EVENTS) == 0


def test_handlers_never_call_mastodon_and_learn_the_bots_id_from_the_sweep(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    """The event path reads the bot's account id from Redis only: with nothing cached and Mastodon down,
    a stream of reports, sign-ups and statuses makes no request at all (so an outage cannot slow detection:
    bench.detection measures it); the sweep (or a worker's start) looks the id up once Mastodon is back."""
    young = day_of(NOW)
    events = [
        *burst(NOW, "spam.example", reports=5, hours=1),
        status_event(1, iso(NOW), mastodon.bot_id, "tocsin", young, "@mod_anna a DM from the bot itself"),
        *mention_spam(NOW, posts=2, minutes=5),
    ]
    mastodon.requests.clear()
    mastodon.down = True  # every request answered 503 (and recorded)
    feed(ctx, events)
    assert mastodon.requests == []  # not one call while handling events
    assert ctx.mastodon.known_bot_account_id() is None
    mastodon.down = False
    sweep.run()  # the periodic sweep job, as a worker runs it
    assert ctx.mastodon.known_bot_account_id() == mastodon.bot_id
    assert ("GET", "/api/v1/accounts/verify_credentials") in mastodon.requests


def test_an_unreachable_mastodon_is_asked_again_only_after_a_pause(
    make_context: Callable[..., Context], connection: redis.Redis
) -> None:
    from bot.ops.embedded_redis import free_port

    ctx = make_context(mastodon_url=f"http://127.0.0.1:{free_port()}", request_timeout=1.0)
    assert ctx.mastodon.refresh_bot_account_id() is None  # refused: one attempt
    assert connection.exists("tocsin:cache:bot-account-id:failed")
    assert ctx.mastodon.refresh_bot_account_id() is None  # within the pause: not even tried
    feed(ctx, burst(NOW, "spam.example", reports=5, hours=1))  # detection goes on meanwhile


@pytest.mark.parametrize(
    ("domain", "refusal"),
    [
        ("google.com", "it covers the mail servers of Gmail / Google Workspace"),
        ("outlook.com", "a big mail provider (Outlook.com / Microsoft 365)"),
        ("spam.example", None),
    ],
)
def test_the_sign_up_path_a_wave_shares_is_blocked_only_when_no_provider_is_hit(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble, domain: str, refusal: str | None
) -> None:
    mastodon.max_characters = 3000
    signups = [
        signup_event(80000 + n, iso(NOW - timedelta(hours=1)), f"spambot{n}", f"bot{n}@{domain}", "192.0.2.9")
        for n in range(10)
    ]
    feed(ctx, signups)
    feed(ctx, mention_spam(NOW, posts=10, minutes=10))
    run_jobs(connection)
    [text] = mastodon.direct_texts()
    assert f"Sign-up path they share:\n- email domain {domain}: 10 of them" in text
    assert ("block sign-ups with email addresses at" in text) is (refusal is None)
    if refusal is not None:
        assert f"— no block proposed: {refusal}" in text
