"""Which servers are this instance's peers: read by the scan and the federation audit."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import redis
from mastodon import MastodonNotFoundError

from bot.core.domains import NotADomain, normalized_domain
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
    peers = set()
    for name in raw:
        try:
            peers.add(normalized_domain(name))  # one spelling (bot/core/domains.py), so each server is read once
        except NotADomain:
            continue  # no server to read: an obfuscated block's stars, junk in a peer list
    return sorted(peers)
