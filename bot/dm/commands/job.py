"""The idempotent job: one mention, one command, carried out once, answered once, audited."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Any

from mastodon import MastodonAPIError, MastodonNotFoundError

from bot.core import audit, defaults, metrics
from bot.dm.commands.grammar import near_miss, parse
from bot.dm.commands.keys import (
    ASKED_PREFIX,
    CONFIRM_PREFIX,
    HANDLED_PREFIX,
    IGNORED,
    KEEP_SECONDS,
    LAST_PREFIX,
    OUTCOME_PREFIX,
)
from bot.dm.commands.permissions import missing_permission, staff_now
from bot.dm.commands.reading import own_text, screen
from bot.dm.commands.verbs import all_commands, find, help_text
from bot.mastodon.actions import Refused
from bot.mastodon.client import http_status
from bot.mastodon.context import Context, get_context
from bot.mastodon.outbox import Post
from bot.pipeline.events import parse_time
from bot.pipeline.queue import PERMANENT_STATUSES, fails_at_once_on_permanent_errors
from bot.pipeline.replies import Moderator, Outcome, ReplyCommand, Request, refused


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
        return refused(missing_permission(request.moderator, {command.permission}) or "")
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
