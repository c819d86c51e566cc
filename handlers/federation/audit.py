"""Who federates with whom: for a server this instance blocked or watches (threads.net, in the brief),
which of our peers block it, federate with it, or have never had contact with it, each with its evidence,
ranked by how much we talk to those peers.

A peer's answer comes from what it publishes:
- its public block list (GET /api/v1/instance/domain_blocks): the server, or a parent domain, listed
  with its severity; an obfuscated entry (Mastodon stars part of the name) is matched by the SHA-256
  digest Mastodon publishes beside it;
- for Pleroma and Akkoma, NodeInfo's `metadata.federation`: the MRF simple policy's lists (reject,
  federated_timeline_removal, followers_only), quarantined instances, and an allow list without it;
- its peers (GET /api/v1/instance/peers): Mastodon lists every server it knows *except* those it blocks
  at any severity, so the server in that list with no public block means it federates with it.
A peer whose lists are not public (401, 403, 404) or that cannot be reached is "unknown", with which.

Peers are read through the SSRF-guarded fetcher, one request at a time per peer, up to
TOCSIN_SCAN_CONCURRENCY peers at once; peers the scan found dead are not asked again. A peers list can
be megabytes: it is searched as it streams, never held whole. Verdicts are written to Redis as they come
(the report keeps counts and a few names), so tens of thousands of peers take little memory. Matching
is pure; fetching, the admin API and posting stay at the edges.
"""

from __future__ import annotations

import asyncio
import csv
import fnmatch
import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from bot.core import defaults
from bot.core.csvsafe import safe_row
from bot.core.fetching import Fetcher, FetchError
from bot.core.templating import render_text
from bot.mastodon.actions import Action, Message, Proposal, ProposalItem
from bot.mastodon.client import Impact
from bot.mastodon.context import Context, get_context
from bot.mastodon.ratelimit import BudgetExhausted
from bot.pipeline.queue import enqueue_once
from handlers.federation.settings import WatchSettings
from handlers.reports.readers import servers_seen
from handlers.shared import nodeinfo
from handlers.shared.nodeinfo import DEAD_REASONS, PeerResult, fetch_software_document
from handlers.shared.peers import peer_domains
from handlers.shared.settings import PeerScanSettings

log = logging.getLogger(__name__)

BLOCKS, FEDERATES, NO_CONTACT, UNKNOWN = "blocks", "federates", "no-contact", "unknown"
CLASSES = (BLOCKS, FEDERATES, NO_CONTACT, UNKNOWN)
MRF_SOFTWARE = frozenset({"pleroma", "akkoma"})
MRF_BLOCKING = ("reject", "federated_timeline_removal", "followers_only")
"""The MRF simple policy's lists that keep our members' posts from the server (reject) or from its
public reach; media_removal and the like do not."""
PRIVATE = frozenset({"http-401", "http-403", "http-404"})
MALFORMED = frozenset({"malformed", "invalid-json"})
"""Fetch failures of an answer that is not HTTP/1.1 or not JSON as their grammars say: a broken or
hostile peer, told apart in the DM from lists that are merely private or unreachable."""
PEERS_MAX_BYTES = 64 * 1024 * 1024
"""A peers list larger than this is hostile (mastodon.social's, the largest, is a few megabytes)."""
SIZED = 20
"""Peers of each class whose follows are looked up (admin API: 80 calls an audit at most), the most
active first (NodeInfo's monthly active users, from the scan's cache)."""
SHOWN = 5
"""Most-followed federating peers named in the DM (and proposed, with --propose limit)."""
VERDICTS_PREFIX = "tocsin:federation:verdicts:"  # + target: hash peer -> Verdict JSON (the last audit)
LAST_AUDIT = "tocsin:federation:last-audit"  # hash target -> epoch seconds
WRITE_BATCH = 200
AUDIT_TAG = "[tocsin federation {target}]"
"""Starts the private comment of a block approved from a federation audit's proposal."""


# --- Pure: matching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    peer: str
    kind: str  # one of CLASSES
    evidence: str
    severity: str | None = None  # how it blocks: suspend, silence, reject, …
    software: str | None = None
    active_users: int | None = None


