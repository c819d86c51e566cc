"""Settings the peer-reading families share (the scan and the federation audit)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bot.core.config import Section


class PeerScanSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_SCAN_")

    interval_hours: float = Field(default=24.0, ge=0)
    """How often peers are scanned; 0: only on demand (`tocsin scan`)."""
    concurrency: int = Field(default=100, ge=1, le=1000)
    """Peers fetched at once."""
    chunk: int = Field(default=500, ge=10, le=10000)
    """Peers read by one job (a killed job repeats at most these)."""
    timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds for one fetch, redirects included."""
    max_bytes: int = Field(default=256 * 1024, ge=4096)
    """A NodeInfo document larger than this is hostile."""
    limit_above_follows: int = Field(default=10, ge=0)
    """Propose a limit, not a suspension, above this many follows."""


class AdvisorySettings(Section):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_ADVISORY_")

    dir: Path | None = None
    """The operator's advisories (*.toml, and forks.toml), next to the shipped ones."""
