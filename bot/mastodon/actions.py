"""What Tocsin does on the instance when a moderator says so: the one place that acts.

An `Action` is one admin-API write (limit or suspend a server, lift its block, block an email domain,
suspend or reject an account), described as data so it can be proposed in a DM, stored with the DM's
thread, carried out once when a moderator approves it, and undone. A `Proposal` is the numbered list of
actions one DM offers; it is stored under an id derived from the DM's message key and the DM's thread
points to it, so `approve` in that thread knows what it approves.

Each action kind names the role permission the moderator needs (Mastodon's own rule: a moderator
cannot do through Tocsin what their role cannot do in the admin interface) and the token scope the
bot needs, and says whether it is destructive (asks for `yes` first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from mastodon import MastodonAPIError, MastodonNotFoundError
from redis.lock import Lock

from bot.core import defaults, redis_text
from bot.core.domains import NotADomain, normalized_domain
from bot.mastodon.client import MastodonLink, epoch_of, http_status

# UserRole::FLAGS (app/models/user_role.rb): the permissions bitmask of an Admin::Account's role.
ROLE_FLAGS = {
    "administrator": 1 << 0,
    "view_devops": 1 << 1,
    "view_audit_log": 1 << 2,
    "view_dashboard": 1 << 3,
    "manage_reports": 1 << 4,
    "manage_federation": 1 << 5,
    "manage_settings": 1 << 6,
    "manage_blocks": 1 << 7,
    "manage_taxonomies": 1 << 8,
    "manage_appeals": 1 << 9,
    "manage_users": 1 << 10,
    "manage_invites": 1 << 11,
    "manage_rules": 1 << 12,
    "manage_announcements": 1 << 13,
    "manage_custom_emojis": 1 << 14,
    "manage_webhooks": 1 << 15,
    "invite_users": 1 << 16,
    "manage_roles": 1 << 17,
    "manage_user_access": 1 << 18,
    "delete_user_data": 1 << 19,
}
STAFF_FLAGS = ("manage_reports", "manage_users", "manage_federation", "manage_blocks")
"""A role with any of these (or administrator) is staff: Tocsin's DMs are for the people who moderate."""

PROPOSAL_PREFIX = "tocsin:proposal:"  # + id: the proposal (JSON); + id + ":done": hash action -> result
PROPOSALS_OPEN = "tocsin:proposals:open"  # sorted set: id -> when proposed (not yet approved or dismissed)
PROPOSAL_SECONDS = 30 * 86400
"""A month: an approval after that acts on a stale picture; the moderator acts afresh instead."""
OUT_OF_SCOPE = "outside the authorized scopes"
"""Mastodon's 403 when the token lacks a scope (Doorkeeper); any other 403 is the role's permission."""


class Refused(Exception):
    """An action (or command) not carried out; the message says why, in words for the moderator."""


def can(permissions: int, flag: str) -> bool:
    """Mastodon's UserRole#can?: administrators can everything."""
    return bool(permissions & ROLE_FLAGS["administrator"]) or bool(permissions & ROLE_FLAGS[flag])


def is_staff(permissions: int) -> bool:
    return any(can(permissions, flag) for flag in STAFF_FLAGS)


@dataclass(frozen=True)
class Action:
    kind: str  # a key of KINDS
    target: str  # a domain, an email domain, an account id
    label: str  # how a moderator reads it: "limit spam.example", "suspend spammer1"
    severity: str | None = None  # domain blocks: silence | suspend
    public_comment: str | None = None  # domain blocks: only what a moderator wrote, or an advisory's summary
    tag: str = "[tocsin]"  # starts the private comment of a domain block (an advisory's tag, for scans)
    targets: tuple[str, ...] = ()  # accounts acted on at once (a wave's reported accounts): one action, one answer
    since: float | None = None  # reports: the wave's window (created after `since`, up to `until`)
    until: float | None = None
    every_category: bool = False  # reports: not only spam (`approve 3 all`)


@dataclass(frozen=True)
class Done:
    text: str  # what changed, for the reply: "limited spam.example"
    api: str  # Mastodon's answer, for the audit log
    undo: dict[str, Any] | None = None  # how to reverse it (see UNDO); None: nothing to undo