def covers(entry: str, target: str) -> bool:
    """A block of `entry` covers `target` (Mastodon and Pleroma block subdomains with their domain)."""
    entry = entry.strip().lower().rstrip(".")
    return bool(entry) and (target == entry or target.endswith("." + entry))


def digests(target: str) -> set[str]:
    """SHA-256 digests of the target and its parent domains (what Mastodon publishes for obfuscated
    entries: `Digest::SHA256.hexdigest(domain)`)."""
    parts = target.split(".")
    return {hashlib.sha256(".".join(parts[start:]).encode()).hexdigest() for start in range(len(parts) - 1)}


def match_public_blocks(entries: Any, target: str) -> tuple[str, str] | None:
    """(severity, evidence) when a public block list (Mastodon's shape) covers the target."""
    wanted = digests(target)
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
            continue
        shown = entry["domain"][:100]
        severity = str(entry.get("severity") or "suspend")[:20]
        if "*" not in shown and covers(shown, target):
            return severity, f"public block list: {severity}"
        if "*" in shown and str(entry.get("digest") or "") in wanted:
            return severity, f"public block list: {severity} (listed as {shown}, matched by its digest)"
    return None


def _pattern_covers(pattern: str, target: str) -> bool:
    """An MRF entry: a domain, or a wildcard (`*.example.com` also means example.com, as Pleroma's
    subdomain_match does)."""
    pattern = pattern.strip().lower()
    if "*" not in pattern:
        return covers(pattern, target)
    return fnmatch.fnmatchcase(target, pattern) or (pattern.startswith("*.") and covers(pattern[2:], target))


def _domains(value: Any) -> list[str]:
    """An MRF list: domains, or [domain, reason] pairs (Akkoma), or a map domain -> info."""
    if isinstance(value, dict):
        return [str(key) for key in value]
    items = value if isinstance(value, list) else []
    return [str(item[0] if isinstance(item, list) and item else item) for item in items if item]


def match_mrf(document: Any, target: str) -> tuple[str, str] | None:
    """(policy, evidence) when a Pleroma/Akkoma NodeInfo says it keeps our posts from the target."""
    metadata = document.get("metadata") if isinstance(document, dict) else None
    federation = metadata.get("federation") if isinstance(metadata, dict) else None
    if not isinstance(federation, dict):
        return None
    simple = federation.get("mrf_simple")
    if not isinstance(simple, dict):
        simple = {}
    for policy in MRF_BLOCKING:
        if any(_pattern_covers(entry, target) for entry in _domains(simple.get(policy))):
            return policy, f"MRF simple policy: {policy.replace('_', ' ')}"
    if any(_pattern_covers(entry, target) for entry in _domains(federation.get("quarantined_instances"))):
        return "quarantine", "quarantined: it sends the server no private posts"
    accepted = _domains(simple.get("accept"))
    if accepted and not any(_pattern_covers(entry, target) for entry in accepted):
        return "reject", "MRF simple policy: federates only with an allow list that does not include it"
    return None


def needles(target: str) -> tuple[bytes, bytes]:
    """What a peers list (a JSON array of domains) holds when it knows the target or a subdomain."""
    return f'"{target}"'.encode(), f'.{target}"'.encode()


def unknown_evidence(blocks_error: str | None, peers_error: str | None) -> str:
    def said(what: str, error: str | None) -> str:
        if error in PRIVATE:
            return f"{what} not public ({error.removeprefix('http-')})"
        if error in MALFORMED:
            return f"{what} unreadable: malformed answer ({error})"
        return f"{what} unreadable ({error})"

    return "; ".join(said(what, error) for what, error in (("block list", blocks_error), ("peers", peers_error)))


def unknown_reason(verdict: Verdict) -> str:
    """Why an unknown is unknown, in a word the DM counts by."""
    if verdict.evidence.startswith("unreachable"):
        return "unreachable"
    if "malformed answer" in verdict.evidence:
        return "malformed answer"
    return "lists not public" if "not public" in verdict.evidence else "lists unreadable"


# --- Reading one peer (I/O) ----------------------------------------------------------------------


