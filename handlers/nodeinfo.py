"""Peers' software from their NodeInfo: discovery, parsing with real-world quirks, fetching through the
SSRF-guarded fetcher, and a per-peer cache (a peer that answered is asked again after hours, one that did
not after a day). Parsing is pure; fetching stays at the edge."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bot.config import Settings
from bot.context import Context
from bot.fetching import Fetcher, FetchError, FetchPolicy

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


# --- Pure: NodeInfo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerSoftware:
    name: str  # lower case
    version: str
    open_registrations: bool | None = None


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
    return PeerSoftware(
        name=software["name"].strip().lower(),
        version=str(software.get("version") or "").strip()[:100],
        open_registrations=registrations if isinstance(registrations, bool) else None,
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


async def fetch_software(fetcher: Fetcher, domain: str) -> PeerSoftware:
    discovery = await fetcher.get_json(f"https://{domain}/.well-known/nodeinfo")
    link = nodeinfo_link(discovery)
    if link is None:
        raise FetchError("no-nodeinfo", "no NodeInfo 2.0/2.1 link")
    return parse_nodeinfo(await fetcher.get_json(link))


async def read_peers(
    fetcher: Fetcher, domains: Iterable[str], concurrency: int, progress: Callable[[PeerResult], None] | None = None
) -> list[PeerResult]:
    """Every domain's software, at most `concurrency` fetches at a time; failures become results."""
    limit = asyncio.Semaphore(concurrency)

    async def one(domain: str) -> PeerResult:
        async with limit:
            try:
                result = PeerResult(domain, software=await fetch_software(fetcher, domain))
            except FetchError as error:
                result = PeerResult(domain, error=error.reason)
            except Exception as error:  # a peer must never stop the scan
                log.warning("reading %s failed: %s", domain, type(error).__name__)
                result = PeerResult(domain, error="error")
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
            connect_timeout=min(5.0, settings.scan_timeout),
            total_timeout=settings.scan_timeout,
            max_bytes=settings.scan_max_bytes,
        )
    )


def read_peers_cached(
    ctx: Context,
    fetcher: Fetcher,
    domains: list[str],
    fresh: Iterable[str] = (),
    progress: Callable[[PeerResult], None] | None = None,
) -> list[PeerResult]:
    """Peers' software, from the cache where it is recent (except `fresh` domains), fetched otherwise."""
    recheck = set(fresh)
    cached = ctx.redis.mget([CACHE_PREFIX + domain for domain in domains]) if domains else []
    results: dict[str, PeerResult] = {}
    for domain, raw in zip(domains, cached, strict=True):
        if raw is not None and domain not in recheck:
            results[domain] = PeerResult.from_json(raw)
            if progress is not None:
                progress(results[domain])
    missing = [domain for domain in domains if domain not in results]
    fetched = asyncio.run(read_peers(fetcher, missing, ctx.settings.scan_concurrency, progress))
    pipe = ctx.redis.pipeline()
    for result in fetched:
        results[result.domain] = result
        ttl = SUCCESS_TTL if result.software else (GONE_TTL if result.error == "gone" else FAILURE_TTL)
        pipe.set(CACHE_PREFIX + result.domain, json.dumps(asdict(result)), ex=ttl)
    pipe.execute()
    return [results[domain] for domain in domains]
