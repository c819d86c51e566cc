"""Incidents: the servers a moderation action concerns, why, and what happened when — for the public.

An incident groups affected servers (each with its action and since when), a cause (spam wave,
vulnerability, policy, correction), a public summary, a status (open → monitoring → resolved) and a
dated timeline. Incidents follow the domain blocks (handlers/incidents/blocks.py): a block Tocsin proposed
(a report surge's server, a scan's advisory) opens one or joins the open one; a server limited while a
spam-wave incident is open joins it; when every server of an incident has been lifted, it resolves.
Moderators open incidents themselves with `tocsin incident open`.

Nothing personal is stored here: domains (shown obfuscated where the block says so), actions, the
block's public comment, times. Mutations take a short Redis lock: two workers handling blocks of one
wave must not open two incidents.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from bot.core import redis_text
from bot.mastodon.context import Context
from handlers.reports import readers as reports
from handlers.shared import proposals
from handlers.shared.advisories import load_advisories
from handlers.shared.settings import AdvisorySettings

INCIDENTS = "tocsin:incidents"  # sorted set: slug scored by opened_at
INCIDENT_PREFIX = "tocsin:incident:"  # + slug: hash; + slug + ":servers": hash domain -> JSON; ":timeline"
BY_DOMAIN = "tocsin:incidents:by-domain"  # hash: domain -> slug of the open incident it belongs to
LOCK = "tocsin:incidents:lock"
LOCK_SECONDS = 30
TIMELINE_CAP = 500
"""Entries kept per incident: the oldest go first (the opening entry stays)."""
CHART_MAX_HOURS = 14 * 24
"""The reports-per-hour chart covers at most two weeks (336 bars)."""
OTHER = "tocsin:incidents:other"  # hash: change id -> JSON of an announced change that is in no incident
OTHER_ORDER = "tocsin:incidents:other:order"  # sorted set: those change ids scored by when
OTHER_CAP = 2000
"""Entries kept in the public list of other limits and suspensions: the oldest go first (years of an
instance's moderation at a few a week)."""


class Cause(StrEnum):
    SPAM_WAVE = "spam wave"
    VULNERABILITY = "vulnerability"
    POLICY = "policy"
    CORRECTION = "correction"


class Status(StrEnum):
    OPEN = "open"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


ACTION_WORDS = {"silence": "limited", "suspend": "suspended", "noop": "flagged"}


def public_domain(domain: str, obfuscate: bool) -> str:
    """The domain as Mastodon shows an obfuscated block publicly (DomainBlock#public_domain): the middle
    characters, dots excepted, replaced by asterisks."""
    if not obfuscate:
        return domain
    length = len(domain)
    visible = length // 4
    return "".join(
        "*" if visible < index < length - visible and char != "." else char for index, char in enumerate(domain)
    )


@dataclass
class Server:
    domain: str  # kept for matching later changes; never shown when obfuscated
    shown: str  # what the public sees
    severity: str
    since: float
    lifted_at: float | None = None
    reject_media: bool = False
    reject_reports: bool = False
    comment: str = ""  # the block's public comment: a later block with the same one joins this incident

    @property
    def action(self) -> str:
        return "lifted" if self.lifted_at is not None else ACTION_WORDS.get(self.severity, self.severity)


@dataclass
class Incident:
    slug: str
    title: str
    cause: str
    summary: str
    status: str
    opened_at: float
    resolved_at: float | None = None
    advisory: str | None = None
    thread_last: str | None = None  # the last announcement posted in its thread
    servers: list[Server] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)

    @property
    def active(self) -> list[Server]:
        return [server for server in self.servers if server.lifted_at is None]

    def public_json(self, url: str) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "url": url,
            "title": self.title,
            "cause": self.cause,
            "summary": self.summary,
            "status": self.status,
            "opened_at": iso(self.opened_at),
            "resolved_at": iso(self.resolved_at) if self.resolved_at else None,
            "servers": [
                {
                    "domain": server.shown,
                    "action": server.action,
                    "since": iso(server.since),
                    "lifted_at": iso(server.lifted_at) if server.lifted_at else None,
                }
                for server in self.servers
            ],
            "timeline": [{"at": iso(at), "text": text} for at, text in self.timeline],
        }


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_SLUG_WORD = re.compile(r"[^a-z0-9]+")


