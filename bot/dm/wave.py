"""Resolving a report wave's reports from the DM: one action over many reports, carried out in the background.

200 reports are 200 admin calls: more than a command's job should hold, and more than Tocsin's share of
one rate-limit window. So `approve 3` answers at once ("resolving …; a note follows here") and queues one
job per approval. The job resolves the wave's open reports (bot.mastodon.actions.resolve_wave: the target's domain,
created within the window the DM offered, unassigned, spam unless `approve 3 all`) as bulk work
(bot/mastodon/ratelimit.py, BULK_SHARE: the poll and the alerts keep their part of each window); when the share is
spent it queues its own continuation for the window's reset. Progress is a Redis set of the ids resolved, so
a continuation, a retry or a crash resolves nothing twice and the final note counts them all. The ids go to
the audit log (`tocsin audit`), a few per entry; then one note in the DM thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from typing import Any

from mastodon import MastodonAPIError, MastodonNotFoundError

from bot.core import audit, defaults, redis_text
from bot.mastodon.actions import OUT_OF_SCOPE, Action, Done, resolve_wave
from bot.mastodon.client import http_status
from bot.mastodon.context import Context, get_context
from bot.mastodon.outbox import Post
from bot.mastodon.ratelimit import BudgetExhausted
from bot.pipeline.queue import PERMANENT_STATUSES, enqueue_once

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "tocsin:wave:resolved:"  # + job key: set of the report ids resolved so far
LEFT_PREFIX = "tocsin:wave:left:"  # + job key: what stayed open, in words, as the last pass saw it
PROGRESS_SECONDS = 30 * 86400
"""As long as a proposal lives: a continuation or retry within it still knows what was resolved."""
AUDIT_IDS_PER_ENTRY = 20
"""Report ids per audit entry: an entry's text is cut at 500 characters (bot/core/audit.py)."""


def job_key(proposal_id: str, number: str) -> str:
    """One resolving job per approval of one proposal item: a second approval finds it queued or done."""
    return hashlib.sha256(f"{proposal_id}:{number}".encode()).hexdigest()[:32]


def start(
    ctx: Context, action: Action, *, key: str, command_id: str, subject: str | None, by: str, command: str
) -> Done:
    """Queue the resolving of `action`'s reports (once per approval); what the answer says about it."""
    job = {"action": asdict(action), "key": key, "command_id": command_id, "subject": subject, "by": by}
    enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        resolve_job,
        json.dumps({**job, "command": command[:200]}),
        0,
        job_id=f"wave-resolve-{key}-0",
        retry_delays=ctx.settings.retry_delays,
    )
    which = "open reports" if action.every_category else "open spam reports"
    return Done(
        f"resolving the wave's {which} against {_where(action)} in the background, paced by the rate limit;"
        " a note follows in this thread when it is done",
        "resolving queued",
    )


def _where(action: Action) -> str:
    return "local accounts" if action.target == "local" else action.target


def resolve_job(raw: str, continuation: int) -> dict[str, Any]:
    """RQ job (background queue): resolve the wave's reports; pause for the rate limit by queuing the next
    continuation; at the end, audit and the note in the thread."""
    ctx = get_context()
    job = json.loads(raw)
    action = Action(**{**job["action"], "targets": tuple(job["action"].get("targets", ()))})
    progress = PROGRESS_PREFIX + job["key"]

    def resolved_one(report_id: str) -> None:
        ctx.redis.sadd(progress, report_id)
        ctx.redis.expire(progress, PROGRESS_SECONDS)

    try:
        with ctx.mastodon.bulk():
            _ids, left = resolve_wave(ctx.mastodon, action, resolved_one)
    except BudgetExhausted as spent:
        log.info("resolving a wave: API share spent, going on in %.0f s", spent.wait)
        enqueue_once(
            ctx.redis,
            defaults.QUEUE_BACKGROUND,
            resolve_job,
            raw,
            continuation + 1,
            job_id=f"wave-resolve-{job['key']}-{continuation + 1}",
            retry_delays=ctx.settings.retry_delays,
            delay_seconds=spent.wait + 1,
        )
        return {"paused": spent.wait}
    except MastodonAPIError as error:  # 401/403: the token or the bot's role; retrying cannot help
        code = http_status(error)
        if code not in PERMANENT_STATUSES:
            raise  # 5xx, network: RQ retries the job; what was resolved stays counted
        why = f"Mastodon answered {code}: {PERMANENT_STATUSES[code]}"
        if code == 403:
            why = "the bot's token lacks the scope admin:write:reports (or admin:read:reports)"
            if OUT_OF_SCOPE not in str(error):
                why = "the bot account's role cannot manage reports (Mastodon answered 403)"
        done = ctx.redis.scard(progress)
        _note(ctx, job, f"Stopped resolving the wave's reports against {_where(action)} after {done}: {why}.")
        return {"refused": code}
    ids = sorted(redis_text.texts(ctx.redis.smembers(progress)), key=int)
    _audit(ctx, job, action, ids)
    text = f"Resolved {len(ids)} reports of the wave against {_where(action)}{left}."
    _note(ctx, job, text)
    return {"resolved": len(ids)}


def _audit(ctx: Context, job: dict[str, Any], action: Action, ids: list[str]) -> None:
    for start_at in range(0, max(len(ids), 1), AUDIT_IDS_PER_ENTRY):
        chunk = ids[start_at : start_at + AUDIT_IDS_PER_ENTRY]
        audit.record(
            ctx.redis,
            audit.Entry(
                at=time.time(),
                account_id="",
                handle=job["by"].removeprefix("@"),
                command=f"{job['command']} (resolving, part {start_at // AUDIT_IDS_PER_ENTRY + 1})",
                outcome="done",
                did=f"resolved reports of {_where(action)}: {', '.join(chunk) or 'none'}",
                api=f"POST /api/v1/admin/reports/:id/resolve × {len(chunk)}",
                status_id=f"{job['command_id']}:resolved:{start_at}",
            ),
        )


def _note(ctx: Context, job: dict[str, Any], text: str) -> None:
    post = Post(
        key=f"wave-resolved:{job['key']}",
        text=text,
        visibility="direct",
        mentions=tuple(ctx.mastodon.moderators()),
        in_reply_to_id=job["command_id"],
        subject=job["subject"],
        during_pause=True,
    )
    try:
        ctx.outbox.send(post)
    except MastodonNotFoundError:  # the command was deleted since: the note starts a thread of its own
        ctx.outbox.send(replace(post, in_reply_to_id=None))
