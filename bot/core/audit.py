"""The audit log: one entry per moderator command from a DM (when, who, the command, what Tocsin did,
Mastodon's answer), append-only in a Redis stream.

Entries older than RETENTION_DAYS are trimmed as new ones are added (XADD MINID, approximate: Redis
drops whole internal nodes, so a few older entries may linger). An entry with a typical answer takes
about 360 bytes of Redis memory, plus a ~100-byte marker for MARKER_SECONDS (tests/test_commands.py
checks the order of magnitude): a year of 50 commands a day is about 7 MB.
Only moderators' commands are recorded; what non-moderators write is counted, never kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import redis

from bot.core.scripting import Lua

STREAM = "tocsin:audit"
RETENTION_DAYS = 400
"""A year and a month: an admin asked "who limited this server last spring?" still gets an answer."""
MARKER_PREFIX = "tocsin:audit:recorded:"  # + the command's status id
MARKER_SECONDS = 30 * 86400
"""Far beyond any retry of a command's job."""

APPEND = Lua(__file__, "audit_append")


@dataclass(frozen=True)
class Entry:
    at: float
    account_id: str
    handle: str
    command: str
    outcome: str  # done | refused | asked (a confirmation) | help
    did: str  # what Tocsin did, or why not
    api: str  # Mastodon's answer to the calls made ("" when none was made)
    status_id: str  # the moderator's status that carried the command


def record(connection: redis.Redis, entry: Entry) -> bool:
    """Append the entry once per command (a retried job adds nothing); True when appended now."""
    oldest_ms = int((entry.at - RETENTION_DAYS * 86400) * 1000)
    fields = [item for name, value in asdict(entry).items() for item in (name, str(value))]
    return bool(APPEND(connection, [MARKER_PREFIX + entry.status_id, STREAM], [MARKER_SECONDS, oldest_ms, *fields]))


def read(connection: redis.Redis, since: float | None = None, batch: int = 500) -> Iterator[Entry]:
    """Entries oldest first, from `since` (epoch seconds) on."""
    start = f"{int(since * 1000)}-0" if since is not None else "-"
    while True:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = connection.xrange(STREAM, min=start, count=batch)  # type: ignore[assignment]
        for _entry_id, raw in rows:
            fields = {key.decode(): value.decode() for key, value in raw.items()}
            yield Entry(**{**fields, "at": float(fields["at"])})  # type: ignore[arg-type]
        if len(rows) < batch:
            return
        start = "(" + rows[-1][0].decode()


def as_json(entry: Entry) -> str:
    return json.dumps(asdict(entry), ensure_ascii=False)


def describe(entry: Entry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.at))
    api = f" [{entry.api}]" if entry.api else ""
    return f"{when} @{entry.handle} ({entry.account_id}): {entry.command!r} -> {entry.outcome}: {entry.did}{api}"
