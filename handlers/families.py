"""The event families this package brings to the platform (entry point `tocsin.families` in
pyproject.toml). Each names its events, its periodic work, its commands, its pages, its doctor lines."""

from __future__ import annotations

import time
from collections.abc import Iterator

from bot.context import Context
from bot.families import Family
from handlers import (
    accounts,
    announcements,
    domain_blocks,
    federation,
    incident_commands,
    incidents,
    nodeinfo,
    pages,
    reports,
    scan_runs,
    statuses,
)
from handlers.block_commands import blocks
from handlers.federation_commands import audit_federation
from handlers.incident_commands import announcements as announcements_command
from handlers.incident_commands import incident
from handlers.scan_commands import outreach
from handlers.scan_commands import scan as scan_command


def _ago(raw: bytes | None) -> str:
    return "never" if raw is None else f"{(time.time() - float(raw)) / 60:.0f} min ago"


def _poll_status(ctx: Context) -> Iterator[tuple[bool, str]]:
    if ctx.mastodon.can_read_admin:
        polled = _ago(ctx.redis.get(domain_blocks.LAST_POLL)) if ctx.settings.domain_poll_seconds else "off"
        yield True, f"domain blocks polled: {polled}"


def _scan_status(ctx: Context) -> Iterator[tuple[bool, str]]:
    if ctx.mastodon.can_read_admin:
        yield True, f"peers scanned: {_ago(ctx.redis.get(scan_runs.LAST_SCAN))}"
        current = ctx.redis.get(scan_runs.CURRENT_RUN)
        if current is not None:
            now = scan_runs.progress(ctx, scan_runs.Run(current.decode()))
            step = f"{now.read:,}/{now.total:,} peers read" if now.state == "reading" else now.state
            if now.state == "sizing":
                step = f"follows looked up for {now.sized:,}/{now.to_size:,} servers"
            yield True, f"scan under way (started {_ago(str(now.started).encode())}): {step}"


def _backfill_reports(ctx: Context, days: float | None) -> str:
    recorded = reports.backfill_reports(ctx, days if days is not None else ctx.settings.report_surge.baseline_days)
    return f"{recorded} reports recorded"


def _backfill_signups(ctx: Context, days: float | None) -> str:
    recorded = accounts.backfill_signups(ctx, days if days is not None else ctx.settings.signup_surge.baseline_days)
    return f"{recorded} sign-ups recorded"


# Mastodon's admin webhooks (app/models/webhook.rb, unchanged through 4.7): account.approved,
# account.created, account.updated, report.created, report.updated, status.created, status.updated.
REPORTS = ("report.created", "report.updated")
SIGNUPS = ("account.created",)
ACCOUNT_STATE = ("account.approved", "account.updated")
STATUSES = ("status.created", "status.updated")
BLOCK_EVENTS = (domain_blocks.EVENT, "domain_block.created", "domain_block.updated", "domain_block.removed")
"""Not webhooks (Mastodon sends none for domain blocks): the poller puts them on the stream. The
single-change names are what earlier versions queued."""

FAMILIES = [
    Family(
        name="reports",
        handlers=dict.fromkeys(REPORTS, reports.handle_report),
        detectors=(reports.SURGES,),
        webhooks=frozenset(REPORTS),
        backfill=_backfill_reports,
        history=reports.report_history,
    ),
    Family(
        name="signups",
        handlers={
            **dict.fromkeys(SIGNUPS, accounts.handle_signup),
            **dict.fromkeys(ACCOUNT_STATE, accounts.handle_account_update),
        },
        detectors=(accounts.SURGES,),
        webhooks=frozenset(SIGNUPS + ACCOUNT_STATE),
        backfill=_backfill_signups,
        history=accounts.signup_history,
    ),
    Family(
        name="spam-waves",
        handlers={
            **dict.fromkeys(STATUSES, statuses.handle_status),
            **dict.fromkeys(ACCOUNT_STATE, statuses.handle_account_update),
        },
        detectors=(statuses.SURGES,),
        webhooks=frozenset(STATUSES + ACCOUNT_STATE),
    ),
    Family(
        name="peer-scan",
        sweep=scan_runs.sweep,
        ephemeral_keys=(nodeinfo.CACHE_PREFIX, scan_runs.SCAN_CLAIM, scan_runs.CURRENT_RUN, scan_runs.RUN_PREFIX),
        commands=(scan_command, outreach),
        doctor=_scan_status,
    ),
    Family(
        name="federation-audit",
        sweep=federation.schedule_watched,
        commands=(audit_federation,),
    ),
    Family(
        name="domain-blocks",
        handlers=dict.fromkeys(BLOCK_EVENTS, domain_blocks.handle_block_changes),
        sweep=domain_blocks.schedule_poll,
        ephemeral_keys=(domain_blocks.POLL_CLAIM,),
        commands=(blocks,),
        doctor=_poll_status,
    ),
    Family(
        name="incidents",
        sweep=announcements.resume_due,
        commands=(incident, announcements_command),
        replies=incident_commands.REPLIES,
        status=incident_commands.status_lines,
        gauges=lambda connection: [
            (
                "tocsin_announcements_held",
                "Announcement batches in their hold-off.",
                connection.zcard(announcements.PENDING),
            )
        ],
        ephemeral_keys=(incidents.LOCK,),
        routes=pages.add_incident_pages,
    ),
]
