"""Peers' software from their NodeInfo: discovery, parsing with real-world quirks, fetching through the
SSRF-guarded fetcher, and a per-peer cache (a peer that answered is asked again after hours, one that did
not after a day, a dead one after 1, 3, 7, 14, then 30 days). Parsing is pure; fetching stays at the edge."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bot.core.config import Settings
from bot.core.fetching import Fetcher, FetchError, FetchPolicy
from bot.mastodon.context import Context
from handlers.shared.settings import PeerScanSettings

log = logging.getLogger(__name__)

NODEINFO_SCHEMAS = ("2.1", "2.0")
"""Preferred first. A discovery document links each schema it serves by `rel` (never assume a path)."""
_SCHEMA_REL = re.compile(r"^https?://nodeinfo\.diaspora\.software/ns/schema/(\d+\.\d+)$")

CACHE_PREFIX = "tocsin:nodeinfo:"  # + domain: JSON of the last PeerResult
SUCCESS_TTL = 6 * 3600
"""A peer that answered is asked again after 6 hours: upgrades should show up on the next daily scan."""
FAILURE_TTL = 24 * 3600
"""A peer that did not answer is left alone for a day: no hammering of servers that are down."""
GONE_TTL = 7 * 24 * 3600
"""410 Gone: the server said it is gone for good; look again in a week."""
DEAD_REASONS = frozenset({"dns", "connect", "connect-timeout", "tls"})
"""No such name, connection refused or unanswered, a broken certificate: the server is not there. Most of
a large instance's peers are like this (servers that closed years ago); they are asked again ever later."""
DEAD_BACKOFF = tuple(days * 24 * 3600 for days in (1, 3, 7, 14, 30))
"""Seconds a dead peer is left alone after its 1st, 2nd, … consecutive dead answer (the last repeats)."""
DEAD_COUNT_PREFIX = "tocsin:nodeinfo:dead:"  # + domain: consecutive dead answers
DEAD_COUNT_TTL = 90 * 24 * 3600
"""A count is forgotten 90 days after the last dead answer (the longest backoff, three times)."""
STORE_BATCH = 50
"""Results written to Redis together while a scan reads: memory stays flat, a killed scan loses little."""
STORE_EVERY = 5.0
"""Seconds at most between two writes while results come (a reading job's lease is renewed by them)."""


# --- Pure: NodeInfo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerSoftware:
    name: str  # lower case
    version: str
    open_registrations: bool | None = None
    active_users: int | None = None  # usage.users.activeMonth: which of many servers to size first


def nodeinfo_link(discovery: Any) -> str | None:
    """The NodeInfo document's URL from `/.well-known/nodeinfo`: schema 2.1 if offered, else 2.0."""
    links = discovery.get("links") if isinstance(discovery, dict) else None
    if isinstance(links, dict):
        links = [links]  # one link as an object, not a list (micro.blog serves this)
    by_schema: dict[str, str] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            match = _SCHEMA_REL.match(str(link.get("rel", "")))
            if match:
                by_schema.setdefault(match.group(1), link["href"])
    return next((by_schema[schema] for schema in NODEINFO_SCHEMAS if schema in by_schema), None)


def parse_nodeinfo(document: Any) -> PeerSoftware:
    """Software name and version, tolerating real-world quirks (capitalized names, metadata as an
    array, openRegistrations as a string, missing usage)."""
    software = document.get("software") if isinstance(document, dict) else None
    if not isinstance(software, dict) or not isinstance(software.get("name"), str) or not software["name"].strip():
        raise FetchError("no-software", "NodeInfo without software.name")
    registrations = document.get("openRegistrations")
    if isinstance(registrations, str):
        registrations = {"true": True, "false": False}.get(registrations.strip().lower())
    usage = document.get("usage")
    users = usage.get("users") if isinstance(usage, dict) else None
    active = users.get("activeMonth") if isinstance(users, dict) else None
    return PeerSoftware(
        name=software["name"].strip().lower(),
        version=str(software.get("version") or "").strip()[:100],
        open_registrations=registrations if isinstance(registrations, bool) else None,
        active_users=active if isinstance(active, int) and not isinstance(active, bool) and active >= 0 else None,
    )


