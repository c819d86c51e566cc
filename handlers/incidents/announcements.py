"""Public announcements of domain actions, posted by the instance's bot account.

The changes one poll saw are held together for TOCSIN_ANNOUNCE_HOLD_MINUTES (a moderator can cancel
them, or mark a lift as a correction, with `tocsin announcements`); changes made while a batch is held
join it, so blocks made within a few minutes of each other make one post. A lift is announced neutrally
unless a moderator marked it a correction. When the batch is due, a job renders one post per
incident (a reply in that incident's thread when it has one) plus, for an incident the batch resolved,
its own resolution post. Changes in no incident are first added to the public list of other limits and
suspensions (/incidents/other), and their post links to their entry there. Every post has a message key
derived from the batch, so retries and restarts post it once. Private comments are never in a change;
obfuscated domains are shown obfuscated.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bot.core import defaults, redis_text
from bot.core.config import Settings
from bot.core.scripting import Lua
from bot.core.templating import render_text
from bot.mastodon.context import Context, get_context
from bot.mastodon.outbox import Post
from bot.pipeline.queue import enqueue_once, fails_at_once_on_permanent_errors
from handlers.incidents import store as incidents
from handlers.incidents.settings import AnnouncementSettings, IncidentSettings
from handlers.incidents.store import BlockChange

log = logging.getLogger(__name__)

OPEN_BATCH = "tocsin:announce:open-batch"  # the batch new changes join; expires when it is due
BATCH_PREFIX = "tocsin:announce:batch:"  # + id: list of held changes (JSON); + id + ":meta": hash
PENDING = "tocsin:announce:pending"  # sorted set: batch id scored by when it is due
SEEN_PREFIX = "tocsin:announce:seen:"  # + change id: a replayed event is held once
KEEP_SECONDS = 30 * 86400
OTHER_PATH = "/incidents/other"
"""The public list of announced changes that are in no incident (handlers/incidents/pages.py)."""
SUBJECT = "announce:"
"""+ batch id: the subject of the moderators' DM about a held batch (their replies act on it)."""

HOLD = Lua(__file__, "hold_announcement")
CLOSE_BATCH = Lua(__file__, "close_announcement_batch")


@dataclass
class Held:
    """One change waiting in a batch, with what its announcement needs."""

    change: dict[str, Any]  # BlockChange as a dict
    incident: str | None
    resolved: bool
    correction: bool
    cancelled: bool = False

    @property
    def block(self) -> BlockChange:
        return BlockChange(**self.change)


def hold(ctx: Context, applied: list[incidents.Applied]) -> str | None:
    """Hold the changes of one poll for announcement, in one batch; the batch id (None: nothing to
    announce, or all held already)."""
    items = [
        Held(asdict(item.change), item.incident, item.resolved, item.change.correction)
        for item in applied
        if announced(item.change)
    ]
    if not items:
        return None
    hold_seconds = max(int(ctx.settings.section(AnnouncementSettings).hold_minutes * 60), 1)
    now = time.time()
    batch, opened = HOLD(
        ctx.redis,
        [OPEN_BATCH, PENDING, *(SEEN_PREFIX + item.change["change_id"] for item in items)],
        [
            uuid.uuid4().hex[:16],
            repr(now + hold_seconds),
            hold_seconds,
            BATCH_PREFIX,
            KEEP_SECONDS,
            *(json.dumps(asdict(item)) for item in items),
        ],
    )
    batch_id = batch.decode() if isinstance(batch, bytes) else str(batch)
    if not batch_id:
        return None
    if opened:
        enqueue_once(
            ctx.redis,
            defaults.QUEUE_URGENT,
            post_batch,
            batch_id,
            job_id=f"announce-{batch_id}",
            retry_delays=ctx.settings.retry_delays,
            delay_seconds=hold_seconds,
        )
        if ctx.settings.section(AnnouncementSettings).hold_minutes > 0:
            enqueue_once(
                ctx.redis,
                defaults.QUEUE_URGENT,
                notify_held,
                batch_id,
                job_id=f"announce-held-{batch_id}",
                retry_delays=ctx.settings.retry_delays,
            )
    log.info("announcement of %d change(s) held in batch %s", len(items), batch_id)
    return batch_id


def announced(change: BlockChange) -> bool:
    """A "no-op" block changes nothing the public sees: not announced."""
    return not (change.severity == "noop" and change.kind != "removed" and change.previous_severity in (None, "noop"))


