"""The incidents family as the platform sees it, in two parts: domain blocks (polled, since Mastodon sends
no webhook for them) and the incidents and announcements they open, with their pages."""

from __future__ import annotations

import time
from collections.abc import Iterator

from bot.core import redis_text
from bot.mastodon.context import Context
from bot.pipeline.families import Family
from handlers.incidents import announcements, blocks, blocks_cli, commands, pages, store
from handlers.incidents.settings import AnnouncementSettings, IncidentSettings
from handlers.shared.settings import AdvisorySettings

BLOCK_EVENTS = (blocks.EVENT, "domain_block.created", "domain_block.updated", "domain_block.removed")
"""Not webhooks (Mastodon sends none for domain blocks): the poller puts them on the stream. The
single-change names are what earlier versions queued."""


def _ago(raw: redis_text.Reply | None) -> str:
    return "never" if raw is None else f"{(time.time() - float(raw)) / 60:.0f} min ago"


def _poll_doctor(ctx: Context) -> Iterator[tuple[bool, str]]:
    if ctx.mastodon.can_read_admin:
        polled = (
            _ago(ctx.redis.get(blocks.LAST_POLL))
            if ctx.settings.section(IncidentSettings).domain_poll_seconds
            else "off"
        )
        yield True, f"domain blocks polled: {polled}"


FAMILIES = (
    Family(
        name="domain-blocks",
        handlers=dict.fromkeys(BLOCK_EVENTS, blocks.handle_block_changes),
        sweep=blocks.schedule_poll,
        ephemeral_keys=(blocks.POLL_CLAIM,),
        commands=(blocks_cli.blocks,),
        doctor=_poll_doctor,
        settings=(IncidentSettings, AdvisorySettings),
    ),
    Family(
        name="incidents",
        sweep=announcements.resume_due,
        commands=(commands.incident, commands.announcements),
        replies=commands.REPLIES,
        status=commands.status_lines,
        gauges=lambda connection: [
            (
                "tocsin_announcements_held",
                "Announcement batches in their hold-off.",
                connection.zcard(announcements.PENDING),
            )
        ],
        ephemeral_keys=(store.LOCK,),
        routes=pages.add_incident_pages,
        settings=(AnnouncementSettings,),
    ),
)
