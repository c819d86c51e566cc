"""The spam-wave family's settings: TOCSIN_SPAM_<FIELD> (docs/configuration.md lists them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class SpamWaveSettings(Section):
    """Thresholds of the local spam-wave detector (handlers/spam/wave.py). Only posts of young accounts
    are examined; ordinary members' posting never reaches the counters."""

    model_config = SettingsConfigDict(env_prefix="TOCSIN_SPAM_")

    window_hours: float = Field(default=6.0, gt=0)
    """Sliding window (event time) for near-duplicates and mass-mention posts."""
    young_days: float = Field(default=7.0, gt=0)
    """Accounts created less than this many days before their post are "young"."""
    duplicate_accounts: int = Field(default=5, ge=2)
    """Posts with the same text (modulo mentions and whitespace), link or image from this many young
    accounts are a near-duplicate wave (fewer happens: new members sharing the day's news link)."""
    mass_mentions: int = Field(default=5, ge=2)
    """A young account's post that mentions at least this many accounts is mention spam (Feb 2024)."""
    fast_posts_per_hour: int = Field(default=20, ge=2)
    """A young account posting at least this many times in an hour is flooding ..."""
    fast_ratio: float = Field(default=10.0, ge=1)
    """... when that is also this many times what an active account posts per hour on this instance."""
    min_posts: int = Field(default=3, ge=1)
    """A wave opens once this many posts were flagged in the window (one odd post is not a wave)."""
    escalation_factor: float = Field(default=2.0, gt=1)
    """Another DM only when the flagged accounts and their hourly rate reach this multiple of the last alert."""
    escalation_cooldown_minutes: float = Field(default=60.0, ge=0)
    """... and at least this long after the last one."""
    quiet_hours: float = Field(default=24.0, gt=0)
    """The wave ends ("quiet again" DM) after this long without a flagged post."""
