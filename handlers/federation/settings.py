"""The federation audit's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.core.config import Section, words


class WatchSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_WATCH_")

    domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Servers audited for who federates with them."""

    @field_validator("domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        items = words(value)
        return [str(domain).strip().lower().rstrip(".") for domain in items] if isinstance(items, list) else items
