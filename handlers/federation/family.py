"""The federation audit as the platform sees it: watched servers audited on the sweep, one command."""

from __future__ import annotations

from bot.pipeline.families import Family
from handlers.federation import audit, cli

FAMILIES = (
    Family(
        name="federation-audit",
        sweep=audit.schedule_watched,
        commands=(cli.audit_federation,),
    ),
)
