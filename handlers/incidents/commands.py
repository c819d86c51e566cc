"""The incident family's commands: `tocsin incident …`, `tocsin announcements …`, and the replies to the
DM about a held announcement (`cancel`, `correction`, `announce now`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from bot.mastodon.context import Context
from bot.ops.clitools import cli_context
from bot.pipeline.replies import Outcome, ReplyCommand, Request, refused
from handlers.incidents import store as incidents
from handlers.incidents.announcements import SUBJECT, cancel, held, mark_correction, pending, post_now


@click.group()
def incident() -> None:
    """Open, list and update incidents (the public pages at /incidents)."""


@incident.command("open")
@click.option(
    "--cause",
    type=click.Choice(["spam wave", "vulnerability", "policy", "correction"]),
    default="policy",
    show_default=True,
)
@click.option("--title", required=True)
@click.option("--summary", required=True, help="Public: shown on the page and in announcements.")
@click.argument("domains", nargs=-1)
def incident_open(cause: str, title: str, summary: str, domains: tuple[str, ...]) -> None:
    """Open an incident; blocks of DOMAINS (made now or later) are recorded in it."""
    ctx = cli_context()
    slug = incidents.open_incident(ctx.redis, cause, title, summary, time.time())
    for domain in domains:
        incidents.attach(ctx.redis, slug, domain.lower())
    click.echo(f"opened {slug}")


@incident.command("list")
def incident_list() -> None:
    for item in incidents.list_incidents(cli_context().redis):
        servers = ", ".join(f"{server.shown} ({server.action})" for server in item.servers)
        click.echo(f"{item.slug}  {item.status:<10} {item.cause:<13} {item.title}  [{servers}]")


@incident.command("status")
@click.argument("slug")
@click.argument("status", type=click.Choice(["open", "monitoring", "resolved"]))
@click.option("--note", default=None, help="Public timeline entry.")
def incident_status(slug: str, status: str, note: str | None) -> None:
    ctx = cli_context()
    if incidents.load(ctx.redis, slug) is None:
        raise click.ClickException(f"no incident {slug}")
    incidents.set_status(ctx.redis, slug, incidents.Status(status), time.time(), note)
    click.echo(f"{slug}: {status}")


@click.group(invoke_without_command=True)
@click.pass_context
def announcements(click_ctx: click.Context) -> None:
    """Announcements waiting for their hold-off to end: list, cancel, mark a lift as a correction."""
    if click_ctx.invoked_subcommand is None:
        for batch_id, due, items in pending(cli_context().redis):
            click.echo(f"batch {batch_id}, posted at {datetime.fromtimestamp(due, UTC):%H:%M:%S} UTC:")
            for item in items:
                change = item.block
                flags = " [cancelled]" if item.cancelled else (" [correction]" if item.correction else "")
                click.echo(f"  {change.kind:<8} {change.domain} ({change.severity}){flags}")


@announcements.command("cancel")
@click.argument("batch_id")
@click.argument("domain", required=False)
def announcements_cancel(batch_id: str, domain: str | None) -> None:
    """Do not announce this batch (or only DOMAIN's change in it)."""
    changed = cancel(cli_context().redis, batch_id, domain)
    if not changed:
        raise click.ClickException("nothing pending matches (already posted?)")
    click.echo(f"{changed} change(s) will not be announced")


@announcements.command("correction")
@click.argument("batch_id")
@click.argument("domain")
@click.option("--not", "undo", is_flag=True, help="Announce it as an ordinary lift after all.")
def announcements_correction(batch_id: str, domain: str, undo: bool) -> None:
    """Word DOMAIN's lift in this batch as the correction of a mistake."""
    if not mark_correction(cli_context().redis, batch_id, domain.lower(), not undo):
        raise click.ClickException("nothing pending matches (already posted?)")
    click.echo(f"{domain}: {'ordinary lift' if undo else 'correction'}")


# --- Replies in the DM about a held announcement ---------------------------------------------------


def _batch(request: Request) -> str:
    return (request.subject or "").removeprefix(SUBJECT)


def reply_cancel(ctx: Context, request: Request) -> Outcome:
    domain = request.args.strip().lower() or None
    if not cancel(ctx.redis, _batch(request), domain):
        return refused("nothing of it is waiting any more (posted already?)")
    what = f"{domain}'s change" if domain else "It"
    return Outcome("done", f"Cancelled: {what} will not be announced.", everyone=True)


def reply_correction(ctx: Context, request: Request) -> Outcome:
    batch = _batch(request)
    lifts = [item.change["domain"] for item in held(ctx.redis, batch) if item.block.kind == "removed"]
    domain = request.args.strip().lower() or (lifts[0] if len(lifts) == 1 else "")
    if domain not in lifts:
        return refused("name the lift to word as a correction: correction DOMAIN" if lifts else "it lifts no block")
    if not mark_correction(ctx.redis, batch, domain):
        return refused("it is not waiting any more (posted already?)")
    return Outcome("done", f"{domain}'s lift will be announced as the correction of a mistake.", everyone=True)


def reply_announce_now(ctx: Context, request: Request) -> Outcome:
    if not post_now(ctx, _batch(request)):
        return refused("it is not waiting any more (posted or cancelled already?)")
    return Outcome("done", "Announcing now.", everyone=True)


THREAD = "a DM about a held announcement"
ANNOUNCING = "manage_announcements"
"""What the replies about a held announcement take: they decide what the instance says in public."""
REPLIES = (
    ReplyCommand("cancel", "cancel [DOMAIN]", reply_cancel, SUBJECT, THREAD, permission=ANNOUNCING),
    ReplyCommand(
        "correction",
        "correction [DOMAIN] (word a lift as a correction)",
        reply_correction,
        SUBJECT,
        THREAD,
        permission=ANNOUNCING,
    ),
    ReplyCommand("announce now", "announce now", reply_announce_now, SUBJECT, THREAD, permission=ANNOUNCING),
)


def status_lines(ctx: Context) -> list[str]:
    """For the `status` reply: held announcements and open incidents."""
    waiting = pending(ctx.redis)
    lines = []
    if waiting:
        due = min(due for _batch_id, due, _items in waiting)
        lines.append(f"Announcements held: {len(waiting)} (next at {datetime.fromtimestamp(due, UTC):%H:%M} UTC).")
    else:
        lines.append("No announcement held.")
    open_ = [item for item in incidents.list_incidents(ctx.redis) if item.status != incidents.Status.RESOLVED]
    lines.append(f"Open incidents: {', '.join(item.slug for item in open_[:5])}." if open_ else "No open incident.")
    return lines
