"""Moderators act from the DM: a reply to Tocsin is read as a command, carried out, answered once, audited.

bot/dm/mentions.py reads the bot's mention notifications and queues one `handle_mention` job per status.
The job decides, in this order:

1. Whose words are these? Only a local account's own `direct` status counts: a boost, a remote account
   with the same username, a public mention, the quoted part of a reply are not a command.
   Anything else is counted (IGNORED) and never answered: the bot must not become an amplifier.
2. Is the sender staff *now*? Asked of the admin API at the time of the command (a read-only command may
   use a role read within the last minute). A non-moderator gets no answer; someone Tocsin writes to
   (TOCSIN_MODERATORS) who lost the role is told why nothing happens.
3. What is the command? The first line of the moderator's own text; a near miss gets "did you mean",
   anything else the help. In a thread, `approve`/`dismiss` act on that DM's proposal (bot/mastodon/actions.py)
   and the families' commands on their subjects (the incidents family's `cancel` on a held announcement).
4. Exactly one reply in the thread (keyed by the command's status id, sent even while paused), one
   audit entry (bot/core/audit.py), and the bookkeeping for `undo` and `yes`.

The outcome is stored before the reply: a job retried after a crash answers what it did the first time.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, replace
from html.parser import HTMLParser
from typing import Any

from mastodon import MastodonAPIError, MastodonNotFoundError
from publicsuffixlist import PublicSuffixList

from bot.core import audit, defaults, metrics
from bot.core.domains import NamesAnAccount, NotADomain, normalized_domain
from bot.core.privacy import neutralize
from bot.dm import held, wave
from bot.mastodon import actions, outbox
from bot.mastodon.actions import Action, Done, Refused, carry_out
from bot.mastodon.client import http_status
from bot.mastodon.context import Context, get_context
from bot.mastodon.outbox import Post
from bot.pipeline.events import parse_time
from bot.pipeline.families import registry
from bot.pipeline.queue import PERMANENT_STATUSES, fails_at_once_on_permanent_errors
from bot.pipeline.replies import Moderator, Outcome, ReplyCommand, Request, refused

log = logging.getLogger(__name__)

IGNORED = "tocsin:stats:commands-ignored"
"""Hash: why a mention was not a command (not staff, not direct, remote, boost) -> count. Nothing else
about those mentions is kept."""
HANDLED_PREFIX = "tocsin:commands:handled:"  # + status id: this command is done (its job is a no-op)
OUTCOME_PREFIX = "tocsin:commands:outcome:"  # + status id: what the command did (JSON), before replying
ROLE_PREFIX = "tocsin:commands:role:"  # + account id: permissions bitmask, or "-" (not local staff)
LAST_PREFIX = "tocsin:commands:last:"  # + account id: the moderator's last undoable action (JSON)
CONFIRM_PREFIX = "tocsin:commands:confirm:"  # + question status id: the command waiting for its `yes` (JSON)
ASKED_PREFIX = "tocsin:commands:asked:"  # + account id: sorted set, question status id -> when it lapses
ACTED_BY_PREFIX = "tocsin:commands:acted-by:"  # + target: who last acted on it through Tocsin (undo window)
KEEP_SECONDS = 30 * 86400


# --- The moderator's own words (pure) ------------------------------------------------------------


class _OwnText(HTMLParser):
    """A status's HTML as plain text without what is not the author's command: mentions (links with
    class "mention"), quotes (Mastodon's "quote-inline" paragraph of a quote post, blockquotes)."""

    SKIPPED = ("mention", "quote-inline")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []  # tags whose content is being skipped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._skipping or tag == "blockquote" or any(name in classes for name in self.SKIPPED):
            self._skipping.append(tag)
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        elif tag == "p" and not self._skipping:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self._skipping:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_LEADING_MENTIONS = re.compile(r"^(\s*@[\w.-]+(@[\w.-]+)?)+\s*")


def own_text(content: str) -> str:
    """The command of a status: its author's own lines of text, without mentions or quotes (lines
    starting with ">" are quotes too), read as one line ("approve" then "1,3" on the next line is
    `approve 1,3`, never a bare `approve`), as the moderator sees it: the HTML decoded once (a typed
    "&#108;ift" stays those characters) and without invisible format characters."""
    parser = _OwnText()
    parser.feed(content)
    parser.close()
    lines = []
    for raw in "".join(parser.parts).splitlines():
        visible = "".join(char for char in raw if unicodedata.category(char) != "Cf")  # zero-width, bidi, …
        line = _LEADING_MENTIONS.sub("", visible).strip()
        if line and not line.startswith(">"):
            lines.append(line)
    return " ".join(lines)


def screen(notification: dict[str, Any]) -> str | None:
    """Why this mention is no command at all (counted, never answered); None when it may be one."""
    status = notification.get("status") or {}
    sender = notification.get("account") or {}
    if notification.get("type") != "mention" or not status.get("id"):
        return "not a mention"
    if status.get("reblog"):
        return "boost"
    if "@" in str(sender.get("acct") or "@"):
        return "remote account"
    if status.get("visibility") != "direct":
        return "not direct"
    return None


def parse(text: str, verbs: list[str]) -> tuple[str, str]:
    """(verb, the rest): the longest known verb the text starts with (`announce now`), else its first word."""
    words = text.split()
    lowered = [word.lower().strip(".,!:") for word in words]
    for size in (2, 1):
        verb = " ".join(lowered[:size])
        if len(lowered) >= size and verb in verbs:
            return verb, " ".join(words[size:])
    return (lowered[0] if lowered else ""), " ".join(words[1:])


def near_miss(verb: str, verbs: list[str]) -> str | None:
    found = difflib.get_close_matches(verb, verbs, n=1, cutoff=0.7)
    return found[0] if found else None


BARE_APPROVE = "item 1"
"""What `approve` alone carries out, in every DM: the first item only, never all. A proposal lists its
least-reaching item first (a report surge: limit the server before suspending its accounts; a local wave:
silence before suspend), and its items are often alternatives, not a package: a moderator who wants more
names them (`approve 1,2`), and two moderators answering `approve` to the same DM do the same one thing.
The answer names what else the DM offers."""

MAX_ITEM_DIGITS = 4
"""An item number longer than this is no item number (a proposal lists a few items, never 10,000)."""


def item_numbers(args: str, count: int) -> list[int]:
    """`approve 1,3` / `1 3` / `2-4`; nothing: the first item only (BARE_APPROVE). Raises Refused, naming
    the problem, for anything else: a word, a number the list does not have, a backward range — never read
    as "all"."""
    numbers: set[int] = set()
    for part in re.split(r"[,\s]+", args.strip()):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not _is_number(low) or (dash and not _is_number(high)):
            raise Refused(f"“{neutralize(part, 20)}” is not an item number; write e.g. approve 1,3")
        first, last = int(low), int(high if dash else low)
        if first > last:
            raise Refused(f"“{part}” counts backwards; write e.g. approve {last}-{first}")
        if first < 1 or last > count:
            raise Refused(f"the proposal has items 1 to {count}")
        numbers.update(range(first, last + 1))  # at most `count` numbers: checked above
    if not numbers and args.strip():
        raise Refused("write the item numbers, e.g. approve 1,3 (approve alone is item 1)")
    return sorted(numbers) or [1]


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_ITEM_DIGITS


def server_domain(raw: str) -> str:
    """A server's domain as a moderator may write it (bot/core/domains.py: upper case, a URL of the server,
    IDN); Refused if it is none — or if it names an account (`user@host`, a profile or post URL): acting
    on a whole server takes its domain written alone."""
    try:
        return normalized_domain(raw)
    except NamesAnAccount:
        raise Refused(
            f"“{neutralize(raw, 80)}” names an account; to act on its server, write the domain alone"
        ) from None
    except NotADomain:
        raise Refused(f"“{neutralize(raw, 80)}” is not a server's domain") from None


# --- The commands every instance has -------------------------------------------------------------


def _summary(results: list[Done]) -> str:
    shown = [result.text for result in results[:5]]
    more = f"; and {len(results) - 5} more (tocsin audit)" if len(results) > 5 else ""
    return "; ".join(shown) + more


def _missing(moderator: Moderator, permissions: set[str]) -> str | None:
    """The refusal for a role without all of `permissions`, or None."""
    missing = sorted(flag for flag in permissions if not moderator.can(flag))
    return f"your role cannot {', '.join(flag.replace('_', ' ') for flag in missing)}" if missing else None


def _act(ctx: Context, request: Request, items: list[tuple[str, Action]], proposal_id: str | None) -> Outcome:
    """Carry out actions in order (each once, for a proposal); stop at the first refusal."""
    missing = _missing(request.moderator, {actions.KINDS[a.kind].permission for _n, a in items})
    if missing:
        return refused(missing)
    blocks = [action.target for _n, action in items if action.kind == "domain_block"]
    for domain in blocks:  # whatever proposed it: a command's words, a surge's bucket, a scan
        refuse_blocking(domain, ctx.mastodon.own_domains())
    destructive = [a for _n, a in items if actions.KINDS[a.kind].destructive(a)]
    if not request.confirmed and (destructive or len(items) > actions.CONFIRM_ABOVE):
        what = "; ".join(a.label for _n, a in items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
        return Outcome("asked", f"This will {what}. Reply yes to this message within 10 minutes to go ahead.")
    results: list[Done] = []
    stopped = ""
    by = f"@{request.moderator.handle}"
    for number, action in items:
        origin = f"proposal {proposal_id} item {number}" if proposal_id else f"command {request.command_id}"
        try:
            if action.kind in wave.BACKGROUND_KINDS:  # many calls: in the background, paced (bot/dm/wave.py)
                results.append(_in_background(ctx, request, action, proposal_id or request.command_id, number))
            else:
                results.append(carry_out(ctx.mastodon, action, f"{action.tag} {origin}, by {by} from a DM"))
        except Refused as reason:
            stopped = str(reason)
            break
        ctx.redis.set(ACTED_BY_PREFIX + action.target, by, ex=defaults.UNDO_SECONDS)
        if proposal_id:
            actions.mark_done(ctx.redis, proposal_id, number, by)
    if not results:
        return refused(stopped)
    text = f"Done: {_summary(results)}." + (f" Stopped there: {stopped}." if stopped else "")
    if len(items) == 1 and items[0][1].kind in ("domain_block", "domain_unblock"):
        text += _server_figures(ctx, items[0][1].target)
    undo = tuple(result.undo for result in results if result.undo)
    return Outcome(
        "done",
        text + (" Reply undo within 30 minutes to reverse it." if undo else ""),
        api="; ".join(result.api for result in results),
        undo=undo,
        everyone=True,
    )


def _in_background(ctx: Context, request: Request, action: Action, proposal_id: str, number: str) -> Done:
    if ctx.mastodon.client is None or ctx.settings.access_token is None:
        raise Refused("acting on the instance needs TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN")
    return wave.start(
        ctx,
        action,
        key=wave.job_key(proposal_id, number),
        command_id=request.command_id,
        subject=request.subject,
        by=f"@{request.moderator.handle}",
        command=request.text,
    )


def _server_figures(ctx: Context, domain: str) -> str:
    """What a block of this server cuts, and its admin page."""
    impact = ctx.mastodon.impact(domain)
    follows = (
        f" We follow {impact.local_follows:,} accounts there; {impact.remote_followers:,} there follow us."
        if impact is not None
        else ""
    )
    return f"{follows} {ctx.settings.instance_url}/admin/instances/{domain}"


def _proposal(ctx: Context, request: Request) -> tuple[str, actions.Proposal]:
    if not request.subject or not request.subject.startswith("proposal:"):
        raise Refused(f"{request.verb} acts on a proposal: reply to the DM that proposes it")
    proposal_id = request.subject.removeprefix("proposal:")
    found = actions.load_proposal(ctx.redis, proposal_id)
    if found is None:
        raise Refused("this proposal is more than 30 days old; act on the situation as it is now")
    return proposal_id, found


EVERY_CATEGORY = "all"
"""`approve 3 all`: resolve the wave's reports of every category, not only spam. Only after item numbers,
only for an item that resolves reports: a bare `approve all` names no item and is refused."""
EVERY_SUFFIX = "+all"  # a done mark's suffix ("3.1+all"): that item was approved for every category


def approve(ctx: Context, request: Request) -> Outcome:
    proposal_id, proposal = _proposal(ctx, request)
    if not proposal.items:
        return refused("this DM proposes nothing Tocsin can carry out; reply dismiss once it is handled")
    needs = [{actions.KINDS[a.kind].permission for a in item.actions} for item in proposal.items]
    if all(_missing(request.moderator, need) for need in needs):  # before reading a single number
        return refused(_missing(request.moderator, set().union(*needs)) or "")
    words = request.args.split()
    every = bool(words) and words[-1].lower() == EVERY_CATEGORY
    if every and len(words) == 1:
        raise Refused("write the item too, e.g. approve 3 all")
    numbers = item_numbers(" ".join(words[:-1]) if every else request.args, len(proposal.items))
    chosen = [
        (f"{number}.{index}", replace(action, every_category=True) if every else action)
        for number in numbers
        for index, action in enumerate(proposal.items[number - 1].actions, start=1)
    ]
    if every and not any(action.kind == "resolve_reports" for _n, action in chosen):
        raise Refused("“all” is for resolving reports of every category, e.g. approve 3 all")
    chosen = [(number + (EVERY_SUFFIX if action.every_category else ""), action) for number, action in chosen]
    # An item the moderator's role cannot do is refused on its own: the others are still carried out.
    lacking = sorted({number.split(".")[0] for number, a in chosen if _missing(request.moderator, _needs(a))}, key=int)
    chosen = [(number, a) for number, a in chosen if number.split(".")[0] not in lacking]
    if not chosen:
        return refused(_missing(request.moderator, set().union(*(needs[int(n) - 1] for n in lacking))) or "")
    lock = ctx.redis.lock(
        actions.PROPOSAL_PREFIX + proposal_id + ":lock",
        timeout=defaults.JOB_TIMEOUT,
        blocking_timeout=defaults.JOB_TIMEOUT,
    )
    with lock:  # one approval of a proposal at a time: a second one sees what the first did
        done = actions.done_actions(ctx.redis, proposal_id)
        todo = [(n, a) for n, a in chosen if n not in done and n + EVERY_SUFFIX not in done]
        if not todo:
            who = sorted({done.get(n) or done[n + EVERY_SUFFIX] for n, _a in chosen})
            return refused(f"already carried out (approved by {', '.join(who)})")
        outcome = _act(ctx, request, todo, proposal_id)
        carried = {number.removesuffix(EVERY_SUFFIX) for number in actions.done_actions(ctx.redis, proposal_id)}
        if len(carried) == len(proposal.actions):
            actions.close_proposal(ctx.redis, proposal_id, proposal, f"approved by @{request.moderator.handle}")
    if lacking:
        items = ", ".join(lacking)
        why = _missing(request.moderator, set().union(*(needs[int(n) - 1] for n in lacking)))
        outcome = replace(outcome, text=f"{outcome.text}\nNot done: item {items}: {why}.")
    if not request.args.strip() and len(proposal.items) > 1 and outcome.kind == "done":
        carried = {number.split(".")[0] for number in actions.done_actions(ctx.redis, proposal_id)}
        others = [str(n) for n in range(2, len(proposal.items) + 1) if str(n) not in carried]
        if others:
            more = f"\n“approve” alone is {BARE_APPROVE}; for the others: approve {','.join(others)}."
            outcome = replace(outcome, text=outcome.text + more)
    return outcome


def _needs(action: Action) -> set[str]:
    return {actions.KINDS[action.kind].permission}


def dismiss(ctx: Context, request: Request) -> Outcome:
    """Closing a proposal stops its escalations: it takes every permission acting on it would."""
    proposal_id, proposal = _proposal(ctx, request)
    missing = _missing(request.moderator, {actions.KINDS[a.kind].permission for a in proposal.actions})
    if missing:
        return refused(missing)
    actions.close_proposal(ctx.redis, proposal_id, proposal, f"dismissed by @{request.moderator.handle}")
    return Outcome("done", "Dismissed: nothing done, and no more escalation DMs about this.", everyone=True)


def _domain_action(kind: str, severity: str | None, word: str) -> Callable[[Context, Request], Outcome]:
    def run(ctx: Context, request: Request) -> Outcome:
        domain_text, _, reason = request.args.strip().partition(" ")
        if not domain_text:
            return refused(f"write {word} DOMAIN" + (" [public reason]" if severity else ""))
        domain = server_domain(domain_text)
        action = Action(kind, domain, f"{word} {domain}", severity=severity, public_comment=reason.strip() or None)
        return _act(ctx, request, [("1", action)], None)

    return run


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships (ICANN and private sections), read once


def refuse_blocking(domain: str, own: list[str]) -> None:
    """Raise Refused for a domain no moderator means to block: this instance under any of its names, a
    parent of one (a block covers subdomains), or a public suffix (`co.uk`, `social`, `github.io`)."""
    if domain in own:
        raise Refused(f"{domain} is this instance")
    for name in own:
        if name.endswith("." + domain):
            raise Refused(f"{domain} contains this instance ({name})")
    if _public_suffixes().is_public(domain):
        raise Refused(f"{domain} is a public suffix: a block would cover every server under it")


def undo(ctx: Context, request: Request) -> Outcome:
    """Reverse the sender's own last action, as far as nobody changed its targets since."""
    key = LAST_PREFIX + request.moderator.account_id
    raw = ctx.redis.get(key)
    if raw is None:
        return refused("you have no action of the last 30 minutes to undo")
    last = json.loads(raw)
    if not last["undo"]:
        return refused(f"your last action ({last['command']}) cannot be undone from here")
    missing = _missing(request.moderator, {actions.UNDO_PERMISSIONS[recipe["kind"]] for recipe in last["undo"]})
    if missing:
        return refused(missing)
    reversed_: list[str] = []
    kept: list[str] = []
    for recipe in reversed(last["undo"]):
        try:
            reversed_.append(actions.undo(ctx.mastodon, recipe))
        except actions.Changed as change:
            kept.append(_who_changed(ctx, change, request.moderator))
    ctx.redis.delete(key)
    if not reversed_:
        return refused(f"not undone: {'; '.join(kept)}")
    text = f"Undone ({last['command']}): {'; '.join(reversed_)}."
    if kept:
        text += f" Left as it is: {'; '.join(kept)}."
    return Outcome("done", text, api=last["command"], everyone=True)


def _who_changed(ctx: Context, change: actions.Changed, moderator: Moderator) -> str:
    """What changed a target since the sender's action: the last one through Tocsin, else not Tocsin."""
    raw: bytes | None = ctx.redis.get(ACTED_BY_PREFIX + change.target)  # type: ignore[assignment]
    by = raw.decode() if raw else f"@{moderator.handle}"
    return f"{change} (by {by} through Tocsin)" if by != f"@{moderator.handle}" else f"{change} (outside Tocsin)"


def pause(ctx: Context, request: Request) -> Outcome:
    outbox.pause(ctx.redis)
    return Outcome(
        "done", "Paused: Tocsin posts nothing (alerts and announcements are held) until resume.", everyone=True
    )


def resume(ctx: Context, request: Request) -> Outcome:
    was_paused, released = held.resume(ctx.redis, ctx.settings.retry_delays)
    if not was_paused and not released:
        return refused("Tocsin is not paused")
    return Outcome("done", f"Resumed: {released} held post(s) being sent.", everyone=True)


def status(ctx: Context, request: Request) -> Outcome:
    paused = ctx.redis.get(defaults.PAUSED)
    lines = [
        f"Paused since {time.strftime('%H:%M UTC', time.gmtime(float(paused)))}." if paused else "Not paused.",
    ]
    surges = [
        f"{detector.name} {bucket.decode() if isinstance(bucket, bytes) else bucket}"
        for family in registry().families
        for detector in family.detectors
        for bucket in ctx.redis.zrange(detector.open_key, 0, -1)
    ]
    lines.append(f"Open surges: {', '.join(surges[:8])}." if surges else "No open surge.")
    lines.append(f"Proposals waiting for a decision: {actions.open_proposals(ctx.redis)}.")
    for family in registry().families:
        if family.status is not None:
            lines.extend(family.status(ctx))
    return Outcome("help", "\n".join(lines))


def help_text() -> str:
    anywhere = [command.usage for command in all_commands() if command.usage and command.subject is None]
    in_threads: dict[str, list[str]] = {}  # the thread, as its family names it -> what works there
    for command in all_commands():
        if command.usage and command.subject is not None:
            in_threads.setdefault(command.thread or "a thread", []).append(command.usage)
    lines = ["Reply with: " + " · ".join(anywhere) + "."]
    lines += [f"In {thread}: {' · '.join(usages)}." for thread, usages in in_threads.items()]
    return "\n".join(lines)


def show_help(ctx: Context, request: Request) -> Outcome:
    return Outcome("help", help_text())


def confirm(ctx: Context, request: Request) -> Outcome:
    """`yes` in reply to a question carries out the command that question is about — only that one,
    and only for the moderator it was asked of."""
    raw = ctx.redis.get(CONFIRM_PREFIX + request.replying_to) if request.replying_to else None
    if raw is None:
        asked = open_questions(ctx, request.moderator.account_id)
        if not asked:
            return refused("nothing is waiting for a yes (a question lasts 10 minutes)")
        return refused(f"which? Reply yes to the question itself: {'; '.join(asked)}")
    waiting = json.loads(raw)
    if waiting["account_id"] != request.moderator.account_id:
        return refused(f"this question was asked of @{waiting['handle']}: only they can answer it")
    command = find(waiting["verb"], waiting["subject"])
    if command is None:
        return refused("the command waiting for a yes is no longer known")
    if command.permission is not None and not request.moderator.can(command.permission):
        return refused(_missing(request.moderator, {command.permission}) or "")
    outcome = command.run(
        ctx,
        Request(
            command_id=request.command_id,
            moderator=request.moderator,
            verb=waiting["verb"],
            args=waiting["args"],
            subject=waiting["subject"],
            text=waiting["text"],
            confirmed=True,
        ),
    )
    ctx.redis.delete(*(CONFIRM_PREFIX + part for part in waiting["parts"]))
    ctx.redis.zrem(ASKED_PREFIX + request.moderator.account_id, *waiting["parts"])
    return replace(outcome, command=waiting["text"])


def open_questions(ctx: Context, account_id: str) -> list[str]:
    """The commands waiting for this moderator's `yes`, as they wrote them."""
    key = ASKED_PREFIX + account_id
    ctx.redis.zremrangebyscore(key, "-inf", time.time())
    texts = []
    parts: list[bytes] = ctx.redis.zrange(key, 0, -1)  # type: ignore[assignment]
    for part in parts:
        raw = ctx.redis.get(CONFIRM_PREFIX + part.decode())
        if raw is not None:
            texts.append(f"“{json.loads(raw)['text'][:80]}”")
    return list(dict.fromkeys(texts))


BUILTIN = (
    ReplyCommand("approve", "approve [1,3] (this DM's proposal)", approve),
    ReplyCommand("dismiss", "dismiss", dismiss),
    ReplyCommand("limit", "limit DOMAIN [public reason]", _domain_action("domain_block", "silence", "limit")),
    ReplyCommand("suspend", "suspend DOMAIN [public reason]", _domain_action("domain_block", "suspend", "suspend")),
    ReplyCommand("lift", "lift DOMAIN", _domain_action("domain_unblock", None, "lift")),
    ReplyCommand("undo", "undo (your last action, 30 min)", undo),
    ReplyCommand("yes", "", confirm),
    ReplyCommand("status", "status", status, changes=False),
    ReplyCommand("pause", "pause", pause, permission="manage_settings"),
    ReplyCommand("resume", "resume", resume, permission="manage_settings"),
    ReplyCommand("help", "help", show_help, changes=False),
)
"""pause and resume hold or release everything Tocsin says, alerts included: an instance setting, so
they take Manage Settings (a role that moderates reports only cannot silence the alerts about it)."""


def all_commands() -> list[ReplyCommand]:
    return [*BUILTIN, *(command for family in registry().families for command in family.replies)]


def find(verb: str, subject: str | None) -> ReplyCommand | None:
    """The command for `verb` in a thread about `subject`: one made for that subject first."""
    matching = [command for command in all_commands() if command.verb == verb]
    for command in matching:
        if command.subject is not None and subject is not None and subject.startswith(command.subject):
            return command
    return next((command for command in matching if command.subject is None), matching[0] if matching else None)


# --- The job -------------------------------------------------------------------------------------


def staff_now(ctx: Context, account_id: str, fresh: bool) -> int | None:
    """The sender's role permissions if it is a local staff account now (not suspended, not disabled),
    else None. A "not staff" answer is always taken from the cache while it lasts: whatever a member
    sends, a few members cannot spend the API budget on look-ups."""
    key = ROLE_PREFIX + account_id
    cached = ctx.redis.get(key)
    if cached is None or (fresh and cached != NOT_STAFF):
        try:
            account = ctx.mastodon.admin_account(account_id)
        except MastodonNotFoundError:
            account = {}
        role = account.get("role") or {}
        active = bool(account) and account.get("domain") is None
        active = active and not account.get("suspended") and not account.get("disabled")
        permissions = int(role.get("permissions") or 0) if active else 0
        cached = str(permissions).encode() if actions.is_staff(permissions) else NOT_STAFF
        ctx.redis.set(key, cached, ex=defaults.STAFF_ROLE_TTL)
    return None if cached == NOT_STAFF else int(cached)


NOT_STAFF = b"-"


def count_ignored(ctx: Context, reason: str) -> str:
    ctx.redis.hincrby(IGNORED, reason, 1)
    return f"ignored: {reason}"


@fails_at_once_on_permanent_errors
def handle_mention(notification: dict[str, Any]) -> str:
    """RQ job (urgent queue): one mention of the bot, read as a command at most once."""
    ctx = get_context()
    status = notification.get("status") or {}
    status_id = str(status.get("id") or "")
    if not status_id or ctx.redis.exists(HANDLED_PREFIX + status_id):
        ctx.redis.hdel(defaults.MENTIONS_WAITING, status_id)  # read by bot/dm/mentions.py, done here
        return "handled already"
    result = _handle(ctx, notification, status, status_id)
    metrics.COMMANDS.labels(result.split(":")[0]).inc()
    ctx.redis.set(HANDLED_PREFIX + status_id, result, ex=KEEP_SECONDS)
    ctx.redis.hdel(defaults.MENTIONS_WAITING, status_id)
    return result


def _handle(ctx: Context, notification: dict[str, Any], status: dict[str, Any], status_id: str) -> str:
    reason = screen(notification)
    if reason is not None:
        return count_ignored(ctx, reason)
    sender = notification["account"]
    handle = str(sender.get("acct") or sender.get("username"))
    text = own_text(str(status.get("content") or ""))
    replying_to = str(status.get("in_reply_to_id") or "") or None
    subject_raw: bytes | None = ctx.redis.get(defaults.THREAD_PREFIX + (replying_to or ""))  # type: ignore[assignment]
    subject = subject_raw.decode() if subject_raw else None
    verbs = [command.verb for command in all_commands()]
    verb, args = parse(text, verbs)
    command = find(verb, subject)
    stored = ctx.redis.get(OUTCOME_PREFIX + status_id)
    if stored is not None:  # decided (and done) before a crash: answered as decided, whoever the sender is now
        moderator = Moderator(str(sender["id"]), handle, 0)
        outcome = Outcome(**{**json.loads(stored), "undo": tuple(json.loads(stored)["undo"])})
    else:
        permissions = staff_now(ctx, str(sender["id"]), fresh=command is None or command.changes)
        if permissions is None:
            if handle.lower() not in {acct.lower() for acct in ctx.settings.moderators}:
                return count_ignored(ctx, "not staff")
            moderator = Moderator(str(sender["id"]), handle, 0)
            outcome = refused("your account has no moderator role on this instance now")
        else:
            moderator = Moderator(str(sender["id"]), handle, permissions)
            if command is not None and command.changes:  # as it is now: deleted or edited since it was read?
                current = ctx.mastodon.status(status_id)
                if current is None:  # nobody to answer: the command is gone
                    _audit(ctx, moderator, text, Outcome("refused", "deleted before it was carried out"), status_id)
                    return "refused: deleted"
                status = current
            request = Request(status_id, moderator, verb, args, subject, text, replying_to=replying_to)
            outcome = _decide(ctx, status, command, verbs, request)
        _store(ctx, status_id, moderator, outcome, text, verb)
    _audit(ctx, moderator, text, outcome, status_id)  # before the answer: an answer that fails loses no record
    parts = _reply(ctx, status_id, moderator, outcome, subject)
    _ask(ctx, moderator, outcome, verb, args, subject, text, parts)
    return outcome.kind


def _audit(ctx: Context, moderator: Moderator, text: str, outcome: Outcome, status_id: str) -> None:
    audit.record(
        ctx.redis,
        audit.Entry(
            at=time.time(),
            account_id=moderator.account_id,
            handle=moderator.handle,
            command=text[:200],
            outcome=outcome.kind,
            did=outcome.text[:500],
            api=outcome.api[:500],
            status_id=status_id,
        ),
    )


def _decide(
    ctx: Context, status: dict[str, Any], command: ReplyCommand | None, verbs: list[str], request: Request
) -> Outcome:
    """What the command does: checked (written when, by whom with what role, where), then run."""
    if status.get("edited_at"):
        return refused("this command was edited after it was posted; send it again as a new reply")
    written = parse_time(status.get("created_at"))
    if written is not None and time.time() - written > defaults.COMMAND_MAX_AGE:
        return refused("this command is more than a day old (Tocsin was not reading); send it again if it stands")
    if command is None:
        guess = near_miss(request.verb, [name for name in verbs if name != "yes"]) if request.verb else None
        if guess is not None:
            return Outcome("help", f"Did you mean “{guess}”? Nothing was done.\n{help_text()}")
        return Outcome("help", help_text())
    if command.subject is not None and not (request.subject or "").startswith(command.subject):
        return refused(f"{request.verb} answers a specific DM: reply to it")
    if command.permission is not None and not request.moderator.can(command.permission):
        return refused(_missing(request.moderator, {command.permission}) or "")
    try:
        return command.run(ctx, request)
    except Refused as reason:
        return refused(str(reason))
    except MastodonAPIError as error:  # 401/403/404/422 (undo, lift, …): retrying cannot help, the reply can
        code = http_status(error)
        if code not in PERMANENT_STATUSES:
            raise  # 429, 5xx: the job is retried
        return refused(f"Mastodon answered {code}: {PERMANENT_STATUSES[code]}")


def _store(ctx: Context, status_id: str, moderator: Moderator, outcome: Outcome, text: str, verb: str) -> None:
    """The outcome, and what `undo` will reverse, in one transaction: a crash leaves both or neither."""
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.set(OUTCOME_PREFIX + status_id, json.dumps(asdict(outcome)), ex=KEEP_SECONDS)
    if outcome.kind == "done" and outcome.api and verb != "undo":  # it acted: `undo` is about this now
        last = {"command": (outcome.command or text)[:200], "undo": list(outcome.undo), "at": time.time()}
        pipe.set(LAST_PREFIX + moderator.account_id, json.dumps(last), ex=defaults.UNDO_SECONDS)
    pipe.execute()


def _ask(
    ctx: Context,
    moderator: Moderator,
    outcome: Outcome,
    verb: str,
    args: str,
    subject: str | None,
    text: str,
    parts: list[str],
) -> None:
    """A question waits for its `yes`, keyed by the posts that ask it."""
    if outcome.kind != "asked" or not parts:
        return
    waiting = {
        "verb": verb,
        "args": args,
        "subject": subject,
        "text": text,
        "account_id": moderator.account_id,
        "handle": moderator.handle,
        "parts": parts,
    }
    pipe = ctx.redis.pipeline()
    for part in parts:
        pipe.set(CONFIRM_PREFIX + part, json.dumps(waiting), ex=defaults.CONFIRM_SECONDS)
        pipe.zadd(ASKED_PREFIX + moderator.account_id, {part: time.time() + defaults.CONFIRM_SECONDS})
    pipe.expire(ASKED_PREFIX + moderator.account_id, defaults.CONFIRM_SECONDS)
    pipe.execute()


def _reply(ctx: Context, status_id: str, moderator: Moderator, outcome: Outcome, subject: str | None) -> list[str]:
    """The one answer, in the thread: to every moderator when something changed, else to the sender.
    Its status ids (a question's `yes` must reply to one of them)."""
    recipients = [moderator.handle]
    if outcome.everyone:
        recipients += [acct for acct in ctx.mastodon.moderators() if acct.lower() != moderator.handle.lower()]
    post = Post(
        key=f"reply:{status_id}",
        text=outcome.text,
        visibility="direct",
        mentions=tuple(recipients),
        in_reply_to_id=status_id,
        subject=subject,
        during_pause=True,
    )
    try:
        return ctx.outbox.send(post)
    except ValueError:  # more moderators than a status can address: the sender alone is told
        return ctx.outbox.send(replace(post, mentions=(moderator.handle,)))
    except MastodonNotFoundError:  # the command was deleted since: the answer starts a thread of its own
        return ctx.outbox.send(replace(post, in_reply_to_id=None))
