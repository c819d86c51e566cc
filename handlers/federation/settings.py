"""The federation audit's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.core.config import Section, words
from bot.core.domains import normalized_domain


class WatchSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_WATCH_")

    domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Servers audited for who federates with them."""

    @field_validator("domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        # One spelling (bot/core/domains.py); a word that names no server fails start-up (NotADomain is a ValueError).
        items = words(value)
        return [normalized_domain(str(domain)) for domain in items] if isinstance(items, list) else items
