"""Which servers are this instance's peers: read by the scan and the federation audit."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import redis
from mastodon import MastodonNotFoundError

from bot.mastodon.client import DomainBlock
from bot.mastodon.context import Context
from handlers.shared.block_tags import tagged_advisory


def peer_domains(
    ctx: Context, blocks: list[DomainBlock], reported: Callable[[redis.Redis], Iterable[str]]
) -> list[str]:
    """The instance's peers, plus the domains Tocsin blocked for an advisory (the peers API leaves out
    blocked domains). With the peers API disabled (404): the servers seen in reports (`reported`, the report
    family's reader, passed in: shared code imports no family), and every block."""
    raw: list[str] = []
    client = ctx.mastodon.client
    try:
        if client is None:
            raise MastodonNotFoundError("no instance configured")
        raw += [str(domain) for domain in client.instance_peers()]
    except MastodonNotFoundError:
        raw += reported(ctx.redis)
        raw += [block.domain for block in blocks]
    raw += [block.domain for block in blocks if tagged_advisory(block)]
    return sorted({domain for domain in map(normalized_domain, raw) if domain is not None})


def normalized_domain(raw: str) -> str | None:
    """A peer's host name as one spelling: lower case, no trailing dot, internationalized names in their
    ASCII (IDNA) form; None for what is no host name (obfuscated blocks' stars, spaces, too long)."""
    name = raw.strip().rstrip(".").lower()
    if not name or "*" in name or " " in name or "/" in name:
        return None
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return name if len(name) <= 253 else None
