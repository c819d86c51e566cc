"""What other families may read of the report family's state — the only door into it (pyproject.toml's
import contract names it): whether a server's report surge is open (incidents), which servers were
reported (the scan, when the peers API is off), reports per hour (an incident's chart)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from bot.core import redis_text
from handlers.reports.surge import ACTIVE_BUCKETS, EVERYWHERE, LOCAL, SURGES, TIMES_PREFIX


def surge_open(connection: redis.Redis, domain: str) -> bool:
    """Whether a report surge is open for this server (a block for it belongs to a spam-wave incident)."""
    return SURGES.state(connection, domain) is not None


def servers_seen(connection: redis.Redis) -> set[str]:
    """The remote servers reported recently (what a scan reads when the peers API is off)."""
    return set(redis_text.members(connection.zrange(ACTIVE_BUCKETS, 0, -1))) - {LOCAL, EVERYWHERE}


def counts_per_hour(connection: redis.Redis, domains: list[str], hours: Sequence[float]) -> list[int]:
    """Reports against these servers in each hour starting at `hours` (an incident's chart)."""
    pipe = connection.pipeline()
    for hour in hours:
        for domain in domains:
            pipe.zcount(TIMES_PREFIX + domain, hour, f"({hour + 3600}")
    counts = pipe.execute()
    per = len(domains)
    return [sum(counts[i * per : (i + 1) * per]) for i in range(len(hours))] if per else [0] * len(hours)
