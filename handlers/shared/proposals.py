"""What a scan proposed to block, and for which advisory: the scan family writes it, the incident family
reads it (a block a moderator made by hand for a proposed domain joins that advisory's incident)."""

from __future__ import annotations

import redis

from bot.core import redis_text

PROPOSED = "tocsin:scan:proposed"  # hash: domain -> advisory id it was last proposed for
PROPOSED_TTL = 30 * 86400
"""A proposal older than a month no longer explains a block."""


def remember(connection: redis.Redis, proposed: dict[str, str]) -> None:
    if proposed:
        # redis-py types `mapping` as Mapping[FieldT, …], invariant in its key: it refuses any dict[str, str]
        connection.hset(PROPOSED, mapping=proposed)  # type: ignore[arg-type]
        connection.expire(PROPOSED, PROPOSED_TTL)


def advisory_proposed_for(connection: redis.Redis, domain: str) -> str | None:
    raw = connection.hget(PROPOSED, domain)
    return redis_text.text_or_none(raw)
