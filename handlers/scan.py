"""Unpatched federated software: read the peers' NodeInfo, match advisories, size the impact, propose.

A scan lists the instance's peers (GET /api/v1/instance/peers, which leaves out blocked domains, plus
the domains Tocsin blocked for an advisory, so upgrades are seen), reads each one's NodeInfo through
bot.fetching (SSRF-guarded, bounded), and for every advisory sorts the servers running that software
into fixed, vulnerable and unreadable. Vulnerable ones are sized by admin measures (follows both ways)
and proposed for suspension, or for a limit where many follows would be cut, as a Mastodon domain-block
CSV. Blocks Tocsin applies carry BLOCK_TAG in their private comment; a later scan that finds such a
server on a fixed version tells the moderators it can be refederated.

Parsing and classification are pure functions; fetching, the admin API and posting stay at the edges.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from mastodon import MastodonNotFoundError

from bot import defaults
from bot.config import Settings
from bot.context import Context, get_context
from bot.fetching import Fetcher, FetchError, FetchPolicy
from bot.mastodon import DomainBlock, Impact
from bot.outbox import Post
from bot.queue import enqueue_once
from bot.templating import render_text
from handlers import proposals, reports
from handlers.advisories import (
    SEVERITIES,
    Advisory,
    Fork,
    Running,
    Verdict,
    Version,
    load_advisories,
    load_forks,
    read_running,
)
from handlers.domain_blocks import CSV_HEADER, tagged_advisory

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
LAST_SCAN = "tocsin:scan:last"  # epoch seconds of the last scheduled scan (for `tocsin doctor`)
SCAN_CLAIM = "tocsin:scan:claimed"  # set, with the interval as TTL, by the sweep that enqueues a scan
SCAN_JOB_ID = "tocsin-scan"


IMPACT_BUCKETS = ((5, "≤ 5"), (10, "6–10"), (100, "11–100"))
"""Upper bounds of follows either way; more than the last is "> 100"."""


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


# --- Pure: findings and proposals ----------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """A server running the advisory's software, as the scan saw it."""

    domain: str
    version: Version
    shown: str  # the version as moderators read it: "4.6.5", "Hometown 1.0.7 (Mastodon 3.5.5)"
    impact: Impact | None = None
    block: DomainBlock | None = None

    @property
    def follows(self) -> int | None:
        """Follows either way, the larger of the two (what cutting federation would cost)."""
        return None if self.impact is None else max(self.impact.local_follows, self.impact.remote_followers)


@dataclass
class Finding:
    advisory: Advisory
    vulnerable: list[Exposure] = field(default_factory=list)
    fixed: list[Exposure] = field(default_factory=list)
    uncertain: list[Exposure] = field(default_factory=list)  # pre-releases that may predate the fix
    unparsable: list[str] = field(default_factory=list)  # running it, with a version we cannot read

    @property
    def total(self) -> int:
        return len(self.vulnerable) + len(self.fixed) + len(self.uncertain) + len(self.unparsable)

    @property
    def outreach(self) -> list[Exposure]:
        """Vulnerable servers whose admins should hear of it, though blocking them protects no one of ours
        (the advisory exposes nothing of this instance): largest first."""
        if self.advisory.exposes_members:
            return []
        return sorted(self.vulnerable, key=lambda item: (-(item.follows or 0), item.domain))

    def largest(self) -> Exposure | None:
        """The vulnerable server with the most follows either way."""
        return min(self.vulnerable, key=lambda item: (-(item.follows or 0), item.domain), default=None)

    def version_groups(self) -> list[tuple[str, int]]:
        """Vulnerable versions as the brief's report counts them: each version on a branch that has a fix,
        then "older versions" for branches that never got one."""
        on_fixed_branch: Counter[str] = Counter()
        older = 0
        fixed_branches = {fix.branch for fix in self.advisory.fixed}
        for exposure in self.vulnerable:
            if exposure.version.branch in fixed_branches:
                on_fixed_branch[exposure.shown] += 1
            else:
                older += 1
        groups = sorted(on_fixed_branch.items(), key=lambda item: (-item[1], item[0]))
        return groups + ([("older versions", older)] if older else [])

    def fixed_versions(self) -> list[tuple[str, int]]:
        return Counter(exposure.shown for exposure in self.fixed).most_common()


def running(result: PeerResult, forks: dict[str, Fork]) -> Running | None:
    if result.software is None:
        return None
    return read_running(result.software.name, result.software.version, forks)


