"""The peer-scan family as the platform sees it: its periodic scan, its commands, its doctor lines."""

from __future__ import annotations

import time
from collections.abc import Iterator

from bot.core import redis_text
from bot.mastodon.context import Context
from bot.pipeline.families import Family
from handlers.scan import cli, runs
from handlers.shared import nodeinfo
from handlers.shared.settings import AdvisorySettings, PeerScanSettings


def _ago(raw: redis_text.Reply | None) -> str:
    return "never" if raw is None else f"{(time.time() - float(raw)) / 60:.0f} min ago"


def _doctor(ctx: Context) -> Iterator[tuple[bool, str]]:
    if ctx.mastodon.can_read_admin:
        yield True, f"peers scanned: {_ago(ctx.redis.get(runs.LAST_SCAN))}"
        current = ctx.redis.get(runs.CURRENT_RUN)
        if current is not None:
            now = runs.progress(ctx, runs.Run(redis_text.text(current)))
            step = f"{now.read:,}/{now.total:,} peers read" if now.state == "reading" else now.state
            if now.state == "sizing":
                step = f"follows looked up for {now.sized:,}/{now.to_size:,} servers"
            yield True, f"scan under way (started {_ago(str(now.started).encode())}): {step}"


FAMILIES = (
    Family(
        name="peer-scan",
        sweep=runs.sweep,
        ephemeral_keys=(nodeinfo.CACHE_PREFIX, runs.SCAN_CLAIM, runs.CURRENT_RUN, runs.RUN_PREFIX),
        commands=(cli.scan, cli.outreach),
        doctor=_doctor,
        settings=(PeerScanSettings, AdvisorySettings),
    ),
)