def held(connection: redis.Redis, batch_id: str) -> list[Held]:
    return [Held(**json.loads(raw)) for raw in connection.lrange(BATCH_PREFIX + batch_id, 0, -1)]


def pending(connection: redis.Redis) -> list[tuple[str, float, list[Held]]]:
    """Batches not posted yet: (id, due, changes)."""
    return [
        (batch_id, due, held(connection, batch_id))
        for batch_id, due in redis_text.scored(connection.zrange(PENDING, 0, -1, withscores=True))
    ]


def _rewrite(connection: redis.Redis, batch_id: str, domain: str | None, **updates: bool) -> int:
    """Set flags on a pending batch's changes (all, or one domain's); how many changed."""
    if connection.zscore(PENDING, batch_id) is None:
        return 0
    key = BATCH_PREFIX + batch_id
    changed = 0
    with connection.lock(incidents.LOCK + ":announce", timeout=10, blocking_timeout=10):
        items = held(connection, batch_id)
        for index, item in enumerate(items):
            if domain is None or item.change["domain"] == domain:
                for name, value in updates.items():
                    setattr(item, name, value)
                connection.lset(key, index, json.dumps(asdict(item)))
                changed += 1
    return changed


def cancel(connection: redis.Redis, batch_id: str, domain: str | None = None) -> int:
    return _rewrite(connection, batch_id, domain, cancelled=True)


def mark_correction(connection: redis.Redis, batch_id: str, domain: str, correction: bool = True) -> int:
    """Word a held lift as the correction of a mistake (or not), in the post and the incident's timeline."""
    changed = _rewrite(connection, batch_id, domain, correction=correction)
    for item in held(connection, batch_id):
        if item.change["domain"] == domain and item.incident and item.block.kind == "removed":
            incidents.reword_lift(connection, item.incident, item.block, correction)
    return changed


# --- Rendering (pure) ----------------------------------------------------------------------------


def render_batch(
    items: list[Held], incident: incidents.Incident | None, link: str, settings_view: dict[str, Any], template_dir: Any
) -> str:
    changes = [item.block for item in items]
    groups: dict[str, list[str]] = {}
    for change in changes:
        if change.kind == "created":
            groups.setdefault(incidents.ACTION_WORDS.get(change.severity, change.severity), []).append(change.shown)
    return render_text(
        template_dir,
        "announce_blocks.txt.j2",
        created=[(change, item) for change, item in zip(changes, items, strict=True) if change.kind == "created"],
        updated=[(change, item) for change, item in zip(changes, items, strict=True) if change.kind == "updated"],
        removed=[(change, item) for change, item in zip(changes, items, strict=True) if change.kind == "removed"],
        created_groups=list(groups.items()),
        comment=next(
            (change.public_comment for change in changes if change.kind == "created" and change.public_comment), ""
        ),
        incident=incident,
        link=link,
        words=incidents.ACTION_WORDS,
        instance=settings_view,
    )


def render_resolution(incident: incidents.Incident, link: str, settings_view: dict[str, Any], template_dir: Any) -> str:
    return render_text(template_dir, "announce_resolved.txt.j2", incident=incident, link=link, instance=settings_view)


def settings_view(settings: Settings, instance_domain: str | None = None) -> dict[str, Any]:
    """The instance as posts and pages name it (Settings.public_name; TOCSIN_RULES_URL, TOCSIN_CONTACT)."""
    return {
        "name": settings.public_name(instance_domain),
        "rules_url": settings.section(IncidentSettings).rules_url,
        "contact": settings.section(IncidentSettings).contact,
    }


def incident_url(ctx: Context, slug: str | None, group: list[Held] | None = None) -> str:
    """Where a post's changes are on the public pages: the incident's page, or for changes in no
    incident their entry in the list of other limits and suspensions (incidents.record_other)."""
    base = (ctx.settings.public_url or ctx.settings.mastodon_url or "").rstrip("/")
    if slug:
        return f"{base}/incidents/{slug}"
    first = next((item for item in group or [] if not item.cancelled), None)
    return f"{base}{OTHER_PATH}#{incidents.other_anchor(first.block)}" if first else f"{base}/incidents"


# --- The job -------------------------------------------------------------------------------------