class _About(TypedDict):
    """What a verdict says of the peer itself, whatever the verdict."""

    software: str | None
    active_users: int | None


async def audit_peer(fetcher: Fetcher, peer: str, target: str, cached: PeerResult | None) -> Verdict:
    """One peer's verdict; every failure becomes evidence (a peer must never stop an audit)."""
    software = cached.software if cached is not None else None
    about: _About = {
        "software": software.name if software else None,
        "active_users": software.active_users if software else None,
    }
    if cached is not None and cached.error in DEAD_REASONS:
        return Verdict(peer, UNKNOWN, f"unreachable ({cached.error}, as the last scan found)", **about)
    blocks_error: str | None = None
    try:
        found = match_public_blocks(await fetcher.get_json(f"https://{peer}/api/v1/instance/domain_blocks"), target)
        if found is not None:
            return Verdict(peer, BLOCKS, found[1], found[0], **about)
    except FetchError as error:
        if error.reason in DEAD_REASONS or error.reason in ("timeout", "connect-timeout"):
            return Verdict(peer, UNKNOWN, f"unreachable ({error.reason})", **about)
        blocks_error = error.reason
    if software is None or software.name in MRF_SOFTWARE:
        try:
            document = await fetch_software_document(fetcher, peer)
            found = match_mrf(document, target)
            if found is not None:
                return Verdict(peer, BLOCKS, found[1], found[0], **about)
        except FetchError:
            pass  # no NodeInfo: the lists below still tell
    try:
        present = await fetcher.find(f"https://{peer}/api/v1/instance/peers", needles(target), PEERS_MAX_BYTES)
    except FetchError as error:
        return Verdict(peer, UNKNOWN, unknown_evidence(blocks_error, error.reason), **about)
    if present:
        return Verdict(peer, FEDERATES, "listed in its peers, with no public block", **about)
    return Verdict(peer, NO_CONTACT, "not in its peers: it has never federated with it", **about)


# --- The audit -----------------------------------------------------------------------------------


