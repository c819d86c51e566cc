"""Reading the bot's mentions: where moderators' commands come from (bot/dm/commands/ acts on them).

A poll job every TOCSIN_COMMAND_POLL_SECONDS (one per time slot, like the sweep) reads
GET /api/v1/notifications?types[]=mention page by page from a cursor kept in Redis, oldest first, and
queues one `handle_mention` job per status (job id from the status id: a mention seen twice, by two
pollers or after a restart, is one job). The notification is kept until its job finishes, and the sweep
queues again any whose job was lost with a killed worker. The very first poll only sets the cursor:
mentions from before Tocsin read commands are not commands to it.

`tocsin listen` (a child of `tocsin serve`, a process type in the Procfile) also holds the streaming
API's notification stream (GET /api/v1/streaming/user/notification, on the instance's streaming
server) and queues each mention the moment it arrives, through the same job ids: a command is answered
within seconds, and polling stays the fallback for whatever the stream missed while it was down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from mastodon import MastodonError, StreamListener
from requests import RequestException

from bot.core import defaults
from bot.dm.commands.job import count_ignored, handle_mention
from bot.dm.commands.reading import screen
from bot.mastodon.client import as_webhook_json
from bot.mastodon.context import Context, get_context
from bot.pipeline.queue import enqueue_once

log = logging.getLogger(__name__)

CURSOR = "tocsin:mentions:cursor"  # id of the newest notification read
WAITING = defaults.MENTIONS_WAITING
POLL_LOCK = "tocsin:mentions:polling"
PAGE = 40
"""Mastodon's default page of notifications (it allows 80)."""
MAX_PAGES = 10
"""Pages one poll reads at most: a flood of mentions is read over several polls, not in one burst of calls."""
SCREENED_PREFIX = "tocsin:mentions:screened:"  # + status id: counted as no command already (stream and poll)
SCREENED_SECONDS = 3600
"""The stream and the poll see a mention within minutes of each other: an hour is ample to count it once."""
LOST_AFTER = 120
"""Seconds after which a waiting mention whose job is gone is queued again (from the sweep)."""
WAITING_DAYS = 2
"""A mention waiting longer than this is dropped (its job failed for good: see `tocsin failed`)."""


def reduced(notification: dict[str, Any]) -> dict[str, Any]:
    """What a command needs of a notification: no display names, avatars or media."""
    status = notification.get("status") or {}
    account = notification.get("account") or {}
    return {
        "id": str(notification.get("id")),
        "type": notification.get("type"),
        "account": {"id": str(account.get("id")), "acct": account.get("acct"), "username": account.get("username")},
        "status": {
            name: status.get(name)
            for name in ("id", "visibility", "content", "in_reply_to_id", "created_at", "edited_at")
        }
        | {"reblog": bool(status.get("reblog"))},
        "read_at": time.time(),
    }


def poll(ctx: Context) -> int:
    """Queue a job per new mention; how many were queued. One poller at a time."""
    if not ctx.redis.set(POLL_LOCK, "1", nx=True, ex=60):
        return 0
    try:
        cursor: bytes | None = ctx.redis.get(CURSOR)  # type: ignore[assignment]
        if cursor is None:
            newest = ctx.mastodon.mentions(None, limit=1)
            ctx.redis.set(CURSOR, newest[-1]["id"] if newest else "0")
            return 0
        after = cursor.decode()
        queued = 0
        for _page in range(MAX_PAGES):
            page = ctx.mastodon.mentions(after, limit=PAGE)
            for notification in page:
                queued += _queue(ctx, reduced(notification))
            if not page:
                return queued
            after = page[-1]["id"]
            ctx.redis.set(CURSOR, after)
            if len(page) < PAGE:
                return queued
        return queued  # a flood of mentions: the rest on the next poll, from the cursor
    finally:
        ctx.redis.delete(POLL_LOCK)


