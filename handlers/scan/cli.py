"""The peer-scan family's commands: `tocsin scan`, `tocsin outreach`."""

from __future__ import annotations

import json

import click

from bot.ops.clitools import cli_context
from handlers.scan.findings import ALL_CLEAR_SIZED, Exposure, Finding, ScanReport, blocks_csv, impact_buckets
from handlers.scan.messages import outreach_message, send_scan_messages
from handlers.scan.runs import progress, run_scan, start_run
from handlers.shared.nodeinfo import PeerResult
from handlers.shared.progress import Meter


def _peer_line(result: PeerResult) -> str:
    software = result.software
    return json.dumps(
        {
            "peer": result.domain,
            "software": software.name if software else None,
            "version": software.version if software else None,
            "error": result.error,
        }
    )


@click.command()
@click.option("--advisory", "advisory_ids", multiple=True, help="Only this advisory (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one per peer as it is read, then the report.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the proposed blocks as Mastodon CSV.")
@click.option("--fresh", is_flag=True, help="Read every peer again, ignoring cached NodeInfo.")
@click.option("--dm", is_flag=True, help="Also DM the moderators the summary, as the daily scan does.")
@click.option("--all", "show_all", is_flag=True, help="List every server an advisory with proposals does not affect.")
def scan(
    advisory_ids: tuple[str, ...], as_json: bool, csv_path: str | None, fresh: bool, dm: bool, show_all: bool
) -> None:
    """Scan the peers' software for known advisories, size the impact, propose blocks."""
    ctx = cli_context()
    run = start_run(ctx, advisory_ids, fresh)
    meter = Meter(progress(ctx, run).total)

    def on_results(batch: list[PeerResult]) -> None:
        if as_json:
            click.echo("\n".join(_peer_line(result) for result in batch))
        meter.add(len(batch))

    report = run_scan(ctx, run=run, on_results=on_results)
    proposals = [proposal for items in report.proposals.values() for proposal in items]
    if csv_path:
        with open(csv_path, "w", encoding="utf-8") as out:
            out.write(blocks_csv(proposals))
    if as_json:
        click.echo(json.dumps({"report": report.to_json()}))
    else:
        _print_scan(report, show_all)
        if csv_path:
            click.echo(f"\n{len(proposals)} proposed blocks written to {csv_path}: tocsin blocks apply {csv_path}")
    if dm:
        click.echo(f"{send_scan_messages(ctx, report)} message(s) to the moderators", err=True)


def _all_clear(finding: Finding, show_all: bool) -> list[Exposure]:
    """The servers an advisory with proposals does not affect, largest first: those sized (the largest by
    follows), or with `show_all` every one (the rest by their NodeInfo activity, follows unknown)."""
    return finding.unaffected() if show_all else finding.all_clear[:ALL_CLEAR_SIZED]


def _clear_line(item: Exposure) -> str:
    impact = item.impact
    follows = (
        f"we follow {impact.local_follows:,} there; {impact.remote_followers:,} follow us"
        if impact
        else "follows unknown"
    )
    return f"{item.domain} runs {item.shown}: not affected, not proposed ({follows})"


def _print_scan(report: object, show_all: bool = False) -> None:
    assert isinstance(report, ScanReport)
    unreadable = sum(report.unreadable.values())
    click.echo(f"{report.scanned} servers in {report.seconds:.1f} s; {unreadable} unreadable", nl=False)
    click.echo(f" ({', '.join(f'{reason} {n}' for reason, n in report.unreadable.items())})" if unreadable else "")
    click.echo("software: " + ", ".join(f"{name} {n}" for name, n in report.software))
    for finding in report.findings:
        advisory = finding.advisory
        groups = ", ".join(f"{n} run {version}" for version, n in finding.version_groups())
        click.echo(f"\n{advisory.id} ({advisory.severity}, {'/'.join(advisory.software)}): {advisory.summary}")
        exploited = "; exploited" if advisory.exploited else ""
        click.echo(f"  exposes: {advisory.exposure_words}{exploited}")
        if finding.vulnerable:
            verdict = "proposed" if advisory.block_protects else "not proposed"
            reason = f" ({advisory.no_block_reason})" if advisory.no_block_reason else ""
            click.echo(f"  block: {verdict}: {advisory.block_why}{reason}")
        for item in _all_clear(finding, show_all):
            click.echo(f"  {_clear_line(item)}")
        uncertain = f", {len(finding.uncertain)} uncertain" if finding.uncertain else ""
        click.echo(
            f"  {finding.total} servers: {len(finding.fixed)} fixed"
            f"{', ' + groups if groups else ''}{uncertain} -> {len(finding.vulnerable)} vulnerable"
        )
        buckets = "; ".join(f"{n} with {label}" for label, n in impact_buckets(finding.vulnerable))
        if buckets:
            click.echo(f"  follows either way: {buckets}")
        click.echo(f"  {'domain':<40} {'version':<32} {'follows':>8} {'followers':>9}  proposed")
        proposals = {proposal.domain: proposal for proposal in report.proposals.get(advisory.id, [])}
        outreach = {item.domain for item in finding.outreach}
        listed = [(item, "") for item in finding.vulnerable] + [(item, "uncertain") for item in finding.uncertain]
        for item, note in sorted(listed, key=lambda pair: -(pair[0].follows or 0)):
            proposal = proposals.get(item.domain)
            action = (proposal.severity + (f" ({proposal.reason})" if proposal.reason else "")) if proposal else "-"
            if item.block is not None:
                action = f"already {item.block.severity}" if proposal is None else action
            if item.domain in outreach:
                action = f"tell their admins: tocsin outreach {item.domain}"
            action = note or action
            follows = str(item.impact.local_follows) if item.impact else "?"
            followers = str(item.impact.remote_followers) if item.impact else "?"
            click.echo(f"  {item.domain:<40} {item.shown[:32]:<32} {follows:>8} {followers:>9}  {action}")
    for block, advisory, peer in report.refederate:
        fixed = f"{block.domain} now runs {peer.shown}, not affected by {advisory.id}"
        click.echo(f"\n{fixed}: tocsin blocks lift {block.domain}")


@click.command()
@click.argument("domain")
@click.option("--send", is_flag=True, help="DM it to the server's contact account (after confirmation).")
def outreach(domain: str, send: bool) -> None:
    """The message for a vulnerable server's admins, with its public contact; --send DMs it."""
    ctx = cli_context()
    try:
        message = outreach_message(ctx, domain.lower())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(message.text)
    click.echo(
        f"\ncontact: account {message.contact_acct or 'none public'}; email {message.contact_email or 'none public'}"
    )
    if send:
        if message.contact_acct is None:
            raise click.ClickException(f"{domain} publishes no contact account; write to its email instead")
        click.confirm(f"Send this as a direct message to @{message.contact_acct}?", abort=True)
        ids = ctx.outbox.send(message.post())
        click.echo(f"sent ({len(ids)} part(s))")
