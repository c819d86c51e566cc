"""The report family's settings: TOCSIN_REPORT_<FIELD> (docs/configuration.md lists them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class ReportSurgeSettings(Section):
    """Thresholds of the report-surge detector (handlers/reports/surge.py), in one place.

    Defaults are chosen for the brief's instance: ~20 reports a week spread over many servers must
    never alert, while 100-200 reports in a few hours against one server must alert within its first
    ~20-30 reports.
    """

    model_config = SettingsConfigDict(env_prefix="TOCSIN_REPORT_")

    window_hours: float = Field(default=3.0, gt=0)
    """Sliding window (event time) in which a surge is counted."""
    baseline_days: float = Field(default=28.0, gt=0)
    """Long window before the sliding one that gives the normal rate."""
    min_reports: int = Field(default=15, ge=1)
    """A bucket needs at least this many reports in the window to alert."""
    min_accounts: int = Field(default=3, ge=1)
    """... against at least this many distinct accounts (one noisy account is not a server problem)."""
    ratio: float = Field(default=10.0, ge=1)
    """... and at least this many times the count the baseline rate predicts for the window."""
    overall_min_reports: int = Field(default=40, ge=1)
    """The all-servers bucket alerts from this many reports in the window, when no one server dominates."""
    learning_hours: float = Field(default=24.0, ge=0)
    """... and only once reports have been observed this long (from events or `tocsin backfill`): without
    a baseline, a busy instance's ordinary traffic would look like a wave spread over many servers."""
    escalation_factor: float = Field(default=2.0, gt=1)
    """Another DM only when both the window count and the hourly rate reach this multiple of the last alert."""
    escalation_cooldown_minutes: float = Field(default=60.0, ge=0)
    """... and at least this long after the last one: a wave that keeps doubling gets one DM an hour."""
    quiet_days: float = Field(default=7.0, gt=0)
    """A surge ends ("quiet again" DM) after this long without a report against the bucket."""
