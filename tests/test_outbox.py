from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import defaults
from bot.core.privacy import ZERO_WIDTH_SPACE, neutralize
from bot.mastodon.context import Context
from bot.mastodon.outbox import Post, read_log, split_post, status_length
from bot.ops.cli import main
from bot.pipeline.queue import enqueue_once, queue
from bot.pipeline.surges import Alert, send_alert
from tests.helpers import run, run_jobs, run_until
from tests.mastodon_double import MastodonDouble, mentioned_accts


def test_short_message_is_one_status_starting_with_its_recipients() -> None:
    assert split_post("Hello", ("anna", "ben@mods.example"), 500) == ["@anna @ben@mods.example\nHello"]


def test_long_message_is_split_at_paragraphs_and_every_part_fits_and_is_addressed() -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 40 for n in range(6)]
    parts = split_post("\n\n".join(paragraphs), ("anna",), 500)
    assert len(parts) > 1
    for number, part in enumerate(parts, start=1):
        assert part.startswith("@anna\n")
        assert part.endswith(f"({number}/{len(parts)})")
        assert status_length(part) <= 500
    joined = " ".join(part.split("\n", 1)[1].rsplit(" (", 1)[0] for part in parts)
    assert joined.split() == "\n\n".join(paragraphs).split()


def test_a_thread_never_breaks_inside_a_word_or_a_command_line() -> None:
    text = "Intro line.\n\n" + "\n".join(
        f"Review and apply: tocsin scan --advisory CVE-2023-{n:05d} --csv b.csv" for n in range(20)
    )
    parts = split_post(text, ("mod_anna",), 500)
    bodies = [part.split("\n", 1)[1].rsplit(" (", 1)[0] for part in parts]
    for body in bodies:
        assert all(line.startswith(("Intro", "Review and apply: tocsin")) for line in body.splitlines() if line)
        assert body.endswith(("Intro line.", "b.csv"))


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé🛡→", min_size=1, max_size=30) | st.sampled_from(
    ["tocsin", "scan", "--advisory", "CVE-2025-30741", "https://example.org/a/very/long/path/indeed", "x" * 600]
)
separators = st.sampled_from([" ", " ", " ", "\n", "\n\n"])


@pytest.mark.slow  # long fuzzing (the splitting examples above stay fast)
@given(
    st.lists(st.tuples(words, separators), min_size=1, max_size=400),
    st.sampled_from([(), ("mod_anna",), ("mod_anna", "mod_ben@mods.example")]),
    st.sampled_from([300, 500, 1000]),
)
@settings(max_examples=150, deadline=None)
def test_split_property_parts_fit_end_at_a_break_and_rejoin(
    pieces: list[tuple[str, str]], mentions: tuple[str, ...], max_characters: int
) -> None:
    text = "".join(word + separator for word, separator in pieces).strip()
    parts = split_post(text, mentions, max_characters)
    prefix = " ".join(f"@{acct}" for acct in mentions) + ("\n" if mentions else "")
    room = max_characters - status_length(prefix) - 8
    position = 0
    for number, part in enumerate(parts, start=1):
        assert status_length(part) <= max_characters
        assert part.startswith(prefix)
        body = part[len(prefix) :]
        if len(parts) > 1:
            assert body.endswith(f" ({number}/{len(parts)})")
            body = body.rsplit(" (", 1)[0]
        found = text.index(body, position)
        assert text[position:found].isspace() or found == position  # the parts rejoin to the text
        position = found + len(body)
        if position < len(text) and not text[position].isspace():  # ends inside a word: only an overlong one
            start = max(text.rfind(" ", 0, position), text.rfind("\n", 0, position)) + 1
            end = min((i for i in (text.find(" ", position), text.find("\n", position)) if i >= 0), default=len(text))
            assert status_length(text[start:end]) > room
    assert position == len(text)


def test_a_single_overlong_word_is_cut() -> None:
    parts = split_post("x" * 1200, (), 500)
    assert all(status_length(part) <= 500 for part in parts)
    assert "".join(part.rsplit(" (", 1)[0] for part in parts) == "x" * 1200


@pytest.mark.parametrize(
    ("text", "must_not_mention"),
    [
        ("@victim@example.org please look", "victim@example.org"),
        ("ping @victim", "victim"),
        ("(@Victim_1.x@example.org)", "victim_1.x@example.org"),
        ("line\n@victim@example.org", "victim@example.org"),
        ("½@eve@evil.example", "eve@evil.example"),  # Python's \w takes "½"; Ruby's [[:word:]] does not
    ],
)
def test_neutralized_text_mentions_no_one(text: str, must_not_mention: str) -> None:
    assert must_not_mention in mentioned_accts(text)  # it would, unneutralized
    assert mentioned_accts(neutralize(text)) == []


