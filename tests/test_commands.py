"""Moderators act from the DM: the words that count, who may command, exactly-once effects and replies,
confirmations, undo, pause, the announcement replies, the audit log. Through the Mastodon double over
HTTP and a real Redis; one scenario through real worker processes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import audit
from bot.core.privacy import ZERO_WIDTH_SPACE
from bot.dm import mentions
from bot.dm.commands import grammar, job, keys
from bot.dm.commands import verbs as builtin
from bot.dm.commands.grammar import item_numbers, parse, server_domain
from bot.dm.commands.reading import own_text, screen
from bot.mastodon.actions import Action, Message, Proposal, ProposalItem, Refused
from bot.mastodon.context import Context
from bot.pipeline.surges import Alert
from handlers.incidents import announcements
from handlers.incidents import store as incidents
from handlers.incidents.blocks import poll as poll_blocks
from handlers.reports import surge as reports
from tests.helpers import feed, quiescent, run, run_jobs, wait_for
from tests.mastodon_double import MastodonDouble
from tests.waves import burst

ANNA, BEN = "101", "102"  # an admin, and a moderator of Mastodon's default role (no federation rights)
NOW = datetime.now(UTC).replace(microsecond=0)


# --- pure: whose words, which command ------------------------------------------------------------


def test_own_text_drops_mentions_quotes_and_markup() -> None:
    mention = (
        '<span class="h-card"><a href="https://s.example/@tocsin" class="u-url mention">@<span>tocsin</span></a></span>'
    )
    assert own_text(f"<p>{mention} approve 1,3</p>") == "approve 1,3"
    assert own_text(f"<p>{mention} {mention} limit spam.example &amp; co</p>") == "limit spam.example & co"
    # A quote post (4.5+) carries the quoted status in a "quote-inline" paragraph: never the command.
    quoted = (
        f'<p class="quote-inline">RE: <a href="https://s.example/@x/1">suspend x.example</a></p><p>{mention} status</p>'
    )
    assert own_text(quoted) == "status"
    assert own_text(f"<blockquote><p>approve</p></blockquote><p>{mention} dismiss</p>") == "dismiss"
    assert own_text(f"<p>{mention}<br />&gt; approve<br />help</p>") == "help"  # a ">" line is a quote
    assert own_text(f"<p>{mention}</p>") == ""


def test_parse_and_near_misses() -> None:
    verbs = [command.verb for command in builtin.all_commands()]
    assert parse("APPROVE 1,3", verbs) == ("approve", "1,3")
    assert parse("announce now please", verbs) == ("announce now", "please")
    assert parse("limit spam.example Crypto spam", verbs) == ("limit", "spam.example Crypto spam")
    assert grammar.near_miss("aprove", verbs) == "approve"
    assert grammar.near_miss("hello", verbs) is None


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ("4-2", "counts backwards"),  # once read as every item
        ("2-0", "counts backwards"),
        ("0", "items 1 to 3"),
        ("1-999999999", "is not an item number"),  # once a billion-number list before any check
        ("9" * 5000, "is not an item number"),  # once a ValueError: no answer at all
        ("²", "is not an item number"),  # str.isdigit says yes; int() says no
        ("1-", "is not an item number"),
        (",", "write the item numbers"),
        ("1,,x", "is not an item number"),
        ("3-4", "items 1 to 3"),
    ],
)
def test_item_numbers_refuse_what_they_cannot_read(args: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        item_numbers(args, 3)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-, ²x", max_size=30), st.integers(min_value=1, max_value=12))
def test_item_numbers_are_what_was_written_or_refused(args: str, count: int) -> None:
    """Never more than the words name: either exactly the numbers written (item 1 alone for no words at
    all, never every item) or a refusal."""
    try:
        numbers = item_numbers(args, count)
    except Refused:
        return
    assert numbers and all(1 <= number <= count for number in numbers)
    if not args.strip():
        assert numbers == [1]
        return
    named: set[int] = set()
    for part in args.replace(",", " ").split():
        low, _, high = part.partition("-")
        named.update(range(int(low), int(high or low) + 1))
    assert numbers == sorted(named)


def test_item_numbers_and_domains() -> None:
    assert item_numbers("", 3) == [1]  # `approve` alone: item 1 (grammar.BARE_APPROVE)
    assert item_numbers("1,3", 3) == [1, 3]
    assert item_numbers("2-3 1", 3) == [1, 2, 3]
    with pytest.raises(Refused, match="items 1 to 3"):
        item_numbers("4", 3)
    with pytest.raises(Refused, match="not an item number"):
        item_numbers("all", 3)
    assert server_domain("https://Spam.Example/about") == "spam.example"
    assert server_domain("BAD.example:443") == "bad.example"
    assert server_domain("straße.example") == "xn--strae-oqa.example"  # UTS 46, not Python's 2003 codec
    # Ideographic and fullwidth full stops are dots: "social.example.org。" is the instance, not another name.
    assert server_domain("social.example.org\u3002") == server_domain("social\uff0eexample\uff61org.")
    assert server_domain("social.example.org\u3002") == "social.example.org"
    for account in (
        "@someone@bad.example",
        "someone@bad.example",
        "https://bad.example/@someone/1",
        "https://bad.example/users/x",
    ):
        with pytest.raises(Refused, match="names an account; to act on its server, write the domain alone"):
            server_domain(account)
    for junk in ("localhost", "-evil.example", "xn--zz.example", "a..example", "evil.example。。"):
        with pytest.raises(Refused, match="is not a server's domain"):
            server_domain(junk)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"account": {"id": "7", "acct": "mod_anna@evil.example"}}, "remote account"),
        ({"status": {"id": "1", "visibility": "public", "reblog": False}}, "not direct"),
        ({"status": {"id": "1", "visibility": "direct", "reblog": True}}, "boost"),
        ({"type": "favourite"}, "not a mention"),
    ],
)
def test_screen_leaves_out_what_is_no_command(change: dict[str, Any], reason: str) -> None:
    notification = {
        "type": "mention",
        "account": {"id": ANNA, "acct": "mod_anna"},
        "status": {"id": "1", "visibility": "direct", "reblog": False},
    }
    assert screen(notification) is None
    assert screen({**notification, **change}) == reason


# --- through the double ---------------------------------------------------------------------------


@pytest.fixture
def cctx(make_context: Callable[..., Context], mastodon: MastodonDouble) -> Context:
    """A context reading commands: the first poll (nothing to read yet) sets the cursor."""
    mastodon.staff = [*mastodon.staff, ("103", "mod_cleo")]
    mastodon.roles["103"] = "admin"
    context = make_context(moderators=["mod_anna", "mod_ben", "mod_cleo"], announce_hold_minutes=10)
    assert mentions.poll(context) == 0
    return context


def say(
    ctx: Context, mastodon: MastodonDouble, account_id: str, text: str, reply_to: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A status mentioning the bot, then what a worker does: poll, run the jobs."""
    status = mastodon.say(account_id, f"@tocsin {text}", in_reply_to_id=reply_to, **extra)
    mentions.poll(ctx)
    run_jobs(ctx.redis)
    return status


