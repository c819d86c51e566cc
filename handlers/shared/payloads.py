"""Mastodon's webhook objects as the detectors read them: small typed models, parsed once per event.

Parsing is lenient where Mastodon's shapes vary (older versions leave fields out, many are null):
unknown fields are ignored and a missing optional one becomes None or empty. An object no detector can
use (no id, no time, not an object at all) raises `Rejected`: the platform counts it and moves on, and
retrying it would not help. Only what the detectors need is kept; personal data was already reduced at
intake (bot/core/privacy.py): an email is its domain, an IP a keyed hash of its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.pipeline.events import parse_time
from bot.pipeline.families import Rejected

STATE_FLAGS = ("approved", "confirmed", "suspended", "silenced", "disabled")
"""The Admin::Account flags kept of an account (what a moderator did to it, or its sign-up progress);
null on older Mastodon versions, then not kept."""


def _object(event: dict[str, Any]) -> dict[str, Any]:
    found = event.get("object")
    if not isinstance(found, dict):
        raise Rejected(f"{event.get('event')} without an object")
    return found


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value).strip()


def _flag(value: object) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class Report:
    """An Admin::Report (report.created, report.updated)."""

    id: str
    created_at: float
    category: str
    comment: str
    resolved: bool
    reporter_id: str
    target_id: str
    target_domain: str | None  # None: a local account

    @classmethod
    def parse(cls, obj: object) -> Report:
        report = _dict(obj)
        report_id, created = _text(report.get("id")), parse_time(report.get("created_at"))
        if not report_id or created is None:
            raise Rejected("report without id or created_at")
        target = _dict(report.get("target_account"))
        domain = _text(target.get("domain")).lower()
        return cls(
            id=report_id,
            created_at=created,
            category=_text(report.get("category")) or "other",
            comment=_text(report.get("comment")),
            resolved=bool(report.get("action_taken")),
            reporter_id=_text(_dict(report.get("account")).get("id")),
            target_id=_text(target.get("id")),
            target_domain=domain or None,
        )

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Report:
        return cls.parse(_object(event))


@dataclass(frozen=True)
class AdminAccount:
    """An Admin::Account (account.created, account.approved, account.updated), reduced at intake."""

    id: str
    created_at: float | None
    domain: str | None  # None: local
    username: str
    email_domain: str
    network: str  # keyed hash of the sign-up IP's prefix
    invite: str  # id of the inviting account
    app: str  # id of the application that created it
    flags: dict[str, bool]  # of STATE_FLAGS, those the payload tells

    @classmethod
    def parse(cls, obj: object) -> AdminAccount:
        account = _dict(obj)
        account_id = _text(account.get("id"))
        if not account_id:
            raise Rejected("account without an id")
        flags = {name: _flag(account.get(name)) for name in STATE_FLAGS}
        return cls(
            id=account_id,
            created_at=parse_time(account.get("created_at")),
            domain=_text(account.get("domain")).lower() or None,
            username=_text(account.get("username")),
            email_domain=_text(account.get("email_domain")),
            network=_text(account.get("ip_prefix_hash")),
            invite=_text(account.get("invited_by_account_id")),
            app=_text(account.get("created_by_application_id")),
            flags={name: value for name, value in flags.items() if value is not None},
        )

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AdminAccount:
        account = cls.parse(_object(event))
        if event.get("event") == "account.approved":  # it fires when both are true
            return cls(**{**account.__dict__, "flags": {**account.flags, "approved": True, "confirmed": True}})
        return account


REPORT_KEPT = ("id", "created_at", "updated_at", "category", "comment", "action_taken")
ACCOUNT_KEPT = ("id", "username", "domain", "created_at", "email", "ip", "invited_by_account_id",
                "created_by_application_id", *STATE_FLAGS)  # fmt: skip


def slim_report(obj: dict[str, Any]) -> dict[str, Any]:
    """What `Report.parse` reads of a report. The admin API lists each with its statuses and two whole
    accounts (~6 KB): history kept for `tocsin replay` keeps this (~0.3 KB)."""
    target = _dict(obj.get("target_account"))
    return {
        **{name: obj[name] for name in REPORT_KEPT if name in obj},
        "account": {"id": _dict(obj.get("account")).get("id")},
        "target_account": {name: target.get(name) for name in ("id", "domain", "username")},
    }


def slim_account(obj: dict[str, Any]) -> dict[str, Any]:
    """What `AdminAccount.parse` reads of an Admin::Account, before intake's reduction (email and IP are
    still there: the reduction turns them into a domain and a network hash)."""
    return {name: obj[name] for name in ACCOUNT_KEPT if name in obj}


@dataclass(frozen=True)
class Status:
    """A local Status (status.created, status.updated), as the spam-wave detector reads it."""

    id: str
    created_at: float | None
    account_id: str
    account_created_at: float | None  # midnight of the sign-up day (the REST account)
    username: str
    boost: bool
    content: str  # HTML
    spoiler_text: str
    mentions: frozenset[str]  # accts (or ids) of the accounts it mentions
    card_url: str
    blurhashes: tuple[str, ...]  # of its media attachments

    @classmethod
    def parse(cls, obj: object) -> Status:
        status = _dict(obj)
        account = _dict(status.get("account"))
        mentions = status.get("mentions")
        media = status.get("media_attachments")
        return cls(
            id=_text(status.get("id")),
            created_at=parse_time(status.get("created_at")),
            account_id=_text(account.get("id")),
            account_created_at=parse_time(account.get("created_at")),
            username=_text(account.get("username")) or _text(account.get("acct")),
            boost=bool(status.get("reblog")),
            content=_text(status.get("content")),
            spoiler_text=" ".join(_text(status.get("spoiler_text")).split()),
            mentions=frozenset(
                _text(item.get("acct")) or _text(item.get("id"))
                for item in (mentions if isinstance(mentions, list) else [])
                if isinstance(item, dict) and (item.get("acct") or item.get("id"))
            ),
            card_url=_text(_dict(status.get("card")).get("url")),
            blurhashes=tuple(
                _text(item.get("blurhash"))
                for item in (media if isinstance(media, list) else [])
                if isinstance(item, dict) and item.get("blurhash")
            ),
        )

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Status:
        return cls.parse(_object(event))