def slug_for(cause: str, title: str, at: float) -> str:
    words = _SLUG_WORD.sub("-", title.lower()).strip("-")[:40].strip("-") or _SLUG_WORD.sub("-", cause)
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d}-{words}"


# --- Storage --------------------------------------------------------------------------------------


def _key(slug: str, part: str = "") -> str:
    return INCIDENT_PREFIX + slug + (f":{part}" if part else "")


def load(connection: redis.Redis, slug: str) -> Incident | None:
    pipe = connection.pipeline()
    pipe.hgetall(_key(slug))
    pipe.hgetall(_key(slug, "servers"))
    pipe.hgetall(_key(slug, "timeline"))
    meta, servers, timeline = pipe.execute()
    if not meta:
        return None
    fields = {key.decode(): value.decode() for key, value in meta.items()}
    entries = sorted(json.loads(raw) for raw in timeline.values())
    return Incident(
        slug=slug,
        title=fields["title"],
        cause=fields["cause"],
        summary=fields.get("summary", ""),
        status=fields["status"],
        opened_at=float(fields["opened_at"]),
        resolved_at=float(fields["resolved_at"]) if fields.get("resolved_at") else None,
        advisory=fields.get("advisory") or None,
        thread_last=fields.get("thread_last") or None,
        servers=sorted((Server(**json.loads(raw)) for raw in servers.values()), key=lambda item: item.since),
        timeline=[(float(at), text) for at, text in entries],
    )


def list_incidents(connection: redis.Redis, limit: int = 200) -> list[Incident]:
    """Open ones first, then newest first."""
    slugs = redis_text.members(connection.zrevrange(INCIDENTS, 0, limit - 1))
    incidents = [incident for slug in slugs if (incident := load(connection, slug)) is not None]
    return sorted(incidents, key=lambda item: (item.status == Status.RESOLVED, -item.opened_at))


def add_timeline(connection: redis.Redis, slug: str, entry_id: str, at: float, text: str) -> None:
    """One dated entry; the same entry id twice (a replayed event) is recorded once."""
    key = _key(slug, "timeline")
    if connection.hsetnx(key, entry_id, json.dumps([at, text])) and connection.hlen(key) > TIMELINE_CAP:
        entries = sorted(
            (json.loads(raw)[0], name)
            for name, raw in redis_text.text_map(connection.hgetall(key)).items()
            if not name.startswith("opened:")
        )
        excess = len(entries) + 1 - TIMELINE_CAP
        connection.hdel(key, *(name for _at, name in entries[:excess]))


def save_server(connection: redis.Redis, slug: str, server: Server) -> None:
    connection.hset(_key(slug, "servers"), server.domain, json.dumps(asdict(server)))


def open_incident(
    connection: redis.Redis,
    cause: str,
    title: str,
    summary: str,
    at: float,
    advisory: str | None = None,
) -> str:
    base = slug_for(cause, title, at)
    for number in range(1, 1000):
        slug = base if number == 1 else f"{base}-{number}"
        if connection.hsetnx(_key(slug), "slug", slug):
            break
    connection.hset(
        _key(slug),
        mapping={
            "title": title,
            "cause": cause,
            "summary": summary,
            "status": Status.OPEN.value,
            "opened_at": repr(at),
            "advisory": advisory or "",
        },
    )
    connection.zadd(INCIDENTS, {slug: at})
    add_timeline(connection, slug, f"opened:{slug}", at, f"Incident opened: {title}.")
    return slug


