"""The periodic sweep: wall-clock checks for when no events arrive, and a restart for stalled drains.

It reschedules itself with one job id per time slot, so any number of workers starting up or sweeping
at once still leave exactly one sweep queued per slot. No separate cron process is needed.
"""

from __future__ import annotations

import logging
import time

import redis

from bot.core import defaults
from bot.dm import mentions
from bot.mastodon.context import get_context
from bot.pipeline.events import backlog, enqueue_drain
from bot.pipeline.families import registry
from bot.pipeline.queue import enqueue_once

log = logging.getLogger(__name__)


def schedule_next_sweep(connection: redis.Redis, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    slot = int(now // defaults.SWEEP_INTERVAL) + 1
    return enqueue_once(
        connection,
        defaults.QUEUE_BACKGROUND,
        run,
        job_id=f"{defaults.SWEEP_JOB_ID}-{slot}",
        delay_seconds=max(1.0, slot * defaults.SWEEP_INTERVAL - now),
    )


def restart_stalled_drain(connection: redis.Redis, retry_delays: list[int]) -> bool:
    """Events waiting but no drain job scheduled (its enqueue failed, or it died): start one."""
    waiting = backlog(connection)
    if waiting["stream"] == 0:
        return False
    if not connection.set(defaults.DRAIN_FLAG, "1", nx=True, ex=defaults.DRAIN_FLAG_TTL):
        return False
    enqueue_drain(connection, retry_delays)
    log.warning("restarted a stalled drain (%d events waiting)", waiting["stream"])
    return True


def run() -> None:
    ctx = get_context()
    schedule_next_sweep(ctx.redis)
    restart_stalled_drain(ctx.redis, ctx.settings.retry_delays)
    ctx.mastodon.refresh_bot_account_id()  # the handlers never ask Mastodon themselves
    ctx.mastodon.refresh_instance_domain()  # nor do the pages
    now = time.time()
    mentions.schedule_next_poll(ctx, now)
    mentions.requeue_lost(ctx, now)
    registry().sweep(ctx, now)
