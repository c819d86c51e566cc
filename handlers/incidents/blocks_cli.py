"""The domain-block family's commands: `tocsin blocks poll|apply|lift`."""

from __future__ import annotations

import click
from mastodon import MastodonAPIError

from bot.ops.clitools import cli_context
from handlers.incidents.blocks import poll
from handlers.shared.advisories import load_advisories
from handlers.shared.block_tags import BLOCK_TAG, read_blocks_csv, tagged_advisory
from handlers.shared.settings import AdvisorySettings


@click.group()
def blocks() -> None:
    """Poll the domain blocks now; apply proposed blocks, or lift Tocsin's."""


@blocks.command("poll")
def blocks_poll() -> None:
    """Read the domain blocks now and queue what changed since the last poll (workers do it every minute)."""
    ctx = cli_context()
    if not ctx.mastodon.can_read_admin:
        raise click.ClickException("polling domain blocks needs TOCSIN_ACCESS_TOKEN (admin:read:domain_blocks)")
    click.echo(f"{poll(ctx)} change(s) queued")


@blocks.command("apply")
@click.argument("csv_file", type=click.File("r", encoding="utf-8"))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def blocks_apply(csv_file: object, yes: bool) -> None:
    """Create the domain blocks of a CSV (Mastodon's format) through the admin API, tagged as Tocsin's."""
    ctx = cli_context()
    if ctx.mastodon.client is None or ctx.settings.access_token is None:
        raise click.ClickException("applying blocks needs TOCSIN_ACCESS_TOKEN with admin:write:domain_blocks")
    rows = read_blocks_csv(csv_file.read())  # type: ignore[attr-defined]
    known = {advisory.id for advisory in load_advisories(ctx.settings.section(AdvisorySettings).dir)}
    click.echo(f"{len(rows)} domain blocks:")
    for row in rows:
        click.echo(f"  {row.get('severity', 'silence'):<8} {row['domain']}  {row.get('public_comment', '')[:80]}")
    if not yes:
        click.confirm("Create these blocks on the instance?", abort=True)
    created = 0
    for row in rows:
        comment = row.get("public_comment", "")
        advisory = next((ident for ident in sorted(known) if ident in comment), None)
        tag = BLOCK_TAG.format(id=advisory) if advisory else "[tocsin]"
        try:
            ctx.mastodon.create_domain_block(
                row["domain"],
                severity=row.get("severity") or "silence",
                reject_media=row.get("reject_media") == "true",
                reject_reports=row.get("reject_reports") == "true",
                private_comment=f"{tag} proposed by a Tocsin scan",
                public_comment=comment or None,
                obfuscate=row.get("obfuscate") == "true",
            )
            created += 1
        except MastodonAPIError as error:  # 422: already blocked
            click.echo(f"  {row['domain']}: not created ({error.args[-1] if error.args else error})", err=True)
    click.echo(f"{created} blocks created")


@blocks.command("lift")
@click.argument("domain")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def blocks_lift(domain: str, yes: bool) -> None:
    """Lift the block of DOMAIN (refederate), if Tocsin applied it."""
    ctx = cli_context()
    block = next((block for block in ctx.mastodon.domain_blocks() if block.domain == domain.lower()), None)
    if block is None or block.id is None:
        raise click.ClickException(f"{domain} is not blocked")
    if tagged_advisory(block) is None and "[tocsin]" not in (block.private_comment or ""):
        raise click.ClickException(f"{domain}'s block was not made by Tocsin; lift it in the admin interface")
    if not yes:
        click.confirm(f"Lift the {block.severity} block of {domain}?", abort=True)
    ctx.mastodon.delete_domain_block(block.id)
    click.echo(f"{domain}: block lifted")
