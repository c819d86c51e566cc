"""Domain blocks as events: Mastodon sends no webhook when a moderator limits, suspends or lifts a
server, so Tocsin polls GET /api/v1/admin/domain_blocks (every page) and turns what changed into one
`domain_block.changes` event per poll on the same stream as webhook events: blocks a moderator made
together are seen, assigned to incidents and announced together, whatever order the API lists them in.

The last seen state is a Redis hash (domain → the block's public fields). A poll's changes are applied
to it and appended to the stream in one Lua call that first checks every stored entry is still the one
the diff started from, so a restart neither misses a change made while Tocsin was down (the next poll
sees it) nor announces one twice (the state already has it), and two pollers cannot both emit it. The
very first poll only records the state: existing blocks are history, not news.

Private comments never leave this module; only the markers a moderator or Tocsin writes there are kept:
Tocsin's advisory tag, and CORRECTION_MARK (this block was a mistake: word its lift as a correction).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from bot.core import defaults, redis_text
from bot.core.scripting import Lua
from bot.mastodon.context import Context
from bot.pipeline.events import enqueue_drain, parse_time
from handlers.incidents.announcements import hold
from handlers.incidents.settings import IncidentSettings
from handlers.incidents.store import BlockChange, apply_changes, iso, public_domain
from handlers.shared.block_tags import BLOCK_TAG_PATTERN

log = logging.getLogger(__name__)

STATE = "tocsin:domain-blocks:state"  # hash: domain -> JSON of its block's public fields
INITIALIZED = "tocsin:domain-blocks:initialized"  # set once the first poll recorded the state
POLL_CLAIM = "tocsin:domain-blocks:poll-claimed"  # one poll per interval across workers
LAST_POLL = "tocsin:domain-blocks:last-poll"  # epoch seconds of the last complete poll (`tocsin doctor`)

WATCHED_FIELDS = ("severity", "reject_media", "reject_reports", "obfuscate", "public_comment")
"""A change in any of these is announced."""
MARKER_FIELDS = ("tag", "correction")
"""A change in these (written into the private comment) is recorded, not announced."""

CORRECTION_MARK = re.compile(r"\[tocsin correction\]", re.IGNORECASE)
"""Written by a moderator into a block's private comment before lifting it: the lift is announced as the
correction of a mistake (otherwise lifts are announced neutrally)."""

EVENT = "domain_block.changes"

EMIT_CHANGES = Lua(__file__, "emit_block_changes")


# --- Pure ----------------------------------------------------------------------------------------


def public_fields(block: dict[str, Any]) -> dict[str, Any]:
    """What Tocsin keeps of an Admin::DomainBlock: the public fields, the id, and its own tag."""
    private = str(block.get("private_comment") or "")
    tag = BLOCK_TAG_PATTERN.search(private)
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
        "correction": bool(CORRECTION_MARK.search(private)),
    }


@dataclass(frozen=True)
class Change:
    kind: str  # created | updated | removed | recorded (a marker changed: kept, not announced)
    domain: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def diff_blocks(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[Change]:
    changes = [Change("created", domain, None, new[domain]) for domain in sorted(new.keys() - old.keys())]
    for domain in sorted(new.keys() & old.keys()):
        if any(old[domain].get(name) != new[domain].get(name) for name in WATCHED_FIELDS):
            changes.append(Change("updated", domain, old[domain], new[domain]))
        elif any(old[domain].get(name) != new[domain].get(name) for name in MARKER_FIELDS):
            changes.append(Change("recorded", domain, old[domain], new[domain]))
    changes.extend(Change("removed", domain, old[domain], None) for domain in sorted(old.keys() - new.keys()))
    return changes


def changes_event(changes: list[Change], at: float) -> dict[str, Any] | None:
    """The poll's event on the stream, shaped like a webhook: {event, created_at, object: {changes}};
    None when nothing is to be announced."""
    announced = [
        {
            **(change.new or change.old or {}),
            "kind": change.kind,
            "change_id": uuid.uuid4().hex,
            "previous": change.old if change.kind == "updated" else None,
        }
        for change in changes
        if change.kind != "recorded"
    ]
    if not announced:
        return None
    return {"event": EVENT, "created_at": iso(at), "object": {"changes": announced}}


# --- The poller ----------------------------------------------------------------------------------


def poll(ctx: Context, now: float | None = None) -> int:
    """Read every block, emit what changed since the last poll; the number of events emitted."""
    now = time.time() if now is None else now
    connection = ctx.redis
    blocks = {item["domain"]: item for item in (public_fields(block) for block in ctx.mastodon.all_domain_blocks())}
    stored = {redis_text.text(key): json.loads(value) for key, value in connection.hgetall(STATE).items()}
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
    changes = diff_blocks(stored, blocks)
    emitted = 0
    if changes:
        event = changes_event(changes, now)
        states: list[str] = []
        for change in changes:
            states += [
                change.domain,
                json.dumps(change.old, sort_keys=True) if change.old is not None else "",
                json.dumps(change.new, sort_keys=True) if change.new is not None else "",
            ]
        result = EMIT_CHANGES(
            connection,
            [STATE, defaults.EVENT_STREAM, defaults.DRAIN_FLAG],
            [orjson.dumps(event) if event else "", defaults.DRAIN_FLAG_TTL, *states],
        )
        if result and event:
            emitted = len(event["object"]["changes"])
        if result == 2:
            enqueue_drain(connection, ctx.settings.retry_delays)
    connection.set(LAST_POLL, repr(now))
    if emitted:
        log.info("domain blocks: %d change(s) queued", emitted)
    return emitted


def schedule_poll(ctx: Context, now: float) -> bool:
    """From the sweep: poll when TOCSIN_DOMAIN_POLL_SECONDS have passed (one worker per interval)."""
    interval = ctx.settings.section(IncidentSettings).domain_poll_seconds
    if interval <= 0 or not ctx.mastodon.can_read_admin:
        return False
    if not ctx.redis.set(POLL_CLAIM, repr(now), nx=True, ex=max(int(interval) - 1, 1)):
        return False
    poll(ctx, now)
    return True


# --- The handler ---------------------------------------------------------------------------------


def block_changes(event: dict[str, Any]) -> list[BlockChange]:
    """The changes of a `domain_block.changes` event (or of a single-change `domain_block.created` /
    `.updated` / `.removed` event, as earlier versions queued them)."""
    payload = event.get("object")
    name = str(event.get("event", ""))
    if not isinstance(payload, dict):
        raise ValueError("domain_block event without an object")
    if name == EVENT:
        items = payload.get("changes")
        if not isinstance(items, list):
            raise ValueError("domain_block.changes without a list of changes")
    else:
        items = [{**payload, "kind": name.removeprefix("domain_block.")}]
    at = parse_time(event.get("created_at")) or time.time()
    return [_block_change(item, at) for item in items]


def _block_change(block: Any, at: float) -> BlockChange:
    if not isinstance(block, dict) or not block.get("domain") or not block.get("change_id"):
        raise ValueError("domain_block change without a block")
    previous = block.get("previous") if isinstance(block.get("previous"), dict) else None
    domain = str(block["domain"])
    return BlockChange(
        change_id=str(block["change_id"]),
        kind=str(block.get("kind")),
        domain=domain,
        shown=public_domain(domain, bool(block.get("obfuscate"))),
        severity=str(block.get("severity") or "silence"),
        previous_severity=str(previous["severity"]) if previous else None,
        public_comment=str(block.get("public_comment") or ""),
        advisory=block.get("tag") or None,
        at=at,
        block_created_at=parse_time(block.get("created_at")),
        correction=bool(block.get("correction")),
    )


def handle_block_changes(ctx: Context, event: dict[str, Any]) -> None:
    """domain_block.changes: the incidents follow (the poll's blocks assigned together), then the
    announcement of all of them is held as one."""
    applied = apply_changes(ctx, block_changes(event))
    hold(ctx, applied)
