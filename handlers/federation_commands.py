"""The federation audit's command: `tocsin audit-federation DOMAIN`."""

from __future__ import annotations

import json

import click

from bot.clitools import cli_context
from handlers.federation import BLOCKS, UNKNOWN, Verdict, audit, audited_peers, csv_rows, send_dm, verdicts
from handlers.scan import normalized_domain
from handlers.scan_commands import Meter

LISTED = 50
"""Blocking and unknown peers printed by name (all of them are in --csv and --json)."""


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
    target = normalized_domain(domain)
    if target is None:
        raise click.ClickException(f"{domain!r} is not a domain")
    ctx = cli_context()
    peers = audited_peers(ctx, target)
    meter = Meter(len(peers))
    named: dict[str, list[Verdict]] = {BLOCKS: [], UNKNOWN: []}

    def on_verdict(verdict: Verdict) -> None:
        meter.add(1)
        if as_json:
            click.echo(json.dumps(verdict.__dict__))
        elif verdict.kind in named and len(named[verdict.kind]) < LISTED:
            named[verdict.kind].append(verdict)

    report = audit(ctx, target, peers, on_verdict)
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as out:
            out.writelines(csv_rows(report, verdicts(ctx, target)))
    if as_json:
        click.echo(json.dumps({"report": report.to_json()}))
    else:
        counts = report.counts
        click.echo(
            f"Of {report.total:,} peers: {counts['blocks']:,} block {target}, {counts['federates']:,} federate with"
            f" it, {counts['no-contact']:,} never had contact, {counts['unknown']:,} unknown."
        )
        for verdict in named[BLOCKS]:
            click.echo(f"  blocks     {verdict.peer}: {verdict.evidence}")
        if report.federating:
            click.echo("Federating with it, most followed first:")
        for verdict, impact in report.federating:
            follows = f"we follow {impact.local_follows:,}, {impact.remote_followers:,} follow us" if impact else "?"
            click.echo(f"  federates  {verdict.peer} ({follows})")
        for verdict in named[UNKNOWN]:
            click.echo(f"  unknown    {verdict.peer}: {verdict.evidence}")
        hidden = sum(report.counts[kind] for kind in named) - sum(len(items) for items in named.values())
        if hidden > 0:
            click.echo(f"  … and {hidden:,} more (--csv)")
    if dm:
        send_dm(ctx, report, with_proposal=propose == "limit")
        click.echo("DM sent to the moderators", err=True)
