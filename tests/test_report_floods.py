"""A report flood closed from the DM (issue 23): the surge DM's three priced choices (how many of the
reported accounts our members follow among them), `approve 2,3` suspending exactly the wave's reported
accounts and resolving exactly the wave's spam reports in the background, each paced by the rate limit
and ending with one note, reports arriving after the DM left for the next one, a wave against local
accounts in its own words, and `approve` alone doing item 1 only. Through the Mastodon double over HTTP,
a real Redis and RQ workers (in-process, and as real processes)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from mastodon import MastodonNotFoundError

from bot.core import audit, defaults
from bot.core.privacy import ZERO_WIDTH_SPACE
from bot.dm import mentions
from bot.dm.commands import job
from bot.mastodon.actions import ROLE_FLAGS, Action, carry_out
from bot.mastodon.client import Following
from bot.mastodon.context import Context
from bot.pipeline.queue import queue
from bot.pipeline.surges import Alert
from handlers.reports import surge as reports
from tests.helpers import feed, quiescent, report_event, run_jobs, run_until, wait_for
from tests.mastodon_double import MastodonDouble
from tests.waves import burst, iso

ANNA, BEN, CLEO = "101", "102", "103"
FLOOD = "flood.example"


@pytest.fixture
def fctx(make_context: Callable[..., Context], mastodon: MastodonDouble) -> Context:
    mastodon.staff = [*mastodon.staff, (CLEO, "mod_cleo")]
    mastodon.roles[CLEO] = "admin"
    mastodon.max_characters = 500
    mastodon.rate_period = 2.0  # Mastodon's 300 calls, in 2-second windows: the pacing is real, the wait short
    mastodon.measures[FLOOD] = (14, 30, 1500)  # our members' 14 follows there: those of `followed_by_members`
    # Retries a second apart, enough of them to outlast a 2-second window (the defaults outlast 5 minutes).
    context = make_context(moderators=["mod_anna", "mod_ben", "mod_cleo"], retry_delays=[1] * 8)
    assert mentions.poll(context) == 0
    return context


def flood(mastodon: MastodonDouble, start: datetime, count: int, first_id: int, seed: int = 2) -> list[dict[str, Any]]:
    """`count` spam reports against accounts of FLOOD, known to Mastodon and sent as webhooks."""
    events = burst(start, FLOOD, reports=count, hours=1, first_id=first_id, seed=seed)
    for event in events:
        mastodon.add_report(event["object"])
    return events


def say(ctx: Context, mastodon: MastodonDouble, account_id: str, text: str, reply_to: str | None) -> dict[str, Any]:
    """A moderator's command and what workers do, until its answer (a job waits out a spent rate-limit share:
    with 2-second windows, the next window)."""
    status = mastodon.say(account_id, f"@tocsin {text}", in_reply_to_id=reply_to)
    mentions.poll(ctx)
    run_until(ctx.redis, lambda: bool(mastodon.replies_to(status["id"])))
    return status


def answers(mastodon: MastodonDouble, status: dict[str, Any]) -> list[str]:
    """Tocsin's replies to a status, as a reader sees them (without the recipients' line): the command's
    answer, and the notes of the background jobs it started."""
    replies = mastodon.replies_to(status["id"])
    return [reply["text"].replace(ZERO_WIDTH_SPACE, "").split("\n", 1)[1] for reply in replies]


NOTES = ("Resolved", "Suspended", "Silenced", "Stopped")
"""How the background jobs' notes begin (bot/wave.py)."""


def answer(mastodon: MastodonDouble, status: dict[str, Any]) -> str:
    """The command's one answer (the notes left out: they may be in already)."""
    [reply] = [text for text in answers(mastodon, status) if not text.startswith(NOTES)]
    return reply


def notes(mastodon: MastodonDouble, status: dict[str, Any], start: str) -> list[str]:
    return [text for text in answers(mastodon, status) if text.startswith(start)]


def followed_by_members(mastodon: MastodonDouble, events: list[dict[str, Any]]) -> list[str]:
    """Three of the wave's accounts our members follow, the most followed by their server's count: 12
    members (two of them follow two of these) by 14 follows, and two follows from another server, which
    are not ours."""
    suspended = events[0]["object"]["target_account"]["id"]
    ids = sorted({event["object"]["target_account"]["id"] for event in events} - {suspended})[:3]
    for account_id, count in zip(ids, (900, 500, 300), strict=True):
        rest_account(mastodon, account_id)["followers_count"] = count
    first, second, third = ids
    for member in range(801, 806):
        mastodon.add_follow(first, str(member))
    for remote in ("901", "902"):
        mastodon.add_follow(first, remote, domain="elsewhere.example")
    for member in range(804, 810):
        mastodon.add_follow(second, str(member))
    for member in range(810, 813):
        mastodon.add_follow(third, str(member))
    return ids


def rest_account(mastodon: MastodonDouble, account_id: str) -> dict[str, Any]:
    """The account as the double shows it to anyone (REST::Account), to change."""
    account: dict[str, Any] = next(a for a in mastodon.accounts if a["id"] == account_id)["account"]
    return account


def followers_calls(mastodon: MastodonDouble, since: int = 0) -> int:
    return sum(1 for method, path in mastodon.requests[since:] if path.endswith("/followers"))


def resolved_ids(mastodon: MastodonDouble) -> Counter[str]:
    return Counter(report_id for report_id, action in mastodon.report_actions if action == "resolve")


