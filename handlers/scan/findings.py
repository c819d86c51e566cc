"""What a scan found, pure: which servers each advisory affects (through the fork table), the impact
buckets, the proposals (only where a block stops the harm to this instance's members), the largest
servers it does not affect (the all-clear), Mastodon's domain-block CSV, and which of Tocsin's blocks can
be lifted since the server upgraded."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.core.csvsafe import safe_row
from bot.mastodon.client import DomainBlock, Impact
from handlers.shared.advisories import Advisory, Fork, Running, Verdict, Version, read_running
from handlers.shared.block_tags import CSV_HEADER, tagged_advisory
from handlers.shared.nodeinfo import PeerResult

IMPACT_BUCKETS = ((5, "≤ 5"), (10, "6–10"), (100, "11–100"))
"""Upper bounds of follows either way; more than the last is "> 100"."""
OUTREACH_SIZED = 5
"""Of the servers an advisory harms only themselves (often thousands at a large instance), this many, the
most active by their NodeInfo, have their follows looked up (one admin API call each): the DM names the
largest; `tocsin scan` lists the others with follows unknown."""
ALL_CLEAR_SIZED = 3
"""Of the servers an advisory with proposals does not affect, this many, the most active by their NodeInfo,
have their follows looked up: the DM names the largest by follows as not proposed (the brief's report
led with it: "pixelfed.social is running v0.12.5, so we will not be defederating with pixelfed.social")."""


@dataclass(frozen=True)
class Exposure:
    """A server running the advisory's software, as the scan saw it."""

    domain: str
    version: Version
    shown: str  # the version as moderators read it: "4.6.5", "Hometown 1.0.7 (Mastodon 3.5.5)"
    active_users: int | None = None  # from its NodeInfo
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
        """Vulnerable servers whose admins should hear of it, since blocking them protects no one of ours
        (the harm is theirs, or a block does not stop it): largest first."""
        if self.advisory.block_protects:
            return []
        return sorted(self.vulnerable, key=_largest_first)

    @property
    def all_clear(self) -> list[Exposure]:
        """Servers running the software that the advisory does not affect (patched, or never affected),
        of an advisory that proposes blocks: those whose follows were looked up, largest first."""
        if not self.advisory.block_protects or not self.vulnerable:
            return []
        return sorted((item for item in self.fixed if item.impact is not None), key=_largest_first)

    def unaffected(self) -> list[Exposure]:
        """Every server the all-clear could name: the sized ones largest first, then the rest (follows
        unknown) by their NodeInfo activity (`tocsin scan --all`, `--json`)."""
        if not self.advisory.block_protects or not self.vulnerable:
            return []
        rest = sorted((item for item in self.fixed if item.impact is None), key=_largest_first)
        return self.all_clear + rest

    def largest_clear(self) -> Exposure | None:
        """The all-clear worth saying: the largest unaffected server by follows, unless nobody follows
        either way (an all-clear about a server we share nothing with tells the moderators nothing)."""
        largest = next(iter(self.all_clear), None)
        return largest if largest is not None and largest.follows else None

    def largest(self) -> Exposure | None:
        """The vulnerable server with the most follows either way (then the most active)."""
        return min(self.vulnerable, key=_largest_first, default=None)

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


def _largest_first(item: Exposure) -> tuple[int, int, str]:
    return (-(item.follows or 0), -(item.active_users or 0), item.domain)


def sizing_targets(findings: Iterable[Finding], complete: bool = True) -> list[str]:
    """The servers whose follows a scan looks up, most needed first: every vulnerable or uncertain server
    of an advisory whose harm a block stops (a proposal's severity depends on its follows), then the
    OUTREACH_SIZED most active of each advisory a block does not help (the DM names the largest), then
    the ALL_CLEAR_SIZED most active unaffected servers of each advisory with proposals (the all-clear)
    — those two only from `complete` results: the most active of part of the peers may not be the top ones."""
    findings = list(findings)
    needed = [
        item.domain
        for finding in findings
        if finding.advisory.block_protects
        for item in finding.vulnerable + finding.uncertain
    ]
    for finding in findings if complete else ():
        if not finding.advisory.block_protects:
            needed += [item.domain for item in sorted(finding.vulnerable, key=_largest_first)[:OUTREACH_SIZED]]
    for finding in findings if complete else ():
        if finding.advisory.block_protects and finding.vulnerable:
            needed += [item.domain for item in sorted(finding.fixed, key=_largest_first)[:ALL_CLEAR_SIZED]]
    return list(dict.fromkeys(needed))


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
            active = result.software.active_users if result.software else None
            lists[advisory.assess(peer.version)].append(Exposure(result.domain, peer.version, peer.shown, active))
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
    `limit_above_follows` follows would be cut, whatever the advisory's severity (the reason names the
    cost, and that their admins should be told too). Nothing at all when a block does not stop the harm
    to our members (the advisory's `exposes`, see handlers/advisories.EXPOSURES): it would cut our
    members off and protect no one (those servers' admins are told instead, see Finding.outreach)."""
    proposals: list[Proposal] = []
    advisory = finding.advisory
    if not advisory.block_protects:
        return proposals
    for exposure in sorted(finding.vulnerable, key=lambda item: (-(item.follows or 0), item.domain)):
        if exposure.block is not None and exposure.block.severity == "suspend":
            continue
        fix = advisory.fixed_in(exposure.version)
        comment = f"Runs {exposure.shown}, affected by {advisory.id} (fixed in {fix}). Upgrade, then ask us."
        follows = exposure.follows
        many = follows is not None and follows > limit_above_follows
        severity = "silence" if many else "suspend"
        reason = (
            f"limit, not suspend: {cost(exposure)} (more than {limit_above_follows}); "
            f"a limit keeps those follows, so tell their admins too: tocsin outreach {exposure.domain}"
            if many
            else ""
        )
        if exposure.block is not None and exposure.block.severity == severity:
            continue  # already blocked as proposed
        proposals.append(Proposal(exposure.domain, severity, reason, comment[:1000], advisory.id))
    return proposals


def cost(exposure: Exposure) -> str:
    """What a suspension would cut, in the moderators' words."""
    if exposure.impact is None:
        return "follows unknown"
    impact = exposure.impact
    return (
        f"a suspension would cut {exposure.follows:,} follows "
        f"(we follow {impact.local_follows:,} there; {impact.remote_followers:,} follow us)"
    )


def blocks_csv(proposals: Iterable[Proposal]) -> str:
    """Mastodon's domain-block CSV, importable in Administration → Federation."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(safe_row(CSV_HEADER))
    for proposal in proposals:  # the domain and the version in the comment come from peers: formula-safe
        writer.writerow(
            safe_row([proposal.domain, proposal.severity, "false", "false", proposal.public_comment, "false"])
        )
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
                    "block_protects": finding.advisory.block_protects,
                    "block_why": finding.advisory.block_why,
                    "exploited": finding.advisory.exploited,
                    "running": finding.total,
                    "vulnerable": [exposure(item) for item in finding.vulnerable],
                    "fixed": [exposure(item) for item in finding.fixed],
                    "uncertain": [exposure(item) for item in finding.uncertain],
                    "unparsable": finding.unparsable,
                    "outreach": [item.domain for item in finding.outreach],
                    "not_affected": [exposure(item) for item in finding.unaffected()],
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
