"""The federation audit as the platform sees it: watched servers audited on the sweep, one command."""

from __future__ import annotations

from bot.pipeline.families import Family
from handlers.federation import audit, cli
from handlers.federation.settings import WatchSettings
from handlers.shared.settings import PeerScanSettings

FAMILIES = (
    Family(
        name="federation-audit",
        sweep=audit.schedule_watched,
        commands=(cli.audit_federation,),
        settings=(WatchSettings, PeerScanSettings),
    ),
)