def wave_dm(ctx: Context, mastodon: MastodonDouble, now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A 200-report flood from one server, with what must stay open beside it: an older report of the same
    server (before the wave), another server's report, one a moderator took, two not spam, one suspended
    account. The surge DM, sent once."""
    events = flood(mastodon, now - timedelta(hours=1), 200, first_id=500000)
    old = report_event(400001, iso(now - timedelta(days=3)), FLOOD, "690001")
    elsewhere = report_event(400002, iso(now - timedelta(minutes=30)), "other.example", "690002")
    assigned = report_event(400003, iso(now - timedelta(minutes=20)), FLOOD, "690003")
    legal = [
        report_event(400004 + n, iso(now - timedelta(minutes=10)), FLOOD, "690004", category="legal") for n in (0, 1)
    ]
    for event in (old, elsewhere, *legal):
        mastodon.add_report(event["object"])
    mastodon.add_report(assigned["object"], assigned_to=BEN)
    suspended = events[0]["object"]["target_account"]["id"]
    next(account for account in mastodon.accounts if account["id"] == suspended)["suspended"] = True
    followed_by_members(mastodon, events)
    feed(ctx, [old, elsewhere, assigned, *legal, *events])
    run_jobs(ctx.redis)
    dms = mastodon.direct_threads()
    assert len(dms) == 1, [m["text"] for t in dms for m in t]
    return events, dms[0][-1]


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_a_flood_closed_from_the_dm(
    fctx: Context, mastodon: MastodonDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    events, dm = wave_dm(fctx, mastodon, now)
    accounts = {event["object"]["target_account"]["id"] for event in events}
    wave_accounts = accounts | {"690003", "690004"}  # + the assigned report's, the legal ones'
    text = mastodon.direct_texts()[0]
    assert "1. limit flood.example (cuts 14 follows from us to there, 30 from there to us)" in text
    assert (
        f"2. suspend the {len(wave_accounts)} reported accounts of flood.example"
        " (3 of them followed by 12 of our members)" in text
    )
    # The three most-followed first; once their 14 follows are all our members have there, no more pages.
    assert followers_calls(mastodon) == 3
    assert "3. resolve the 200 open spam reports of the wave; 2 other: approve 3 all; 1 assigned, left" in text
    assert len(mastodon.direct_messages()) <= 2  # the alert still fits two statuses

    # Reports arriving after the DM: nobody decided on them yet.
    later = flood(mastodon, now + timedelta(seconds=30), 40, first_id=600000, seed=5)
    feed(fctx, later)
    calls_before = len(mastodon.requests)
    started = time.monotonic()
    command = say(fctx, mastodon, ANNA, "approve 2,3", reply_to=dm["id"])
    reply = answer(mastodon, command)
    assert reply.startswith(
        f"Done: suspending the {len(wave_accounts)} reported accounts of flood.example in the background, paced by"
        " the rate limit (a note follows here); resolving the wave's open spam reports against flood.example in the"
        " background"
    )
    assert "Reply undo within 30 minutes to reverse it." in reply

    run_until(
        fctx.redis,
        lambda: bool(notes(mastodon, command, "Resolved") and notes(mastodon, command, "Suspended")),
        timeout=60,
    )
    elapsed = time.monotonic() - started
    suspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "suspend")
    assert set(suspended) == wave_accounts - {events[0]["object"]["target_account"]["id"]}
    assert set(suspended.values()) == {1}
    assert mastodon.messages_to_accounts == []  # no `text` to the suspended accounts
    assert notes(mastodon, command, "Suspended") == [
        f"Suspended {len(wave_accounts) - 1} of the {len(wave_accounts)} reported accounts of flood.example;"
        " 1 already suspended."
    ]
    wave_spam = {event["object"]["id"] for event in events}
    assert set(resolved_ids(mastodon)) == wave_spam and set(resolved_ids(mastodon).values()) == {1}
    assert mastodon.throttled == 0
    [done] = notes(mastodon, command, "Resolved")
    assert "Resolved 200 reports of the wave against flood.example; left open: 1 assigned to a moderator," in done
    assert "2 in other categories (approve 3 all)" in done
    still_open = {str(r["id"]) for r in mastodon.reports if not r["action_taken"]}
    assert still_open == {"400001", "400002", "400003", "400004", "400005"} | {e["object"]["id"] for e in later}
    calls = len(mastodon.requests) - calls_before
    # With the suspensions in the same windows; resolving alone is measured by bench/resolve_flood.py.
    print(f"\napprove 2,3 on 200 reports: {calls} API calls, {elapsed / mastodon.rate_period:.1f} rate-limit windows")
    # The audit log names every report resolved, and has an entry for each account.
    entries = list(audit.read(fctx.redis))
    logged = " ".join(entry.did for entry in entries)
    assert all(report_id in logged for report_id in wave_spam)
    per_account = [entry for entry in entries if entry.status_id.startswith(f"{command['id']}:suspend_accounts:")]
    assert sorted(entry.status_id.rsplit(":", 1)[1] for entry in per_account) == sorted(wave_accounts)

    # The next DM counts the 40 that came since, with the same numbering; `approve 3` resolves those only.
    state = reports.SURGES.state(fctx.redis, FLOOD)
    assert state is not None
    at = max(e["object"]["created_at"] for e in later)
    escalation = Alert(
        kind="escalate", bucket=FLOOD, surge_id=state.surge_id, alert_no=2, at=datetime.fromisoformat(at).timestamp()
    )
    [*_parts, last] = reports.SURGES.send(fctx, escalation)
    assert "3. resolve the 40 open spam reports of the wave" in mastodon.direct_texts()[-1]
    second = say(fctx, mastodon, CLEO, "approve 3", reply_to=last)
    run_until(fctx.redis, lambda: any("Resolved 40" in s["text"] for s in mastodon.replies_to(second["id"])))
    assert set(resolved_ids(mastodon)) == wave_spam | {e["object"]["id"] for e in later}
    assert set(resolved_ids(mastodon).values()) == {1}
    assert {str(r["id"]) for r in mastodon.reports if not r["action_taken"]} == {
        "400001", "400002", "400003", "400004", "400005"
    }  # fmt: skip

    # `approve 3 all` in the first DM: the other categories of the first wave, never the assigned one.
    say(fctx, mastodon, ANNA, "approve 3 all", reply_to=dm["id"])
    run_until(fctx.redis, lambda: {"400004", "400005"} <= set(resolved_ids(mastodon)))
    assert "400003" not in resolved_ids(mastodon) and "400001" not in resolved_ids(mastodon)
    assert mastodon.throttled == 0


def test_approve_alone_is_item_1_only(fctx: Context, mastodon: MastodonDouble) -> None:
    """The surge DM's items are alternatives (limit the server, or suspend its reported accounts), so
    `approve` alone does the first, as in every DM, and says what else is offered."""
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    assert "Reply “approve” (item 1), “approve 1,2” or “dismiss”." in (mastodon.direct_texts()[0])
    command = say(fctx, mastodon, ANNA, "approve", reply_to=dm["id"])
    run_jobs(fctx.redis)
    assert [block["domain"] for block in mastodon.domain_blocks] == [FLOOD]
    assert mastodon.account_actions == [] and mastodon.report_actions == []
    reply = answer(mastodon, command)
    assert reply.startswith("Done: flood.example limited.")
    assert reply.endswith("“approve” alone is item 1; for the others: approve 2,3.")
    # A second `approve` (another moderator's, meaning the same): the same item, done already.
    again = say(fctx, mastodon, CLEO, "approve", reply_to=dm["id"])
    assert answer(mastodon, again) == "Not done: already carried out (approved by @mod_anna)"
    assert mastodon.account_actions == [] and mastodon.report_actions == []


def test_the_dm_says_none_of_the_reported_accounts_is_followed_without_reading_them(
    fctx: Context, mastodon: MastodonDouble
) -> None:
    """Our members follow nobody there (the server's `instance_follows` measure, read for the first
    choice's cost): none of its accounts is followed, and no account or follower page is read."""
    mastodon.measures[FLOOD] = (0, 30, 1500)
    events = flood(mastodon, datetime.now(UTC) - timedelta(hours=1), 40, first_id=500000)
    feed(fctx, events)
    run_jobs(fctx.redis)
    [text] = mastodon.direct_texts()
    accounts = {event["object"]["target_account"]["id"] for event in events}
    assert (
        f"2. suspend the {len(accounts)} reported accounts of flood.example"
        " (none of them followed by any of our members)" in text
    )
    assert followers_calls(mastodon) == 0
    assert ("GET", "/api/v1/accounts") not in mastodon.requests


def test_reading_who_follows_the_reported_accounts_is_bounded_and_says_at_least(
    fctx: Context, mastodon: MastodonDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big server (our members follow thousands there): the followers of the most-followed reported
    accounts are read, page by page through `Link`, up to the cap; an account hiding its network tells
    nothing (even to an admin token) and is never counted as followed by nobody; the DM says "at least"."""
    mastodon.measures[FLOOD] = (5000, 3000, 90000)
    monkeypatch.setattr(defaults, "FOLLOWER_PAGES_PER_DM", 6)
    events = flood(mastodon, datetime.now(UTC) - timedelta(hours=1), 40, first_id=500000)
    ids = sorted({event["object"]["target_account"]["id"] for event in events})
    busy, hidden = ids[0], ids[1]
    rest_account(mastodon, busy)["followers_count"] = 5000
    for member in range(1000, 1100):  # 100 of our members: two pages of 80
        mastodon.add_follow(busy, str(member))
    rest_account(mastodon, hidden).update(followers_count=9000, hide_collections=True)
    mastodon.add_follow(hidden, "2000")
    feed(fctx, events)
    run_jobs(fctx.redis)
    [text] = mastodon.direct_texts()
    read = 1 + 4  # the busy account (2 pages), then four more of one page each
    assert (
        f"2. suspend the {len(ids)} reported accounts of flood.example (at least 1 of them followed by at least"
        f" 100 of our members; {len(ids) - read} not known)" in text
    )
    assert followers_calls(mastodon) == 6
    assert f"/api/v1/accounts/{hidden}/followers" not in {path for _method, path in mastodon.requests}
    # The double answers as Mastodon: nothing for a hidden network, whoever asks; 404 for an unknown account.
    client = fctx.mastodon.client
    assert client is not None
    assert client.account_followers(hidden) == []
    with pytest.raises(MastodonNotFoundError):
        client.account_followers("424242")


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_what_the_dm_says_of_our_members_following_never_claims_more_than_was_read(data: st.DataObject) -> None:
    asked = data.draw(st.integers(0, 500))
    read = data.draw(st.integers(0, asked))
    followed = data.draw(st.integers(0, read + (1 if read < asked else 0)))
    members = data.draw(st.integers(followed, followed * 50))
    words = reports.following_words(Following(followed, members, read, asked))
    complete = read >= asked
    if not complete:
        assert "not known" in words  # never "none" of accounts nobody read
        assert words.startswith(("at least", "none of the", "our members following them"))
    else:
        assert "not known" not in words and "at least" not in words
        assert (words == "none of them followed by any of our members") == (followed == 0)
    if followed and read:
        assert f"{followed:,} of them" in words and f"{members:,} of our members" in words
    assert reports.following_words(None) == "our members following them: not known"


@pytest.mark.slow  # hundreds of open reports paged through (the cap has a fast twin in the flood test)
def test_a_surge_dm_reads_the_open_reports_back_to_the_wave_only(
    fctx: Context, mastodon: MastodonDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin API lists every open report of the instance (it cannot filter by server), newest first:
    a DM reads back to the wave's start and no further, and at most REPORT_PAGES_PER_DM pages; a DM cut
    short by the cap says "200+"."""
    now = datetime.now(UTC)
    for n in range(400):  # another server's open reports from two days before: never paged through
        old = report_event(300000 + n, iso(now - timedelta(days=2)), "other.example", str(680000 + n % 7))
        mastodon.add_report(old["object"])
    before = len(mastodon.requests)
    events, _dm = wave_dm(fctx, mastodon, now)

    def listings(since: int) -> int:
        return sum(1 for _m, path in mastodon.requests[since:] if path.rstrip("/") == "/api/v1/admin/reports")

    assert listings(before) == 2  # the wave's 200, then the page that reaches back before it
    assert "3. resolve the 200 open spam reports of the wave; 2 other" in mastodon.direct_texts()[0]
    monkeypatch.setattr(defaults, "REPORT_PAGES_PER_DM", 1)
    state = reports.SURGES.state(fctx.redis, FLOOD)
    assert state is not None
    at = max(datetime.fromisoformat(e["object"]["created_at"]).timestamp() for e in events)
    before = len(mastodon.requests)
    reports.SURGES.send(fctx, Alert(kind="escalate", bucket=FLOOD, surge_id=state.surge_id, alert_no=2, at=at))
    assert listings(before) == 1
    assert "3. resolve the 200+ open spam reports of the wave" in mastodon.direct_texts()[-1]


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_undo_unsuspends_the_wave_accounts_still_suspended(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Suspended")))
    suspended = [account_id for account_id, action in mastodon.account_actions if action == "suspend"]
    lifted_by_hand = suspended[0]
    next(a for a in mastodon.accounts if a["id"] == lifted_by_hand)["suspended"] = False
    status = say(fctx, mastodon, ANNA, "undo", None)
    reply = answer(mastodon, status)
    assert f"{len(suspended) - 1} reported accounts of flood.example unsuspended (1 changed since" in reply
    unsuspended = [account_id for account_id, action in mastodon.account_actions if action == "unsuspend"]
    assert sorted(unsuspended) == sorted(suspended[1:])


@pytest.mark.slow  # a suspension paced through rate-limit windows, stopped halfway
def test_undo_stops_a_suspension_still_going(fctx: Context, mastodon: MastodonDouble) -> None:
    """A window's share of 16 calls for bulk work: suspending the wave takes several windows. An `undo`
    meanwhile stops the job before its next account and lifts exactly those it suspended; none is
    suspended after it, and the note says it stopped."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.rate_limit = 40
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: any(action == "suspend" for _id, action in mastodon.account_actions))
    assert notes(mastodon, command, "Suspended") == []  # paused at the share, going on at the reset
    status = say(fctx, mastodon, ANNA, "undo", None)
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Stopped")), timeout=30)
    run_jobs(fctx.redis, rounds=3)
    actions = mastodon.account_actions
    suspended = [account_id for account_id, action in actions if action == "suspend"]
    unsuspended = [account_id for account_id, action in actions if action == "unsuspend"]
    assert suspended and sorted(unsuspended) == sorted(suspended)
    last_suspension = max(n for n, (_id, action) in enumerate(actions) if action == "suspend")
    assert last_suspension < min(n for n, (_id, action) in enumerate(actions) if action == "unsuspend")
    assert f"{len(suspended)} reported accounts of flood.example unsuspended" in answer(mastodon, status)
    [stopped] = notes(mastodon, command, "Stopped")
    assert stopped.startswith(f"Stopped suspending the reported accounts of flood.example after {len(suspended)}:")
    still = {account["id"] for account in mastodon.accounts if account.get("suspended")}
    assert still == {events[0]["object"]["target_account"]["id"]}  # the one suspended before the wave's DM
    assert mastodon.throttled == 0


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_a_role_without_manage_reports_is_refused_item_3_only(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.permissions[BEN] = ROLE_FLAGS["manage_users"] | ROLE_FLAGS["manage_federation"]
    refused = say(fctx, mastodon, BEN, "approve 3", reply_to=dm["id"])
    assert answers(mastodon, refused) == ["Not done: your role cannot manage reports"]
    command = say(fctx, mastodon, BEN, "approve 2,3", reply_to=dm["id"])
    reply = answer(mastodon, command)
    assert reply.startswith("Done: suspending the ")
    assert reply.endswith("Not done: item 3: your role cannot manage reports.")
    assert mastodon.report_actions == []
    commands_audited = [entry.outcome for entry in audit.read(fctx.redis) if ":" not in entry.status_id]
    assert sorted(commands_audited) == ["done", "refused"]


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_approve_all_needs_an_item_that_resolves(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    bare = say(fctx, mastodon, ANNA, "approve all", reply_to=dm["id"])
    assert answers(mastodon, bare) == ["Not done: write the item too, e.g. approve 3 all"]
    limit = say(fctx, mastodon, ANNA, "approve 1 all", reply_to=dm["id"])
    assert answers(mastodon, limit) == [
        "Not done: “all” is for resolving reports of every category, e.g. approve 3 all"
    ]
    assert mastodon.domain_blocks == [] and mastodon.report_actions == []


def test_the_bots_role_without_manage_reports_is_said_in_the_thread(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.bot_permissions = ROLE_FLAGS["manage_users"]
    command = say(fctx, mastodon, ANNA, "approve 3", reply_to=dm["id"])
    run_until(fctx.redis, lambda: len(mastodon.replies_to(command["id"])) == 2)
    note = mastodon.replies_to(command["id"])[1]["text"]
    assert "Stopped resolving the wave's reports against flood.example after 0: the bot account's role" in note
    assert mastodon.report_actions == []


@pytest.mark.slow  # its twin without manage_reports stays fast
def test_the_bots_role_without_manage_users_is_said_in_the_thread(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.bot_permissions = ROLE_FLAGS["manage_reports"]
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Stopped")))
    assert notes(mastodon, command, "Stopped") == [
        "Stopped suspending the reported accounts of flood.example after 0: the bot account's role cannot manage"
        " users (Mastodon answered 403)."
    ]
    assert mastodon.account_actions == []


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_racing_moderators_and_a_duplicated_mention_do_everything_once(fctx: Context, mastodon: MastodonDouble) -> None:
    _events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    first = mastodon.say(ANNA, "@tocsin approve 2,3", in_reply_to_id=dm["id"])
    second = mastodon.say(CLEO, "@tocsin approve 2,3", in_reply_to_id=dm["id"])
    mastodon.notify(first)  # the same mention delivered twice
    mentions.poll(fctx)
    notifications = [mentions.reduced(n) for n in mastodon.notifications]
    threads = [threading.Thread(target=job.handle_mention, args=(n,)) for n in notifications]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    run_until(
        fctx.redis,
        lambda: all(any(s["text"].count(word) for s in mastodon.statuses) for word in ("Resolved", "Suspended")),
        timeout=60,
    )
    run_jobs(fctx.redis)
    suspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "suspend")
    assert set(suspended.values()) == {1}
    assert set(resolved_ids(mastodon).values()) == {1} and len(resolved_ids(mastodon)) == 200
    texts = sorted(t for t in answers(mastodon, first) + answers(mastodon, second) if not t.startswith(NOTES))
    assert len(texts) == 2 and texts[0].startswith("Done: ")  # one answer each, and one note per job
    assert texts[1].startswith("Not done: already carried out (approved by @mod_")
    assert sum("Resolved" in s["text"] for s in mastodon.statuses) == 1
    assert sum("Suspended" in s["text"] for s in mastodon.statuses) == 1


@pytest.mark.slow  # real worker processes
def test_a_flood_through_real_workers(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Any]
) -> None:
    """Webhooks in, the surge DM out, `approve 2,3` answered by real worker processes; the suspending and
    the resolving go on in the background within the rate limit and end with a note each."""
    mastodon.rate_period = 2.0
    mastodon.max_characters = 500
    stack = stack_factory(redis_url, mastodon, workers=2, TOCSIN_COMMAND_POLL_SECONDS="1")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.get(mentions.CURSOR) is not None, what="the first mention poll")
    events = flood(mastodon, datetime.now(UTC) - timedelta(hours=1), 200, first_id=500000)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in events} == {202}
    wait_for(lambda: any("3. resolve the" in t for t in mastodon.direct_texts()), what="the surge DM")
    wait_for(lambda: quiescent(connection), what="the events")
    [thread] = mastodon.direct_threads()
    command = mastodon.say(ANNA, "@tocsin approve 2,3", in_reply_to_id=thread[-1]["id"])
    mastodon.notify(command)  # delivered twice
    wait_for(
        lambda: bool(notes(mastodon, command, "Resolved") and notes(mastodon, command, "Suspended")),
        timeout=60,
        what="the notes",
    )
    wait_for(lambda: quiescent(connection), what="the workers to finish")
    assert len(mastodon.replies_to(command["id"])) == 3  # the answer, and a note for each item
    assert set(resolved_ids(mastodon)) == {e["object"]["id"] for e in events}
    assert set(resolved_ids(mastodon).values()) == {1}
    # The accounts the DM counted (those reported before it was written: the DM goes out at the 15th).
    offered = int(re.search(r"2\. suspend the (\d+) reported accounts", "\n".join(mastodon.direct_texts()))[1])
    suspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "suspend")
    assert len(suspended) == offered and set(suspended.values()) == {1}
    assert set(suspended) <= {e["object"]["target_account"]["id"] for e in events}
    assert mastodon.throttled == 0


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_suspending_a_wave_spanning_rate_limit_windows_goes_on_where_it_stopped(
    fctx: Context, mastodon: MastodonDouble
) -> None:
    """Suspending is the background's work, not the command's: the answer is out before the first
    account is touched. Tocsin's bulk share of a window (48 of 120 calls here) is less than the wave's
    60-odd suspensions: the job pauses at the share, its continuation goes on at the next window where it
    stopped, and the accounts it suspended before are its own (counted, undone), not "already
    suspended"."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.rate_limit = 120
    calls_before = len(mastodon.requests)
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Suspended")), timeout=30)
    since = mastodon.requests[calls_before:]
    answered = since.index(("POST", "/api/v1/statuses"))
    first_action = next(n for n, (method, path) in enumerate(since) if path.endswith("/action"))
    assert answered < first_action
    suspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "suspend")
    assert len(suspended) > 50 and set(suspended.values()) == {1}
    assert answer(mastodon, command).startswith(f"Done: suspending the {len(suspended) + 1} reported accounts")
    assert notes(mastodon, command, "Suspended") == [
        f"Suspended {len(suspended)} of the {len(suspended) + 1} reported accounts of flood.example;"
        " 1 already suspended."
    ]
    undo = say(fctx, mastodon, ANNA, "undo", None)
    assert f"{len(suspended)} reported accounts of flood.example unsuspended" in answer(mastodon, undo)
    assert mastodon.throttled == 0
    assert events


def test_a_wave_against_local_accounts_has_its_own_words(fctx: Context, mastodon: MastodonDouble) -> None:
    """Reports against our own members: 1. limit (silence) them, 2. suspend them (asks yes: they may be
    members' accounts taken over), 3. resolve; and where to require approval for sign-ups, which no API
    does (docs/mastodon-notes.md). `approve` alone silences them, in the background."""
    events = burst(datetime.now(UTC) - timedelta(hours=1), None, reports=30, hours=1)  # type: ignore[arg-type]
    for event in events:
        mastodon.add_report(event["object"])
    feed(fctx, events)
    run_jobs(fctx.redis)
    [text] = mastodon.direct_texts()
    accounts = {event["object"]["target_account"]["id"] for event in events}
    assert f"1. limit (silence) the {len(accounts)} reported local accounts" in text
    assert f"2. suspend the {len(accounts)} reported local accounts (asks yes: members' accounts)" in text
    assert "3. resolve the 30 open spam reports of the wave" in text
    assert (
        "In the admin interface (no API does it): require approval for sign-ups:"
        f" {fctx.settings.instance_url}/admin/settings/registrations" in text
    )
    assert followers_calls(mastodon) == 0  # our own members: no question of who follows them
    [*_parts, last] = mastodon.direct_threads()[0]
    command = say(fctx, mastodon, ANNA, "approve", reply_to=last["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Silenced")))
    assert answer(mastodon, command).startswith(
        f"Done: silencing the {len(accounts)} reported local accounts in the background"
    )
    assert notes(mastodon, command, "Silenced") == [
        f"Silenced {len(accounts)} of the {len(accounts)} reported local accounts."
    ]
    assert sorted(account_id for account_id, action in mastodon.account_actions) == sorted(accounts)
    assert {action for _id, action in mastodon.account_actions} == {"silence"}
    asked = say(fctx, mastodon, ANNA, "approve 2", reply_to=last["id"])
    assert "Reply yes to this message within 10 minutes" in answer(mastodon, asked)
    assert {action for _id, action in mastodon.account_actions} == {"silence"}


@pytest.mark.slow  # a 200-report flood paced through 2-second rate-limit windows
def test_quiet_again_says_what_is_still_open_with_the_same_numbers(fctx: Context, mastodon: MastodonDouble) -> None:
    now = datetime.now(UTC)
    events, dm = wave_dm(fctx, mastodon, now)
    say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    # A week without a report from there (another server's report moves the event clock): quiet again.
    feed(fctx, [report_event(900001, iso(now + timedelta(days=7, hours=2)), "other.example", "690009")])
    run_jobs(fctx.redis)
    quiet = mastodon.direct_texts()[-1]
    assert "✅ Quiet again: flood.example" in quiet
    assert (
        "Still open: 200 spam reports of the wave, 2 in other categories; reply “approve 3” to resolve them too."
        in quiet
    )
    assert "3. resolve the 200 open spam reports of the wave" in quiet
    [thread] = [t for t in mastodon.direct_threads() if "Quiet again" in t[0]["text"]]
    assert len(thread) <= 2  # it still fits two statuses
    command = say(fctx, mastodon, BEN, "approve 3", reply_to=thread[-1]["id"])
    run_until(fctx.redis, lambda: any("Resolved 200" in s["text"] for s in mastodon.replies_to(command["id"])))
    assert set(resolved_ids(mastodon)) == {e["object"]["id"] for e in events}


def test_a_local_wave_never_acts_on_staff_or_the_bot(fctx: Context, mastodon: MastodonDouble) -> None:
    """Remote accounts can report our moderators and Tocsin's own account as easily as spam accounts (a
    harassment campaign is a report flood too): `approve` (item 1, silence, no `yes`) and `approve 2`
    (suspend) leave every local account that is staff now, and the bot's own, alone, and the note says so.
    Mastodon lets a role act on the accounts of lower roles; a moderator must not reach, through the
    bot's role, a colleague they could not silence in the admin interface."""
    start = datetime.now(UTC) - timedelta(hours=1)
    events = burst(start, None, reports=24, hours=1)  # type: ignore[arg-type]
    protected = (BEN, CLEO, mastodon.bot_id)
    events += [
        report_event(510000 + n, iso(start + timedelta(minutes=2 * n + 1)), None, protected[n % 3]) for n in range(9)
    ]
    for event in events:
        mastodon.add_report(event["object"])
    feed(fctx, events)
    run_jobs(fctx.redis)
    accounts = {event["object"]["target_account"]["id"] for event in events}
    assert set(protected) <= accounts
    [*_parts, last] = mastodon.direct_threads()[0]
    command = say(fctx, mastodon, ANNA, "approve", reply_to=last["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Silenced")))
    assert {account_id for account_id, _action in mastodon.account_actions} == accounts - set(protected)
    assert notes(mastodon, command, "Silenced") == [
        f"Silenced {len(accounts) - 3} of the {len(accounts)} reported local accounts;"
        " 3 staff or Tocsin's own, left alone."
    ]
    suspend = say(fctx, mastodon, ANNA, "approve 2", reply_to=last["id"])
    yes = say(fctx, mastodon, ANNA, "yes", reply_to=mastodon.replies_to(suspend["id"])[0]["id"])
    run_until(fctx.redis, lambda: len(notes(mastodon, yes, "Suspended")) == 1)
    suspended = {account_id for account_id, action in mastodon.account_actions if action == "suspend"}
    assert suspended == accounts - set(protected)


def test_a_remote_wave_acts_only_on_accounts_of_that_server(fctx: Context, mastodon: MastodonDouble) -> None:
    """What the wave's reports name is checked against what Mastodon says of each account before it is
    acted on: an account that is local (or of another server) is no account of the wave, whatever the
    stored reports say."""
    now = datetime.now(UTC)
    events = flood(mastodon, now - timedelta(hours=1), 30, first_id=500000)
    # Reports naming a local moderator and another server's account as accounts of FLOOD.
    stray = report_event(400100, iso(now - timedelta(minutes=5)), FLOOD, BEN)
    elsewhere = report_event(400101, iso(now - timedelta(minutes=4)), "other.example", "690100")
    mastodon.add_report(elsewhere["object"])
    elsewhere["object"]["target_account"]["domain"] = FLOOD
    feed(fctx, [*events, stray, elsewhere])
    run_jobs(fctx.redis)
    dm = mastodon.direct_threads()[0][-1]
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Suspended")))
    acted = {account_id for account_id, _action in mastodon.account_actions}
    assert acted == {event["object"]["target_account"]["id"] for event in events}
    assert notes(mastodon, command, "Suspended")[0].endswith("; 2 not of the wave, left alone.")


@pytest.mark.slow  # a job going on over rate-limit windows
def test_a_job_stops_once_its_approver_may_no_longer_act(fctx: Context, mastodon: MastodonDouble) -> None:
    """The permission checked at approval is checked again each time the job goes on (after a rate-limit
    pause, or a retry): a moderator demoted (or suspended) meanwhile stops acting through the jobs they
    started, and the notes say so."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.rate_limit = 120  # a bulk share of 48 calls a window: each job takes several windows
    command = say(fctx, mastodon, ANNA, "approve 2,3", reply_to=dm["id"])
    run_until(fctx.redis, lambda: any(action == "suspend" for _id, action in mastodon.account_actions))
    assert notes(mastodon, command, "Suspended") == [] and notes(mastodon, command, "Resolved") == []
    mastodon.roles[ANNA] = "federation"  # still staff, but can neither manage users nor reports
    suspended, resolved = len(mastodon.account_actions), len(mastodon.report_actions)
    run_until(fctx.redis, lambda: len(notes(mastodon, command, "Stopped")) == 2, timeout=30)
    run_jobs(fctx.redis, rounds=3)
    assert (len(mastodon.account_actions), len(mastodon.report_actions)) == (suspended, resolved)
    assert sorted(notes(mastodon, command, "Stopped")) == [
        f"Stopped resolving the wave's reports against flood.example after {resolved}:"
        " @mod_anna, who approved it, cannot manage reports now.",
        f"Stopped suspending the reported accounts of flood.example after {suspended}:"
        " @mod_anna, who approved it, cannot manage users now.",
    ]
    assert events


@pytest.mark.slow  # a job retried over rate-limit windows
def test_an_account_acted_on_whose_answer_was_lost_is_the_jobs_own(fctx: Context, mastodon: MastodonDouble) -> None:
    """Mastodon suspends an account but its answer is lost (a proxy's 502, a timeout): the job is retried,
    finds the account suspended, and counts it as its own suspension, not "already suspended" — so
    `undo` lifts it with the others."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    mastodon.lost_action_answers = [502, 504]
    command = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, command, "Suspended")), timeout=30)
    suspended = [account_id for account_id, action in mastodon.account_actions if action == "suspend"]
    assert len(suspended) == len(set(suspended))
    assert notes(mastodon, command, "Suspended") == [
        f"Suspended {len(suspended)} of the {len(suspended) + 1} reported accounts of flood.example;"
        " 1 already suspended."
    ]
    undo = say(fctx, mastodon, ANNA, "undo", None)
    assert f"{len(suspended)} reported accounts of flood.example unsuspended" in answer(mastodon, undo)
    still = {account["id"] for account in mastodon.accounts if account.get("suspended")}
    assert still == {events[0]["object"]["target_account"]["id"]}