# Characters of every Unicode category that can precede an "@" in a report comment. Mastodon's
# MENTION_RE reads "<c>@eve@evil.example" as a mention unless <c> is Ruby's [[:word:]] (L*, M*, Nd, Pc)
# — Python's \w differs on No, Nl and M* — and whatever <c> is, the neutralized text mentions no one.
PRECEDING = [
    "A", "é", "ǅ", "ʰ", "字", "\u0301", "\u0903", "\u20dd", "٣", "7", "Ⅻ", "½", "²", "①", "‿", "_", "-", "(", "!",
    "+", "$", "^", "©", "=", "/", " ", "\u200d", "\u202e", "\t", "\ue000",
]  # fmt: skip
RUBY_WORD_CATEGORIES = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Pc"}


@pytest.mark.parametrize("character", PRECEDING, ids=lambda c: f"U+{ord(c):04X}")
def test_no_character_before_an_at_sign_lets_a_mention_through(character: str) -> None:
    text = f"{character}@eve@evil.example"
    shielded = unicodedata.category(character) in RUBY_WORD_CATEGORIES or character in "=/"
    assert (mentioned_accts(text) == []) is shielded  # Mastodon's own reading of it
    assert mentioned_accts(neutralize(text)) == []
    assert neutralize(text).replace(ZERO_WIDTH_SPACE, "") == " ".join(text.replace("\t", " ").split())


HOSTILE_TEXT = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
        st.sampled_from(["@eve", "@Eve@evil.example", "½@x", "@@x", "=@x", "https://x.example/@y", "\u200b@z", "@"]),
        st.characters(codec="utf-8").map(lambda c: c + "@eve@evil.example"),
    ),
    max_size=12,
).map("".join)
"""Text as an attacker writes it: random Unicode with at-signs after every kind of character."""


@settings(max_examples=500, deadline=None)
@given(HOSTILE_TEXT, st.integers(min_value=1, max_value=300))
def test_neutralized_text_never_mentions_anyone(text: str, limit: int) -> None:
    assert mentioned_accts(neutralize(text, limit=limit)) == []
    assert mentioned_accts(neutralize("x" + text + "@eve")) == []


ACCTS = st.from_regex(r"\A[a-z0-9_]{1,8}(@[a-z]{1,6}\.example)?\Z")


@pytest.mark.slow  # long fuzzing of hostile text
@settings(max_examples=300, deadline=None)
@given(
    st.lists(HOSTILE_TEXT, max_size=8).map("\n".join),
    st.lists(ACCTS, max_size=3, unique=True),
    HOSTILE_TEXT,
)
def test_a_post_mentions_exactly_its_recipients(text: str, recipients: list[str], spoiler: str) -> None:
    """Whatever a template, a label or a quoted word puts in the text: only the addressed accounts."""
    for part in split_post(text, tuple(recipients), 500, spoiler or None):
        assert mentioned_accts(part) == [acct.lower() for acct in recipients]


@pytest.mark.parametrize("acct", ["anna @victim@evil.example", "anna\n@victim", "", "anna@", "@anna", "ann a"])
def test_a_post_is_not_addressed_to_what_is_no_acct(acct: str) -> None:
    with pytest.raises(ValueError, match="not an account"):
        split_post("Hello", ("mod_ben", acct), 500)


def test_neutralized_text_keeps_emails_and_profile_urls_readable_and_disarms_links() -> None:
    text = neutralize("mail dave@example.com, see https://evil.example/@erin/1 and http://x.example ½xmpp:a@b")
    assert "dave@\u200bexample.com" in text
    assert "https[:]//evil.example/@\u200berin/1" in text
    assert "http[:]//x.example" in text and "½xmpp[:]a@\u200bb" in text
    assert status_length("https[:]//evil.example/very/long/path") == len("https[:]//evil.example/very/long/path")


def test_neutralize_cuts_long_text_and_control_characters() -> None:
    assert neutralize("a\x00b\u0007c   d\n\ne", limit=100) == "a b c d e"
    assert neutralize("z" * 300, limit=20) == "z" * 19 + "…"


def send_test_dm(key: str, text: str) -> list[str]:
    """RQ job used by these tests: one DM through the real outbox."""
    from bot.mastodon.context import get_context

    ctx = get_context()
    return ctx.outbox.send(Post(key=key, text=text, mentions=tuple(ctx.mastodon.moderators())))


def test_each_message_key_is_posted_once(ctx: Context, mastodon: MastodonDouble) -> None:
    first = ctx.outbox.send(Post(key="k1", text="hello", mentions=("mod_anna",)))
    again = ctx.outbox.send(Post(key="k1", text="hello", mentions=("mod_anna",)))
    assert first == again
    assert len(mastodon.statuses) == 1


def test_a_half_posted_thread_is_resumed_not_restarted(ctx: Context, mastodon: MastodonDouble) -> None:
    text = "\n\n".join("paragraph " + "word " * 60 for _ in range(4))
    parts = split_post(text, ("mod_anna",), 500)
    assert len(parts) >= 3
    # The second part fails with a 500 after the first was posted.
    original = ctx.mastodon.post_status
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            mastodon.fail_next_posts.append(500)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    ctx.mastodon.post_status = flaky  # type: ignore[method-assign]
    with pytest.raises(Exception, match="Mastodon API returned error"):
        ctx.outbox.send(Post(key="thread", text=text, mentions=("mod_anna",)))
    assert len(mastodon.statuses) == 1
    ids = ctx.outbox.send(Post(key="thread", text=text, mentions=("mod_anna",)))
    assert len(ids) == len(parts) == len(mastodon.statuses)
    # Each part replies to the one before it.
    assert [status["in_reply_to_id"] for status in mastodon.statuses] == [None, *ids[:-1]]


