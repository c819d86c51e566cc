"""The federation audit's command: `tocsin audit-federation DOMAIN`."""

from __future__ import annotations

import json

import click

from bot.core.domains import NotADomain, normalized_domain
from bot.ops.clitools import cli_context
from handlers.federation.audit import (
    BLOCKS,
    CLASSES,
    FEDERATES,
    NO_CONTACT,
    UNKNOWN,
    AuditReport,
    Verdict,
    audit,
    audited_peers,
    csv_rows,
    send_dm,
    verdicts,
)
from handlers.shared.progress import Meter


@click.command("audit-federation")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one per peer as it is read, then the report.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every peer's verdict as CSV.")
@click.option("--dm", is_flag=True, help="Also DM the moderators the summary.")
@click.option(
    "--propose",
    type=click.Choice(["limit"]),
    default=None,
    help="With --dm: propose limiting the most-followed peers that federate with DOMAIN (reply approve).",
)
def audit_federation(domain: str, as_json: bool, csv_path: str | None, dm: bool, propose: str | None) -> None:
    """Which of our peers block DOMAIN, federate with it, or never had contact; with the evidence."""
    if propose and not dm:
        raise click.UsageError("--propose goes with --dm: the proposal is approved by a reply to that DM")
    try:
        target = normalized_domain(domain)
    except NotADomain:
        raise click.ClickException(f"{domain!r} is not a domain") from None
    ctx = cli_context()
    peers = audited_peers(ctx, target)
    meter = Meter(len(peers))

    def on_verdict(verdict: Verdict) -> None:
        meter.add(1)
        if as_json:
            click.echo(json.dumps(verdict.__dict__))

    report = audit(ctx, target, peers, on_verdict)
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as out:
            out.writelines(csv_rows(report, verdicts(ctx, target)))
    if as_json:
        click.echo(json.dumps({"report": report.to_json()}))
    else:
        _print(report)
    if dm:
        send_dm(ctx, report, with_proposal=propose == "limit")
        click.echo("DM sent to the moderators", err=True)


HEADINGS = {
    BLOCKS: "Block it",
    FEDERATES: "Federate with it",
    NO_CONTACT: "Never had contact",
    UNKNOWN: "Unknown",
}


def _print(report: AuditReport) -> None:
    counts = report.counts
    click.echo(
        f"Of {report.total:,} peers: {counts[BLOCKS]:,} block {report.target}, {counts[FEDERATES]:,} federate with"
        f" it, {counts[NO_CONTACT]:,} never had contact, {counts[UNKNOWN]:,} unknown."
    )
    for kind in CLASSES:
        ranked = report.ranked.get(kind, [])
        if not ranked:
            continue
        click.echo(f"{HEADINGS[kind]} (the most active, most followed first):")
        for verdict, impact in ranked:
            follows = f"we follow {impact.local_follows:,}, {impact.remote_followers:,} follow us" if impact else "?"
            click.echo(f"  {verdict.peer} ({follows}): {verdict.evidence}")
        if counts[kind] > len(ranked):
            click.echo(f"  … and {counts[kind] - len(ranked):,} more (--csv)")
