"""The sign-up family's settings: TOCSIN_SIGNUP_<FIELD> (docs/configuration.md lists them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class SignupSurgeSettings(Section):
    """Thresholds of the sign-up surge detector (handlers/signups/surge.py).

    A small instance sees a few sign-ups a day; the brief's incident was mass creation of bot accounts
    after a DDoS. Defaults stay silent on ordinary days and alert within a burst's first ~15-20 sign-ups.
    """

    model_config = SettingsConfigDict(env_prefix="TOCSIN_SIGNUP_")

    window_hours: float = Field(default=1.0, gt=0)
    """Sliding window (event time) in which sign-ups are counted."""
    baseline_days: float = Field(default=28.0, gt=0)
    """Long window before the sliding one that gives the normal rate."""
    min_signups: int = Field(default=15, ge=1)
    """A surge needs at least this many sign-ups in the window ..."""
    ratio: float = Field(default=10.0, ge=1)
    """... and at least this many times the count the baseline rate predicts for the window."""
    learning_hours: float = Field(default=24.0, ge=0)
    """No alert before sign-ups have been observed this long (from events or `tocsin backfill`): a busy
    instance's first hour is no surge."""
    cluster_min: int = Field(default=5, ge=2)
    """Sign-ups sharing an email domain, network, name pattern, invite or app form a cluster from this many."""
    escalation_factor: float = Field(default=2.0, gt=1)
    """Another DM only when both the window count and the hourly rate reach this multiple of the last alert."""
    escalation_cooldown_minutes: float = Field(default=60.0, ge=0)
    """... and at least this long after the last one."""
    quiet_hours: float = Field(default=24.0, gt=0)
    """The surge ends ("back to normal" DM, proposing to reopen registrations) after this long below
    surge level. The brief's instance closed registrations for ~24 h."""
