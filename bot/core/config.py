"""Settings: environment variables (prefix TOCSIN_) or a `.env` file in the working directory.

Every setting is documented in docs/configuration.md. An invalid value fails at start-up with a
message that names the variable (see `load_settings`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TOCSIN_"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class Section(BaseSettings):
    """A family's own settings, declared in the family (handlers/<family>/settings.py) with its prefix:

        class ReportSurgeSettings(Section):
            model_config = SettingsConfigDict(env_prefix="TOCSIN_REPORT_")
            window_hours: float = 3.0

    reads TOCSIN_REPORT_WINDOW_HOURS from the same environment and .env file as the platform's settings.
    A job reaches it as `ctx.settings.section(ReportSurgeSettings)`; `tocsin` checks every installed
    family's section at start-up, so a bad value fails there, naming its variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    @classmethod
    def prefix(cls) -> str:
        """The variables' prefix after TOCSIN_, lower case: "report_" (how overrides name a field)."""
        return str(cls.model_config.get("env_prefix", ENV_PREFIX)).lower().removeprefix(ENV_PREFIX.lower())

    @classmethod
    def variable_names(cls) -> dict[str, str]:
        """TOCSIN_REPORT_RATIO -> report_ratio, for each field."""
        return {f"{ENV_PREFIX}{cls.prefix()}{name}".upper(): cls.prefix() + name for name in cls.model_fields}


SectionT = TypeVar("SectionT", bound=Section)


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

    metrics: bool = False  # GET /metrics on the web listener (Prometheus); see also metrics_port
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # or a listener of its own, on 127.0.0.1
    command_poll_seconds: float = Field(default=15.0, ge=0)  # how often DM commands are read; 0: never
    instance_name: str | None = None  # unset: the domain the instance gives itself (public_name)

    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)
    """Values given to `load_settings` by name that are no platform setting: a family section's
    (`report_window_hours=…`, as tests and `tocsin replay --set` write them)."""
    _env_file: Any = PrivateAttr(default=".env")
    _sections: dict[type[Section], Section] = PrivateAttr(default_factory=dict)

    def section(self, kind: type[SectionT]) -> SectionT:
        """A family's settings (read once, then kept with these settings)."""
        found = self._sections.get(kind)
        if found is None:
            prefix = kind.prefix()
            given = {
                name: self._overrides[prefix + name] for name in kind.model_fields if prefix + name in self._overrides
            }
            try:
                found = kind(_env_file=self._env_file, **given)  # type: ignore[call-arg]  # pydantic-settings init arg
            except ValidationError as error:
                raise ConfigError(_problems(error, prefix)) from None
            self._sections[kind] = found
        return cast(SectionT, found)

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
        items = words(value)
        return [str(acct).lstrip("@") for acct in items] if isinstance(items, list) else items

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


def words(value: object) -> object:
    """A list setting written as one string: comma- or space-separated."""
    return [part for part in value.replace(",", " ").split() if part] if isinstance(value, str) else value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one message per offending variable. Overrides
    that name no platform setting are kept for the families' sections (`Settings.section`)."""
    known = {name: value for name, value in overrides.items() if name in Settings.model_fields or name.startswith("_")}
    try:
        settings = Settings(**known)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_problems(error, "")) from None
    settings._overrides = {name: value for name, value in overrides.items() if name not in known}
    settings._env_file = overrides.get("_env_file", ".env")
    return settings


def _problems(error: ValidationError, prefix: str) -> str:
    problems = []
    for item in error.errors():
        field = prefix + str(item["loc"][0]) if item["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        problems.append(f"{name}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(problems)


def setting_names(sections: Iterable[type[Section]] = ()) -> list[str]:
    """Every setting as its environment variable names it: the platform's, then these sections'."""
    names = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    for section in sections:
        names += list(section.variable_names())
    return names
