"""The event stream between intake and the detectors.

Intake appends each new event to a Redis Stream in one Lua call that also records the body's hash
(deduplication) and, if no drain job is scheduled, claims the right to enqueue one. Drain jobs read
the stream through a consumer group in batches: RQ's per-job bookkeeping (~20 round trips) is paid per
batch, not per event, and an entry is acknowledged only after its handler ran, so a worker that dies
mid-batch loses nothing (its entries are reclaimed after CLAIM_IDLE_MS).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from datetime import datetime

import orjson
import redis

from bot.core import defaults
from bot.core.scripting import Lua
from bot.mastodon.context import Context, get_context
from bot.pipeline.families import Rejected, registry
from bot.pipeline.queue import enqueue_once

log = logging.getLogger(__name__)

ADDED_DRAIN_NEEDED = 2
DUPLICATE = 0

APPEND = Lua(__file__, "append_event")
ADVANCE_CLOCK = Lua(__file__, "advance_clock")


def parse_time(value: object) -> float | None:
    """Epoch seconds from Mastodon's ISO 8601 timestamps (`2026-11-22T10:00:00.000Z`)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def enqueue_drain(connection: redis.Redis, retry_delays: list[int]) -> None:
    enqueue_once(
        connection,
        defaults.QUEUE_EVENTS,
        drain,
        job_id=f"drain-{uuid.uuid4().hex}",
        retry_delays=retry_delays,
    )