@dataclass(frozen=True)
class ActionKind:
    permission: str
    scope: str
    run: Callable[[MastodonLink, Action, str], Done] | None
    """(link, action, private comment) -> Done; raises Refused. None: many calls, carried out by a paced
    background job (bot/dm/wave.py), never by carry_out."""
    destructive: Callable[[Action], bool] = lambda action: False


BLOCK_NOUNS = {"silence": "limit", "suspend": "suspension"}


def _block_words(severity: str) -> str:
    return {"silence": "limited", "suspend": "suspended"}.get(severity, f"blocked ({severity})")


def _domain_block(link: MastodonLink, action: Action, private_comment: str) -> Done:
    severity = action.severity or "silence"
    existing = link.domain_block(action.target)
    if existing is not None:
        if existing["severity"] == severity or existing["severity"] == "suspend":
            return Done(f"{action.target} was {_block_words(existing['severity'])} already", "nothing to change")
        updated = link.update_domain_block(existing["id"], severity=severity, private_comment=private_comment)
        return Done(
            f"{action.target} {_block_words(severity)} (was {_block_words(existing['severity'])})",
            f"PUT /api/v1/admin/domain_blocks/{existing['id']}: 200",
            _restore(existing, left=block_state(updated)),
        )
    try:
        created = link.create_domain_block(
            action.target, severity=severity, private_comment=private_comment, public_comment=action.public_comment
        )
    except MastodonAPIError as error:
        now = link.domain_block(action.target) if http_status(error) == 422 else None
        if now is None:  # a 422 for another reason (Mastodon found the domain invalid, say): not done
            raise
        return Done(  # made meanwhile (by hand, or a racing command)
            f"{action.target} was {_block_words(now['severity'])} already", "POST /api/v1/admin/domain_blocks: 422"
        )
    return Done(
        f"{action.target} {_block_words(severity)}",
        f"POST /api/v1/admin/domain_blocks: 200 (block {created['id']})",
        {"kind": "domain_block.delete", "id": created["id"], "domain": action.target, "left": block_state(created)},
    )


def _lift(link: MastodonLink, action: Action, private_comment: str) -> Done:
    existing = link.domain_block(action.target)
    if existing is None:
        raise Refused(f"{action.target} is not limited or suspended")
    link.delete_domain_block(existing["id"])
    return Done(
        f"{action.target}'s {BLOCK_NOUNS.get(existing['severity'], 'block')} lifted",
        f"DELETE /api/v1/admin/domain_blocks/{existing['id']}: 200",
        _restore(existing, left=None),
    )


def _email_domain_block(link: MastodonLink, action: Action, private_comment: str) -> Done:
    try:
        block_id = link.create_email_domain_block(action.target)
    except MastodonAPIError as error:
        if http_status(error) == 422:
            return Done(f"sign-ups from {action.target} were blocked already", "422 (exists)")
        raise
    return Done(
        f"sign-ups from {action.target} blocked",
        f"POST /api/v1/admin/email_domain_blocks: 200 (block {block_id})",
        {"kind": "email_domain_block.delete", "id": block_id, "domain": action.target},
    )


def _suspend_account(link: MastodonLink, action: Action, private_comment: str) -> Done:
    # No `text`: Mastodon shows it to the suspended account as the moderators' message, and who acted
    # is nobody's business but the audit log's (the private comment is for domain blocks only).
    try:
        if _is_staff_or_bot(link, link.admin_account(action.target), action.target):
            return Done(f"{action.label.removeprefix('suspend ')}: {LEFT_ALONE['staff']}", "not acted on")
        link.moderate_account(action.target, "suspend")
    except MastodonNotFoundError:
        return Done(f"{action.label}: the account is gone", f"404 (account {action.target})")
    return Done(
        f"{action.label.removeprefix('suspend ')} suspended",
        f"POST /api/v1/admin/accounts/{action.target}/action: 200",
        {"kind": "account.unsuspend", "id": action.target},
    )


def _reject_account(link: MastodonLink, action: Action, private_comment: str) -> Done:
    try:
        link.reject_account(action.target)
    except MastodonNotFoundError:
        return Done(f"{action.label}: the sign-up is gone", f"404 (account {action.target})")
    except MastodonAPIError as error:
        if http_status(error) == 403:
            raise
        return Done(f"{action.label}: not pending any more", f"{http_status(error)} (account {action.target})")
    return Done(
        f"{action.label.removeprefix('reject ')} rejected", f"POST /api/v1/admin/accounts/{action.target}/reject"
    )


