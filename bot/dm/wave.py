"""Closing a report wave from the DM: one action over many reports, or many accounts, carried out in the
background.

200 reports are 200 admin calls, and a wave's 60 reported accounts 60 more: more than a command's job
should hold, and more than Tocsin's share of one rate-limit window. So `approve 2` and `approve 3` answer
at once ("suspending …", "resolving …; a note follows here") and queue one job per approved item.

Suspending (or silencing) the reported accounts (bot.mastodon.actions.act_on_accounts) is paced the same way: each
account's outcome is recorded in Redis as it happens (a continuation, a retry or a racing job acts on
none twice), audited one entry per account, and counted in one note at the end (suspended, already
suspended, refused, gone). `undo` stops a job still going, between two accounts, and lifts exactly the
accounts it suspended.

Each run of either job (its first part, a continuation, a retry) first reads the approving moderator's
account again: a job never outlives its approver's role (`_approver_gone`).

Resolving: The job resolves the wave's open reports (bot.mastodon.actions.resolve_wave: the target's domain,
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
from bot.mastodon.actions import (
    ACCOUNTS_JOB_PREFIX,
    KINDS,
    LEFT_ALONE,
    OUT_OF_SCOPE,
    Action,
    Done,
    accounts_undo,
    act_on_accounts,
    can,
    is_staff,
    reported_accounts,
    resolve_wave,
)
from bot.mastodon.client import http_status
from bot.mastodon.context import Context, get_context
from bot.mastodon.outbox import Post
from bot.mastodon.ratelimit import BudgetExhausted
from bot.pipeline.queue import PERMANENT_STATUSES, enqueue_once

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "tocsin:wave:resolved:"  # + job key: set of the report ids resolved so far
PROGRESS_SECONDS = 30 * 86400
"""As long as a proposal lives: a continuation or retry within it still knows what was resolved."""
AUDIT_IDS_PER_ENTRY = 20
"""Report ids per audit entry: an entry's text is cut at 500 characters (bot/core/audit.py)."""


def job_key(proposal_id: str, number: str) -> str:
    """One resolving job per approval of one proposal item: a second approval finds it queued or done."""
    return hashlib.sha256(f"{proposal_id}:{number}".encode()).hexdigest()[:32]


BACKGROUND_KINDS = ("resolve_reports", "suspend_accounts", "silence_accounts")
"""Action kinds a command starts here rather than carrying out in its own job."""


def start(
    ctx: Context,
    action: Action,
    *,
    key: str,
    command_id: str,
    subject: str | None,
    by: str,
    by_id: str,
    command: str,
) -> Done:
    """Queue the job that carries out `action` (once per approval) on the word of `by` (account `by_id`);
    what the answer says about it."""
    resolving = action.kind == "resolve_reports"
    job = {
        "action": asdict(action),
        "key": key,
        "command_id": command_id,
        "subject": subject,
        "by": by,
        "by_id": by_id,
    }
    enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        resolve_job if resolving else accounts_job,
        json.dumps({**job, "command": command[:200]}),
        0,
        job_id=f"wave-{'resolve' if resolving else 'accounts'}-{key}-0",
        retry_delays=ctx.settings.retry_delays,
    )
    if resolving:
        which = "open reports" if action.every_category else "open spam reports"
        return Done(
            f"resolving the wave's {which} against {_where(action)} in the background, paced by the rate limit;"
            " a note follows in this thread when it is done",
            "resolving queued",
        )
    doing = _doing(action)
    return Done(
        f"{doing} the {len(action.targets)} {reported_accounts(action)} in the background,"
        " paced by the rate limit (a note follows here)",
        f"{doing} queued",
        accounts_undo(action, key),
    )


def _where(action: Action) -> str:
    return "local accounts" if action.target == "local" else action.target


def _doing(action: Action) -> str:
    return "silencing" if action.kind == "silence_accounts" else "suspending"


def _load(raw: str) -> tuple[dict[str, Any], Action]:
    job = json.loads(raw)
    return job, Action(**{**job["action"], "targets": tuple(job["action"].get("targets", ()))})


def _continue(ctx: Context, function: Any, name: str, raw: str, key: str, continuation: int, wait: float) -> None:
    """The job's next part, queued for the window's reset (Tocsin's share of it is spent)."""
    enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        function,
        raw,
        continuation + 1,
        job_id=f"wave-{name}-{key}-{continuation + 1}",
        retry_delays=ctx.settings.retry_delays,
        delay_seconds=wait + 1,
    )


def _refusal(error: MastodonAPIError, scope: str, permission: str) -> tuple[int | None, str] | None:
    """A permanent refusal in words (the code and why), or None for what a retry may cure."""
    code = http_status(error)
    if code not in PERMANENT_STATUSES:
        return None
    why = f"Mastodon answered {code}: {PERMANENT_STATUSES[code]}"
    if code == 403:
        why = f"the bot's token lacks the scope {scope}"
        if OUT_OF_SCOPE not in str(error):
            why = f"the bot account's role cannot {permission} (Mastodon answered 403)"
    return code, why


def _approver_gone(ctx: Context, job: dict[str, Any], action: Action) -> str | None:
    """Why the moderator whose word started the job may not act now (None: they still may): checked at
    every run, so a job going on after a pause, or retried, never outlives its approver's role. Read
    fresh, as a command reads its sender's role (a local account, staff, not suspended nor disabled, with
    the permission Mastodon requires for the action)."""
    if not job.get("by_id"):  # queued before jobs named their approver's account
        return None
    permission = KINDS[action.kind].permission
    try:
        account = ctx.mastodon.admin_account(job["by_id"])
    except MastodonNotFoundError:
        account = {}
    permissions = int((account.get("role") or {}).get("permissions") or 0)
    active = bool(account) and account.get("domain") is None
    active = active and not account.get("suspended") and not account.get("disabled")
    if active and is_staff(permissions) and can(permissions, permission):
        return None
    return f"{job['by']}, who approved it, cannot {permission.replace('_', ' ')} now"