def set_status(connection: redis.Redis, slug: str, status: Status, at: float, note: str | None = None) -> None:
    connection.hset(_key(slug), "status", status.value)
    if status == Status.RESOLVED:
        connection.hset(_key(slug), "resolved_at", repr(at))
        for domain, owner in connection.hgetall(BY_DOMAIN).items():
            if redis_text.text(owner) == slug:
                connection.hdel(BY_DOMAIN, domain)
    text = note or f"Status: {status.value}."
    add_timeline(connection, slug, f"status:{status.value}:{at}", at, text)


def set_thread_last(connection: redis.Redis, slug: str, status_id: str) -> None:
    connection.hset(_key(slug), "thread_last", status_id)


def attach(connection: redis.Redis, slug: str, domain: str) -> None:
    """A server belongs to this incident from now on (its block, when it comes, is recorded there)."""
    connection.hset(BY_DOMAIN, domain, slug)


# --- Following the blocks -------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockChange:
    """A domain_block.* event's object, as incidents and announcements use it."""

    change_id: str
    kind: str  # created | updated | removed
    domain: str
    shown: str
    severity: str
    previous_severity: str | None
    public_comment: str
    advisory: str | None  # the advisory a Tocsin-applied block was tagged with
    at: float
    block_created_at: float | None
    correction: bool = False  # a moderator marked the block a mistake: its lift is a correction


@dataclass(frozen=True)
class Applied:
    """A block change as recorded: the incident it belongs to (if any), and whether it resolved it."""

    change: BlockChange
    incident: str | None
    resolved: bool


def incident_for_new_block(ctx: Context, change: BlockChange) -> str | None:
    """The open incident a new block belongs to, opening one when Tocsin had proposed the block."""
    connection = ctx.redis
    attached = connection.hget(BY_DOMAIN, change.domain)
    if attached is not None:
        return redis_text.text(attached)
    open_ones = [incident for incident in list_incidents(connection) if incident.status != Status.RESOLVED]
    proposed_for = proposals.advisory_proposed_for(connection, change.domain)
    if change.advisory is None and proposed_for is not None:
        change = replace(change, advisory=proposed_for)  # the scan's proposal, applied by hand
    if change.advisory:
        found = next((item for item in open_ones if item.advisory == change.advisory), None)
        if found is not None:
            return found.slug
        advisory = next(
            (a for a in load_advisories(ctx.settings.section(AdvisorySettings).dir) if a.id == change.advisory), None
        )
        summary = change.public_comment or (advisory.summary if advisory else "")
        software = "/".join(advisory.software).title() if advisory else "software"
        title = f"Unpatched {software} servers ({change.advisory})"
        return open_incident(connection, Cause.VULNERABILITY, title, summary, change.at, change.advisory)
    spam = next((item for item in open_ones if item.cause == Cause.SPAM_WAVE), None)
    if spam is not None:
        return spam.slug
    if change.public_comment:  # the same public reason as blocks of an open incident: the same action
        shared = next(
            (item for item in open_ones if any(s.comment == change.public_comment for s in item.active)), None
        )
        if shared is not None:
            return shared.slug
    if reports.surge_open(connection, change.domain):
        summary = change.public_comment or (
            "Spam from these servers reached our members. We limited them until it stops."
        )
        return open_incident(connection, Cause.SPAM_WAVE, "Spam wave", summary, change.at)
    return None


