"""Posts held by the panic stop, released or dropped (`tocsin resume`, `resume` in a DM).

The outbox holds a post whole while paused (bot/mastodon/outbox.py); releasing it is a job per post that sends
it through the current context's outbox, each still exactly once by its key. Apart from the outbox so
that the outbox, which the context builds, never reaches back for the context.
"""

from __future__ import annotations

import hashlib
import json

import redis

from bot.core import defaults
from bot.mastodon.context import get_context
from bot.mastodon.outbox import Post
from bot.pipeline.queue import enqueue_once, fails_at_once_on_permanent_errors


def resume(connection: redis.Redis, retry_delays: list[int], drop: bool = False) -> tuple[bool, int]:
    """End the panic stop: (whether it was paused, how many held posts are sent — or, with `drop`, dropped)."""
    was_paused = bool(connection.delete(defaults.PAUSED))
    return was_paused, drop_held(connection) if drop else release_held(connection, retry_delays)


def release_held(connection: redis.Redis, retry_delays: list[int]) -> int:
    """`tocsin resume`: a job per held post (sent with retries by the workers); how many."""
    released = 0
    for raw in connection.hkeys(defaults.OUTBOX_HELD):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        released += enqueue_once(
            connection,
            defaults.QUEUE_URGENT,
            send_held,
            key,
            job_id="held-" + hashlib.sha256(key.encode()).hexdigest()[:24],
            retry_delays=retry_delays,
        )
    return released


def drop_held(connection: redis.Redis) -> int:
    """`tocsin resume --drop`: the held posts are never sent (the outbox log keeps them)."""
    count = int(connection.hlen(defaults.OUTBOX_HELD))
    connection.delete(defaults.OUTBOX_HELD)
    return count


@fails_at_once_on_permanent_errors
def send_held(key: str) -> list[str]:
    """RQ job: post one held post (if it is still held), then forget it."""
    ctx = get_context()
    raw = ctx.redis.hget(defaults.OUTBOX_HELD, key)
    if raw is None:
        return []
    data = json.loads(raw)
    ids = ctx.outbox.send(Post(**{**data, "mentions": tuple(data["mentions"])}))
    if ids:  # not paused again meanwhile
        ctx.redis.hdel(defaults.OUTBOX_HELD, key)
    return ids
