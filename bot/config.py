"""Settings: environment variables (prefix TOCSIN_) or a `.env` file in the working directory.

Every setting is documented in README.md ("Configuration"). An invalid value fails at start-up with a
message that names the variable (see `load_settings`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from bot.domains import normalized_domain

ENV_PREFIX = "TOCSIN_"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class ReportSurgeSettings(BaseModel):
    """Thresholds of the report-surge detector (handlers/reports.py), in one place.

    Defaults are chosen for the brief's instance: ~20 reports a week spread over many servers must
    never alert, while 100-200 reports in a few hours against one server must alert within its first
    ~20-30 reports.
    """

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

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


class SignupSurgeSettings(BaseModel):
    """Thresholds of the sign-up surge detector (handlers/accounts.py).

    A small instance sees a few sign-ups a day; the brief's incident was mass creation of bot accounts
    after a DDoS. Defaults stay silent on ordinary days and alert within a burst's first ~15-20 sign-ups.
    """

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

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


class SpamWaveSettings(BaseModel):
    """Thresholds of the local spam-wave detector (handlers/statuses.py). Only posts of young accounts
    are examined; ordinary members' posting never reaches the counters."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

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


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "report_surge": ReportSurgeSettings,
    "signup_surge": SignupSurgeSettings,
    "spam_wave": SpamWaveSettings,
}
SECTIONS = {"report_surge": "report_", "signup_surge": "signup_", "spam_wave": "spam_"}
"""Each detector's settings section and the prefix of its variables (TOCSIN_ + prefix + field)."""


def flat_setting_names() -> list[str]:
    """Every setting as its environment variable names it (sections flattened)."""
    names = []
    for field in Settings.model_fields:
        if field in SECTIONS:
            names += [SECTIONS[field] + name for name in SECTION_MODELS[field].model_fields]
        else:
            names.append(field)
    return [f"{ENV_PREFIX}{name.upper()}" for name in names]


class FlatSectionSource(PydanticBaseSettingsSource):
    """The detectors' variables (TOCSIN_REPORT_WINDOW_HOURS, …) from the environment, else the .env file,
    gathered into their sections."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource, dotenv: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.sources = [getattr(env, "env_vars", {}), getattr(dotenv, "env_vars", {})]

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads whole sections

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for section, prefix in SECTIONS.items():
            found = {}
            for name in SECTION_MODELS[section].model_fields:
                key = f"{ENV_PREFIX}{prefix}{name}".lower()
                value = next((source[key] for source in self.sources if source.get(key) not in (None, "")), None)
                if value is not None:
                    found[name] = value
            if found:
                values[section] = found
        return values


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
    api_budget: float = Field(default=0.5, gt=0, le=1)  # share of Mastodon's API rate limit Tocsin's admin calls use
    retry_delays: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [10, 30, 60, 120, 300, 600, 1800])
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    dedupe_days: float = Field(default=4.0, ge=3.0)  # Mastodon retries for ~2 days; keep keys longer

    # Domain actions → announcements and incident pages (handlers/domain_blocks.py, announcements.py).
    domain_poll_seconds: float = Field(default=60.0, ge=0)  # how often blocks are polled; 0: never
    metrics: bool = False  # GET /metrics on the web listener (Prometheus); see also metrics_port
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # or a listener of its own, on 127.0.0.1
    command_poll_seconds: float = Field(default=15.0, ge=0)  # how often DM commands are read; 0: never
    announce_hold_minutes: float = Field(default=5.0, ge=0)  # moderators may cancel within this
    announce_visibility: Literal["public", "unlisted", "private"] = "public"
    announce_spoiler: str | None = None  # content warning of announcements; unset: none
    instance_name: str | None = None  # unset: the domain the instance gives itself (public_name)
    rules_url: str | None = None  # linked from announcements and pages
    contact: str | None = None  # shown on incident pages (an account or an address for questions)

    # Peer scan for unpatched software (handlers/scan.py).
    advisory_dir: Path | None = None  # the operator's advisories (*.toml), next to the shipped ones
    scan_interval_hours: float = Field(default=24.0, ge=0)  # 0: only on demand (`tocsin scan`)
    watch_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)  # audited for who federates
    scan_concurrency: int = Field(default=100, ge=1, le=1000)  # peers fetched at once
    scan_chunk: int = Field(default=500, ge=10, le=10000)  # peers read by one job (a killed job repeats at most these)
    scan_timeout: float = Field(default=10.0, gt=0, le=120)  # seconds for one fetch, redirects included
    scan_max_bytes: int = Field(default=256 * 1024, ge=4096)  # a NodeInfo document larger than this is hostile
    scan_limit_above_follows: int = Field(default=10, ge=0)  # propose a limit, not a suspension, above this

    # The detectors' thresholds, each declared once in its section (above). Their variables are flat, the
    # section's prefix then the field: TOCSIN_REPORT_WINDOW_HOURS is report_surge.window_hours.
    report_surge: ReportSurgeSettings = Field(default_factory=ReportSurgeSettings)
    signup_surge: SignupSurgeSettings = Field(default_factory=SignupSurgeSettings)
    spam_wave: SpamWaveSettings = Field(default_factory=SpamWaveSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sections = FlatSectionSource(settings_cls, env_settings, dotenv_settings)
        return init_settings, sections, env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _flat_section_fields(cls, data: object) -> object:
        """`report_window_hours=…` (as tests and `load_settings` overrides write it) into its section."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section, prefix in SECTIONS.items():
            nested = dict(data.get(section) or {})
            for name in SECTION_MODELS[section].model_fields:
                if prefix + name in data:
                    nested[name] = data.pop(prefix + name)
            if nested:
                data[section] = nested
        return data

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
        items = _words(value)
        return [str(acct).lstrip("@") for acct in items] if isinstance(items, list) else items

    @field_validator("watch_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        # One spelling (bot/domains.py); a word that names no server fails start-up (NotADomain is a ValueError).
        items = _words(value)
        return [normalized_domain(str(domain)) for domain in items] if isinstance(items, list) else items

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

    @property
    def instance_url(self) -> str:
        """The instance as DMs link it (admin pages); a placeholder when none is configured (dry runs)."""
        return (self.mastodon_url or "https://your.instance").rstrip("/")

    def public_name(self, instance_domain: str | None = None) -> str:
        """How posts and pages name the instance: TOCSIN_INSTANCE_NAME, else the domain the instance gives
        itself (its API's `domain`: TOCSIN_MASTODON_URL's host may be 127.0.0.1 or a private network's
        name, like `mastodon-web` in the compose file), else that host."""
        host = urlsplit(self.mastodon_url or "").hostname
        return self.instance_name or instance_domain or host or "this instance"

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "webhook-secret"


def _words(value: object) -> object:
    """A list setting written as one string: comma- or space-separated."""
    return [part for part in value.replace(",", " ").split() if part] if isinstance(value, str) else value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one message per offending variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            if field in SECTIONS and len(item["loc"]) > 1:
                field = SECTIONS[field] + str(item["loc"][1])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {item['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