def apply_changes(ctx: Context, changes: list[BlockChange]) -> list[Applied]:
    """Record the block changes one poll saw in their incidents, as one moderator action: a new block
    that belongs to no incident by itself joins the incident of a block made with it under the same public
    comment, whatever order they came in."""
    applied: dict[str, Applied] = {}
    with ctx.redis.lock(LOCK, timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS):
        alone = []
        for change in changes:
            if change.kind == "created":
                slug = incident_for_new_block(ctx, change)
                if slug is None:
                    alone.append(change)
                    continue
                applied[change.change_id] = Applied(change, *_record_new(ctx.redis, slug, change))
            else:
                applied[change.change_id] = Applied(change, *_record_change(ctx.redis, change))
        by_comment = {
            item.change.public_comment: item.incident
            for item in applied.values()
            if item.change.kind == "created" and item.incident and item.change.public_comment
        }
        for change in alone:  # a second look, now that the others have their incidents
            slug = by_comment.get(change.public_comment) if change.public_comment else None
            slug = slug or incident_for_new_block(ctx, change)
            result = _record_new(ctx.redis, slug, change) if slug else (None, False)
            applied[change.change_id] = Applied(change, *result)
    return [applied[change.change_id] for change in changes]


def _record_new(connection: redis.Redis, slug: str, change: BlockChange) -> tuple[str, bool]:
    attach(connection, slug, change.domain)
    server = Server(change.domain, change.shown, change.severity, change.at, comment=change.public_comment)
    save_server(connection, slug, server)
    action = ACTION_WORDS.get(change.severity, change.severity)
    add_timeline(connection, slug, change.change_id, change.at, f"{change.shown} {action}.")
    return slug, False


def _record_change(connection: redis.Redis, change: BlockChange) -> tuple[str | None, bool]:
    """An updated or lifted block, in the incident its server belongs to; (slug, whether it resolved it)."""
    owner = connection.hget(BY_DOMAIN, change.domain)
    if owner is None:
        return None, False
    slug = redis_text.text(owner)
    incident = load(connection, slug)
    server = next((item for item in incident.servers if item.domain == change.domain), None) if incident else None
    if incident is None or server is None:
        return slug, False
    if change.kind == "updated":
        before = server.action
        server.severity = change.severity
        server.comment = change.public_comment
        save_server(connection, slug, server)
        add_timeline(connection, slug, change.change_id, change.at, f"{change.shown} {server.action} (was {before}).")
        return slug, False
    server.lifted_at = change.at
    save_server(connection, slug, server)
    connection.hdel(BY_DOMAIN, change.domain)
    add_timeline(connection, slug, change.change_id, change.at, lift_text(change.shown, change.correction))
    remaining = [item for item in incident.servers if item.lifted_at is None and item.domain != change.domain]
    if not remaining and incident.status != Status.RESOLVED:
        set_status(connection, slug, Status.RESOLVED, change.at, "All servers un-limited; incident resolved.")
        return slug, True
    return slug, False


def lift_text(shown: str, correction: bool) -> str:
    return f"{shown}: lifted (it was a mistake)." if correction else f"{shown}: lifted."


def reword_lift(connection: redis.Redis, slug: str, change: BlockChange, correction: bool) -> None:
    """A moderator said (or unsaid) during the hold-off that a lift corrects a mistake: the timeline says so."""
    connection.hset(
        _key(slug, "timeline"), change.change_id, json.dumps([change.at, lift_text(change.shown, correction)])
    )


# --- Other limits and suspensions ----------------------------------------------------------------


@dataclass(frozen=True)
class OtherAction:
    """An announced block change that belongs to no incident, as the public list shows it."""

    anchor: str  # the entry's id on the page (the announcement links to it)
    at: float
    shown: str
    what: str  # "limited", "now suspended (was limited)", "no longer limited", …
    comment: str  # the block's public comment (the reason), for new and changed blocks

    def public_json(self, url: str) -> dict[str, Any]:
        return {
            "url": f"{url}#{self.anchor}",
            "at": iso(self.at),
            "domain": self.shown,
            "action": self.what,
            "reason": self.comment,
        }


def other_anchor(change: BlockChange) -> str:
    """`2026-12-06-mastodon-world-3f9a0c`: readable, and the change id's start keeps two entries apart."""
    words = _SLUG_WORD.sub("-", change.shown.lower()).strip("-")[:60].strip("-")
    return f"{datetime.fromtimestamp(change.at, UTC):%Y-%m-%d}-{words}-{change.change_id[:6]}"