RETRIED = [pytest.param(failures, marks=pytest.mark.slow) for failures in ([500], [503, 429, 502])]
"""Beside the 429 (each failure waits out a one-second retry): in the full suite."""


@pytest.mark.parametrize("failures", [[429], *RETRIED])
def test_rate_limits_and_server_errors_are_retried_by_rq_and_posted_once(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble, failures: list[int]
) -> None:
    mastodon.fail_next_posts = list(failures)
    enqueue_once(
        connection,
        defaults.QUEUE_URGENT,
        send_test_dm,
        "retry-key",
        "Surge!",
        job_id="dm-retry",
        retry_delays=[1, 1, 1],
    )
    run_until(connection, lambda: bool(mastodon.statuses))
    run_jobs(connection)
    assert len(mastodon.statuses) == 1
    assert mastodon.recipients(mastodon.statuses[0]) == ["mod_anna", "mod_ben"]
    assert queue(defaults.QUEUE_URGENT, connection).failed_job_registry.count == 0


@pytest.mark.slow  # waits out every one-second retry
def test_exhausted_retries_leave_the_job_visible_in_the_failed_registry(
    ctx: Context, connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    mastodon.fail_next_posts = [500] * 10
    enqueue_once(
        connection,
        defaults.QUEUE_URGENT,
        send_test_dm,
        "doomed",
        "Surge!",
        job_id="dm-doomed",
        retry_delays=[1],
    )
    failed = queue(defaults.QUEUE_URGENT, connection).failed_job_registry
    run_until(connection, lambda: failed.count > 0)
    assert mastodon.statuses == []
    assert failed.get_job_ids() == ["dm-doomed"]
    assert len([r for r in mastodon.requests if r == ("POST", "/api/v1/statuses")]) == 2  # first try + 1 retry


def test_dry_run_records_in_the_outbox_and_sends_nothing(
    make_context: Callable[..., Context], connection: redis.Redis, mastodon: MastodonDouble
) -> None:
    ctx = make_context(access_token=None)  # no token: dry-run
    ids = ctx.outbox.send(Post(key="dry", text="would alert", mentions=("mod_anna",)))
    assert ids[0].startswith("dry-run-")
    assert mastodon.statuses == []
    [entry] = read_log(connection)
    assert entry["mode"] == "dry-run" and entry["text"] == "@mod_anna\nwould alert"


def test_panic_stop_holds_posts(ctx: Context, connection: redis.Redis, mastodon: MastodonDouble) -> None:
    connection.set(defaults.PAUSED, "1")
    ctx.outbox.send(Post(key="held", text="x", mentions=("mod_anna",)))
    assert mastodon.statuses == []
    assert read_log(connection)[0]["mode"] == "paused"


def test_direct_message_without_recipients_is_refused_when_live(ctx: Context, mastodon: MastodonDouble) -> None:
    with pytest.raises(RuntimeError, match="TOCSIN_MODERATORS"):
        ctx.outbox.send(Post(key="nobody", text="x"))
    assert mastodon.statuses == []


@pytest.mark.parametrize(("status", "reason"), [(403, "the token lacks a scope"), (422, "refused the request")])
def test_a_permanent_mastodon_error_fails_the_alert_at_once_with_its_reason(
    ctx: Context,
    connection: redis.Redis,
    mastodon: MastodonDouble,
    tocsin: CliRunner,
    status: int,
    reason: str,
) -> None:
    """A 403 (scope missing) or 422 is not retried for hours: one attempt, then `tocsin failed` and
    `tocsin doctor` say why."""
    mastodon.fail_next_posts = [status, status, status]
    alert = Alert(kind="open", bucket="spam.example", surge_id="1", alert_no=1, at=0.0, rate=1.0)
    ctx.redis.delete("tocsin:cache:staff")
    enqueue_once(
        connection,
        defaults.QUEUE_URGENT,
        send_alert,
        "report-surge",
        alert.to_json(),
        job_id="perm",
        retry_delays=[1, 1],
    )
    failed = queue(defaults.QUEUE_URGENT, connection).failed_job_registry
    run_until(connection, lambda: failed.count > 0)
    assert [r for r in mastodon.requests if r == ("POST", "/api/v1/statuses")] == [("POST", "/api/v1/statuses")]
    listing = run(tocsin, "failed").output
    assert f"PermanentError: Mastodon answered {status}" in listing and reason in listing
    doctor = tocsin.invoke(main, ["doctor"]).output
    assert f"BAD    perm: Mastodon answered {status}" in doctor
