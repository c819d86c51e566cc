"""One module per event family or detector. `dispatch` routes a (reduced) webhook event to its handler.

A handler is `handle(ctx, event) -> None`: it updates counters in Redis and, when a detector decides,
enqueues an alert job. It does no Mastodon I/O itself; alert jobs do, on the urgent queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.context import Context
from handlers import accounts, announcements, domain_blocks, reports, scan, statuses

log = logging.getLogger(__name__)

Handler = Callable[[Context, dict[str, Any]], None]

HANDLERS: dict[str, Handler] = {
    "account.created": accounts.handle_signup,
    "account.approved": accounts.handle_account_update,
    "account.updated": accounts.handle_account_update,
    "report.created": reports.handle_report,
    "report.updated": reports.handle_report,
    "status.created": statuses.handle_status,
    "status.updated": statuses.handle_status,
    # Not webhooks: made by the domain-block poller (handlers/domain_blocks.py) on the same stream; the
    # single-change names are what earlier versions queued.
    domain_blocks.EVENT: domain_blocks.handle_block_changes,
    "domain_block.created": domain_blocks.handle_block_changes,
    "domain_block.updated": domain_blocks.handle_block_changes,
    "domain_block.removed": domain_blocks.handle_block_changes,
}


def dispatch(ctx: Context, event: dict[str, Any]) -> None:
    handler = HANDLERS.get(str(event.get("event")))
    if handler is not None:
        handler(ctx, event)


def after_batch(ctx: Context) -> None:
    """After each drained batch: checks that depend on the event clock, not on one event."""
    reports.close_quiet_surges(ctx)
    accounts.close_quiet_surges(ctx)
    statuses.close_quiet_waves(ctx)


def sweep(ctx: Context, now: float) -> None:
    """Periodic (bot/sweep.py): the same checks on the wall clock, for when no events arrive."""
    reports.close_quiet_surges(ctx, now)
    accounts.close_quiet_surges(ctx, now)
    statuses.close_quiet_waves(ctx, now)
    scan.schedule_scan(ctx, now)
    domain_blocks.schedule_poll(ctx, now)
    announcements.resume_due(ctx, now)
