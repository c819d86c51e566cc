"""`tocsin export` / `tocsin import`: the state that matters, as JSON lines, to move or rebuild Redis.

Everything Tocsin keeps under `tocsin:` is exported — incidents and their timelines, held and posted
announcements, proposals and the audit log, the detectors' baselines and open surges, the outbox's
record of what was posted (so nothing is posted twice after a move), the domain-block state, the
mention cursor — except what rebuilds itself or is only in flight (EPHEMERAL): caches, locks and
claims, NodeInfo results, webhook deduplication keys, events not yet processed (drain them first:
`tocsin doctor` shows the backlog), a scan under way. RQ's own keys are not exported either: queued
jobs are redone by the sweep.

One JSON object a line: first a header, then `{"key", "type", "ttl" (ms, -1: none), "value"}` per key.
Text stays text (readable, editable); bytes that are not UTF-8 (the random key for hashing IP
prefixes) are written as {"base64": …}. An import replaces the keys it brings and leaves others alone.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import redis

from bot.core import redis_text
from bot.pipeline.families import registry

FORMAT = 1
EPHEMERAL = (
    "tocsin:cache:",
    "tocsin:seen:",
    "tocsin:events:drain-scheduled",
    "tocsin:api-budget",
    "tocsin:mentions:polling",
    "tocsin:mentions:streaming",
    "tocsin:commands:role:",
)
"""Prefixes of the platform's keys that are not exported (they rebuild themselves, or are only in
flight); each family adds its own (Family.ephemeral_keys)."""
UNPROCESSED_EVENTS = "tocsin:events"


def _text(raw: object) -> str | dict[str, str]:
    if not isinstance(raw, bytes):
        return str(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _raw(value: str | dict[str, str]) -> bytes:
    return base64.b64decode(value["base64"]) if isinstance(value, dict) else value.encode("utf-8")


def exported(name: str) -> bool:
    return name.startswith("tocsin:") and name != UNPROCESSED_EVENTS and not name.startswith(_ephemeral())


@lru_cache(maxsize=1)
def _ephemeral() -> tuple[str, ...]:
    return EPHEMERAL + tuple(prefix for family in registry().families for prefix in family.ephemeral_keys)


def export_lines(connection: redis.Redis) -> Iterator[str]:
    """The export, a line at a time (keys are read one by one: memory stays flat)."""
    yield json.dumps({"tocsin_export": FORMAT, "at": time.time()})
    for raw_name in connection.scan_iter(match="tocsin:*", count=1000):
        name = raw_name.decode()
        if not exported(name):
            continue
        kind = redis_text.text(connection.type(raw_name))
        value = _read(connection, raw_name, kind)
        if value is None:
            continue  # gone meanwhile
        ttl = int(connection.pttl(raw_name))
        yield json.dumps({"key": name, "type": kind, "ttl": ttl if ttl > 0 else -1, "value": value})


def _read(connection: redis.Redis, name: bytes, kind: str) -> Any:
    if kind == "string":
        raw = connection.get(name)
        return None if raw is None else _text(raw)
    if kind == "hash":
        return [[_text(field), _text(value)] for field, value in connection.hscan_iter(name, count=1000)]
    if kind == "list":
        items: list[bytes] = connection.lrange(name, 0, -1)  # type: ignore[assignment]
        return [_text(item) for item in items]
    if kind == "set":
        return [_text(item) for item in connection.sscan_iter(name, count=1000)]
    if kind == "zset":
        return [[_text(member), score] for member, score in connection.zscan_iter(name, count=1000)]
    if kind == "stream":
        entries: list[tuple[bytes, dict[bytes, bytes]]] = connection.xrange(name)  # type: ignore[assignment]
        return [
            [entry_id.decode(), [[_text(field), _text(value)] for field, value in fields.items()]]
            for entry_id, fields in entries
        ]
    return None  # "none": expired between SCAN and TYPE


def import_lines(connection: redis.Redis, lines: Iterable[str]) -> int:
    """Write the keys of an export (each replacing the key of that name); how many."""
    written = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if number == 1:
            if record.get("tocsin_export") != FORMAT:
                raise ValueError("not a Tocsin export (or of another format version)")
            continue
        _write(connection, record)
        written += 1
    return written


def _write(connection: redis.Redis, record: dict[str, Any]) -> None:
    name, kind, value = record["key"], record["type"], record["value"]
    if not exported(name):
        raise ValueError(f"{name!r} is not a key an export holds")
    pipe = connection.pipeline()
    pipe.delete(name)
    if kind == "string":
        pipe.set(name, _raw(value))
    elif kind == "hash" and value:
        pipe.hset(name, mapping={_raw(field): _raw(item) for field, item in value})
    elif kind == "list" and value:
        pipe.rpush(name, *(_raw(item) for item in value))
    elif kind == "set" and value:
        pipe.sadd(name, *(_raw(item) for item in value))
    elif kind == "zset" and value:
        pipe.zadd(name, {_raw(member): float(score) for member, score in value})
    elif kind == "stream":
        for entry_id, fields in value:
            pipe.xadd(name, {_raw(field): _raw(item) for field, item in fields}, id=entry_id)
    elif kind not in ("hash", "list", "set", "zset"):
        raise ValueError(f"{name!r}: unknown type {kind!r}")
    if record.get("ttl", -1) > 0:
        pipe.pexpire(name, int(record["ttl"]))
    pipe.execute()
