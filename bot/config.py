"""Settings: environment variables (prefix TOCSIN_) or a `.env` file in the working directory.

Every setting is documented in README.md ("Configuration"). An invalid value fails at start-up with a
message that names the variable (see `load_settings`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TOCSIN_"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


@dataclass(frozen=True)
class ReportSurgeSettings:
    """Thresholds of the report-surge detector (handlers/reports.py), in one place.

    Defaults are chosen for the brief's instance: ~20 reports a week spread over many servers must
    never alert, while 100-200 reports in a few hours against one server must alert within its first
    ~20-30 reports.
    """

    window_hours: float = 3.0
    """Sliding window (event time) in which a surge is counted."""
    baseline_days: float = 28.0
    """Long window before the sliding one that gives the normal rate."""
    min_reports: int = 15
    """A bucket needs at least this many reports in the window to alert."""
    min_accounts: int = 3
    """... against at least this many distinct accounts (one noisy account is not a server problem)."""
    ratio: float = 10.0
    """... and at least this many times the count the baseline rate predicts for the window."""
    overall_min_reports: int = 40
    """The all-servers bucket alerts from this many reports in the window, when no one server dominates."""
    learning_hours: float = 24.0
    """... and only once reports have been observed this long (from events or `tocsin backfill`): without
    a baseline, a busy instance's ordinary traffic would look like a wave spread over many servers."""
    escalation_factor: float = 2.0
    """Another DM only when both the window count and the hourly rate reach this multiple of the last alert."""
    escalation_cooldown_minutes: float = 60.0
    """... and at least this long after the last one: a wave that keeps doubling gets one DM an hour."""
    quiet_days: float = 7.0
    """A surge ends ("quiet again" DM) after this long without a report against the bucket."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", env_ignore_empty=True, extra="ignore")

    # The contract in shared/BRIEF.md.
    mastodon_url: str | None = None
    access_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    redis_url: str | None = None
    data_dir: Path = Path("tocsin-data")
    moderators: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str | None = None
    allowed_private_addresses: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=list
    )

    # Operation.
    dry_run: bool | None = None  # unset: dry-run exactly when there is no access token
    template_dir: Path | None = None  # operator overrides, searched before templates/
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)  # worker processes started by `tocsin serve`
    request_timeout: float = Field(default=15.0, gt=0, le=120)  # seconds, each Mastodon API call
    retry_delays: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [10, 30, 60, 120, 300, 600, 1800])
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    dedupe_days: float = Field(default=4.0, ge=3.0)  # Mastodon retries for ~2 days; keep keys longer

    # Report-surge detector (see ReportSurgeSettings for what each means).
    report_window_hours: float = Field(default=ReportSurgeSettings.window_hours, gt=0)
    report_baseline_days: float = Field(default=ReportSurgeSettings.baseline_days, gt=0)
    report_min_reports: int = Field(default=ReportSurgeSettings.min_reports, ge=1)
    report_min_accounts: int = Field(default=ReportSurgeSettings.min_accounts, ge=1)
    report_ratio: float = Field(default=ReportSurgeSettings.ratio, ge=1)
    report_overall_min_reports: int = Field(default=ReportSurgeSettings.overall_min_reports, ge=1)
    report_learning_hours: float = Field(default=ReportSurgeSettings.learning_hours, ge=0)
    report_escalation_factor: float = Field(default=ReportSurgeSettings.escalation_factor, gt=1)
    report_escalation_cooldown_minutes: float = Field(default=ReportSurgeSettings.escalation_cooldown_minutes, ge=0)
    report_quiet_days: float = Field(default=ReportSurgeSettings.quiet_days, gt=0)

    @field_validator("mastodon_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return value.rstrip("/")

    @field_validator("moderators", mode="before")
    @classmethod
    def _split_moderators(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        if isinstance(value, list):
            return [str(acct).lstrip("@") for acct in value]
        return value

    @field_validator("allowed_private_addresses", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
        return value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        # Mastodon refuses secrets shorter than 12 characters (Webhook::SECRET_LENGTH_MIN).
        if value is not None and len(value.get_secret_value()) < 12:
            raise ValueError("must be at least 12 characters, like Mastodon requires")
        return value

    @model_validator(mode="after")
    def _token_needs_url(self) -> Settings:
        if self.access_token is not None and self.mastodon_url is None:
            raise ValueError(f"{ENV_PREFIX}MASTODON_URL must be set when {ENV_PREFIX}ACCESS_TOKEN is set")
        return self

    @property
    def is_dry_run(self) -> bool:
        return self.access_token is None if self.dry_run is None else self.dry_run

    @cached_property
    def report_surge(self) -> ReportSurgeSettings:
        return ReportSurgeSettings(
            window_hours=self.report_window_hours,
            baseline_days=self.report_baseline_days,
            min_reports=self.report_min_reports,
            min_accounts=self.report_min_accounts,
            ratio=self.report_ratio,
            overall_min_reports=self.report_overall_min_reports,
            learning_hours=self.report_learning_hours,
            escalation_factor=self.report_escalation_factor,
            escalation_cooldown_minutes=self.report_escalation_cooldown_minutes,
            quiet_days=self.report_quiet_days,
        )

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "webhook-secret"


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one message per offending variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {item['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
