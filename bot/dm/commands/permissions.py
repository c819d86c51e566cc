"""Who may do what, now: the sender's role read from Mastodon (cached a minute for what changes nothing),
and what a refusal names."""

from __future__ import annotations

from mastodon import MastodonNotFoundError

from bot.core import defaults
from bot.dm.commands.keys import NOT_STAFF, ROLE_PREFIX
from bot.mastodon import actions
from bot.mastodon.actions import Action
from bot.mastodon.context import Context
from bot.pipeline.replies import Moderator


def missing_permission(moderator: Moderator, permissions: set[str]) -> str | None:
    """The refusal for a role without all of `permissions`, or None."""
    missing = sorted(flag for flag in permissions if not moderator.can(flag))
    return f"your role cannot {', '.join(flag.replace('_', ' ') for flag in missing)}" if missing else None


def permissions_needed(action: Action) -> set[str]:
    return {actions.KINDS[action.kind].permission}


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
