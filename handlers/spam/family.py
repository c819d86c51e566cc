"""The spam-wave family as the platform sees it: local statuses and the account changes that make an
account young or not."""

from __future__ import annotations

from bot.pipeline.families import Family
from handlers.spam import wave
from handlers.spam.settings import SpamWaveSettings

STATUSES = ("status.created", "status.updated")  # Mastodon's admin webhooks (app/models/webhook.rb)
ACCOUNT_STATE = ("account.approved", "account.updated")

FAMILIES = (
    Family(
        name="spam-waves",
        handlers={
            **dict.fromkeys(STATUSES, wave.handle_status),
            **dict.fromkeys(ACCOUNT_STATE, wave.handle_account_update),
        },
        settings=(SpamWaveSettings,),
        detectors=(wave.SURGES,),
        webhooks=frozenset(STATUSES + ACCOUNT_STATE),
    ),
)
