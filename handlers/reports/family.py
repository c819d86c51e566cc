"""The report family as the platform sees it: its events, its detector, its backfill and history."""

from __future__ import annotations

from bot.mastodon.context import Context
from bot.pipeline.families import Family
from handlers.reports import surge
from handlers.reports.settings import ReportSurgeSettings

EVENTS = ("report.created", "report.updated")  # Mastodon's admin webhooks (app/models/webhook.rb, 4.0-4.7)


def _backfill(ctx: Context, days: float | None) -> str:
    days = days if days is not None else ctx.settings.section(ReportSurgeSettings).baseline_days
    recorded = surge.backfill_reports(ctx, days)
    return f"{recorded} reports recorded"


FAMILIES = (
    Family(
        name="reports",
        handlers=dict.fromkeys(EVENTS, surge.handle_report),
        settings=(ReportSurgeSettings,),
        detectors=(surge.SURGES,),
        webhooks=frozenset(EVENTS),
        backfill=_backfill,
        history=surge.report_history,
    ),
)
