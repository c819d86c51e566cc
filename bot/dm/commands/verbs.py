"""The commands every instance has (approve, dismiss, limit, suspend, lift, undo, yes, status, pause,
resume, help) and how a verb is found, the families' own included."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import replace

from publicsuffixlist import PublicSuffixList

from bot.core import defaults
from bot.dm import held, wave
from bot.dm.commands.grammar import BARE_APPROVE, item_numbers, server_domain
from bot.dm.commands.keys import ACTED_BY_PREFIX, ASKED_PREFIX, CONFIRM_PREFIX, LAST_PREFIX
from bot.dm.commands.permissions import missing_permission, permissions_needed
from bot.mastodon import actions, outbox
from bot.mastodon.actions import Action, Done, Refused, carry_out
from bot.mastodon.context import Context
from bot.pipeline.families import registry
from bot.pipeline.replies import Moderator, Outcome, ReplyCommand, Request, refused


def _summary(results: list[Done]) -> str:
    shown = [result.text for result in results[:5]]
    more = f"; and {len(results) - 5} more (tocsin audit)" if len(results) > 5 else ""
    return "; ".join(shown) + more


def _act(ctx: Context, request: Request, items: list[tuple[str, Action]], proposal_id: str | None) -> Outcome:
    """Carry out actions in order (each once, for a proposal); stop at the first refusal."""
    missing = missing_permission(request.moderator, {actions.KINDS[a.kind].permission for _n, a in items})
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
        by_id=request.moderator.account_id,
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


def approve(ctx: Context, request: Request) -> Outcome:
    proposal_id, proposal = _proposal(ctx, request)
    if not proposal.items:
        return refused("this DM proposes nothing Tocsin can carry out; reply dismiss once it is handled")
    needs = [{actions.KINDS[a.kind].permission for a in item.actions} for item in proposal.items]
    if all(missing_permission(request.moderator, need) for need in needs):  # before reading a single number
        return refused(missing_permission(request.moderator, set().union(*needs)) or "")
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
    lacking = sorted(
        {number.split(".")[0] for number, a in chosen if missing_permission(request.moderator, permissions_needed(a))},
        key=int,
    )
    chosen = [(number, a) for number, a in chosen if number.split(".")[0] not in lacking]
    if not chosen:
        return refused(missing_permission(request.moderator, set().union(*(needs[int(n) - 1] for n in lacking))) or "")
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
        why = missing_permission(request.moderator, set().union(*(needs[int(n) - 1] for n in lacking)))
        outcome = replace(outcome, text=f"{outcome.text}\nNot done: item {items}: {why}.")
    if not request.args.strip() and len(proposal.items) > 1 and outcome.kind == "done":
        carried = {number.split(".")[0] for number in actions.done_actions(ctx.redis, proposal_id)}
        others = [str(n) for n in range(2, len(proposal.items) + 1) if str(n) not in carried]
        if others:
            more = f"\n“approve” alone is {BARE_APPROVE}; for the others: approve {','.join(others)}."
            outcome = replace(outcome, text=outcome.text + more)
    return outcome


def dismiss(ctx: Context, request: Request) -> Outcome:
    """Closing a proposal stops its escalations: it takes every permission acting on it would."""
    proposal_id, proposal = _proposal(ctx, request)
    missing = missing_permission(request.moderator, {actions.KINDS[a.kind].permission for a in proposal.actions})
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
    missing = missing_permission(
        request.moderator, {actions.UNDO_PERMISSIONS[recipe["kind"]] for recipe in last["undo"]}
    )
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
        return refused(missing_permission(request.moderator, {command.permission}) or "")
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


EVERY_CATEGORY = "all"
"""`approve 3 all`: resolve the wave's reports of every category, not only spam. Only after item numbers,
only for an item that resolves reports: a bare `approve all` names no item and is refused."""


EVERY_SUFFIX = "+all"  # a done mark's suffix ("3.1+all"): that item was approved for every category
