"""Synthetic report traffic shaped like the brief's incidents (event times, not wall time)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import fixture, report_event

BACKGROUND_DOMAINS = [f"server{n}.example" for n in range(40)] + [None]  # None: local accounts


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def background(start: datetime, days: int, per_week: int = 20, seed: int = 1) -> list[dict[str, Any]]:
    """~per_week reports a week, spread over many servers and local accounts."""
    rng = random.Random(seed)
    count = per_week * days // 7
    events = []
    for n in range(count):
        moment = start + timedelta(seconds=rng.uniform(0, days * 86400))
        domain = rng.choice(BACKGROUND_DOMAINS)
        events.append(
            report_event(
                100000 + n,
                iso(moment),
                domain,
                str(rng.randint(1, 400)),
                reporter_id=str(rng.randint(1000, 1100)),
                category=rng.choice(["spam", "other"]),
            )
        )
    return sorted(events, key=lambda event: event["created_at"])


def burst(
    start: datetime,
    domain: str,
    reports: int,
    hours: float,
    first_id: int = 500000,
    accounts: int = 60,
    comment: str = "crypto spam",
    seed: int = 2,
) -> list[dict[str, Any]]:
    """A spam wave: `reports` reports over `hours` against `accounts` accounts of one server."""
    rng = random.Random(seed)
    step = hours * 3600 / reports
    return [
        report_event(
            first_id + n,
            iso(start + timedelta(seconds=n * step + rng.uniform(0, step / 2))),
            domain,
            str(700000 + rng.randint(0, accounts - 1)),
            reporter_id=str(rng.randint(1000, 1300)),
            comment=f"{comment} #{n}",
            category="spam",
        )
        for n in range(reports)
    ]


# --- Sign-ups (account.created), shaped like the brief's bot sign-up surge.

_SIGNUP = fixture("account.created")
ORDINARY_MAIL = ["mail.example.com", "example.org", "post.example.net", "gmail.com"]
ORDINARY_NAMES = ["hiker", "maria_b", "tomatofan", "quietreader", "jonas", "birdwatcher", "lena", "paulo_r"]


def signup_event(
    account_id: int | str,
    created_at: str,
    username: str,
    email: str,
    ip: str,
    confirmed: bool = False,
    approved: bool = True,
    invited_by: str | None = None,
    app: str | None = None,
    event: str = "account.created",
) -> dict[str, Any]:
    """A variant of the example account.created payload (reserved domains, documentation IPs only)."""
    payload = copy.deepcopy(_SIGNUP)
    payload["event"] = event
    payload["created_at"] = created_at
    obj = payload["object"]
    obj.update(
        id=str(account_id),
        username=username,
        created_at=created_at,
        email=email,
        ip=ip,
        ips=[{"ip": ip, "used_at": created_at}],
        confirmed=confirmed,
        approved=approved,
    )
    if invited_by is not None:
        obj["invited_by_account_id"] = invited_by
    if app is not None:
        obj["created_by_application_id"] = app
    obj["account"].update(id=str(account_id), username=username, acct=username)
    return payload


def signup_background(start: datetime, days: int, per_day: int = 3, seed: int = 11) -> list[dict[str, Any]]:
    """Ordinary sign-ups: ~per_day a day, varied names, mail providers and networks."""
    rng = random.Random(seed)
    events = []
    moments = sorted(start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(per_day * days))
    for n, moment in enumerate(moments):  # ids grow with time, like Mastodon's
        name = f"{rng.choice(ORDINARY_NAMES)}{rng.choice(['', '_', 'x'])}{rng.randint(1, 9)}"
        events.append(
            signup_event(
                300000 + n,
                iso(moment),
                name,
                f"{name}@{rng.choice(ORDINARY_MAIL)}",
                f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            )
        )
    return events


def signup_burst(
    start: datetime,
    count: int,
    minutes: float,
    mail_domain: str = "spam.example",
    first_id: int = 900000,
    seed: int = 12,
) -> list[dict[str, Any]]:
    """Bot sign-ups: generated names with a shared stem, one mail domain, one /24."""
    rng = random.Random(seed)
    step = minutes * 60 / count
    return [
        signup_event(
            first_id + n,
            iso(start + timedelta(seconds=n * step)),
            f"cryptodeals{rng.randint(1000, 9999)}",
            f"bot{n}@{mail_domain}",
            f"203.0.113.{rng.randint(1, 254)}",
            approved=False,
        )
        for n in range(count)
    ]