def _queue(ctx: Context, notification: dict[str, Any]) -> int:
    """A job for a mention that may be a command; one that cannot be (a boost, a remote account, not
    direct) is only counted, once: anyone can mention the bot, and that costs no job and no key."""
    status_id = str(notification["status"].get("id") or "")
    if not status_id:
        return 0
    reason = screen(notification)
    if reason is not None:
        if ctx.redis.set(SCREENED_PREFIX + status_id, "1", nx=True, ex=SCREENED_SECONDS):
            count_ignored(ctx, reason)
        return 0
    ctx.redis.hsetnx(WAITING, status_id, json.dumps(notification))
    return int(
        enqueue_once(
            ctx.redis,
            defaults.QUEUE_URGENT,
            handle_mention,
            notification,
            job_id=f"command-{status_id}",
            retry_delays=ctx.settings.retry_delays,
        )
    )


def requeue_lost(ctx: Context, now: float) -> int:
    """From the sweep: mentions read but not handled whose job is gone (a killed worker) are queued again."""
    requeued = 0
    waiting: dict[bytes, bytes] = ctx.redis.hgetall(WAITING)  # type: ignore[assignment]
    for status_id, raw in waiting.items():
        notification = json.loads(raw)
        age = now - float(notification.get("read_at") or now)
        if age > WAITING_DAYS * 86400:
            ctx.redis.hdel(WAITING, status_id)
        elif age > LOST_AFTER:
            requeued += _queue(ctx, notification)
    return requeued


def schedule_next_poll(ctx: Context, now: float | None = None) -> bool:
    """Keep one poll queued per slot (from the poll itself, and from the sweep should the chain break)."""
    interval = ctx.settings.command_poll_seconds
    if interval <= 0 or not ctx.mastodon.can_read_admin:
        return False
    now = time.time() if now is None else now
    slot = int(now // interval) + 1
    return enqueue_once(
        ctx.redis,
        defaults.QUEUE_URGENT,
        run,
        job_id=f"{defaults.MENTIONS_JOB_ID}-{slot}",
        delay_seconds=max(1.0, slot * interval - now),
    )


def run() -> int:
    """RQ job: the periodic poll."""
    ctx = get_context()
    schedule_next_poll(ctx)
    return poll(ctx)


# --- The streaming API ---------------------------------------------------------------------------

STREAMING = "tocsin:mentions:streaming"  # epoch seconds of the listener's last heartbeat (`tocsin doctor`)
STREAM_TIMEOUT = 90
"""Seconds without a byte (Mastodon's streaming server sends a heartbeat every 15) before reconnecting."""
RECONNECT_DELAYS = (1, 2, 5, 10, 30, 60)
"""Seconds before connecting again after the stream failed (the last one repeats)."""


class StopListening(Exception):
    """Raised from a listener callback to end the stream (a stop was asked for)."""


class MentionListener(StreamListener):
    """Queues the mentions the stream delivers; notes the heartbeats."""

    def __init__(self, ctx: Context, stop: Callable[[], bool]) -> None:
        super().__init__()
        self.ctx = ctx
        self.stop = stop

    def on_notification(self, notification: Any) -> None:
        if notification.get("type") == "mention":
            _queue(self.ctx, reduced(as_webhook_json(dict(notification))))
        self.handle_heartbeat()

    def handle_heartbeat(self) -> None:
        self.ctx.redis.set(STREAMING, repr(time.time()), ex=STREAM_TIMEOUT)
        if self.stop():
            raise StopListening


def listen(ctx: Context, stop: Callable[[], bool] = lambda: False) -> None:
    """Hold the notification stream until `stop()`: reconnect after any failure, with backoff."""
    client = ctx.mastodon.client
    if client is None or not ctx.mastodon.can_read_admin:
        raise RuntimeError("listening for commands needs TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN")
    failures = 0
    while not stop():
        try:
            client.stream_user_notifications(MentionListener(ctx, stop), timeout=STREAM_TIMEOUT)
        except StopListening:
            return
        except (MastodonError, RequestException, redis.RedisError) as error:
            log.warning("notification stream: %s: %s", type(error).__name__, error)
        delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
        failures += 1
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not stop():
            time.sleep(0.2)