def ensure_group(connection: redis.Redis) -> None:
    try:
        # From id 0, not "$": events appended before the group existed are still delivered.
        connection.xgroup_create(defaults.EVENT_STREAM, defaults.EVENT_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def advance_clock(connection: redis.Redis, event_time: float) -> float:
    return float(ADVANCE_CLOCK(connection, [defaults.WATERMARK], [repr(event_time)]))


def current_clock(connection: redis.Redis) -> float:
    raw = connection.get(defaults.WATERMARK)
    return float(raw) if raw else 0.0


def drain() -> dict[str, int]:
    """RQ job: run queued events through the handlers until the stream is empty (or time is up)."""
    return drain_with(get_context())


def drain_with(ctx: Context) -> dict[str, int]:
    connection = ctx.redis
    ensure_group(connection)
    # Stable across this worker's jobs and restarts (its own pending entries are resumed first), and
    # distinct for every process and thread that drains.
    consumer = f"{socket.gethostname()}-{os.getpid()}-{threading.get_native_id()}"
    started = time.monotonic()
    counts = {"processed": 0, "failed": 0, "rejected": 0, "reclaimed": 0}

    # Entries this process read but did not acknowledge (its job died with Redis), then a dead worker's.
    own = _read(connection, consumer, pending=True)
    if own:
        counts["reclaimed"] += len(own)
        _process(ctx, own, counts)
    _next, claimed, *_ = connection.xautoclaim(
        defaults.EVENT_STREAM,
        defaults.EVENT_GROUP,
        consumer,
        min_idle_time=defaults.CLAIM_IDLE_MS,
        start_id="0-0",
        count=defaults.DRAIN_BATCH,
    )
    if claimed:
        counts["reclaimed"] += len(claimed)
        _process(ctx, claimed, counts)

    while True:
        if time.monotonic() - started > defaults.DRAIN_MAX_SECONDS:
            # Hand over to a fresh job; the flag stays set, so intake does not enqueue another.
            connection.set(defaults.DRAIN_FLAG, "1", ex=defaults.DRAIN_FLAG_TTL)
            enqueue_drain(connection, ctx.settings.retry_delays)
            break
        entries = _read(connection, consumer)
        if not entries:
            # Clear the flag, then look once more: an event appended after our last read either is
            # seen now, or found the flag clear and enqueued its own drain job.
            connection.delete(defaults.DRAIN_FLAG)
            entries = _read(connection, consumer)
            if not entries:
                break
            connection.set(defaults.DRAIN_FLAG, "1", ex=defaults.DRAIN_FLAG_TTL)
        _process(ctx, entries, counts)
        connection.expire(defaults.DRAIN_FLAG, defaults.DRAIN_FLAG_TTL)
        registry().after_batch(ctx)
    return counts


def _read(connection: redis.Redis, consumer: str, pending: bool = False) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """New entries, or (pending=True) the ones this consumer already read and did not acknowledge."""
    response = connection.xreadgroup(
        defaults.EVENT_GROUP, consumer, {defaults.EVENT_STREAM: "0" if pending else ">"}, count=defaults.DRAIN_BATCH
    )
    return response[0][1] if response else []  # type: ignore[index,return-value]


def _process(ctx: Context, entries: list[tuple[bytes, dict[bytes, bytes]]], counts: dict[str, int]) -> None:
    families = registry()
    latest = 0.0
    done: list[bytes] = []
    for entry_id, fields in entries:
        if not fields:  # deleted entry still listed in the pending list
            done.append(entry_id)
            continue
        raw = fields.get(b"event", b"{}")
        try:
            event = orjson.loads(raw)
            latest = max(latest, parse_time(event.get("created_at")) or 0.0)
            families.dispatch(ctx, event)
            counts["processed"] += 1
        except redis.RedisError:
            raise  # Redis trouble: fail the job, RQ retries, the entries stay pending
        except Rejected as error:  # an unusable shape: counted, not retried
            counts["rejected"] += 1
            name = str(event.get("event"))[:64]
            log.warning("event %s (%s) rejected: %s", entry_id.decode(), name, error)
            ctx.redis.hincrby(defaults.REJECTED_EVENTS, name, 1)
        except Exception as error:  # a bad event must not block the ones behind it
            counts["failed"] += 1
            log.error("event %s failed in its handler: %s", entry_id.decode(), type(error).__name__)
            record_failed(ctx.redis, raw, error)
        done.append(entry_id)
    pipe = ctx.redis.pipeline()
    pipe.xack(defaults.EVENT_STREAM, defaults.EVENT_GROUP, *done)
    pipe.xdel(defaults.EVENT_STREAM, *done)
    pipe.execute()
    if latest:
        advance_clock(ctx.redis, latest)


def record_failed(connection: redis.Redis, raw: bytes, error: Exception) -> None:
    record = {
        "at": time.time(),
        "error": f"{type(error).__name__}: {error}"[:500],
        "where": traceback.format_exc(limit=3)[-1500:],
        "event": raw.decode("utf-8", "replace"),
    }
    pipe = connection.pipeline()
    pipe.lpush(defaults.FAILED_EVENTS, json.dumps(record))
    pipe.ltrim(defaults.FAILED_EVENTS, 0, defaults.FAILED_EVENTS_CAP - 1)
    pipe.execute()


def retry_failed(connection: redis.Redis, retry_delays: list[int]) -> int:
    """Put failed events back on the stream (`tocsin failed --requeue`), e.g. after a handler fix."""
    moved = 0
    while (raw := connection.rpop(defaults.FAILED_EVENTS)) is not None:
        event = json.loads(raw)["event"]  # type: ignore[arg-type]
        connection.xadd(defaults.EVENT_STREAM, {"event": event})
        moved += 1
    if moved:
        connection.set(defaults.DRAIN_FLAG, "1", ex=defaults.DRAIN_FLAG_TTL)
        enqueue_drain(connection, retry_delays)
    return moved


def backlog(connection: redis.Redis) -> dict[str, int]:
    """Events waiting in the stream and events read but not yet acknowledged."""
    length = int(connection.xlen(defaults.EVENT_STREAM))
    try:
        pending = int(connection.xpending(defaults.EVENT_STREAM, defaults.EVENT_GROUP)["pending"])
    except redis.ResponseError:  # no group yet
        pending = 0
    return {"stream": length, "pending": pending}