@dataclass(frozen=True)
class PeerResult:
    domain: str
    software: PeerSoftware | None = None
    error: str | None = None  # why it could not be read (FetchError.reason)

    @classmethod
    def from_json(cls, raw: bytes | str) -> PeerResult:
        data = json.loads(raw)
        software = data.get("software")
        return cls(data["domain"], PeerSoftware(**software) if software else None, data.get("error"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


async def fetch_software_document(fetcher: Fetcher, domain: str) -> Any:
    """A peer's NodeInfo document, found through its discovery document."""
    discovery = await fetcher.get_json(f"https://{domain}/.well-known/nodeinfo")
    link = nodeinfo_link(discovery)
    if link is None:
        raise FetchError("no-nodeinfo", "no NodeInfo 2.0/2.1 link")
    return await fetcher.get_json(link)


async def fetch_software(fetcher: Fetcher, domain: str) -> PeerSoftware:
    return parse_nodeinfo(await fetch_software_document(fetcher, domain))


async def read_peer(fetcher: Fetcher, domain: str) -> PeerResult:
    """One domain's software; every failure becomes a result (a peer must never stop a scan)."""
    try:
        return PeerResult(domain, software=await fetch_software(fetcher, domain))
    except FetchError as error:
        return PeerResult(domain, error=error.reason)
    except Exception as error:
        log.warning("reading %s failed: %s", domain, type(error).__name__)
        return PeerResult(domain, error="error")


async def read_peers(
    fetcher: Fetcher, domains: Iterable[str], concurrency: int, progress: Callable[[PeerResult], None] | None = None
) -> list[PeerResult]:
    """Every domain's software, at most `concurrency` fetches at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def one(domain: str) -> PeerResult:
        async with limit:
            result = await read_peer(fetcher, domain)
        if progress is not None:
            progress(result)
        return result

    return list(await asyncio.gather(*(one(domain) for domain in domains)))


# --- Fetching, cached ----------------------------------------------------------------------------


def make_fetcher(settings: Settings) -> Fetcher:
    public = settings.public_url or settings.mastodon_url or "unknown instance"
    return Fetcher(
        FetchPolicy(
            user_agent=f"Tocsin/0.1 (+{public}; NodeInfo scan for security advisories)",
            allowed_private=tuple(settings.allowed_private_addresses),
            connect_timeout=min(5.0, settings.section(PeerScanSettings).timeout),
            total_timeout=settings.section(PeerScanSettings).timeout,
            max_bytes=settings.section(PeerScanSettings).max_bytes,
        )
    )


def cache_results(connection: redis.Redis, results: list[PeerResult]) -> None:
    """Remember what each peer answered, for as long as its kind of answer deserves (see the TTLs)."""
    dead = [result.domain for result in results if result.error in DEAD_REASONS]
    counts: dict[str, int] = {}
    if dead:
        pipe = connection.pipeline(transaction=False)
        for domain in dead:
            pipe.incr(DEAD_COUNT_PREFIX + domain)
            pipe.expire(DEAD_COUNT_PREFIX + domain, DEAD_COUNT_TTL)
        counts = dict(zip(dead, pipe.execute()[::2], strict=True))
    pipe = connection.pipeline(transaction=False)
    for result in results:
        if result.software is not None:
            ttl = SUCCESS_TTL
            pipe.delete(DEAD_COUNT_PREFIX + result.domain)  # alive again: the backoff starts over
        elif result.domain in counts:
            ttl = DEAD_BACKOFF[min(counts[result.domain], len(DEAD_BACKOFF)) - 1]
        else:
            ttl = GONE_TTL if result.error == "gone" else FAILURE_TTL
        pipe.set(CACHE_PREFIX + result.domain, result.to_json(), ex=ttl)
    pipe.execute()


def cached_results(connection: redis.Redis, domains: list[str]) -> list[PeerResult]:
    """The results the cache still holds for these domains."""
    raw = connection.mget([CACHE_PREFIX + domain for domain in domains]) if domains else []
    return [PeerResult.from_json(item) for item in raw if item is not None]


def read_peers_streamed(
    ctx: Context,
    fetcher: Fetcher,
    domains: list[str],
    store: Callable[[list[PeerResult]], None],
    fresh: bool | Iterable[str] = (),
) -> None:
    """Every domain's result, handed to `store` in batches as they come: from the cache where recent
    (unless `fresh`: True for all, or the domains to read again), read otherwise and cached."""
    recheck = set(domains) if fresh is True else set(fresh or ())
    asked = [domain for domain in domains if domain not in recheck]
    cached = ctx.redis.mget([CACHE_PREFIX + domain for domain in asked]) if asked else []
    known = [PeerResult.from_json(raw) for raw in cached if raw is not None]
    for start in range(0, len(known), STORE_BATCH * 10):
        store(known[start : start + STORE_BATCH * 10])
    seen = {result.domain for result in known}
    missing = [domain for domain in domains if domain not in seen]
    batch: list[PeerResult] = []
    flushed = [time.monotonic()]

    def flush() -> None:
        cache_results(ctx.redis, batch)
        store(list(batch))
        batch.clear()
        flushed[0] = time.monotonic()

    def collect(result: PeerResult) -> None:
        batch.append(result)
        if len(batch) >= STORE_BATCH or time.monotonic() - flushed[0] >= STORE_EVERY:
            flush()

    asyncio.run(read_peers(fetcher, missing, ctx.settings.section(PeerScanSettings).concurrency, collect))
    if batch:
        flush()


def read_peers_cached(
    ctx: Context, fetcher: Fetcher, domains: list[str], fresh: bool | Iterable[str] = ()
) -> list[PeerResult]:
    """Peers' software, in the order asked (a few peers: `tocsin outreach`; scans stream, see scan_runs)."""
    results: dict[str, PeerResult] = {}
    read_peers_streamed(ctx, fetcher, domains, lambda batch: results.update((r.domain, r) for r in batch), fresh)
    return [results[domain] for domain in domains]