def find(advisory: Advisory, results: Iterable[PeerResult], forks: dict[str, Fork]) -> Finding:
    finding = Finding(advisory)
    lists = {Verdict.AFFECTED: finding.vulnerable, Verdict.FIXED: finding.fixed, Verdict.UNCERTAIN: finding.uncertain}
    for result in results:
        peer = running(result, forks)
        if peer is None or not advisory.concerns(peer.software):
            continue
        if peer.version is None:
            finding.unparsable.append(result.domain)
        else:
            lists[advisory.assess(peer.version)].append(Exposure(result.domain, peer.version, peer.shown))
    return finding


def impact_bucket(follows: int | None) -> str:
    if follows is None:
        return "unknown"
    return next((label for bound, label in IMPACT_BUCKETS if follows <= bound), f"> {IMPACT_BUCKETS[-1][0]}")


def impact_buckets(exposures: Iterable[Exposure]) -> list[tuple[str, int]]:
    counts = Counter(impact_bucket(exposure.follows) for exposure in exposures)
    order = [label for _bound, label in IMPACT_BUCKETS] + [f"> {IMPACT_BUCKETS[-1][0]}", "unknown"]
    return [(label, counts[label]) for label in order if counts[label]]


@dataclass(frozen=True)
class Proposal:
    domain: str
    severity: str  # suspend | silence
    reason: str  # why this severity (shown to moderators)
    public_comment: str
    advisory_id: str


def propose(finding: Finding, limit_above_follows: int) -> list[Proposal]:
    """Suspend the vulnerable servers not already suspended; limit instead where more than
    `limit_above_follows` follows would be cut, unless the advisory is critical. Nothing at all when the
    advisory exposes nothing of this instance: a block would cut our members off and protect no one
    (those servers' admins are told instead, see Finding.outreach)."""
    proposals: list[Proposal] = []
    advisory = finding.advisory
    if not advisory.exposes_members:
        return proposals
    for exposure in sorted(finding.vulnerable, key=lambda item: (-(item.follows or 0), item.domain)):
        if exposure.block is not None and exposure.block.severity == "suspend":
            continue
        fix = advisory.fixed_in(exposure.version)
        comment = f"Runs {exposure.shown}, affected by {advisory.id} (fixed in {fix}). Upgrade, then ask us."
        follows = exposure.follows
        many = follows is not None and follows > limit_above_follows
        severity = "silence" if many and advisory.severity != "critical" else "suspend"
        if many and severity == "silence":
            reason = f"limit, not suspend: {follows} follows would be cut (more than {limit_above_follows})"
        elif many:
            reason = f"suspend although {follows} follows would be cut: the advisory is critical"
        else:
            reason = ""
        if exposure.block is not None and exposure.block.severity == severity:
            continue  # already blocked as proposed
        proposals.append(Proposal(exposure.domain, severity, reason, comment[:1000], advisory.id))
    return proposals


