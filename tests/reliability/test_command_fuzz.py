"""Fuzzing the command channel: whatever anyone writes to the bot, Tocsin acts only for a local account
that is staff now, only within what that account's role permits, and only on what the words name.

Each case is a DM from a random sender — a member, a remote account with a moderator's username, a staff
account with a random subset of the permissions that matter, a suspended or disabled staff account —
with random text (commands, numbers and ranges, domains, mentions, HTML, every Unicode category, invisible
characters), in reply to a proposal DM or not, then the `yes` to any question it was asked. Through the
Mastodon double over HTTP and a real Redis, as a worker runs it. The invariants:

- no admin write outside what the sender's role permits (Mastodon's own rule per endpoint);
- no admin write on anything the words do not name (a domain written in the text, a proposal item
  whose number is written — or every item for a bare `approve`);
- never a block of this instance or of a public suffix;
- at most one answer per command, and none to a sender that is not staff now.

Short form: 60 cases; `--long`: 5,000 (the figure in the closing note of the issue comes from there).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from bot.core import defaults
from bot.dm import mentions
from bot.mastodon.actions import ROLE_FLAGS, Action, Message, Proposal, ProposalItem
from bot.mastodon.context import Context
from tests.helpers import run_jobs
from tests.mastodon_double import DOMAIN, MENTION_RE, MastodonDouble
from tests.reliability.test_fuzz import run_cases

pytestmark = pytest.mark.slow  # long fuzzing (the fast suite has tests/test_commands.py)

DORA = "104"  # the fuzzed staff account: its role's permissions are drawn for each case
FLAGS = ["administrator", "manage_reports", "manage_federation", "manage_blocks", "manage_users", "manage_settings"]
ITEMS = (
    ProposalItem("limit a.example", (Action("domain_block", "a.example", "limit a.example", severity="silence"),)),
    ProposalItem("suspend bot500", (Action("suspend_account", "500", "suspend bot500"),)),
    ProposalItem("block sign-ups from spam.example", (Action("email_domain_block", "spam.example", "block"),)),
)
SENDERS = ["member", "remote namesake", "staff", "staff", "staff", "suspended staff", "disabled staff"]

WORDS = st.sampled_from(
    [
        "approve", "APPROVE", "dismiss", "limit", "suspend", "lift", "undo", "yes", "pause", "resume", "status",
        "help", "cancel", "announce now", "correction", "aprove", "&#108;ift", "ap\u200bprove", "\u202eevorppa",
    ]
)  # fmt: skip
ARGS = st.sampled_from(
    [
        "", "1", "2", "3", "1,3", "2-3", "4-2", "2-0", "0", "1-999999999", "9" * 5000, "²", "1 all", ",", "-1",
        "b.example", "https://B.Example/about", "@x@b.example", "co.uk", "social", DOMAIN, "example.org",
        "a.example Spam wave @victim@evil.example", "b.example https://evil.example/@x", "xn--bcher-kva.example",
        "a.example\u200b", "<b>c.example</b>", "&amp;c.example", "½@eve@evil.example",
    ]
)  # fmt: skip
NOISE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Zl", "Zp", "Cc"]), max_size=12)


@st.composite
def dm_words(draw: st.DrawFn) -> tuple[str, str, str]:
    """(a quote or mention before the command, the command's verb, its arguments)."""
    prefix = draw(st.sampled_from(["", "@victim@evil.example ", "> approve\n", "@mod_anna "]))
    args = " ".join(part for part in (draw(ARGS), draw(NOISE) if draw(st.booleans()) else "") if part)
    return prefix, draw(WORDS), args


@st.composite
def sender(draw: st.DrawFn) -> tuple[str, int]:
    kind = draw(st.sampled_from(SENDERS))
    permissions = 0
    for flag in FLAGS:
        if draw(st.booleans()):
            permissions |= ROLE_FLAGS[flag]
    return kind, permissions


def allowed(permissions: int, flag: str) -> bool:
    return bool(permissions & (ROLE_FLAGS["administrator"] | ROLE_FLAGS[flag]))


def named_items(verb: str, args: str) -> set[int] | None:
    """The proposal items the words name: every number written, every number of a range written (None:
    all, for a bare `approve`); nothing for any other verb."""
    if "".join(c for c in verb if unicodedata.category(c) != "Cf").lower() != "approve":
        return set()
    if not args.strip():
        return None
    named: set[int] = set()
    for low, high in re.findall(r"(\d{1,6})(?:-(\d{1,6}))?", args):
        named.update(range(int(low), min(int(high or low), len(ITEMS)) + 1))
    return named


@pytest.fixture
def fuzz_context(make_context: Callable[..., Context], mastodon: MastodonDouble) -> Context:
    mastodon.rate_limit = 10**9  # thousands of commands: Mastodon's limit is tested elsewhere
    mastodon.staff = [*mastodon.staff, (DORA, "mod_dora")]
    mastodon.roles[DORA] = "moderator"
    return make_context()


def test_no_sender_and_no_words_make_tocsin_act_beyond_its_role(
    fuzz_context: Context, mastodon: MastodonDouble, long_form: bool
) -> None:
    ctx = fuzz_context

    def case(who: tuple[str, int], words: tuple[str, str, str], in_thread: bool, answer_yes: bool) -> None:
        kind, permissions = who
        prefix, verb, args = words
        text = f"{prefix}{verb} {args}".strip()
        _reset(ctx, mastodon)
        mastodon.accounts = [{"id": "500", "username": "bot500", "domain": None, "suspended": False, "role": None}]
        mastodon.permissions[DORA] = permissions
        if kind in ("suspended staff", "disabled staff"):
            mastodon.staff_flags[DORA] = {kind.split()[0]: True}
        assert mentions.poll(ctx) == 0  # the cursor
        key = f"fuzz:{len(mastodon.statuses)}"  # a new DM each case (Mastodon keeps idempotency keys an hour)
        [dm] = ctx.outbox.propose(key, Message("🔔 To decide.", Proposal(items=ITEMS)), handles="fuzz:handled")
        writes_before = len(mastodon.requests)
        statuses = [_say(ctx, mastodon, kind, "@tocsin " + text, dm if in_thread else None)]
        replies = mastodon.replies_to(statuses[0]["id"])
        if answer_yes and replies and "Reply yes" in replies[0]["text"]:
            statuses.append(_say(ctx, mastodon, kind, "@tocsin yes", replies[0]["id"]))
        staff_now = kind == "staff" and permissions & _STAFF_BITS
        for status in statuses:
            answers = mastodon.replies_to(status["id"])
            assert len(answers) <= 1, answers
            if not staff_now:
                assert answers == [], (kind, text, answers)
        writes = [(method, path) for method, path in mastodon.requests[writes_before:] if method != "GET"]
        writes = [write for write in writes if write[1] not in ("/api/v1/statuses", "/api/v1/admin/measures")]
        if not staff_now:
            assert writes == [], (kind, text, writes)
        for method, path in writes:
            flag = (
                "manage_federation" if "/domain_blocks" in path
                else "manage_blocks" if "/email_domain_blocks" in path
                else "manage_users" if "/admin/accounts/" in path
                else None
            )  # fmt: skip
            assert flag is not None, path
            assert allowed(permissions, flag), (text, permissions, method, path)
        words_written = MENTION_RE.sub("", args).lower()  # a mention is an address, not a word of the command
        _check_targets(mastodon, named_items(verb, words_written) if in_thread else set(), words_written)
        if ctx.redis.exists(defaults.PAUSED):
            assert allowed(permissions, "manage_settings"), text

    ran = run_cases(
        5000 if long_form else 60,
        case,
        sender(),
        dm_words(),
        st.booleans(),
        st.booleans(),
    )
    assert ran == (5000 if long_form else 60)


_STAFF_BITS = sum(ROLE_FLAGS[flag] for flag in FLAGS if flag != "manage_settings")


def _reset(ctx: Context, mastodon: MastodonDouble) -> None:
    """A fresh instance state for the next case; statuses stay (their ids keep growing, as Mastodon's)."""
    ctx.redis.flushdb()
    mastodon.domain_blocks.clear()
    mastodon.email_domain_blocks.clear()
    mastodon.account_actions.clear()
    mastodon.messages_to_accounts.clear()
    mastodon.requests.clear()
    mastodon.staff_flags.clear()


def _say(ctx: Context, mastodon: MastodonDouble, kind: str, text: str, reply_to: str | None) -> dict[str, Any]:
    if kind == "member":
        status = mastodon.say("555", text, in_reply_to_id=reply_to)
    elif kind == "remote namesake":
        status = mastodon.say("556", text, in_reply_to_id=reply_to, username="mod_dora", domain="evil.example")
    else:
        status = mastodon.say(DORA, text, in_reply_to_id=reply_to)
    mentions.poll(ctx)
    run_jobs(ctx.redis)
    return status


def _check_targets(mastodon: MastodonDouble, items: set[int] | None, args: str) -> None:
    """Every target touched is named by the words: a domain written in them, or an item whose number is."""
    touched = set()
    for block in mastodon.domain_blocks:
        assert block["domain"] not in (DOMAIN, "example.org", "co.uk", "social"), args
        if block["domain"] not in args:
            assert block["domain"] == "a.example", (block, args)
            touched.add(1)
    if mastodon.account_actions:
        assert {account for account, _action in mastodon.account_actions} == {"500"}, args
        touched.add(2)
    if mastodon.email_domain_blocks:
        assert [block["domain"] for block in mastodon.email_domain_blocks] == ["spam.example"], args
        touched.add(3)
    assert items is None or touched <= items, (args, touched, items)