def accounts_job(raw: str, continuation: int) -> dict[str, Any]:
    """RQ job (background queue): suspend (or silence) the wave's reported accounts; pause for the rate
    limit by queuing the next continuation; at the end, the note in the thread."""
    ctx = get_context()
    job, action = _load(raw)
    doing = _doing(action)

    def told(account_id: str, outcome: str, api: str) -> None:
        _audit_account(ctx, job, action, account_id, outcome, api)

    def done_so_far() -> int:
        return sum(1 for outcome in ctx.redis.hvals(ACCOUNTS_JOB_PREFIX + job["key"]) if outcome == b"done")

    try:
        with ctx.mastodon.bulk():
            gone = _approver_gone(ctx, job, action)
            if gone is not None:
                _note(
                    ctx,
                    job,
                    f"Stopped {doing} the {reported_accounts(action)} after {done_so_far()}: {gone}.",
                    "accounts",
                )
                return {"stopped": gone}
            tally = act_on_accounts(ctx.mastodon, action, job["key"], told)
    except BudgetExhausted as spent:
        log.info("%s a wave's accounts: API share spent, going on in %.0f s", doing, spent.wait)
        _continue(ctx, accounts_job, "accounts", raw, job["key"], continuation, spent.wait)
        return {"paused": spent.wait}
    except MastodonAPIError as error:
        refusal = _refusal(error, "admin:write:accounts", "manage users")
        if refusal is None:
            raise  # 5xx, network: RQ retries the job; what was done stays recorded
        _note(
            ctx,
            job,
            f"Stopped {doing} the {reported_accounts(action)} after {done_so_far()}: {refusal[1]}.",
            "accounts",
        )
        return {"refused": refusal[0]}
    for account_id, outcome in tally.outcomes.items():  # what a crash between two steps left unaudited
        told(account_id, outcome, "")
    if tally.stopped:
        text = (
            f"Stopped {doing} the {reported_accounts(action)} after {tally.count('done')}: "
            "undo asked for it (those it had done are lifted)."
        )
    else:
        flag = "Silenced" if action.kind == "silence_accounts" else "Suspended"
        rest = [
            f"{tally.count(outcome)} {word}"
            for outcome, word in (
                ("already", f"already {flag.lower()}"),
                ("refused", "refused by Mastodon"),
                ("gone", "gone"),
                *LEFT_ALONE.items(),
            )
            if tally.count(outcome)
        ]
        text = f"{flag} {tally.count('done')} of the {len(action.targets)} {reported_accounts(action)}"
        text += f"; {', '.join(rest)}." if rest else "."
    _note(ctx, job, text, "accounts")
    return {"done": tally.count("done")}


def _audit_account(ctx: Context, job: dict[str, Any], action: Action, account_id: str, outcome: str, api: str) -> None:
    """One audit entry per account (once: keyed by the command and the account)."""
    flag = "silenced" if action.kind == "silence_accounts" else "suspended"
    did = {
        "done": flag,
        "already": f"already {flag}",
        "refused": "refused by Mastodon",
        "gone": "gone",
        **LEFT_ALONE,
    }.get(outcome, outcome)
    audit.record(
        ctx.redis,
        audit.Entry(
            at=time.time(),
            account_id="",
            handle=job["by"].removeprefix("@"),
            command=f"{job['command']} ({_doing(action)} the wave's accounts)",
            outcome="refused" if outcome in ("refused", *LEFT_ALONE) else "done",
            did=f"account {account_id} ({reported_accounts(action)}): {did}",
            api=api,
            status_id=f"{job['command_id']}:{action.kind}:{account_id}",
        ),
    )


def resolve_job(raw: str, continuation: int) -> dict[str, Any]:
    """RQ job (background queue): resolve the wave's reports; pause for the rate limit by queuing the next
    continuation; at the end, audit and the note in the thread."""
    ctx = get_context()
    job, action = _load(raw)
    progress = PROGRESS_PREFIX + job["key"]

    def resolved_one(report_id: str) -> None:
        ctx.redis.sadd(progress, report_id)
        ctx.redis.expire(progress, PROGRESS_SECONDS)

    try:
        with ctx.mastodon.bulk():
            gone = _approver_gone(ctx, job, action)
            if gone is not None:
                done = ctx.redis.scard(progress)
                _note(ctx, job, f"Stopped resolving the wave's reports against {_where(action)} after {done}: {gone}.")
                return {"stopped": gone}
            _ids, left = resolve_wave(ctx.mastodon, action, resolved_one)
    except BudgetExhausted as spent:
        log.info("resolving a wave: API share spent, going on in %.0f s", spent.wait)
        _continue(ctx, resolve_job, "resolve", raw, job["key"], continuation, spent.wait)
        return {"paused": spent.wait}
    except MastodonAPIError as error:  # 401/403: the token or the bot's role; retrying cannot help
        refusal = _refusal(error, "admin:write:reports (or admin:read:reports)", "manage reports")
        if refusal is None:
            raise  # 5xx, network: RQ retries the job; what was resolved stays counted
        done = ctx.redis.scard(progress)
        _note(ctx, job, f"Stopped resolving the wave's reports against {_where(action)} after {done}: {refusal[1]}.")
        return {"refused": refusal[0]}
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


def _note(ctx: Context, job: dict[str, Any], text: str, what: str = "resolved") -> None:
    post = Post(
        key=f"wave-{what}:{job['key']}",
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