@dataclass
class AuditReport:
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)  # why: unreachable, lists not public, …
    severities: Counter[str] = field(default_factory=Counter)  # how the blocking peers block it
    ranked: dict[str, list[tuple[Verdict, Impact | None]]] = field(default_factory=dict)
    """Per class, its most active peers with their follows, most followed first."""
    changes: Counter[str] = field(default_factory=Counter)  # "federates -> blocks": peers, since the last audit
    first: bool = True  # no earlier audit of this target to compare with

    @property
    def federating(self) -> list[tuple[Verdict, Impact | None]]:
        return self.ranked.get(FEDERATES, [])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @staticmethod
    def largest_first(counter: Counter[str]) -> list[tuple[str, int]]:
        """Largest first, ties by name: the same words for the same audit, whatever order peers answered."""
        return sorted(counter.items(), key=lambda item: (-item[1], item[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "total": self.total,
            "counts": {kind: self.counts[kind] for kind in CLASSES},
            "unknown": dict(self.unknown),
            "severities": dict(self.severities),
            "ranked": {
                kind: [{**asdict(verdict), "impact": asdict(impact) if impact else None} for verdict, impact in items]
                for kind, items in self.ranked.items()
            },
            "changes": dict(self.changes),
        }


def audited_peers(ctx: Context, target: str) -> list[str]:
    """Our peers, but the target and its subdomains."""
    return [peer for peer in peer_domains(ctx, ctx.mastodon.domain_blocks(), servers_seen) if not covers(target, peer)]


def audit(
    ctx: Context,
    target: str,
    peers: list[str] | None = None,
    on_verdict: Callable[[Verdict], None] | None = None,
) -> AuditReport:
    """Classify every peer of ours for `target` (a normalized domain), store the verdicts (replacing the
    last audit's), size the most active federating peers, and compare with the last audit."""
    fetcher = nodeinfo.make_fetcher(ctx.settings)
    peers = audited_peers(ctx, target) if peers is None else peers
    key = VERDICTS_PREFIX + target
    previous_exists = bool(ctx.redis.exists(key))
    staging = f"{key}:new"
    ctx.redis.delete(staging)
    report = AuditReport(target, first=not previous_exists)
    candidates: dict[str, list[Verdict]] = {kind: [] for kind in CLASSES}
    batch: dict[str, str] = {}

    def keep(verdict: Verdict) -> None:
        report.counts[verdict.kind] += 1
        if verdict.kind == UNKNOWN:
            report.unknown[unknown_reason(verdict)] += 1
        elif verdict.kind == BLOCKS and verdict.severity:
            report.severities[verdict.severity] += 1
        most_active = candidates[verdict.kind]
        most_active.append(verdict)
        most_active.sort(key=lambda item: -(item.active_users or 0))
        del most_active[SIZED:]  # only the most active are kept (and sized): memory stays flat
        batch[verdict.peer] = json.dumps(asdict(verdict))
        if len(batch) >= WRITE_BATCH:
            # redis-py types `mapping` as Mapping[FieldT, …], invariant in its key: it refuses any dict[str, str]
            ctx.redis.hset(staging, mapping=batch)  # type: ignore[arg-type]
            batch.clear()
        if on_verdict is not None:
            on_verdict(verdict)

    asyncio.run(_read_all(ctx, fetcher, peers, target, keep))
    if batch:
        ctx.redis.hset(staging, mapping=batch)  # type: ignore[arg-type]  # redis-py's `mapping` type, as above
    report.changes = _changes(ctx, key, staging) if previous_exists else Counter()
    if ctx.redis.exists(staging):
        ctx.redis.rename(staging, key)
    else:
        ctx.redis.delete(key)
    ctx.redis.hset(LAST_AUDIT, target, repr(time.time()))
    report.ranked = {kind: _sized(ctx, candidates[kind]) for kind in CLASSES}
    return report


async def _read_all(
    ctx: Context, fetcher: Fetcher, peers: list[str], target: str, keep: Callable[[Verdict], None]
) -> None:
    gate = asyncio.Semaphore(ctx.settings.section(PeerScanSettings).concurrency)

    async def one(peer: str, cached: PeerResult | None) -> None:
        async with gate:
            try:
                verdict = await audit_peer(fetcher, peer, target, cached)
            except Exception as error:  # whatever one peer's reading raised is that peer's, as in the scan
                log.warning("auditing %s failed: %s", peer, type(error).__name__)
                verdict = Verdict(peer, UNKNOWN, f"unreadable ({type(error).__name__})")
        keep(verdict)

    for start in range(0, len(peers), 1000):  # cache look-ups and tasks a thousand at a time
        chunk = peers[start : start + 1000]
        cached = {result.domain: result for result in nodeinfo.cached_results(ctx.redis, chunk)}
        await asyncio.gather(*(one(peer, cached.get(peer)) for peer in chunk))


def _changes(ctx: Context, key: str, staging: str) -> Counter[str]:
    """How many peers moved from one class to another since the last audit."""
    changes: Counter[str] = Counter()
    for peer, raw in ctx.redis.hscan_iter(staging):
        before = ctx.redis.hget(key, peer)
        old = json.loads(before)["kind"] if before else None
        new = json.loads(raw)["kind"]
        if old is not None and old != new:
            changes[f"{old} -> {new}"] += 1
    return changes


def _sized(ctx: Context, candidates: list[Verdict]) -> list[tuple[Verdict, Impact | None]]:
    """Follows both ways for these peers (paced: bulk work); most followed first."""
    sized: list[tuple[Verdict, Impact | None]] = []
    try:
        with ctx.mastodon.bulk():
            for verdict in candidates:
                sized.append((verdict, ctx.mastodon.impact(verdict.peer)))
    except BudgetExhausted:
        log.info("federation audit: Tocsin's API share is spent; %d peers left unsized", len(candidates) - len(sized))
        sized += [(verdict, None) for verdict in candidates[len(sized) :]]

    def follows(item: tuple[Verdict, Impact | None]) -> int:
        impact = item[1]
        return impact.local_follows + impact.remote_followers if impact else -1

    return sorted(sized, key=follows, reverse=True)


def verdicts(ctx: Context, target: str) -> Iterator[Verdict]:
    """The last audit's verdicts, streamed from Redis."""
    for _peer, raw in ctx.redis.hscan_iter(VERDICTS_PREFIX + target, count=500):
        yield Verdict(**json.loads(raw))


# --- Speaking about it ---------------------------------------------------------------------------


CSV_COLUMNS = ["peer", "class", "severity", "evidence", "software", "active_users", "local_follows", "remote_followers"]


def csv_rows(report: AuditReport, all_verdicts: Iterator[Verdict]) -> Iterator[str]:
    """The CSV, a line at a time (header first); follows only for the peers the audit sized. Peers wrote
    much of it (software, evidence, even the peer's name as listed): every cell is made formula-safe."""
    impacts = {verdict.peer: impact for items in report.ranked.values() for verdict, impact in items if impact}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(safe_row(CSV_COLUMNS))
    yield out.getvalue()
    for verdict in all_verdicts:
        out.seek(0)
        out.truncate()
        impact = impacts.get(verdict.peer)
        writer.writerow(
            safe_row(
                [
                    verdict.peer,
                    verdict.kind,
                    verdict.severity,
                    verdict.evidence,
                    verdict.software,
                    verdict.active_users,
                    impact.local_follows if impact else None,
                    impact.remote_followers if impact else None,
                ]
            )
        )
        yield out.getvalue()


def propose(report: AuditReport) -> Proposal:
    """`--propose limit`: limit each of the most-followed peers that federate with the target, one item
    each (the DM numbers them), no public comment (a moderator adds one by blocking by hand)."""
    tag = AUDIT_TAG.format(target=report.target)
    return Proposal(
        items=tuple(
            ProposalItem(
                f"limit {verdict.peer}",
                (Action("domain_block", verdict.peer, f"limit {verdict.peer}", severity="silence", tag=tag),),
            )
            for verdict, _impact in report.federating[:SHOWN]
        )
    )


def render_dm(report: AuditReport, proposal: Proposal | None, template_dir: Any = None) -> str:
    return render_text(
        template_dir,
        "federation_audit.txt.j2",
        report=report,
        shown=report.federating[:SHOWN],
        proposal=proposal or Proposal(),
        listed=True,
    )


def send_dm(ctx: Context, report: AuditReport, with_proposal: bool) -> list[str]:
    """The moderators' DM about an audit (with its proposal when asked for)."""
    proposal = propose(report) if with_proposal else None
    text = render_dm(report, proposal, ctx.settings.template_dir)
    key = "federation:" + report.target + ":" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if proposal is not None:
        return ctx.outbox.propose(key, Message(text, proposal))
    return ctx.outbox.to_moderators(key, text)


# --- Watched servers -----------------------------------------------------------------------------


def audit_watched(target: str) -> int:
    """RQ job: audit one watched server; DM the moderators when a peer changed class (or the first time)."""
    ctx = get_context()
    report = audit(ctx, target)
    if report.first or report.changes:
        return len(send_dm(ctx, report, with_proposal=False))
    return 0


AUDIT_TIMEOUT = 3600
"""Seconds an audit job may run: tens of thousands of peers, a few requests each."""


def schedule_watched(ctx: Context, now: float) -> int:
    """From the sweep: queue an audit of each TOCSIN_WATCH_DOMAINS server not audited for
    TOCSIN_SCAN_INTERVAL_HOURS (one job per server and interval); how many were queued."""
    interval = ctx.settings.section(PeerScanSettings).interval_hours * 3600
    if interval <= 0 or not ctx.mastodon.can_read_admin:
        return 0
    queued = 0
    for target in ctx.settings.section(WatchSettings).domains:  # normalized when the settings were read
        last = ctx.redis.hget(LAST_AUDIT, target)
        if last is not None and now - float(last) < interval:
            continue
        queued += enqueue_once(
            ctx.redis,
            defaults.QUEUE_BACKGROUND,
            audit_watched,
            target,
            job_id=f"federation-audit-{target.replace('.', '_')}-{int(now // interval)}",
            timeout=AUDIT_TIMEOUT,
        )
    return queued
