"""Synthetic report traffic shaped like the brief's incidents (event times, not wall time)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import fixture, report_event

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


# --- Local statuses (status.created), ordinary and spam.

_STATUS = fixture("status.created")
ORDINARY_POSTS = [
    "First tomatoes of the season! Thanks for the seeds",
    "Anyone else watching the eclipse tonight? Clear skies here",
    "New blog post about my trail run this morning",
    "Reading a great book on the history of cartography",
    "Coffee, rain, and a quiet Sunday. Perfect.",
    "Our choir's concert is next Friday, tickets at the door",
    "Finally fixed the bike. Took three evenings and one new chain",
]


def status_event(
    status_id: int | str,
    created_at: str,
    account_id: str,
    username: str,
    account_created: str,
    text: str,
    mentions: list[str] | None = None,
    blurhash: str | None = None,
    link: str | None = None,
    event: str = "status.created",
) -> dict[str, Any]:
    """A variant of the example status.created payload: `text` as HTML with its mentions and link."""
    payload = copy.deepcopy(_STATUS)
    payload["event"] = event
    payload["created_at"] = created_at
    obj = payload["object"]
    mentioned = mentions or []
    spans = " ".join(
        f'<span class="h-card" translate="no"><a href="https://{acct.split("@")[1]}/@{acct.split("@")[0]}" '
        f'class="u-url mention">@<span>{acct.split("@")[0]}</span></a></span>'
        for acct in mentioned
    )
    anchor = f' <a href="{link}" rel="nofollow noopener" target="_blank">{link}</a>' if link else ""
    obj.update(
        id=str(status_id),
        created_at=created_at,
        content=f"<p>{spans} {text}{anchor}</p>",
        uri=f"https://social.example.org/users/{username}/statuses/{status_id}",
        url=f"https://social.example.org/@{username}/{status_id}",
        mentions=[
            {"id": str(1000 + n), "username": acct.split("@")[0], "url": "", "acct": acct}
            for n, acct in enumerate(mentioned)
        ],
        tags=[],
        card=None,
        media_attachments=[],
    )
    if blurhash is not None:
        media = copy.deepcopy(_STATUS["object"]["media_attachments"][0])
        media["blurhash"] = blurhash
        media["id"] = f"{status_id}1"
        obj["media_attachments"] = [media]
    obj["account"].update(id=account_id, username=username, acct=username, created_at=account_created)
    return payload


def day_of(moment: datetime) -> str:
    """REST::Account's created_at: midnight of the sign-up day."""
    return iso(moment.replace(hour=0, minute=0, second=0, microsecond=0))


def ordinary_posting(start: datetime, hours: int, per_hour: int = 40, seed: int = 21) -> list[dict[str, Any]]:
    """Established members posting, a few new members introducing themselves, shared news links."""
    rng = random.Random(seed)
    events = []
    for n in range(hours * per_hour):
        moment = start + timedelta(seconds=rng.uniform(0, hours * 3600))
        young = rng.random() < 0.1
        account = rng.randint(1, 40) if young else rng.randint(100, 600)
        created = moment - timedelta(days=rng.uniform(0, 3) if young else rng.uniform(60, 900))
        link = "https://news.example.com/2026/11/election-results" if rng.random() < 0.05 else None
        mentions = [f"friend{rng.randint(1, 50)}@other.example.net" for _ in range(rng.randint(0, 3))]
        events.append(
            status_event(
                5_000_000 + n,
                iso(moment),
                str(account),
                f"member{account}",
                day_of(created),
                f"{rng.choice(ORDINARY_POSTS)} ({n})",
                mentions=mentions,
                link=link,
            )
        )
    return sorted(events, key=lambda event: event["created_at"])


def mention_spam(
    start: datetime, posts: int, minutes: float, accounts: int = 10, mentions: int = 8, first_id: int = 7_000_000
) -> list[dict[str, Any]]:
    """The Feb 2024 pattern: fresh accounts, each post mentioning many people, one image."""
    step = minutes * 60 / posts
    return [
        status_event(
            first_id + n,
            iso(start + timedelta(seconds=n * step)),
            str(80000 + n % accounts),
            f"spambot{n % accounts}",
            day_of(start),
            f"Look at this! #{n}",
            mentions=[f"victim{n * mentions + k}@other.example.net" for k in range(mentions)],
            blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        )
        for n in range(posts)
    ]