def answer(mastodon: MastodonDouble, status: dict[str, Any]) -> dict[str, Any]:
    """Tocsin's one reply to a status (fails on none, or on two), its text as a reader sees it (the
    zero-width spaces that keep every "@" of a post's body from mentioning anyone left out)."""
    [reply] = mastodon.replies_to(status["id"])
    return {**reply, "text": reply["text"].replace(ZERO_WIDTH_SPACE, "")}


def proposal_dm(ctx: Context, mastodon: MastodonDouble, *items: ProposalItem, key: str = "test:1") -> str:
    ids = ctx.outbox.propose(
        key, Message("🔔 Something to decide.", Proposal(items=items)), handles="tocsin:test:handled"
    )
    return ids[-1]


def limit(domain: str) -> ProposalItem:
    return ProposalItem(f"limit {domain}", (Action("domain_block", domain, f"limit {domain}", severity="silence"),))


def entries(ctx: Context) -> list[audit.Entry]:
    return list(audit.read(ctx.redis))


def test_report_surge_approved_from_the_dm_limits_once(
    cctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.measures["spam.example"] = (12, 30, 1500)
    mastodon.max_characters = 1000
    feed(cctx, burst(NOW - timedelta(hours=1), "spam.example", reports=60, hours=1))
    run_jobs(connection)
    poll_blocks(cctx)  # the first poll records the blocks as they are
    [dm] = mastodon.direct_messages()
    assert "1. limit spam.example (cuts 12 follows from us to there, 30 from there to us)" in dm["text"]

    command = say(cctx, mastodon, ANNA, "approve 1", reply_to=dm["id"])
    [block] = mastodon.domain_blocks
    assert (block["domain"], block["severity"], block["public_comment"]) == ("spam.example", "silence", None)
    assert (
        block["private_comment"].startswith("[tocsin] proposal ")
        and "by @mod_anna from a DM" in block["private_comment"]
    )
    reply = answer(mastodon, command)
    assert mastodon.recipients(reply) == ["mod_anna", "mod_ben", "mod_cleo"]  # something changed: all of them
    assert reply["text"].startswith("@mod_anna @mod_ben @mod_cleo\nDone: spam.example limited.")
    assert "We follow 12 accounts there; 30 there follow us." in reply["text"]

    # The same notification again (a second poll from an old cursor, a duplicate): nothing more happens.
    mastodon.notify(command)
    connection.set(mentions.CURSOR, "0")
    mentions.poll(cctx)
    run_jobs(connection)
    assert len(mastodon.domain_blocks) == 1 and len(mastodon.replies_to(command["id"])) == 1
    [entry] = entries(cctx)
    assert (entry.handle, entry.command, entry.outcome) == ("mod_anna", "approve 1", "done")
    assert entry.api.startswith("POST /api/v1/admin/domain_blocks: 200")

    # The poller sees the block: the surge's incident records it publicly, without who made it.
    assert poll_blocks(cctx) == 1
    run_jobs(connection)
    [incident] = incidents.list_incidents(connection)
    assert incident.cause == "spam wave" and [server.domain for server in incident.servers] == ["spam.example"]
    timeline = " ".join(text for _at, text in incident.timeline)
    assert "spam.example limited." in timeline and "mod_anna" not in timeline

    # Items 2 and 3 are still open: an escalation is sent, with the same numbering; once dismissed, no more.
    [surge] = [bucket.decode() for bucket in connection.zrange(reports.SURGES.open_key, 0, -1)]
    state = reports.SURGES.state(connection, surge)
    assert state is not None
    escalation = Alert(kind="escalate", bucket=surge, surge_id=state.surge_id, alert_no=2, at=NOW.timestamp())
    [*_parts, last] = reports.SURGES.send(cctx, escalation)
    text = "\n".join(mastodon.direct_texts()[-1:])
    assert "1. limit spam.example (it is limited already)" in text and "3. resolve the " in text
    say(cctx, mastodon, ANNA, "dismiss", reply_to=last)
    again = Alert(kind="escalate", bucket=surge, surge_id=state.surge_id, alert_no=3, at=NOW.timestamp())
    assert reports.SURGES.send(cctx, again) == []


def test_two_moderators_approving_at_once_make_one_block(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("spam.example"))
    first = mastodon.say(ANNA, "@tocsin approve", in_reply_to_id=dm)
    second = mastodon.say("103", "@tocsin approve", in_reply_to_id=dm)
    mentions.poll(cctx)
    notifications = {n["status"]["id"]: mentions.reduced(n) for n in mastodon.notifications}
    threads = [threading.Thread(target=job.handle_mention, args=(notifications[s["id"]],)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(mastodon.domain_blocks) == 1
    texts = sorted(answer(mastodon, status)["text"].split("\n", 1)[1] for status in (first, second))
    assert texts[0].startswith("Done: spam.example limited. We follow 0 accounts there")
    assert texts[0].endswith("Reply undo within 30 minutes to reverse it.")
    assert texts[1].startswith("Not done: already carried out (approved by @mod_")


def test_approve_some_items_then_the_rest(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("a.example"), limit("b.example"), limit("c.example"))
    say(cctx, mastodon, ANNA, "approve 1,3", reply_to=dm)
    assert sorted(block["domain"] for block in mastodon.domain_blocks) == ["a.example", "c.example"]
    again = say(cctx, mastodon, ANNA, "approve", reply_to=dm)  # alone: item 1, which is done; never "the rest"
    assert answer(mastodon, again)["text"].endswith("Not done: already carried out (approved by @mod_anna)")
    status = say(cctx, mastodon, ANNA, "approve 2", reply_to=dm)
    assert sorted(block["domain"] for block in mastodon.domain_blocks) == ["a.example", "b.example", "c.example"]
    assert "Done: b.example limited." in answer(mastodon, status)["text"]
    assert cctx.redis.get("tocsin:test:handled") == b"approved by @mod_anna"


def test_approve_alone_is_item_1_and_names_the_others(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("a.example"), limit("b.example"), limit("c.example"))
    status = say(cctx, mastodon, ANNA, "approve", reply_to=dm)
    assert [block["domain"] for block in mastodon.domain_blocks] == ["a.example"]
    assert answer(mastodon, status)["text"].endswith("“approve” alone is item 1; for the others: approve 2,3.")
    say(cctx, mastodon, ANNA, "approve 3", reply_to=dm)
    assert cctx.redis.get("tocsin:test:handled") is None  # item 2 is still open


def test_non_moderators_get_no_answer_and_are_only_counted(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("spam.example"))
    stranger = say(cctx, mastodon, "555", "approve", reply_to=dm)  # a local user who is no moderator
    namesake = say(cctx, mastodon, "556", "approve", reply_to=dm, username="mod_anna", domain="evil.example")
    public = say(cctx, mastodon, ANNA, "approve", reply_to=dm, visibility="public")  # staff, but in public
    original = mastodon.say(ANNA, "approve", in_reply_to_id=dm)  # no mention of the bot: no notification
    boosted = mastodon.notify({**original, "id": "999", "reblog": original})["status"]
    mentions.poll(cctx)
    run_jobs(cctx.redis)
    assert mastodon.domain_blocks == []
    for status in (stranger, namesake, public, boosted):
        assert mastodon.replies_to(status["id"]) == []
    assert entries(cctx) == []  # nothing about them is kept but the counts
    counts = {key.decode(): int(value) for key, value in cctx.redis.hgetall(keys.IGNORED).items()}
    assert counts == {"not staff": 1, "remote account": 1, "not direct": 1, "boost": 1}


def test_a_demoted_moderator_is_refused(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("spam.example"))
    say(cctx, mastodon, "103", "status")  # her role is read (and cached for read-only commands)
    del mastodon.roles["103"]
    status = say(cctx, mastodon, "103", "approve", reply_to=dm)
    assert mastodon.domain_blocks == []
    reply = answer(mastodon, status)
    assert mastodon.recipients(reply) == ["mod_cleo"]
    assert "Not done: your account has no moderator role on this instance now" in reply["text"]
    assert [entry.outcome for entry in entries(cctx)] == ["help", "refused"]


def test_each_refusal_says_why(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("spam.example"))

    def refusal(account_id: str, text: str, reply_to: str | None = None) -> str:
        reply = answer(mastodon, say(cctx, mastodon, account_id, text, reply_to=reply_to))
        return reply["text"].split("\n", 1)[1]

    assert refusal(BEN, "approve", dm) == "Not done: your role cannot manage federation"
    assert refusal(ANNA, "approve") == "Not done: approve acts on a proposal: reply to the DM that proposes it"
    assert refusal(ANNA, "approve 4", dm) == "Not done: the proposal has items 1 to 1"
    assert refusal(ANNA, "lift calm.example") == "Not done: calm.example is not limited or suspended"
    assert refusal(ANNA, "limit 127.0.0.1") == "Not done: 127.0.0.1 is this instance"  # the double's host
    assert refusal(ANNA, "undo") == "Not done: you have no action of the last 30 minutes to undo"
    assert refusal(ANNA, "yes") == "Not done: nothing is waiting for a yes (a question lasts 10 minutes)"
    assert refusal(ANNA, "cancel") == "Not done: cancel answers a specific DM: reply to it"
    assert refusal(ANNA, "resume") == "Not done: Tocsin is not paused"
    mastodon.scopes = {"read", "write:statuses", "admin:read"}
    assert refusal(ANNA, "approve", dm) == (
        "Not done: the bot's token lacks the scope admin:write:domain_blocks; create a token with it"
    )
    stale = mastodon.say(ANNA, "@tocsin limit old.example")
    stale["created_at"] = "2026-01-02T03:04:05.000Z"  # read long after it was written (Tocsin was down)
    mentions.poll(cctx)
    run_jobs(cctx.redis)
    assert answer(mastodon, stale)["text"].endswith(
        "more than a day old (Tocsin was not reading); send it again if it stands"
    )
    edited = mastodon.say(ANNA, "@tocsin status")
    mastodon.edit(edited["id"], "@tocsin suspend spam.example")
    mentions.poll(cctx)
    run_jobs(cctx.redis)
    assert answer(mastodon, edited)["text"].endswith(
        "this command was edited after it was posted; send it again as a new reply"
    )
    assert mastodon.domain_blocks == []


def test_approve_reads_only_the_numbers_written(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("a.example"), limit("b.example"), limit("c.example"))
    for args, why in [
        ("4-2", "“4-2” counts backwards; write e.g. approve 2-4"),
        ("1-999999999", "“1-999999999” is not an item number; write e.g. approve 1,3"),
        ("9" * 5000, "is not an item number; write e.g. approve 1,3"),
    ]:
        reply = answer(mastodon, say(cctx, mastodon, ANNA, f"approve {args}", reply_to=dm))
        assert reply["text"].endswith(why), reply["text"]
    assert mastodon.domain_blocks == []
    # A role that can do none of it is refused before a number is read.
    reply = answer(mastodon, say(cctx, mastodon, BEN, "approve " + "9" * 5000, reply_to=dm))
    assert reply["text"].endswith("Not done: your role cannot manage federation")


def test_undo_never_reverses_another_moderators_later_change(cctx: Context, mastodon: MastodonDouble) -> None:
    say(cctx, mastodon, ANNA, "limit spam.example")
    asked = answer(mastodon, say(cctx, mastodon, "103", "suspend spam.example"))
    say(cctx, mastodon, "103", "yes", reply_to=asked["id"])
    [block] = mastodon.domain_blocks
    assert block["severity"] == "suspend"  # Cleo raised Anna's limit: the same block
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith(
        "Not done: not undone: spam.example changed since: it is suspended now (by @mod_cleo through Tocsin)"
    )
    assert [(b["domain"], b["severity"]) for b in mastodon.domain_blocks] == [("spam.example", "suspend")]
    # Changed by hand in the admin interface: the same.
    say(cctx, mastodon, ANNA, "limit other.example")
    mastodon.domain_blocks[-1]["severity"] = "suspend"
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith("other.example changed since: it is suspended now (outside Tocsin)")
    assert len(mastodon.domain_blocks) == 2


def test_undo_takes_the_permission_of_what_it_reverses(cctx: Context, mastodon: MastodonDouble) -> None:
    say(cctx, mastodon, ANNA, "limit spam.example")
    mastodon.permissions[ANNA] = 1 << 4  # her role now: Manage Reports only
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith("Not done: your role cannot manage federation")
    assert len(mastodon.domain_blocks) == 1


@pytest.mark.parametrize("how", ["suspended", "disabled"])
def test_a_locked_out_staff_account_is_no_moderator(cctx: Context, mastodon: MastodonDouble, how: str) -> None:
    mastodon.staff_flags["103"] = {how: True}
    status = say(cctx, mastodon, "103", "limit spam.example")
    assert mastodon.domain_blocks == []
    assert answer(mastodon, status)["text"].endswith("your account has no moderator role on this instance now")


def test_a_command_deleted_or_edited_before_its_job_runs_is_not_carried_out(
    cctx: Context, mastodon: MastodonDouble
) -> None:
    deleted = mastodon.say(ANNA, "@tocsin limit spam.example")
    edited = mastodon.say(ANNA, "@tocsin limit other.example")
    mentions.poll(cctx)  # both queued as they were written …
    mastodon.delete(deleted["id"])  # … then one deleted, one edited, before a worker took them
    mastodon.edit(edited["id"], "@tocsin status")
    run_jobs(cctx.redis)
    assert mastodon.domain_blocks == []
    assert mastodon.replies_to(deleted["id"]) == []  # nobody to answer
    assert answer(mastodon, edited)["text"].endswith("edited after it was posted; send it again as a new reply")
    assert [(entry.command, entry.outcome, entry.did) for entry in entries(cctx)] == [
        ("limit spam.example", "refused", "deleted before it was carried out"),
        ("limit other.example", "refused", "Not done: this command was edited after it was posted; send it again "
         "as a new reply"),
    ]  # fmt: skip


def test_yes_answers_the_question_it_replies_to_and_only_its_asker(cctx: Context, mastodon: MastodonDouble) -> None:
    first = answer(mastodon, say(cctx, mastodon, ANNA, "suspend a.example"))
    second = answer(mastodon, say(cctx, mastodon, ANNA, "suspend b.example"))
    which = answer(mastodon, say(cctx, mastodon, ANNA, "yes"))  # not in reply to either question
    assert which["text"].endswith(
        "Not done: which? Reply yes to the question itself: “suspend a.example”; “suspend b.example”"
    )
    other = answer(mastodon, say(cctx, mastodon, "103", "yes", reply_to=first["id"]))
    assert other["text"].endswith("Not done: this question was asked of @mod_anna: only they can answer it")
    assert mastodon.domain_blocks == []
    say(cctx, mastodon, ANNA, "yes", reply_to=first["id"])  # the older question: not the latest one
    assert [(b["domain"], b["severity"]) for b in mastodon.domain_blocks] == [("a.example", "suspend")]
    again = answer(mastodon, say(cctx, mastodon, ANNA, "yes", reply_to=first["id"]))
    assert again["text"].endswith("which? Reply yes to the question itself: “suspend b.example”")
    say(cctx, mastodon, ANNA, "yes", reply_to=second["id"])
    assert sorted(b["domain"] for b in mastodon.domain_blocks) == ["a.example", "b.example"]


def test_limit_refuses_this_instance_its_parents_and_public_suffixes(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.web_domain = "mastodon.social.example.org"  # WEB_DOMAIN apart from LOCAL_DOMAIN

    def refusal(text: str) -> str:
        return str(answer(mastodon, say(cctx, mastodon, ANNA, text))["text"].split("\n", 1)[1])

    assert refusal("limit social.example.org") == "Not done: social.example.org is this instance"
    assert refusal("suspend mastodon.social.example.org") == "Not done: mastodon.social.example.org is this instance"
    assert refusal("limit example.org") == (
        "Not done: example.org contains this instance (mastodon.social.example.org)"
    )
    for suffix in ("co.uk", "github.io", "com.br"):
        assert refusal(f"limit {suffix}") == (
            f"Not done: {suffix} is a public suffix: a block would cover every server under it"
        )
    assert refusal("limit social") == "Not done: “social” is not a server's domain"
    assert mastodon.domain_blocks == []
    assert refusal("limit spam.co.uk").startswith("Done: spam.co.uk limited.")


def test_the_command_is_what_the_moderator_sees(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.add_block("calm.example")
    # Typed "&#108;ift": Mastodon escapes the "&", the text is decoded once: no lift.
    assert "Reply with:" in answer(mastodon, say(cctx, mastodon, ANNA, "&#108;ift calm.example"))["text"]
    assert len(mastodon.domain_blocks) == 1
    assert own_text("<p>ap\u200bpro\u2066ve 1</p>") == "approve 1"  # invisible characters are not there
    assert own_text("<p>\u202eevorppa</p>") == "evorppa"  # shown reversed, but no command
    assert own_text("<p>&amp;#108;ift x</p>") == "&#108;ift x"


def test_a_suspended_account_is_not_told_who_suspended_it(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.accounts = [{"id": "500", "username": "bot500", "domain": None, "suspended": False, "role": None}]
    dm = proposal_dm(cctx, mastodon, ProposalItem("suspend", (Action("suspend_account", "500", "suspend bot500"),)))
    say(cctx, mastodon, ANNA, "approve", reply_to=dm)
    assert mastodon.account_actions == [("500", "suspend")]
    assert mastodon.messages_to_accounts == []
    assert entries(cctx)[-1].handle == "mod_anna"  # who did it: the audit log knows


def test_members_cannot_spend_the_api_budget_on_role_lookups(cctx: Context, mastodon: MastodonDouble) -> None:
    for text in ("hello", "approve", "what is this", "limit spam.example", "help"):
        assert mastodon.replies_to(say(cctx, mastodon, "555", text)["id"]) == []
    assert mastodon.requests.count(("GET", "/api/v1/admin/accounts/555")) == 1


def test_a_command_on_several_lines_is_read_whole(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("a.example"), limit("b.example"), limit("c.example"))
    say(cctx, mastodon, ANNA, "approve\n1,3", reply_to=dm)  # not a bare "approve": never all three
    assert sorted(block["domain"] for block in mastodon.domain_blocks) == ["a.example", "c.example"]
    assert own_text("<p>@tocsin approve<br />2</p><p>&gt; approve<br />thanks</p>") == "approve 2 thanks"


def test_a_proposal_cannot_block_this_instance_or_a_parent_of_it(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("example.org"))  # a surge "from" the parent of social.example.org
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "approve", reply_to=dm))
    assert reply["text"].endswith("Not done: example.org contains this instance (social.example.org)")
    assert mastodon.domain_blocks == []


def test_undo_after_an_action_it_cannot_reverse_reverses_nothing_older(cctx: Context, mastodon: MastodonDouble) -> None:
    say(cctx, mastodon, ANNA, "limit x.example")
    mastodon.add_block("y.example")
    say(cctx, mastodon, ANNA, "limit y.example")  # was limited already: nothing Tocsin did, nothing to undo
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith("Not done: your last action (limit y.example) cannot be undone from here")
    assert sorted(block["domain"] for block in mastodon.domain_blocks) == ["x.example", "y.example"]


def test_undo_leaves_a_block_someone_edited_since(cctx: Context, mastodon: MastodonDouble) -> None:
    say(cctx, mastodon, ANNA, "limit x.example")
    mastodon.domain_blocks[0]["reject_media"] = True  # Cleo, in the admin interface
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith(
        "x.example changed since: it is limited, its reject media changed now (outside Tocsin)"
    )
    assert len(mastodon.domain_blocks) == 1


def test_an_answer_to_a_command_deleted_after_it_acted_is_still_given_and_audited(
    cctx: Context, mastodon: MastodonDouble
) -> None:
    status = mastodon.say(ANNA, "@tocsin limit spam.example")
    mentions.poll(cctx)
    real_reply = cctx.outbox.send

    def delete_then_reply(post: Any) -> list[str]:  # the moderator deletes it between the act and the answer
        mastodon.delete(status["id"])
        return real_reply(post)

    cctx.outbox.send = delete_then_reply  # type: ignore[method-assign]
    run_jobs(cctx.redis)
    assert [block["domain"] for block in mastodon.domain_blocks] == ["spam.example"]
    [reply] = [s for s in mastodon.direct_messages() if s["text"].startswith("@mod_anna") and "Done:" in s["text"]]
    assert reply["in_reply_to_id"] is None  # a thread of its own: the command is gone
    assert [(entry.command, entry.outcome) for entry in entries(cctx)] == [("limit spam.example", "done")]
    assert cctx.redis.exists(keys.LAST_PREFIX + ANNA)  # and it can be undone


def test_more_moderators_than_a_status_can_address_still_get_an_answer(
    make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    mastodon.staff = [*mastodon.staff, *((str(700 + n), f"moderator_number_{n}") for n in range(40))]
    mastodon.roles.update({str(700 + n): "admin" for n in range(40)})
    ctx = make_context()  # every staff account: 42 of them
    mentions.poll(ctx)
    reply = answer(mastodon, say(ctx, mastodon, ANNA, "limit spam.example"))
    assert mastodon.recipients(reply) == ["mod_anna"] and "Done: spam.example limited." in reply["text"]


def test_mentions_that_cannot_be_commands_cost_no_job(cctx: Context, mastodon: MastodonDouble) -> None:
    for n in range(5):
        mastodon.say(str(600 + n), "@tocsin approve", visibility="public")
        mastodon.say("556", "@tocsin limit x.example", username="mod_anna", domain="evil.example")
    assert mentions.poll(cctx) == 0
    assert cctx.redis.hlen(mentions.WAITING) == 0 and not cctx.redis.keys("rq:job:*")
    cctx.redis.set(mentions.CURSOR, "0")
    mentions.poll(cctx)  # read again (the stream and the poll): counted once
    counts = {key.decode(): int(value) for key, value in cctx.redis.hgetall(keys.IGNORED).items()}
    assert counts == {"not direct": 5, "remote account": 5}


def test_unknown_text_gets_the_help_and_a_near_miss_a_suggestion(cctx: Context, mastodon: MastodonDouble) -> None:
    help_reply = answer(mastodon, say(cctx, mastodon, ANNA, "what can you do?"))
    assert mastodon.recipients(help_reply) == ["mod_anna"]  # nothing changed: only the one who asked
    assert (
        "\nReply with: approve [1,3] (this DM's proposal) · dismiss · limit DOMAIN [public reason] · "
        in help_reply["text"]
    )
    assert help_reply["text"].endswith(
        "In a DM about a held announcement: cancel [DOMAIN] · correction [DOMAIN] (word a lift as a correction) · "
        "announce now."
    )
    near = answer(mastodon, say(cctx, mastodon, ANNA, "aprove"))
    assert "Did you mean “approve”? Nothing was done." in near["text"]


def test_suspend_asks_for_yes_then_undo_lifts(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.measures["evil.example"] = (3, 1, 40)
    asked = answer(mastodon, say(cctx, mastodon, ANNA, "suspend evil.example Harassment campaign"))
    assert "This will suspend evil.example. Reply yes to this message within 10 minutes to go ahead." in asked["text"]
    assert mastodon.domain_blocks == []
    assert 0 < cctx.redis.ttl(keys.CONFIRM_PREFIX + asked["id"]) <= 600  # a later yes finds nothing to confirm
    done = answer(mastodon, say(cctx, mastodon, ANNA, "yes", reply_to=asked["id"]))
    [block] = mastodon.domain_blocks
    assert (block["severity"], block["public_comment"]) == ("suspend", "Harassment campaign")
    assert "Done: evil.example suspended." in done["text"] and "We follow 3 accounts there" in done["text"]
    assert "/admin/instances/evil.example" in done["text"]
    assert 0 < cctx.redis.ttl(keys.LAST_PREFIX + ANNA) <= 1800  # undo within 30 minutes only
    undone = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert mastodon.domain_blocks == []
    assert "Undone (suspend evil.example Harassment campaign): evil.example's block lifted." in undone["text"]
    assert [entry.outcome for entry in entries(cctx)] == ["asked", "done", "done"]


def test_a_permanent_mastodon_refusal_is_answered_not_dropped(cctx: Context, mastodon: MastodonDouble) -> None:
    say(cctx, mastodon, ANNA, "limit spam.example")
    mastodon.scopes = {"read", "write:statuses", "admin:read"}  # the token lost its write scopes meanwhile
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "undo"))
    assert reply["text"].endswith(
        "Not done: Mastodon answered 403: the token lacks a scope this needs (see the README's token scopes)"
    )
    assert len(mastodon.domain_blocks) == 1 and [entry.outcome for entry in entries(cctx)] == ["done", "refused"]


def test_lift_then_undo_restores_the_block(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.add_block("old.example", "suspend", reject_media=True, public_comment="Spam", private_comment="by hand")
    assert "old.example's suspension lifted" in answer(mastodon, say(cctx, mastodon, ANNA, "lift old.example"))["text"]
    assert mastodon.domain_blocks == []
    say(cctx, mastodon, ANNA, "undo")
    [block] = mastodon.domain_blocks
    assert (block["severity"], block["reject_media"], block["public_comment"]) == ("suspend", True, "Spam")


def test_spam_wave_and_signup_proposals_act_on_accounts(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.accounts = [
        {"id": str(n), "username": f"bot{n}", "domain": None, "suspended": False, "role": None} for n in range(500, 512)
    ]
    suspend = tuple(Action("suspend_account", str(n), f"suspend bot{n} (#{n})") for n in range(500, 512))
    email = (Action("email_domain_block", "spam.example", "block sign-ups from spam.example"),)
    dm = proposal_dm(cctx, mastodon, ProposalItem("suspend these 12 accounts", suspend), ProposalItem("block", email))
    asked = answer(mastodon, say(cctx, mastodon, ANNA, "approve 1,2", reply_to=dm))
    assert "; and 8 more. Reply yes to this message within 10 minutes" in asked["text"]  # 13 actions: more than 10
    done = answer(mastodon, say(cctx, mastodon, ANNA, "yes", reply_to=asked["id"]))
    assert mastodon.account_actions == [(str(n), "suspend") for n in range(500, 512)]
    assert [block["domain"] for block in mastodon.email_domain_blocks] == ["spam.example"]
    assert "Done: bot500 (#500) suspended;" in done["text"] and "and 8 more (tocsin audit)" in done["text"]
    say(cctx, mastodon, ANNA, "undo")
    assert mastodon.email_domain_blocks == []
    assert mastodon.account_actions[-12:] == [(str(n), "unsuspend") for n in reversed(range(500, 512))]
    # Rejecting a pending sign-up deletes it: it always asks first.
    reject = (Action("reject_account", "510", "reject bot510 (#510)"),)
    dm = proposal_dm(cctx, mastodon, ProposalItem("reject", reject), key="test:2")
    assert "Reply yes" in answer(mastodon, say(cctx, mastodon, "103", "approve", reply_to=dm))["text"]


def test_dismiss_marks_it_handled_and_takes_the_proposals_permissions(cctx: Context, mastodon: MastodonDouble) -> None:
    dm = proposal_dm(cctx, mastodon, limit("spam.example"))
    # Ben's role (reports, users) could not limit the server: it cannot silence the proposal either.
    assert answer(mastodon, say(cctx, mastodon, BEN, "dismiss", reply_to=dm))["text"].endswith(
        "Not done: your role cannot manage federation"
    )
    assert cctx.redis.get("tocsin:test:handled") is None
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "dismiss", reply_to=dm))
    assert "Dismissed: nothing done, and no more escalation DMs about this." in reply["text"]
    assert cctx.redis.get("tocsin:test:handled") == b"dismissed by @mod_anna"
    assert mastodon.domain_blocks == []


def test_pause_holds_an_announcement_and_resume_releases_it(cctx: Context, mastodon: MastodonDouble) -> None:
    poll_blocks(cctx)  # the first poll records the state
    say(cctx, mastodon, ANNA, "limit spam.example Crypto spam")
    assert poll_blocks(cctx) == 1
    run_jobs(cctx.redis)
    held_dm = next(status for status in mastodon.direct_messages() if "📣 Public announcement at" in status["text"])
    assert "we have limited spam.example." in held_dm["text"] and "Why: Crypto spam" in held_dm["text"]
    assert held_dm["text"].endswith("Reply “cancel” to not post it, “announce now” to post it at once.")

    refused_pause = answer(mastodon, say(cctx, mastodon, BEN, "pause"))  # Manage Reports and Users only
    assert refused_pause["text"].endswith("Not done: your role cannot manage settings")
    paused = answer(mastodon, say(cctx, mastodon, "103", "pause"))
    assert "Paused:" in paused["text"]  # answered although paused: it answers a moderator
    say(cctx, mastodon, ANNA, "announce now", reply_to=held_dm["id"])
    assert [status for status in mastodon.statuses if status["visibility"] == "public"] == []  # held
    status = answer(mastodon, say(cctx, mastodon, ANNA, "status"))
    assert "Paused since" in status["text"] and "No open surge." in status["text"]
    resumed = answer(mastodon, say(cctx, mastodon, ANNA, "resume"))
    assert "Resumed: 1 held post(s) being sent." in resumed["text"]
    run_jobs(cctx.redis)
    [public] = [status for status in mastodon.statuses if status["visibility"] == "public"]
    assert "we have limited spam.example" in public["text"]


def test_cancel_and_correction_in_the_announcement_thread(cctx: Context, mastodon: MastodonDouble) -> None:
    mastodon.add_block("calm.example")
    poll_blocks(cctx)
    say(cctx, mastodon, ANNA, "lift calm.example")
    poll_blocks(cctx)
    run_jobs(cctx.redis)
    held_dm = next(status for status in mastodon.direct_messages() if "📣" in status["text"])
    assert "“correction” to word the lift as the correction of a mistake" in held_dm["text"]
    reply = answer(mastodon, say(cctx, mastodon, ANNA, "correction", reply_to=held_dm["id"]))
    assert "calm.example's lift will be announced as the correction of a mistake." in reply["text"]
    [(_batch, _due, [item])] = announcements.pending(cctx.redis)
    assert item.correction
    refused_cancel = answer(mastodon, say(cctx, mastodon, BEN, "cancel", reply_to=held_dm["id"]))
    assert refused_cancel["text"].endswith("Not done: your role cannot manage announcements")
    say(cctx, mastodon, "103", "cancel", reply_to=held_dm["id"])
    [(_batch, _due, [item])] = announcements.pending(cctx.redis)
    assert item.cancelled


def test_old_mentions_are_not_commands_and_lost_jobs_come_back(
    make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    mastodon.say(ANNA, "@tocsin suspend old.example")  # written before Tocsin read commands
    ctx = make_context()
    assert mentions.poll(ctx) == 0  # the first poll only sets the cursor
    fresh = mastodon.say(ANNA, "@tocsin help")
    assert mentions.poll(ctx) == 1
    ctx.redis.delete(*ctx.redis.keys("rq:*"))  # the queued job is lost (a killed worker, say)
    assert mentions.requeue_lost(ctx, datetime.now(UTC).timestamp()) == 0  # not yet: it may still run
    assert mentions.requeue_lost(ctx, datetime.now(UTC).timestamp() + mentions.LOST_AFTER + 1) == 1
    run_jobs(ctx.redis)
    answer(mastodon, fresh)
    assert mastodon.domain_blocks == [] and ctx.redis.hlen(mentions.WAITING) == 0


def test_audit_log_cli_and_memory(cctx: Context, mastodon: MastodonDouble, tocsin: CliRunner) -> None:
    for _ in range(3):
        say(cctx, mastodon, ANNA, "status")
    say(cctx, mastodon, ANNA, "limit spam.example")
    runner = tocsin
    text = run(runner, "audit").stdout
    assert text.count("@mod_anna (101): 'status' -> help") == 3
    assert "'limit spam.example' -> done: Done: spam.example limited." in text
    lines = run(runner, "audit", "--json").stdout.splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["help", "help", "help", "done"]
    assert run(runner, "audit", "--since", "2099-01-01").stdout == ""
    exported = run(runner, "audit", "export").stdout.splitlines()
    assert exported == lines
    # Memory per entry, as the README and bot/core/audit.py state it (about 350 bytes).
    before = cctx.redis.memory_usage(audit.STREAM) or 0
    entry = entries(cctx)[-1]
    for n in range(200):
        audit.record(cctx.redis, audit.Entry(**{**entry.__dict__, "status_id": f"m{n}"}))
    per_entry = ((cctx.redis.memory_usage(audit.STREAM, samples=0) or 0) - before) / 200
    assert 100 < per_entry < 600, per_entry


@pytest.mark.slow  # real worker processes
def test_approve_through_real_workers_races_and_duplicates_make_one_block(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Any]
) -> None:
    """Webhooks in, a surge DM out, two moderators answer `approve` at once (one mention delivered
    twice), two worker processes polling every second: one block, one answer each, two audit entries."""
    mastodon.staff = [*mastodon.staff, ("103", "mod_cleo")]
    mastodon.roles["103"] = "admin"
    mastodon.max_characters = 1000
    stack = stack_factory(redis_url, mastodon, workers=2, TOCSIN_COMMAND_POLL_SECONDS="1")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.get(mentions.CURSOR) is not None, what="the first mention poll")
    with httpx2.Client(timeout=10) as client:
        codes = {stack.deliver(client, event) for event in burst(NOW - timedelta(hours=1), "spam.example", 60, 1)}
    assert codes == {202}
    wait_for(lambda: len(mastodon.direct_messages()) >= 1, what="the surge DM")
    [dm] = mastodon.direct_messages()
    first = mastodon.say(ANNA, "@tocsin approve 1", in_reply_to_id=dm["id"])
    second = mastodon.say("103", "@tocsin approve 1", in_reply_to_id=dm["id"])
    mastodon.notify(first)  # Mastodon delivering the same mention twice
    wait_for(lambda: all(mastodon.replies_to(status["id"]) for status in (first, second)), what="both answers")
    wait_for(lambda: quiescent(connection), what="the workers to finish")  # a second block or answer would be out
    assert [block["domain"] for block in mastodon.domain_blocks] == ["spam.example"]
    texts = sorted(answer(mastodon, status)["text"].split("\n", 1)[1] for status in (first, second))
    assert texts[0].startswith("Done: spam.example limited.")
    assert texts[1].startswith("Not done: already carried out (approved by @mod_")
    assert sorted(entry.outcome for entry in audit.read(connection)) == ["done", "refused"]


def test_the_notification_stream_queues_commands_as_they_come(
    cctx: Context, mastodon: MastodonDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tocsin listen`'s loop in a thread: a mention is queued from the stream (no poll), answered once;
    the stream going away is survived (reconnect), and a stop ends it."""
    monkeypatch.setattr(mentions, "RECONNECT_DELAYS", (0.05, 0.1))  # the backoff's steps, not its 1 s and 2 s
    mastodon.heartbeat = 0.1  # the listener notices a stop at the next heartbeat
    stopping = threading.Event()
    listener = threading.Thread(target=mentions.listen, args=(cctx, stopping.is_set), daemon=True)
    listener.start()
    wait_for(lambda: cctx.redis.exists(mentions.STREAMING) == 1, what="the stream's first heartbeat")
    first = mastodon.say(ANNA, "@tocsin status")
    wait_for(lambda: cctx.redis.hexists(mentions.WAITING, first["id"]), what="the mention from the stream")
    run_jobs(cctx.redis)
    assert "Not paused." in answer(mastodon, first)["text"]
    stream = ("GET", "/api/v1/streaming/user/notification")
    connects = mastodon.requests.count(stream)
    mastodon.streaming = False  # the streaming server goes away: the stream ends, a reconnect gets 503
    wait_for(lambda: mastodon.requests.count(stream) >= connects + 1, what="a reconnect refused")
    cctx.redis.delete(mentions.STREAMING)
    mastodon.streaming = True
    wait_for(lambda: cctx.redis.exists(mentions.STREAMING) == 1, what="the stream again")
    assert mastodon.requests.count(stream) >= connects + 2
    second = mastodon.say(ANNA, "@tocsin help")
    wait_for(lambda: cctx.redis.hexists(mentions.WAITING, second["id"]), what="a mention after reconnecting")
    mentions.poll(cctx)  # the poll sees both again: nothing more happens
    run_jobs(cctx.redis)
    assert len(mastodon.replies_to(first["id"])) == 1 and len(mastodon.replies_to(second["id"])) == 1
    stopping.set()
    listener.join(10)
    assert not listener.is_alive()


@pytest.mark.slow  # a real worker process
def test_tocsin_listen_answers_without_waiting_for_a_poll(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Any]
) -> None:
    """Real `tocsin listen` and worker processes, polling only hourly: the stream alone brings the command."""
    stack = stack_factory(redis_url, mastodon, workers=1, TOCSIN_COMMAND_POLL_SECONDS="3600")
    stack.start_process("listen")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.exists(mentions.STREAMING) == 1, what="the listener's stream")
    status = mastodon.say(ANNA, "@tocsin status")
    wait_for(lambda: bool(mastodon.replies_to(status["id"])), what="the answer")
    assert "Not paused." in answer(mastodon, status)["text"]
    assert connection.get(mentions.CURSOR) is None  # no poll has run


def test_a_flagged_account_that_is_staff_or_the_bot_is_never_suspended(cctx: Context, mastodon: MastodonDouble) -> None:
    """A spam wave's flagged accounts are young local accounts; a new moderator's (or a young bot's)
    posts can be made to look like the wave's (the same link as five young accounts): approving the
    suspension leaves staff and the bot alone — the bot's role may outrank roles the approving moderator
    could not suspend in the admin interface."""
    mastodon.accounts = [{"id": "500", "username": "bot500", "domain": None, "suspended": False, "role": None}]
    suspend = tuple(
        Action("suspend_account", account_id, f"suspend {name} (#{account_id})")
        for account_id, name in (("500", "bot500"), ("103", "mod_cleo"), (mastodon.bot_id, "tocsin"))
    )
    dm = proposal_dm(cctx, mastodon, ProposalItem("suspend these 3 accounts", suspend))
    done = answer(mastodon, say(cctx, mastodon, BEN, "approve", reply_to=dm))
    assert mastodon.account_actions == [("500", "suspend")]
    assert "mod_cleo (#103): staff or Tocsin's own, left alone" in done["text"]
    assert f"tocsin (#{mastodon.bot_id}): staff or Tocsin's own, left alone" in done["text"]