def blocks_csv(proposals: Iterable[Proposal]) -> str:
    """Mastodon's domain-block CSV, importable in Administration → Federation."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for proposal in proposals:
        writer.writerow([proposal.domain, proposal.severity, "false", "false", proposal.public_comment, "false"])
    return out.getvalue()


def refederation_candidates(
    blocks: Iterable[DomainBlock],
    results: dict[str, PeerResult],
    advisories: dict[str, Advisory],
    forks: dict[str, Fork],
) -> list[tuple[DomainBlock, Advisory, Running]]:
    """Blocks applied for an advisory whose server now runs a version the advisory surely does not affect."""
    candidates = []
    for block in blocks:
        advisory = advisories.get(tagged_advisory(block) or "")
        result = results.get(block.domain)
        peer = running(result, forks) if result is not None else None
        if advisory is None or peer is None or peer.version is None or not advisory.concerns(peer.software):
            continue
        if advisory.assess(peer.version) is Verdict.FIXED:
            candidates.append((block, advisory, peer))
    return candidates


# --- Scan: I/O at the edges ----------------------------------------------------------------------


@dataclass
class ScanReport:
    scanned: int
    unreadable: dict[str, int]  # reason -> servers
    software: list[tuple[str, int]]  # most common software names
    findings: list[Finding]
    proposals: dict[str, list[Proposal]]  # advisory id -> proposals
    refederate: list[tuple[DomainBlock, Advisory, Running]]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        def exposure(item: Exposure) -> dict[str, Any]:
            return {
                "domain": item.domain,
                "version": item.shown,
                "local_follows": item.impact.local_follows if item.impact else None,
                "remote_followers": item.impact.remote_followers if item.impact else None,
                "blocked": item.block.severity if item.block else None,
            }

        return {
            "scanned": self.scanned,
            "seconds": round(self.seconds, 1),
            "unreadable": self.unreadable,
            "software": dict(self.software),
            "advisories": [
                {
                    "id": finding.advisory.id,
                    "software": list(finding.advisory.software),
                    "severity": finding.advisory.severity,
                    "exposes": list(finding.advisory.exposes),
                    "exploited": finding.advisory.exploited,
                    "running": finding.total,
                    "vulnerable": [exposure(item) for item in finding.vulnerable],
                    "fixed": [exposure(item) for item in finding.fixed],
                    "uncertain": [exposure(item) for item in finding.uncertain],
                    "unparsable": finding.unparsable,
                    "outreach": [item.domain for item in finding.outreach],
                    "impact": dict(impact_buckets(finding.vulnerable)),
                    "proposals": [asdict(proposal) for proposal in self.proposals.get(finding.advisory.id, [])],
                }
                for finding in self.findings
            ],
            "refederate": [
                {"domain": block.domain, "advisory": advisory.id, "version": peer.shown}
                for block, advisory, peer in self.refederate
            ],
        }


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


def peer_domains(ctx: Context, blocks: list[DomainBlock]) -> list[str]:
    """The instance's peers, plus the domains Tocsin blocked for an advisory (the peers API leaves out
    blocked domains). With the peers API disabled (404): the servers seen in reports, and every block."""
    domains: set[str] = set()
    client = ctx.mastodon.client
    try:
        if client is None:
            raise MastodonNotFoundError("no instance configured")
        domains.update(str(domain).lower() for domain in client.instance_peers())
    except MastodonNotFoundError:
        domains.update(reports.servers_seen(ctx.redis))
        domains.update(block.domain for block in blocks if "*" not in block.domain)
    domains.update(block.domain for block in blocks if tagged_advisory(block) and "*" not in block.domain)
    return sorted(domain for domain in domains if domain and len(domain) <= 253)


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


def run_scan(
    ctx: Context,
    advisory_ids: Iterable[str] = (),
    fresh: bool = False,
    progress: Callable[[PeerResult], None] | None = None,
    domains: list[str] | None = None,
) -> ScanReport:
    started = time.monotonic()
    advisories = load_advisories(ctx.settings.advisory_dir)
    forks = load_forks(ctx.settings.advisory_dir)
    wanted = set(advisory_ids)
    if wanted:
        advisories = [advisory for advisory in advisories if advisory.id in wanted]
    blocks = ctx.mastodon.domain_blocks()
    targets = domains if domains is not None else peer_domains(ctx, blocks)
    tagged = [block.domain for block in blocks if tagged_advisory(block)]
    results = read_peers_cached(ctx, make_fetcher(ctx.settings), targets, targets if fresh else tagged, progress)
    by_domain = {result.domain: result for result in results}
    findings = []
    proposals: dict[str, list[Proposal]] = {}
    for advisory in advisories:
        finding = find(advisory, results, forks)
        if finding.total == 0:
            continue
        finding.vulnerable = [_with_impact(ctx, exposure) for exposure in finding.vulnerable]
        finding.fixed = [_with_impact(ctx, exposure) for exposure in finding.fixed]
        finding.uncertain = [_with_impact(ctx, exposure) for exposure in finding.uncertain]
        findings.append(finding)
        proposals[advisory.id] = propose(finding, ctx.settings.scan_limit_above_follows)
    unreadable = Counter(result.error for result in results if result.error)
    software = Counter(result.software.name for result in results if result.software)
    return ScanReport(
        scanned=len(results),
        unreadable=dict(unreadable.most_common()),
        software=software.most_common(8),
        findings=findings,
        proposals=proposals,
        refederate=refederation_candidates(
            blocks, by_domain, {advisory.id: advisory for advisory in advisories}, forks
        ),
        seconds=time.monotonic() - started,
    )


def _with_impact(ctx: Context, exposure: Exposure) -> Exposure:
    return replace(exposure, impact=ctx.mastodon.impact(exposure.domain), block=ctx.mastodon.block_for(exposure.domain))


# --- Messages ------------------------------------------------------------------------------------


def render_report(report: ScanReport, instance_url: str, limit_above_follows: int, template_dir: Any = None) -> str:
    """The moderators' DM for a scan: a summary (the tables stay in `tocsin scan`); pure, so tests render
    it from a report."""
    return render_text(
        template_dir,
        "scan_report.txt.j2",
        report=report,
        buckets=impact_buckets,
        instance_url=instance_url,
        limit_above_follows=limit_above_follows,
    )


def render_refederation(
    block: DomainBlock, advisory: Advisory, peer: Running, instance_url: str, template_dir: Any = None
) -> str:
    return render_text(
        template_dir,
        "refederation.txt.j2",
        block=block,
        advisory=advisory,
        version=peer.shown,
        instance_url=instance_url,
    )


@dataclass(frozen=True)
class Outreach:
    domain: str
    advisory_id: str
    text: str
    contact_acct: str | None  # user@domain of the server's public contact account
    contact_email: str | None

    def post(self) -> Post:
        assert self.contact_acct is not None
        return Post(
            key=f"outreach:{self.domain}:{self.advisory_id}",
            text=self.text,
            visibility="direct",
            mentions=(self.contact_acct,),
        )


def outreach_message(ctx: Context, domain: str) -> Outreach:
    """The message to a vulnerable server's admins and where to send it (its /api/v2/instance contact)."""
    fetcher = make_fetcher(ctx.settings)
    [result] = read_peers_cached(ctx, fetcher, [domain])
    if result.software is None:
        raise LookupError(f"{domain} could not be read ({result.error})")
    peer = read_running(result.software.name, result.software.version, load_forks(ctx.settings.advisory_dir))
    version = peer.version
    advisories = load_advisories(ctx.settings.advisory_dir)
    affecting = [a for a in advisories if version and a.concerns(peer.software) and a.affects(version)]
    if version is None or not affecting:
        raise LookupError(
            f"{domain} runs {result.software.name} {result.software.version}: no known advisory affects it"
        )
    advisory = max(affecting, key=lambda item: SEVERITIES.index(item.severity))
    try:
        info = asyncio.run(fetcher.get_json(f"https://{domain}/api/v2/instance"))
    except FetchError:
        info = {}
    contact = info.get("contact") if isinstance(info, dict) and isinstance(info.get("contact"), dict) else {}
    account = contact.get("account") if isinstance(contact.get("account"), dict) else {}
    acct = str(account.get("acct") or account.get("username") or "").strip().lstrip("@") or None
    if acct is not None and "@" not in acct:
        acct = f"{acct}@{domain}"
    instance_url = ctx.settings.mastodon_url or "https://your.instance"
    text = render_text(
        ctx.settings.template_dir,
        "outreach.txt.j2",
        domain=domain,
        advisory=advisory,
        version=peer.shown,
        fix=advisory.fixed_in(version).text,
        instance_name=urlsplit(instance_url).hostname or instance_url,
        instance_url=instance_url,
    )
    email = str(contact.get("email") or "").strip() or None
    return Outreach(domain, advisory.id, text, acct, email)


