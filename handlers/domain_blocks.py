"""Domain blocks as events: Mastodon sends no webhook when a moderator limits, suspends or lifts a
server, so Tocsin polls GET /api/v1/admin/domain_blocks (every page) and turns what changed into
`domain_block.created` / `.updated` / `.removed` events on the same stream as webhook events.

The last seen state is a Redis hash (domain → the block's public fields). Each change is applied to it
and appended to the stream in one Lua call that first checks the stored entry is still the one the
diff started from, so a restart neither misses a change made while Tocsin was down (the next poll sees
it) nor announces one twice (the state already has it), and two pollers cannot both emit it. The very
first poll only records the state: existing blocks are history, not news.

Private comments never leave this module; only the tag Tocsin writes into its own blocks' private
comment (the advisory id) is kept.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from bot import defaults
from bot.context import Context
from bot.events import enqueue_drain, parse_time
from handlers.incidents import BlockChange, apply_change, iso, public_domain

log = logging.getLogger(__name__)

STATE = "tocsin:domain-blocks:state"  # hash: domain -> JSON of its block's public fields
INITIALIZED = "tocsin:domain-blocks:initialized"  # set once the first poll recorded the state
POLL_CLAIM = "tocsin:domain-blocks:poll-claimed"  # one poll per interval across workers
LAST_POLL = "tocsin:domain-blocks:last-poll"  # epoch seconds of the last complete poll (`tocsin doctor`)

WATCHED_FIELDS = ("severity", "reject_media", "reject_reports", "obfuscate", "public_comment")
"""A change in any of these is a domain_block.updated."""

# KEYS: state, stream, drain flag. ARGV: domain, expected old JSON ('' for none), new JSON ('' to remove),
# event JSON, drain flag ttl. Returns 0 (state moved on: someone else emitted it), 1, or 2 (drain needed).
_EMIT_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
redis.call('XADD', KEYS[2], '*', 'event', ARGV[4])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[5]) then return 2 end
return 1
"""


# --- Pure ----------------------------------------------------------------------------------------


def public_fields(block: dict[str, Any]) -> dict[str, Any]:
    """What Tocsin keeps of an Admin::DomainBlock: the public fields, the id, and its own tag."""
    from handlers.scan import BLOCK_TAG_PATTERN

    tag = BLOCK_TAG_PATTERN.search(str(block.get("private_comment") or ""))
    created = block.get("created_at")
    return {
        "id": str(block.get("id") or ""),
        "domain": str(block["domain"]).lower(),
        "severity": str(block.get("severity") or "silence"),
        "reject_media": bool(block.get("reject_media")),
        "reject_reports": bool(block.get("reject_reports")),
        "obfuscate": bool(block.get("obfuscate")),
        "public_comment": str(block.get("public_comment") or ""),
        "created_at": created if isinstance(created, str) else (created.isoformat() if created else None),
        "tag": tag.group(1) if tag else None,
    }


@dataclass(frozen=True)
class Change:
    kind: str  # created | updated | removed
    domain: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def diff_blocks(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[Change]:
    changes = [Change("created", domain, None, new[domain]) for domain in sorted(new.keys() - old.keys())]
    for domain in sorted(new.keys() & old.keys()):
        if any(old[domain].get(name) != new[domain].get(name) for name in WATCHED_FIELDS):
            changes.append(Change("updated", domain, old[domain], new[domain]))
    changes.extend(Change("removed", domain, old[domain], None) for domain in sorted(old.keys() - new.keys()))
    return changes


def change_event(change: Change, at: float) -> dict[str, Any]:
    """The event put on the stream, shaped like a webhook: {event, created_at, object}."""
    current = change.new or change.old or {}
    return {
        "event": f"domain_block.{change.kind}",
        "created_at": iso(at),
        "object": {
            **current,
            "change_id": uuid.uuid4().hex,
            "previous": change.old if change.kind == "updated" else None,
        },
    }


# --- The poller ----------------------------------------------------------------------------------


def poll(ctx: Context, now: float | None = None) -> int:
    """Read every block, emit what changed since the last poll; the number of events emitted."""
    now = time.time() if now is None else now
    connection = ctx.redis
    blocks = {item["domain"]: item for item in (public_fields(block) for block in ctx.mastodon.all_domain_blocks())}
    stored = {key.decode(): json.loads(value) for key, value in connection.hgetall(STATE).items()}
    if not connection.exists(INITIALIZED):
        pipe = connection.pipeline()
        pipe.delete(STATE)
        if blocks:
            pipe.hset(STATE, mapping={domain: json.dumps(block, sort_keys=True) for domain, block in blocks.items()})
        pipe.set(INITIALIZED, repr(now))
        pipe.set(LAST_POLL, repr(now))
        pipe.execute()
        log.info("domain blocks: first poll, %d existing blocks recorded (not announced)", len(blocks))
        return 0
    emit = connection.register_script(_EMIT_SCRIPT)
    emitted = 0
    drain_needed = False
    for change in diff_blocks(stored, blocks):
        old = json.dumps(change.old, sort_keys=True) if change.old is not None else ""
        new = json.dumps(change.new, sort_keys=True) if change.new is not None else ""
        event = orjson.dumps(change_event(change, now))
        result = emit(
            keys=[STATE, defaults.EVENT_STREAM, defaults.DRAIN_FLAG],
            args=[change.domain, old, new, event, defaults.DRAIN_FLAG_TTL],
        )
        emitted += 1 if result else 0
        drain_needed = drain_needed or result == 2
    if drain_needed:
        enqueue_drain(connection, ctx.settings.retry_delays)
    connection.set(LAST_POLL, repr(now))
    if emitted:
        log.info("domain blocks: %d change(s) queued", emitted)
    return emitted


def schedule_poll(ctx: Context, now: float) -> bool:
    """From the sweep: poll when TOCSIN_DOMAIN_POLL_SECONDS have passed (one worker per interval)."""
    interval = ctx.settings.domain_poll_seconds
    if interval <= 0 or not ctx.mastodon.can_read_admin:
        return False
    if not ctx.redis.set(POLL_CLAIM, repr(now), nx=True, ex=max(int(interval) - 1, 1)):
        return False
    poll(ctx, now)
    return True


# --- The handler ---------------------------------------------------------------------------------


def block_change(event: dict[str, Any]) -> BlockChange:
    block = event.get("object")
    if not isinstance(block, dict) or not block.get("domain") or not block.get("change_id"):
        raise ValueError("domain_block event without a block")
    kind = str(event.get("event", "")).removeprefix("domain_block.")
    previous = block.get("previous") if isinstance(block.get("previous"), dict) else None
    domain = str(block["domain"])
    return BlockChange(
        change_id=str(block["change_id"]),
        kind=kind,
        domain=domain,
        shown=public_domain(domain, bool(block.get("obfuscate"))),
        severity=str(block.get("severity") or "silence"),
        previous_severity=str(previous["severity"]) if previous else None,
        public_comment=str(block.get("public_comment") or ""),
        advisory=block.get("tag") or None,
        at=parse_time(event.get("created_at")) or time.time(),
        block_created_at=parse_time(block.get("created_at")),
    )


def handle_block_change(ctx: Context, event: dict[str, Any]) -> None:
    """domain_block.created / .updated / .removed: the incident follows, an announcement is held."""
    from handlers.announcements import hold

    change = block_change(event)
    correction = (
        change.kind == "removed"
        and change.block_created_at is not None
        and change.at - change.block_created_at < ctx.settings.correction_hours * 3600
    )
    slug, resolved = apply_change(ctx, change, correction)
    hold(ctx, change, slug, resolved, correction)
