"""Redis replies read as text.

The connections never decode (`decode_responses` stays off: RQ stores pickles, backups copy bytes), so a
string reply is `bytes` at run time. redis-py 8 cannot see that flag in a type and annotates each one as
`bytes | str` (and a sorted-set range as members or (member, score) pairs, whichever was asked for);
these helpers are where that is said once, instead of a `.decode()` the type checker cannot follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Reply = bytes | str
"""One string reply as redis-py annotates it (`get`, `hget`, `type`, a list's or a set's member)."""

RangeReply = list[Reply] | list[tuple[Reply, Any]] | list[list[Any]]
"""A sorted-set range (`zrange`, `zrevrange`, `zrangebyscore`, …): redis-py's `ZSetRangeResponse`,
spelled out so that an older redis-py, which lacks the name, still type-checks."""


def text(raw: Reply) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def text_or_none(raw: Reply | None) -> str | None:
    return None if raw is None else text(raw)


def texts(raws: Iterable[Reply]) -> list[str]:
    """A list's or a set's members, in the order given."""
    return [text(raw) for raw in raws]


def text_map(raw: Mapping[Reply, Reply]) -> dict[str, str]:
    """A hash (`hgetall`)."""
    return {text(key): text(value) for key, value in raw.items()}


def members(reply: RangeReply) -> list[str]:
    """A sorted-set range asked for without its scores."""
    found = []
    for member in reply:
        if not isinstance(member, bytes | str):
            raise TypeError("this range carries scores: read it with scored()")
        found.append(text(member))
    return found


def scored(reply: RangeReply) -> list[tuple[str, float]]:
    """A sorted-set range asked for with its scores (`withscores=True`): (member, score) pairs."""
    found = []
    for pair in reply:
        if isinstance(pair, bytes | str):
            raise TypeError("this range has no scores: ask for them with withscores=True")
        member, score = pair
        found.append((text(member), float(score)))
    return found