ACCOUNTS_JOB_PREFIX = "tocsin:wave-accounts:"
"""+ job key: hash, account id -> what became of it (done, already, refused, gone); + ":trying": hash of
the accounts asked for (an account asked for whose answer was lost, found suspended by the retry, is the
job's own: undone with the others, not "already"; a moderator suspending that very account by hand
between the two is the rarer case); + ":stop": set by
`undo` (the job stops before its next account); + ":lock": held around each account's call, and by `undo`
while it stops the job, so the accounts it reverses are exactly those done."""
ACCOUNTS_UNDO_PREFIX = "tocsin:accounts-undone:"  # + hash of the undo recipe: set of the accounts lifted so far


def accounts_job_key(what: str) -> str:
    return hashlib.sha256(what.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class AccountsTally:
    """What became of a wave's reported accounts so far (account id -> done, already, refused or gone),
    and whether an `undo` stopped the job."""

    outcomes: dict[str, str]
    stopped: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def reported_accounts(action: Action) -> str:
    """Which accounts, in words: reported accounts of flood.example, reported local accounts."""
    return "reported local accounts" if action.target == LOCAL_ACCOUNTS else f"reported accounts of {action.target}"


def accounts_undo(action: Action, key: str) -> dict[str, Any]:
    """How `undo` reverses a wave's account action: the accounts its job records as done, read when the
    undo comes (the job may still be going: the undo stops it first)."""
    kind = "accounts.unsilence" if action.kind == "silence_accounts" else "accounts.unsuspend"
    return {"kind": kind, "job": key, "what": reported_accounts(action)}


ACCOUNT_CLAIM_PREFIX = "tocsin:wave-account:"
"""+ verb + ":" + account id: the key of the job acting on that account (set right before its call, kept
while it stays done, dropped by its undo): two approvals of item 2 in two DMs of one surge start two jobs
over the same accounts, and each account is still acted on once."""


def _claimed(link: MastodonLink, claim: str, key: str, account_id: str, verb: str) -> bool:
    """Whether the job `key` may act on the account: nobody claimed it, or this job did, or the job that
    did is done with it and the account is no longer as it left it (lifted by hand since: a later
    approval acts again; read now, one admin call)."""
    if link.redis.set(claim, key, nx=True, ex=PROPOSAL_SECONDS):
        return True
    holder = redis_text.text(link.redis.get(claim) or b"")
    if holder == key:
        return True
    if link.redis.hget(ACCOUNTS_JOB_PREFIX + holder, account_id) != b"done":
        return False  # the other job is acting on it right now
    try:
        now = link.admin_account(account_id)
    except MastodonNotFoundError:
        return True  # gone: the call says so
    if _is_flagged({"suspended": now.get("suspended"), "limited": now.get("silenced")}, verb):
        return False
    link.redis.set(claim, key, ex=PROPOSAL_SECONDS)
    return True


def _release_claim(connection: redis.Redis, claim: str, key: str) -> None:
    """Drop a job's claim on an account (not done, or undone), unless another job's holds it."""
    if connection.get(claim) == key.encode():
        connection.delete(claim)


def _account_lock(link: MastodonLink, progress: str) -> Lock:
    """The lock a wave's account job holds around each account's call (and the read that may precede it,
    _claimed), and `undo` while it stops the job: held longer than those two calls can take (a connect and
    a read timeout, TOCSIN_REQUEST_TIMEOUT each), so an undo never reads the outcomes while an account is
    being acted on."""
    seconds = defaults.WAVE_ACCOUNT_LOCK_SECONDS + 4 * link.settings.request_timeout
    lock: Lock = link.redis.lock(progress + ":lock", timeout=seconds, blocking_timeout=seconds)
    return lock


def _outcomes(connection: redis.Redis, progress: str) -> dict[str, str]:
    return redis_text.text_map(connection.hgetall(progress))


def act_on_accounts(
    link: MastodonLink, action: Action, key: str, told: Callable[[str, str, str], None]
) -> AccountsTally:
    """Suspend (or silence) a wave's reported accounts, one admin call each, each at most once whatever
    runs it (a continuation, a retry, a racing job): what became of each account is recorded under `key`
    as it happens, and `told` (account id, outcome, Mastodon's answer) right after. No `text`: Mastodon
    would show it to each account as the moderators' message. Raises BudgetExhausted between accounts when
    Tocsin's share of the rate limit is spent (nothing is recorded for the account not acted on), and
    MastodonAPIError for what stops every account (the token's scope, the bot's role: a 403 before any
    account was done). Stops, without acting, once an `undo` asked it to.

    Each account is checked against what Mastodon says of it first (left_alone): one that is not of the
    wave's server, a local account that is staff now, and the bot's own are never acted on."""
    verb = "silence" if action.kind == "silence_accounts" else "suspend"
    progress = ACCOUNTS_JOB_PREFIX + key
    outcomes = _outcomes(link.redis, progress)
    todo = [account_id for account_id in action.targets if account_id not in outcomes]
    # As they are now, 40 to a request; None (a Mastodon before 4.3): not known, each is read alone.
    state = link.accounts_by_id(todo) if todo and action.target != LOCAL_ACCOUNTS else {}
    bot_id = link.bot_account_id() if todo and action.target == LOCAL_ACCOUNTS else None
    for account_id in todo:
        # Read before the lock, which is held around the one write only.
        account, kept = _as_mastodon_says(link, action, account_id, state, bot_id)
        with _account_lock(link, progress):
            if link.redis.exists(progress + ":stop"):
                return AccountsTally(_outcomes(link.redis, progress), stopped=True)
            if link.redis.hexists(progress, account_id):  # a racing run did it
                continue
            claim = f"{ACCOUNT_CLAIM_PREFIX}{verb}:{account_id}"
            if kept is not None:
                outcome, api = kept
            elif not _claimed(link, claim, key, account_id, verb):
                # Another approval's job (another DM of the surge) acts on it: once is enough.
                outcome, api = "already", f"account {account_id}: {verb} by another approval's job"
            elif link.redis.hexists(progress + ":trying", account_id) and _is_flagged(account, verb):
                # Asked before, the answer lost (a 502, a timeout, a crash), and it is so now: this job's.
                outcome, api = "done", f"POST /api/v1/admin/accounts/{account_id}/action: answer lost, {verb} found"
            else:
                first = "done" not in _outcomes(link.redis, progress).values()
                link.redis.hset(progress + ":trying", account_id, "1")
                link.redis.expire(progress + ":trying", PROPOSAL_SECONDS)
                outcome, api = _act_on_account(link, account_id, verb, account, first)
            link.redis.hset(progress, account_id, outcome)
            link.redis.expire(progress, PROPOSAL_SECONDS)
            if outcome != "done":
                _release_claim(link.redis, claim, key)
        told(account_id, outcome, api)
    return AccountsTally(_outcomes(link.redis, progress), stopped=bool(link.redis.exists(progress + ":stop")))


LEFT_ALONE = {"staff": "staff or Tocsin's own, left alone", "elsewhere": "not of the wave, left alone"}
"""Outcomes of accounts a wave's job does not act on, in words."""


def _as_mastodon_says(
    link: MastodonLink,
    action: Action,
    account_id: str,
    state: dict[str, dict[str, Any]] | None,
    bot_id: str | None,
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """One of a wave's accounts as Mastodon says it is now ({"suspended", "limited"}), and, when it is
    not to be acted on, its outcome (gone, staff, elsewhere) and why. A local wave's accounts are read
    one by one from the admin API (only it tells an account's role); a remote wave's come from `state`
    (GET /api/v1/accounts), or the admin API for one it does not list."""
    account = (state or {}).get(account_id)
    if action.target == LOCAL_ACCOUNTS or account is None:
        try:
            admin = link.admin_account(account_id)
        except MastodonNotFoundError:
            return {}, ("gone", f"GET /api/v1/admin/accounts/{account_id}: 404")
        domain = admin.get("domain")
        account = {"suspended": admin.get("suspended"), "limited": admin.get("silenced")}
        if _is_staff_or_bot(link, admin, account_id, bot_id):
            return account, ("staff", f"account {account_id}: local staff (or the bot), not acted on")
    else:
        domain = str(account.get("acct") or "").partition("@")[2] or None
    if not _same_server(domain or LOCAL_ACCOUNTS, action.target):
        return account, ("elsewhere", f"account {account_id} is of {domain or 'this instance'}, not acted on")
    return account, None


def _is_staff_or_bot(link: MastodonLink, admin: dict[str, Any], account_id: str, bot_id: str | None = None) -> bool:
    """Whether an Admin::Account is a local account that is staff now, or the bot's own: never acted on
    from a DM (Mastodon lets the bot's role act on lower roles the approving moderator could not touch in
    the admin interface, and remote accounts can report, or imitate, anyone)."""
    if admin.get("domain") is not None:
        return False
    if is_staff(int((admin.get("role") or {}).get("permissions") or 0)):
        return True
    return account_id == (bot_id or link.bot_account_id())


def _same_server(domain: str, target: str) -> bool:
    """Whether an account's domain is the wave's: REST::Account writes an IDN in Unicode (`acct`), the
    admin API and webhooks in its ASCII form."""
    if LOCAL_ACCOUNTS in (domain, target):
        return domain == target
    try:
        return normalized_domain(domain) == normalized_domain(target)
    except NotADomain:
        return domain.lower().rstrip(".") == target.lower().rstrip(".")


def _is_flagged(account: dict[str, Any], verb: str) -> bool:
    """Whether the account is already as `verb` would leave it (a suspension covers a silence)."""
    return bool(account.get("suspended") or (verb == "silence" and account.get("limited")))


def _act_on_account(
    link: MastodonLink, account_id: str, verb: str, account: dict[str, Any], first: bool
) -> tuple[str, str]:
    """One account: (outcome, Mastodon's answer in words)."""
    if _is_flagged(account, verb):
        return "already", "nothing to change"
    try:
        link.moderate_account(account_id, verb)
    except MastodonNotFoundError:
        return "gone", f"POST /api/v1/admin/accounts/{account_id}/action: 404"
    except MastodonAPIError as error:
        status = http_status(error)
        if status == 403 and (first or OUT_OF_SCOPE in str(error)):
            raise  # the bot's token or role: the same for every account
        if status not in (403, 422):
            raise  # 5xx, network: the job is retried, and goes on where it stopped
        # 422: Mastodon refuses this one; a 403 after others were done: an account its policy protects.
        return "refused", f"POST /api/v1/admin/accounts/{account_id}/action: {status}"
    return "done", f"POST /api/v1/admin/accounts/{account_id}/action type={verb}: 200"


LOCAL_ACCOUNTS = "local"
"""The target of an account action over local accounts (a wave against our own members)."""


def wave_report(report: dict[str, Any], action: Action) -> str:
    """What to do with one open report for `action`: "resolve", or why it stays open ("assigned",
    "category", "" when it is not the wave's at all)."""
    target = report.get("target_account") or {}
    domain = target.get("domain") or LOCAL_ACCOUNTS
    created = epoch_of(report.get("created_at"))
    if report.get("action_taken") or domain.lower() != action.target or created is None:
        return ""
    if (action.since is not None and created <= action.since) or (action.until is not None and created > action.until):
        return ""  # before the wave, or after the DM that offered it: nobody decided on it
    if report.get("assigned_account"):
        return "assigned"  # a moderator took it: theirs to close
    if not action.every_category and report.get("category") != "spam":
        return "category"
    return "resolve"


def resolve_wave(link: MastodonLink, action: Action, resolved_one: Callable[[str], None]) -> tuple[list[str], str]:
    """Resolve the open reports of the wave `action` names, oldest first; `resolved_one` is told each id
    as it is resolved (a paced job keeps its progress). Raises BudgetExhausted (between reports) when the
    share of the rate limit is spent. The ids resolved, and what stays open, in words."""
    reports, _complete = link.open_reports(since=action.since)
    verdicts = [(wave_report(report, action), str(report["id"])) for report in reports]
    resolved = []
    for verdict, report_id in sorted(verdicts, key=lambda pair: int(pair[1])):
        if verdict != "resolve":
            continue
        try:
            link.resolve_report(report_id)
        except MastodonNotFoundError:  # deleted meanwhile (its account was removed): nothing to resolve
            continue
        resolved.append(report_id)
        resolved_one(report_id)
    return resolved, left_open([verdict for verdict, _id in verdicts])


def left_open(verdicts: list[str]) -> str:
    assigned, other = verdicts.count("assigned"), verdicts.count("category")
    parts = [f"{assigned} assigned to a moderator"] if assigned else []
    parts += [f"{other} in other categories (approve 3 all)"] if other else []
    return f"; left open: {', '.join(parts)}" if parts else ""


KINDS: dict[str, ActionKind] = {
    "domain_block": ActionKind(
        "manage_federation",
        "admin:write:domain_blocks",
        _domain_block,
        destructive=lambda action: action.severity == "suspend",
    ),
    "domain_unblock": ActionKind("manage_federation", "admin:write:domain_blocks", _lift),
    "email_domain_block": ActionKind("manage_blocks", "admin:write:email_domain_blocks", _email_domain_block),
    "suspend_account": ActionKind("manage_users", "admin:write:accounts", _suspend_account),
    "reject_account": ActionKind(
        "manage_users", "admin:write:accounts", _reject_account, destructive=lambda action: True
    ),
    # Local accounts may be members whose accounts were taken over: suspending them asks for `yes`.
    "suspend_accounts": ActionKind(
        "manage_users",
        "admin:write:accounts",
        None,
        destructive=lambda action: action.target == LOCAL_ACCOUNTS,
    ),
    "silence_accounts": ActionKind("manage_users", "admin:write:accounts", None),
    "resolve_reports": ActionKind("manage_reports", "admin:write:reports", None),
}
CONFIRM_ABOVE = 10
"""Approving more actions than this at once asks for `yes` first."""


SCOPE_PROBES: dict[str, Callable[[Any], object]] = {
    "admin:write:domain_blocks": lambda client: client.admin_create_domain_block(""),
    "admin:write:email_domain_blocks": lambda client: client.admin_create_email_domain_block(""),
    "admin:write:accounts": lambda client: client.admin_account_moderate("0", "none"),
    "admin:write:reports": lambda client: client.admin_report_resolve("0"),
}
"""Requests Mastodon refuses as invalid (a blank domain: 422; no account 0: 404) once the token's scope
is checked, which comes first (403 "outside the authorized scopes"): they change nothing either way."""


def missing_scopes(link: MastodonLink) -> list[str]:
    """The write scopes DM commands need that the token lacks (`tocsin doctor`)."""
    missing = []
    for scope, probe in SCOPE_PROBES.items():
        try:
            probe(link.client)
        except MastodonAPIError as error:
            if http_status(error) == 403 and OUT_OF_SCOPE in str(error):
                missing.append(scope)
    return missing


def carry_out(link: MastodonLink, action: Action, private_comment: str) -> Done:
    """One action through the admin API. A 403 becomes a refusal naming the missing scope or permission."""
    kind = KINDS[action.kind]
    if kind.run is None:
        raise ValueError(f"{action.kind} is carried out in the background (bot/dm/wave.py), not at once")
    try:
        return kind.run(link, action, private_comment)
    except MastodonAPIError as error:
        if http_status(error) != 403:
            raise
        if OUT_OF_SCOPE in str(error):
            raise Refused(f"the bot's token lacks the scope {kind.scope}; create a token with it") from error
        raise Refused(f"Mastodon refused: the bot account's role cannot {kind.permission.replace('_', ' ')}") from error


# --- Undo ----------------------------------------------------------------------------------------

UNDO_PERMISSIONS = {
    "domain_block.delete": "manage_federation",
    "domain_block.restore": "manage_federation",
    "email_domain_block.delete": "manage_blocks",
    "account.unsuspend": "manage_users",
    "accounts.unsuspend": "manage_users",
    "accounts.unsilence": "manage_users",
}
"""The role permission an undo needs: the one Mastodon requires for the reversing call."""


class Changed(Refused):
    """Not undone: the target is no longer as the action left it (someone changed it since)."""

    def __init__(self, target: str, now: str) -> None:
        super().__init__(f"{target} changed since: it is {now} now")
        self.target = target


def _changes(left: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """How a block differs now from how an action left it, in a moderator's words."""
    if now is None:
        return "not blocked"
    if left is None or left["id"] != now["id"] or left["severity"] != now["severity"]:
        return _block_words(str(now["severity"]))
    changed = [name.replace("_", " ") for name in BLOCK_FIELDS if left.get(name) != now.get(name)]
    return f"{_block_words(str(now['severity']))}, its {', '.join(changed)} changed"


def _restore(block: dict[str, Any], left: dict[str, Any] | None) -> dict[str, Any]:
    """How to put `block` back; `left`: the block as the action left it (None: no block)."""
    return {"kind": "domain_block.restore", "block": block, "domain": block["domain"], "left": left}


BLOCK_FIELDS = ("severity", "reject_media", "reject_reports", "private_comment", "public_comment", "obfuscate")
"""What a domain block is, beyond its domain: what `undo` compares and restores."""


def block_state(block: dict[str, Any]) -> dict[str, Any]:
    """A block as an action left it (or as it is now): its id and every field a moderator can change."""
    return {"id": str(block["id"]), **{name: block.get(name) for name in BLOCK_FIELDS}}


def undo(link: MastodonLink, recipe: dict[str, Any]) -> str:
    """Reverse one Done, if its target is still as the action left it; what was reversed. Raises
    Changed when someone (another moderator, the admin interface) changed the target since: their
    change is never undone."""
    kind = recipe["kind"]
    if kind.startswith("domain_block."):
        domain = recipe["domain"]
        current = link.domain_block(domain)
        now = None if current is None else block_state(current)
        if now != recipe["left"]:
            raise Changed(domain, _changes(recipe["left"], now))
    if kind == "domain_block.delete":
        link.delete_domain_block(recipe["id"])
        return f"{recipe['domain']}'s block lifted"
    if kind == "domain_block.restore":
        block = recipe["block"]
        fields = {name: block.get(name) for name in BLOCK_FIELDS}
        if recipe["left"] is None:
            link.create_domain_block(block["domain"], **fields)
        else:
            link.update_domain_block(recipe["left"]["id"], **fields)
        return f"{block['domain']} {_block_words(block['severity'])} again"
    if kind == "email_domain_block.delete":
        try:
            link.delete_email_domain_block(recipe["id"])
        except MastodonNotFoundError:
            return f"sign-ups from {recipe['domain']} were unblocked already"
        return f"sign-ups from {recipe['domain']} allowed again"
    if kind == "account.unsuspend":
        if not link.admin_account(recipe["id"]).get("suspended"):
            raise Changed(f"account {recipe['id']}", "not suspended")
        link.unsuspend_account(recipe["id"])
        return f"account {recipe['id']} unsuspended"
    if kind in ("accounts.unsuspend", "accounts.unsilence"):
        return _undo_accounts(link, recipe)
    raise ValueError(f"unknown undo {kind!r}")


def _undo_accounts(link: MastodonLink, recipe: dict[str, Any]) -> str:
    """Lift what a wave's account action did, on the accounts still as it left them. A job still going
    is stopped first, between two accounts: the accounts lifted are exactly those it did."""
    flag = "suspended" if recipe["kind"] == "accounts.unsuspend" else "silenced"
    what = recipe.get("what") or f"accounts {recipe['where']}"  # (a recipe from before the paced job)
    ids: list[str] | None = recipe.get("ids")
    if ids is None:
        progress = ACCOUNTS_JOB_PREFIX + recipe["job"]
        with _account_lock(link, progress):
            link.redis.set(progress + ":stop", "undo", ex=PROPOSAL_SECONDS)
            ids = [account for account, outcome in _outcomes(link.redis, progress).items() if outcome == "done"]
        if not ids:
            verb = "suspending" if flag == "suspended" else "silencing"
            return f"{verb} the {what} stopped before any was {flag}"
    progress = ACCOUNTS_UNDO_PREFIX + accounts_job_key(json.dumps(recipe, sort_keys=True))
    lifted_before = set(redis_text.texts(link.redis.smembers(progress)))
    lifted = len(lifted_before)
    changed = 0
    for account_id in ids:
        if account_id in lifted_before:  # a retried undo: lifted by its first try
            continue
        try:
            still = link.admin_account(account_id).get(flag)
        except MastodonNotFoundError:
            still = False
        if not still:
            changed += 1  # lifted by someone since (or gone): left as it is
            continue
        if flag == "suspended":
            link.unsuspend_account(account_id)
        else:
            link.unsilence_account(account_id)
        if "job" in recipe:  # another approval may act on it again
            verb = "suspend" if flag == "suspended" else "silence"
            _release_claim(link.redis, f"{ACCOUNT_CLAIM_PREFIX}{verb}:{account_id}", recipe["job"])
        lifted += 1
        link.redis.sadd(progress, account_id)
        link.redis.expire(progress, PROPOSAL_SECONDS)
    if not lifted:
        raise Changed(f"the {len(ids)} {what}", f"not {flag}")
    word = "unsuspended" if flag == "suspended" else "unsilenced"
    kept = f" ({changed} changed since, left as they are)" if changed else ""
    return f"{lifted} {what} {word}{kept}"


# --- Proposals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalItem:
    label: str  # "CVE-2025-30741: suspend 3, limit 2"
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Proposal:
    """What one DM offers to do. Without items it still has a thread: `dismiss` marks it handled."""

    items: tuple[ProposalItem, ...] = ()
    handles: str | None = None
    """A Redis key set when the proposal is approved or dismissed (a surge's "handled" mark: no more
    escalation DMs for it)."""

    @property
    def actions(self) -> list[Action]:
        return [action for item in self.items for action in item.actions]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Proposal:
        data = json.loads(raw)
        items = tuple(
            ProposalItem(
                item["label"],
                tuple(Action(**{**action, "targets": tuple(action.get("targets", ()))}) for action in item["actions"]),
            )
            for item in data["items"]
        )
        return cls(items=items, handles=data.get("handles"))


@dataclass(frozen=True)
class Message:
    """A DM and what it proposes (the reply `approve` carries out)."""

    text: str
    proposal: Proposal | None = field(default=None)
    shorter: tuple[str, ...] = ()
    """Shorter renderings of the same alert, less detail each: the outbox sends the first of `text` and
    these that fits defaults.ALERT_MAX_STATUSES statuses (each status of a thread notifies every moderator)."""


def store_proposal(connection: redis.Redis, proposal_id: str, proposal: Proposal, now: float) -> str:
    """Keep the proposal for its DM's thread; the thread subject that finds it."""
    pipe = connection.pipeline()
    pipe.set(PROPOSAL_PREFIX + proposal_id, proposal.to_json(), ex=PROPOSAL_SECONDS)
    pipe.zadd(PROPOSALS_OPEN, {proposal_id: now}, nx=True)
    pipe.zremrangebyscore(PROPOSALS_OPEN, "-inf", now - PROPOSAL_SECONDS)
    pipe.execute()
    return f"proposal:{proposal_id}"


def load_proposal(connection: redis.Redis, proposal_id: str) -> Proposal | None:
    raw = connection.get(PROPOSAL_PREFIX + proposal_id)
    return None if raw is None else Proposal.from_json(raw)


def done_actions(connection: redis.Redis, proposal_id: str) -> dict[str, str]:
    """Action numbers ("item.action") already carried out -> who approved them."""
    raw: dict[bytes, bytes] = connection.hgetall(PROPOSAL_PREFIX + proposal_id + ":done")  # type: ignore[assignment]
    return {key.decode(): value.decode() for key, value in raw.items()}


def mark_done(connection: redis.Redis, proposal_id: str, number: str, by: str) -> None:
    key = PROPOSAL_PREFIX + proposal_id + ":done"
    connection.hset(key, number, by)
    connection.expire(key, PROPOSAL_SECONDS)


def close_proposal(connection: redis.Redis, proposal_id: str, proposal: Proposal, how: str) -> None:
    """Approved in full or dismissed: no longer pending, and its surge is handled."""
    connection.zrem(PROPOSALS_OPEN, proposal_id)
    if proposal.handles:
        connection.set(proposal.handles, how, ex=PROPOSAL_SECONDS)


def open_proposals(connection: redis.Redis) -> int:
    return int(connection.zcard(PROPOSALS_OPEN))
