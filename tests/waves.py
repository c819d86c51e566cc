"""Synthetic report traffic shaped like the brief's incidents (event times, not wall time)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import report_event

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
