"""The sign-up family as the platform sees it: its events, its detector, its backfill and history."""

from __future__ import annotations

from bot.mastodon.context import Context
from bot.pipeline.families import Family
from handlers.signups import surge
from handlers.signups.settings import SignupSurgeSettings

SIGNUPS = ("account.created",)  # Mastodon's admin webhooks (app/models/webhook.rb, 4.0-4.7)
ACCOUNT_STATE = ("account.approved", "account.updated")


def _backfill(ctx: Context, days: float | None) -> str:
    days = days if days is not None else ctx.settings.section(SignupSurgeSettings).baseline_days
    recorded = surge.backfill_signups(ctx, days)
    return f"{recorded} sign-ups recorded"


FAMILIES = (
    Family(
        name="signups",
        handlers={
            **dict.fromkeys(SIGNUPS, surge.handle_signup),
            **dict.fromkeys(ACCOUNT_STATE, surge.handle_account_update),
        },
        settings=(SignupSurgeSettings,),
        detectors=(surge.SURGES,),
        webhooks=frozenset(SIGNUPS + ACCOUNT_STATE),
        backfill=_backfill,
        history=surge.signup_history,
    ),
)