@fails_at_once_on_permanent_errors
def post_batch(batch_id: str) -> int:
    """RQ job (urgent queue, when the hold-off ends): one post per incident, replies in its thread."""
    ctx = get_context()
    connection = ctx.redis
    if connection.zscore(PENDING, batch_id) is None:
        return 0  # posted already (`announce now`, then its hold-off job)
    # Close the batch first (atomically): a change held from now on opens the next batch instead of
    # joining one whose items were already read.
    CLOSE_BATCH(connection, [OPEN_BATCH], [batch_id])
    items = [item for item in held(connection, batch_id) if not item.cancelled]
    groups: dict[str | None, list[Held]] = {}
    for item in items:
        groups.setdefault(item.incident, []).append(item)
    view = settings_view(ctx.settings, ctx.mastodon.instance_domain())
    posted = 0
    for slug, group in groups.items():
        incident = incidents.load(connection, slug) if slug else None
        link = incident_url(ctx, slug, group)
        if slug is None:  # on the public pages before the post links there
            incidents.record_other(connection, [(item.block, item.correction) for item in group])
        text = render_batch(group, incident, link, view, ctx.settings.template_dir)
        ids = _post(ctx, f"announce:{batch_id}:{slug or 'none'}", text, incident)
        posted += len(ids)
        if slug and ids:
            incidents.set_thread_last(connection, slug, ids[-1])
            incident = incidents.load(connection, slug)
        if incident is not None and any(item.resolved for item in group):
            ids = _post(
                ctx,
                f"announce:{batch_id}:{slug}:resolved",
                render_resolution(incident, link, view, ctx.settings.template_dir),
                incident,
            )
            posted += len(ids)
            if ids:
                incidents.set_thread_last(connection, incident.slug, ids[-1])
    connection.zrem(PENDING, batch_id)
    return posted


def previews(ctx: Context, items: list[Held]) -> list[str]:
    """The posts a batch would make now, one per incident (as post_batch renders them)."""
    groups: dict[str | None, list[Held]] = {}
    for item in items:
        if not item.cancelled:
            groups.setdefault(item.incident, []).append(item)
    view = settings_view(ctx.settings, ctx.mastodon.instance_domain())
    return [
        render_batch(
            group,
            incidents.load(ctx.redis, slug) if slug else None,
            incident_url(ctx, slug, group),
            view,
            ctx.settings.template_dir,
        )
        for slug, group in groups.items()
    ]


@fails_at_once_on_permanent_errors
def notify_held(batch_id: str) -> list[str]:
    """RQ job: tell the moderators what will be announced and when; their replies in this thread cancel
    it, post it now, or word a lift as a correction (handlers/incidents/commands.py)."""
    ctx = get_context()
    due = ctx.redis.zscore(PENDING, batch_id)
    items = held(ctx.redis, batch_id)
    if due is None or not items:
        return []  # posted (announce now) or cancelled before this ran
    text = render_text(
        ctx.settings.template_dir,
        "announce_held.txt.j2",
        previews=previews(ctx, items),
        due=time.strftime("%H:%M UTC", time.gmtime(due)),
        lifts=any(item.block.kind == "removed" for item in items),
    )
    return ctx.outbox.to_moderators(f"announce-held:{batch_id}", text, subject=f"{SUBJECT}{batch_id}")


def post_now(ctx: Context, batch_id: str) -> bool:
    """Post a held batch at once (its hold-off job, when it comes, finds nothing left to post)."""
    if ctx.redis.zscore(PENDING, batch_id) is None:
        return False
    enqueue_once(
        ctx.redis,
        defaults.QUEUE_URGENT,
        post_batch,
        batch_id,
        job_id=f"announce-now-{batch_id}",
        retry_delays=ctx.settings.retry_delays,
    )
    return True


def _post(ctx: Context, key: str, text: str, incident: incidents.Incident | None) -> list[str]:
    spoiler = ctx.settings.section(AnnouncementSettings).spoiler or None
    reply_to = incident.thread_last if incident is not None else None
    if reply_to is not None and reply_to.startswith("dry-run-"):
        reply_to = None  # a recorded (not posted) status cannot be replied to
    return ctx.outbox.send(
        Post(
            key=key,
            text=text,
            visibility=ctx.settings.section(AnnouncementSettings).visibility,
            spoiler_text=spoiler,
            in_reply_to_id=reply_to,
        )
    )


def resume_due(ctx: Context, now: float | None = None) -> int:
    """From the sweep: a batch whose job was lost (Redis restored without RQ's schedule) is posted late
    rather than never."""
    now = time.time() if now is None else now
    started = 0
    for batch_id in redis_text.members(ctx.redis.zrangebyscore(PENDING, "-inf", now - 120)):
        started += enqueue_once(
            ctx.redis,
            defaults.QUEUE_URGENT,
            post_batch,
            batch_id,
            job_id=f"announce-{batch_id}",
        )
    return started
