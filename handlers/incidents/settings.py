"""The incidents family's settings: domain-block polling, announcements, incident pages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class IncidentSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_")

    domain_poll_seconds: float = Field(default=60.0, ge=0)
    """How often domain blocks are polled (Mastodon sends no webhook for them); 0: never."""
    rules_url: str | None = None
    """Linked from announcements and pages."""
    contact: str | None = None
    """Shown on incident pages (an account or an address for questions)."""


class AnnouncementSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_ANNOUNCE_")

    hold_minutes: float = Field(default=5.0, ge=0)
    """Moderators may cancel an announcement within this."""
    visibility: Literal["public", "unlisted", "private"] = "public"
    spoiler: str | None = None
    """Content warning of announcements; unset: none."""
