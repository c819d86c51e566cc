"""The family's settings: TOCSIN_EXAMPLE_<FIELD>."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class ExampleSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_EXAMPLE_")

    notable: int = Field(default=3, ge=1)
    """A category with at least this many reports is named by `tocsin doctor`."""