def report_key(report: ScanReport) -> str | None:
    """One DM per distinct set of proposals and outreach: a daily scan that finds nothing new stays silent."""
    proposed = sorted(
        [
            f"{proposal.advisory_id}:{proposal.domain}:{proposal.severity}"
            for proposals in report.proposals.values()
            for proposal in proposals
        ]
        + [f"{finding.advisory.id}:{item.domain}:tell" for finding in report.findings for item in finding.outreach]
    )
    if not proposed:
        return None
    return "scan:" + hashlib.sha256("\n".join(proposed).encode()).hexdigest()[:24]


def remember_proposals(ctx: Context, report: ScanReport) -> None:
    """Which advisory each proposed domain was proposed for: a block made by hand (or by importing the
    CSV) for such a domain still opens or joins that advisory's incident."""
    proposals.remember(
        ctx.redis,
        {proposal.domain: advisory_id for advisory_id, items in report.proposals.items() for proposal in items},
    )


def send_scan_messages(ctx: Context, report: ScanReport) -> int:
    """DM the moderators the report (if it proposes something new) and each refederation candidate."""
    instance_url = ctx.settings.mastodon_url or "https://your.instance"
    sent = 0
    remember_proposals(ctx, report)
    key = report_key(report)
    if key is not None:
        text = render_report(report, instance_url, ctx.settings.scan_limit_above_follows, ctx.settings.template_dir)
        ctx.outbox.to_moderators(key, text)
        sent += 1
    for block, advisory, peer in report.refederate:
        text = render_refederation(block, advisory, peer, instance_url, ctx.settings.template_dir)
        ctx.outbox.to_moderators(f"refederate:{block.domain}:{advisory.id}:{peer.shown}", text)
        sent += 1
    return sent


def scheduled_scan() -> dict[str, int]:
    """RQ job (background queue): the daily scan, then its DMs."""
    ctx = get_context()
    report = run_scan(ctx)
    ctx.redis.set(LAST_SCAN, repr(time.time()))
    return {"scanned": report.scanned, "messages": send_scan_messages(ctx, report)}


def schedule_scan(ctx: Context, now: float) -> bool:
    """From the sweep: enqueue the scan when the last one is older than TOCSIN_SCAN_INTERVAL_HOURS."""
    interval = ctx.settings.scan_interval_hours * 3600
    if interval <= 0 or ctx.mastodon.client is None:
        return False
    # One job per interval, whichever worker's sweep gets here first.
    if not ctx.redis.set(SCAN_CLAIM, "1", nx=True, ex=max(int(interval), 60)):
        return False
    return enqueue_once(ctx.redis, defaults.QUEUE_BACKGROUND, scheduled_scan, job_id=f"{SCAN_JOB_ID}-{int(now)}")
