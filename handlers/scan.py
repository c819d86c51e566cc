"""Unpatched federated software: read the peers' NodeInfo, match advisories, size the impact, propose.

This module lists the peers and speaks about a scan (the DM, refederation notices, outreach to a
server's admins); handlers/scan_runs.py runs a scan in resumable steps, handlers/nodeinfo.py reads the
peers, handlers/findings.py classifies and proposes.

A scan lists the instance's peers (GET /api/v1/instance/peers, which leaves out blocked domains, plus
the domains Tocsin blocked for an advisory, so upgrades are seen), reads each one's NodeInfo through
bot.fetching (SSRF-guarded, bounded), and for every advisory sorts the servers running that software
into fixed, vulnerable and unreadable. Vulnerable ones are sized by admin measures (follows both ways)
and, where a block stops the harm to our members, proposed for suspension, or for a limit where many
follows would be cut, as a Mastodon domain-block CSV; where it does not, their admins are to be told.
The largest servers the advisory does not affect are named too, as an all-clear. Blocks Tocsin applies
carry BLOCK_TAG in their private comment; a later scan that finds such a server on a fixed version
tells the moderators it can be refederated.

Parsing and classification are pure functions; fetching, the admin API and posting stay at the edges.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mastodon import MastodonNotFoundError

from bot.actions import Action, Message, Proposal, ProposalItem
from bot.context import Context
from bot.domains import NotADomain, normalized_domain
from bot.fetching import FetchError
from bot.mastodon import DomainBlock
from bot.outbox import Post
from bot.privacy import RECIPIENT
from bot.templating import render_text
from handlers import nodeinfo, proposals, reports
from handlers.advisories import (
    NO_BLOCK,
    SEVERITIES,
    Advisory,
    Running,
    load_advisories,
    load_forks,
    read_running,
)
from handlers.domain_blocks import BLOCK_TAG, tagged_advisory
from handlers.findings import (
    Proposal as BlockProposal,
)
from handlers.findings import (
    ScanReport,
    impact_buckets,
)
from handlers.nodeinfo import read_peers_cached

log = logging.getLogger(__name__)

# --- Scan: I/O at the edges ----------------------------------------------------------------------


def peer_domains(ctx: Context, blocks: list[DomainBlock]) -> list[str]:
    """The instance's peers, plus the domains Tocsin blocked for an advisory (the peers API leaves out
    blocked domains). With the peers API disabled (404): the servers seen in reports, and every block."""
    raw: list[str] = []
    client = ctx.mastodon.client
    try:
        if client is None:
            raise MastodonNotFoundError("no instance configured")
        raw += [str(domain) for domain in client.instance_peers()]
    except MastodonNotFoundError:
        raw += reports.servers_seen(ctx.redis)
        raw += [block.domain for block in blocks]
    raw += [block.domain for block in blocks if tagged_advisory(block)]
    peers = set()
    for name in raw:
        try:
            peers.add(normalized_domain(name))  # one spelling (bot/domains.py), so each server is read once
        except NotADomain:
            continue  # no server to read: an obfuscated block's stars, junk in a peer list
    return sorted(peers)


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
        no_block=NO_BLOCK,
        proposal=propose(report),
        numbers={advisory_id: number for number, (advisory_id, _) in enumerate(_proposing(report), start=1)},
    )


def _proposing(report: ScanReport) -> list[tuple[str, list[BlockProposal]]]:
    """The advisories with proposals, in the DM's order (the numbers `approve 1,3` refers to)."""
    return [
        (finding.advisory.id, report.proposals[finding.advisory.id])
        for finding in report.findings
        if finding.vulnerable and finding.advisory.block_protects and report.proposals.get(finding.advisory.id)
    ]


def propose(report: ScanReport) -> Proposal:
    """One item per advisory with proposals: its blocks, tagged with the advisory (so each block joins
    its incident) and publicly explained by the advisory's summary."""
    items = []
    for advisory_id, proposed in _proposing(report):
        blocks = tuple(
            Action(
                "domain_block",
                item.domain,
                f"{'suspend' if item.severity == 'suspend' else 'limit'} {item.domain}",
                severity=item.severity,
                public_comment=item.public_comment,
                tag=BLOCK_TAG.format(id=advisory_id),
            )
            for item in proposed
        )
        suspends = sum(item.severity == "suspend" for item in proposed)
        limits = len(proposed) - suspends
        words = ", ".join(
            word for word in (f"suspend {suspends}" * bool(suspends), f"limit {limits}" * bool(limits)) if word
        )
        items.append(ProposalItem(f"{advisory_id}: {words} server{'s' if len(proposed) > 1 else ''}", blocks))
    return Proposal(items=tuple(items))


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
    fetcher = nodeinfo.make_fetcher(ctx.settings)
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
    if acct is not None and not RECIPIENT.fullmatch(acct):  # the peer's words: one account, or none
        acct = None
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
        ctx.outbox.propose(key, Message(text, propose(report)))
        sent += 1
    for block, advisory, peer in report.refederate:
        text = render_refederation(block, advisory, peer, instance_url, ctx.settings.template_dir)
        ctx.outbox.to_moderators(f"refederate:{block.domain}:{advisory.id}:{peer.shown}", text)
        sent += 1
    return sent