def other_action(change: BlockChange, correction: bool) -> OtherAction:
    word = ACTION_WORDS.get(change.severity, change.severity)
    if change.kind == "created":
        what, comment = word, change.public_comment
    elif change.kind == "updated":
        before = ACTION_WORDS.get(change.previous_severity or "", change.previous_severity or "")
        what = f"now {word} (was {before})" if before != word else f"still {word}, the block changed"
        comment = change.public_comment
    else:
        what, comment = (f"no longer {word}: it was a mistake" if correction else f"no longer {word}"), ""
    return OtherAction(other_anchor(change), change.at, change.shown, what, comment)


def record_other(connection: redis.Redis, changes: list[tuple[BlockChange, bool]]) -> None:
    """Add announced changes that are in no incident to the public list (each change once, however often
    its announcement job runs); `changes` are (change, whether a moderator called it a correction)."""
    if not changes:
        return
    pipe = connection.pipeline()
    for change, correction in changes:
        pipe.hsetnx(OTHER, change.change_id, json.dumps(asdict(other_action(change, correction))))
        pipe.zadd(OTHER_ORDER, {change.change_id: change.at}, nx=True)
    pipe.execute()
    excess = int(connection.zcard(OTHER_ORDER)) - OTHER_CAP
    if excess > 0:
        oldest = connection.zrange(OTHER_ORDER, 0, excess - 1)
        connection.hdel(OTHER, *oldest)
        connection.zrem(OTHER_ORDER, *oldest)


def list_other(connection: redis.Redis, limit: int = OTHER_CAP) -> list[OtherAction]:
    """Newest first."""
    ids = redis_text.members(connection.zrevrange(OTHER_ORDER, 0, limit - 1))
    rows = connection.hmget(OTHER, ids) if ids else []
    return [OtherAction(**json.loads(raw)) for raw in rows if raw]


# --- The chart ------------------------------------------------------------------------------------


def reports_per_hour(connection: redis.Redis, incident: Incident, now: float | None = None) -> list[tuple[float, int]]:
    """Reports against the incident's servers, per hour, from a day before it opened to its end."""
    if not incident.servers:
        return []
    end = incident.resolved_at or (now if now is not None else time.time())
    start = max(incident.opened_at - 86400, end - CHART_MAX_HOURS * 3600)
    first_hour = int(start // 3600) * 3600
    hours = [first_hour + 3600 * n for n in range(int((end - first_hour) // 3600) + 1)]
    counts = reports.counts_per_hour(connection, [server.domain for server in incident.servers], hours)
    return list(zip(hours, counts, strict=True))


def svg_bars(series: list[tuple[float, int]], width: int = 600, height: int = 160) -> dict[str, Any]:
    """Bar geometry for the server-rendered chart (the template draws it): pure, no JavaScript."""
    peak = max((count for _hour, count in series), default=0)
    if not series:
        return {"bars": [], "peak": 0, "width": width, "height": height, "first": None, "last": None}
    slot = width / len(series)
    bars: list[dict[str, Any]] = [
        {
            "x": round(index * slot, 2),
            "width": round(max(slot - 1, 0.5), 2),
            "height": round((count / peak) * (height - 20), 2) if peak else 0,
            "count": count,
            "label": f"{datetime.fromtimestamp(hour, UTC):%Y-%m-%d %H:00} UTC: {count}",
        }
        for index, (hour, count) in enumerate(series)
    ]
    for bar in bars:
        bar["y"] = round(height - 20 - bar["height"], 2)
    return {
        "bars": bars,
        "peak": peak,
        "width": width,
        "height": height,
        "first": f"{datetime.fromtimestamp(series[0][0], UTC):%Y-%m-%d %H:00}",
        "last": f"{datetime.fromtimestamp(series[-1][0], UTC):%Y-%m-%d %H:00}",
        "total": sum(count for _hour, count in series),
    }
