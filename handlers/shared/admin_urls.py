"""Links into Mastodon's admin interface that DMs share.

A cluster of accounts is one link to the admin accounts list, filtered (Admin::AccountsController with
AccountFilter: `origin`, `status`, `username`, `email`, …) instead of a link per account: every link is a
line, every line of a DM costs room, and each status of a DM thread notifies every moderator again.
"""

from __future__ import annotations

from urllib.parse import urlencode


def accounts_url(instance_url: str, kind: str = "", value: str = "", pending: bool = False) -> str:
    """The admin accounts list of local accounts sharing a sign-up trait (`kind` as handlers.shared.young_accounts'
    ClusterKind names it), newest first; without a trait Mastodon can filter by, all local accounts (or the
    pending ones).

    Mastodon matches `username` and `email` as prefixes (SQL LIKE `value%`): a name stem selects the
    stem's accounts, and `%@domain` (LIKE's own wildcard first) the addresses at that domain."""
    query = {"origin": "local"}
    if pending:
        query["status"] = "pending"
    if kind == "name pattern" and value:
        query["username"] = value
    elif kind == "email domain" and value:
        query["email"] = f"%@{value}"
    query["order"] = "recent"
    return f"{instance_url}/admin/accounts?{urlencode(query)}"


def filters_by(kind: str) -> bool:
    """Whether the admin accounts list can select a cluster of this kind by itself."""
    return kind in ("name pattern", "email domain")