def test_the_lock_around_an_accounts_call_outlasts_the_call(
    make_context: Callable[..., Context], mastodon: MastodonDouble, connection: redis.Redis
) -> None:
    """`undo` takes the same lock to stop the job and read what it did: while a call is in flight the lock
    must still be held, however long TOCSIN_REQUEST_TIMEOUT lets the call take (a connect and a read
    timeout each), or the undo would read the outcomes without the account being suspended right then."""
    slow = make_context(moderators=["mod_anna", "mod_ben"], request_timeout=120)
    assert mentions.poll(slow) == 0
    events = flood(mastodon, datetime.now(UTC) - timedelta(hours=1), 20, first_id=500000)
    feed(slow, events)
    run_jobs(slow.redis)
    held: list[int] = []
    mastodon.on_account_action = lambda _id: held.extend(
        connection.pttl(key) for key in connection.scan_iter("tocsin:wave-accounts:*:lock")
    )
    command = say(slow, mastodon, ANNA, "approve 2", reply_to=mastodon.direct_threads()[0][-1]["id"])
    run_until(slow.redis, lambda: bool(notes(mastodon, command, "Suspended")))
    assert held and min(held) > 2 * 120 * 1000


@pytest.mark.slow  # two jobs racing over rate-limit windows
def test_two_dms_of_one_surge_approved_at_once_suspend_each_account_once(
    fctx: Context, mastodon: MastodonDouble
) -> None:
    """Item 2 of the escalation DM names the same accounts as item 2 of the first: two moderators
    approving each start two jobs over the same accounts, and two workers run them at once; each account
    is still suspended once, by one of them, and each moderator's undo lifts only what their job did."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    state = reports.SURGES.state(fctx.redis, FLOOD)
    assert state is not None
    at = max(datetime.fromisoformat(e["object"]["created_at"]).timestamp() for e in events)
    escalation = Alert(kind="escalate", bucket=FLOOD, surge_id=state.surge_id, alert_no=2, at=at)
    [*_parts, last] = reports.SURGES.send(fctx, escalation)
    first = mastodon.say(ANNA, "@tocsin approve 2", in_reply_to_id=dm["id"])
    second = mastodon.say(CLEO, "@tocsin approve 2", in_reply_to_id=last)
    mentions.poll(fctx)
    for notification in mastodon.notifications[-2:]:
        job.handle_mention(mentions.reduced(notification))  # the answers; the jobs wait on their queue
    jobs = queue(defaults.QUEUE_BACKGROUND, fctx.redis).get_jobs()
    assert sorted(j.func_name for j in jobs) == ["bot.dm.wave.accounts_job"] * 2
    workers = [threading.Thread(target=j.func, args=j.args) for j in jobs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    run_until(
        fctx.redis,
        lambda: bool(notes(mastodon, first, "Suspended") and notes(mastodon, second, "Suspended")),
        timeout=60,
    )
    suspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "suspend")
    assert set(suspended.values()) == {1}
    say(fctx, mastodon, CLEO, "undo", None)
    say(fctx, mastodon, ANNA, "undo", None)
    unsuspended = Counter(account_id for account_id, action in mastodon.account_actions if action == "unsuspend")
    assert unsuspended == suspended


@pytest.mark.slow  # two jobs in turn over rate-limit windows
def test_a_later_approval_acts_again_on_an_account_lifted_by_hand_since(
    fctx: Context, mastodon: MastodonDouble
) -> None:
    """An account the first job suspended and a moderator unsuspended by hand since is suspended again
    when item 2 of a later DM of the surge is approved (a new decision); the others, still suspended,
    are "already suspended"."""
    events, dm = wave_dm(fctx, mastodon, datetime.now(UTC))
    first = say(fctx, mastodon, ANNA, "approve 2", reply_to=dm["id"])
    run_until(fctx.redis, lambda: bool(notes(mastodon, first, "Suspended")))
    suspended = [account_id for account_id, action in mastodon.account_actions if action == "suspend"]
    next(account for account in mastodon.accounts if account["id"] == suspended[0])["suspended"] = False
    state = reports.SURGES.state(fctx.redis, FLOOD)
    assert state is not None
    at = max(datetime.fromisoformat(e["object"]["created_at"]).timestamp() for e in events)
    escalation = Alert(kind="escalate", bucket=FLOOD, surge_id=state.surge_id, alert_no=2, at=at)
    [*_parts, last] = reports.SURGES.send(fctx, escalation)
    second = say(fctx, mastodon, CLEO, "approve 2", reply_to=last)
    run_until(fctx.redis, lambda: bool(notes(mastodon, second, "Suspended")))
    again = [account_id for account_id, action in mastodon.account_actions if action == "suspend"][len(suspended) :]
    assert again == [suspended[0]]
    assert notes(mastodon, second, "Suspended") == [
        f"Suspended 1 of the {len(suspended) + 1} reported accounts of flood.example;"
        f" {len(suspended)} already suspended."
    ]


def test_a_wave_action_is_never_carried_out_at_once(fctx: Context, mastodon: MastodonDouble) -> None:
    """Suspending, silencing a wave's accounts and resolving its reports are many calls: only the paced
    background jobs carry them out; `carry_out` (one call, in the command's own job) refuses them."""
    for kind in ("suspend_accounts", "silence_accounts", "resolve_reports"):
        with pytest.raises(ValueError, match="in the background"):
            carry_out(fctx.mastodon, Action(kind, FLOOD, kind, targets=("700001",)), "[tocsin]")
    assert mastodon.account_actions == [] and mastodon.report_actions == []
