"""What a scan proposed to block, and for which advisory: the scan family writes it, the incident family
reads it (a block a moderator made by hand for a proposed domain joins that advisory's incident)."""

from __future__ import annotations

import redis

PROPOSED = "tocsin:scan:proposed"  # hash: domain -> advisory id it was last proposed for
PROPOSED_TTL = 30 * 86400
"""A proposal older than a month no longer explains a block."""


def remember(connection: redis.Redis, proposed: dict[str, str]) -> None:
    if proposed:
        connection.hset(PROPOSED, mapping=proposed)
        connection.expire(PROPOSED, PROPOSED_TTL)


def advisory_proposed_for(connection: redis.Redis, domain: str) -> str | None:
    raw = connection.hget(PROPOSED, domain)
    return raw.decode() if raw is not None else None
