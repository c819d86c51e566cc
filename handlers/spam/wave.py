"""Local spam waves (`status.created`, `status.updated`: local statuses only).

Three signs, all about posts of young accounts (created less than `young_days` before the post):
near-duplicates (the same text modulo mentions and whitespace, the same link, or the same image by its
blurhash, from several accounts), posts that mention many accounts (the Feb 2024 fediverse spam), and
an account posting far faster than this instance's active accounts do. Posts showing a sign are
"flagged"; a wave opens when enough are flagged in the window and is one surge for the whole instance,
so a wave showing all three signs is still one DM. Ordinary members' posts only feed the hourly
activity counters that define "normal" posting speed.

What a post looks like (`examine`, `fingerprints`: handlers/spam/content.py) and whether the counts are a
wave (`assess`) are pure functions; counting is one Lua call per young account's post. Every structure is bounded: keys
expire with the window, near-duplicate sketches keep one hash field per distinct content until a second
account posts it, and every set is capped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.core import redis_text
from bot.core.scripting import NAMED_ARGUMENTS, Lua
from bot.core.templating import render_text
from bot.mastodon.actions import Action, Message, Proposal, ProposalItem
from bot.mastodon.context import Context
from bot.pipeline.surges import (
    DAY,
    HOUR,
    OLDEST_TO_FORGET_FUNCTION,
    TOUCH_FUNCTION,
    Alert,
    Decision,
    SurgeDetector,
    SurgeState,
    decide,
    rate_per_hour,
)
from handlers.shared.admin_urls import accounts_url, filters_by
from handlers.shared.young_accounts import (
    Cluster,
    ClusterKind,
    Signup,
    email_block_refusals,
    email_domains,
    find_clusters,
    remembered_signups,
    static_refusals,
    update_account_state,
)
from handlers.spam.content import examine
from handlers.spam.settings import SpamWaveSettings

log = logging.getLogger(__name__)

BUCKET = "local"

FEATURE_INDEX = "tocsin:spam:features"  # sorted set: content fingerprint scored by its latest post
FEATURE_FIRST = "tocsin:spam:first"  # hash: fingerprint -> "time|account" of its first young poster
FEATURE_PREFIX = "tocsin:spam:feature:"  # + fingerprint: sorted set of accounts, once a second one posts it
POSTS_PREFIX = "tocsin:spam:posts:"  # + account id: a young account's statuses of the last hour
ACTIVITY_PREFIX = "tocsin:spam:activity:"  # + hour number: statuses posted by anyone that hour
POSTERS_PREFIX = "tocsin:spam:posters:"  # + hour number: HyperLogLog of the accounts that posted
FLAGGED = "tocsin:spam:flagged"  # sorted set: "id|username" scored by its latest flagged post
FLAGGED_POSTS = "tocsin:spam:flagged-posts"  # sorted set: status id scored by its time
SAMPLES = "tocsin:spam:samples"  # list (newest first) of flagged posts' JSON, for quoting
SPAM_ACCOUNT_PREFIX = "tocsin:spam:account:"  # + account id: hash of a flagged account (signs, state)
SURGES = SurgeDetector(
    name="spam-wave",
    prefix="tocsin:spam:surge:",
    open_key="tocsin:spam:surges:open",
    quiet_seconds=lambda settings: settings.section(SpamWaveSettings).quiet_hours * HOUR,
    compose=lambda ctx, alert: compose_alert(ctx, alert),
)

FEATURE_CAP = 100_000
"""Distinct fingerprints remembered (~100 bytes each in Redis), oldest forgotten first."""
FEATURE_ACCOUNTS_CAP = 500
"""Accounts remembered per shared fingerprint: a wave of 10,000 bots is no less a wave at 500."""
FLAGGED_CAP = 5000
"""Flagged accounts and posts remembered (each), oldest forgotten first."""
SAMPLES_KEPT = 20
PRUNE_BATCH = 100
"""Old fingerprints forgotten per event: constant work per event, and faster than any flood."""
POSTS_CAP = 1000
"""A young account's posts of the last hour remembered: far above any flood threshold."""
ACTIVITY_HOURS = 24
"""Hours of everyone's posting that define how fast an active account normally posts."""
ACCOUNTS_SHOWN = 3
"""Flagged accounts named in a DM (by name only: their admin list is one link), so it fits two statuses."""
PATHS_SHOWN = 3
"""Shared sign-up paths a DM lists; its shorter rendering lists COMPACT_PATHS."""
COMPACT_PATHS = 2


@dataclass(frozen=True)
class WaveStats:
    """The window's flagged posts at the time of one post."""

    flagged_posts: int
    flagged_accounts: int
    first_flagged: float | None
    signs: list[str]  # this post's signs


def assess(stats: WaveStats, state: SurgeState | None, cfg: SpamWaveSettings, now: float) -> Decision | None:
    """Open a wave once enough posts are flagged; escalate when flagged accounts and pace both doubled."""
    if not stats.signs:
        return None
    # No baseline here: a flagged post is abnormal in itself. Accounts flagged after the fact (their post
    # became a duplicate later) had a post each too.
    return decide(
        state,
        max(stats.flagged_posts, stats.flagged_accounts) >= cfg.min_posts,
        stats.flagged_accounts,
        rate_per_hour(stats.flagged_posts, stats.first_flagged, now, span=cfg.window_hours * HOUR),
        now,
        cfg.escalation_factor,
        cfg.escalation_cooldown_minutes,
    )


# --- Redis glue -----------------------------------------------------------------------------------


NOTE_ACTIVITY_FUNCTION = Lua(__file__, "note_activity_function")
NOTE_ACTIVITY = Lua(__file__, "note_activity", include=[NOTE_ACTIVITY_FUNCTION])
RECORD_YOUNG_POST = Lua(
    __file__,
    "record_young_post",
    include=[NAMED_ARGUMENTS, TOUCH_FUNCTION, NOTE_ACTIVITY_FUNCTION, OLDEST_TO_FORGET_FUNCTION],
)


def _own_host(ctx: Context) -> str | None:
    url = ctx.settings.mastodon_url
    return (urlsplit(url).hostname or "").removeprefix("www.") or None if url else None


def handle_status(ctx: Context, event: dict[str, Any]) -> None:
    """status.created and status.updated (an edit can add the link a spammer wanted)."""
    cfg = ctx.settings.section(SpamWaveSettings)
    facts = examine(event, ctx.mastodon.known_bot_account_id(), _own_host(ctx), cfg)
    if facts is None:
        return
    hour = int(facts.at // HOUR)
    ttl = int(max(cfg.window_hours * HOUR, cfg.quiet_hours * HOUR) + DAY)
    activity_ttl = int((ACTIVITY_HOURS + 2) * HOUR)
    new = event.get("event") == "status.created"
    if not facts.young:
        NOTE_ACTIVITY(
            ctx.redis,
            [ACTIVITY_PREFIX + str(hour), POSTERS_PREFIX + str(hour)],
            [facts.account_id, activity_ttl, "1" if new else "0"],
        )
        return
    member = f"{facts.account_id}|{facts.username}"
    sample = json.dumps({"account": member, "text": facts.sample, "at": facts.at})
    posts, accounts, first, signs, state_raw = RECORD_YOUNG_POST.call(
        ctx.redis,
        keys={
            "feature_index": FEATURE_INDEX,
            "feature_first": FEATURE_FIRST,
            "posts": POSTS_PREFIX + facts.account_id,
            "flagged": FLAGGED,
            "flagged_posts": FLAGGED_POSTS,
            "samples": SAMPLES,
            "surge": SURGES.key(BUCKET),
            "open_surges": SURGES.open_key,
            "activity": ACTIVITY_PREFIX + str(hour),
            "posters": POSTERS_PREFIX + str(hour),
        },
        args={
            "status": facts.status_id,
            "account": facts.account_id,
            "member": member,
            "time": repr(facts.at),
            "window": cfg.window_hours * HOUR,
            "ttl": ttl,
            "hour": hour,
            "new_status": new,
            "sample": sample,
            "fingerprints": facts.fingerprints,
            "mass_mention": facts.mentions >= cfg.mass_mentions,
            "duplicate_accounts": cfg.duplicate_accounts,
            "fast_floor": cfg.fast_posts_per_hour,
            "fast_ratio": cfg.fast_ratio,
            "activity_hours": ACTIVITY_HOURS,
            "feature_prefix": FEATURE_PREFIX,
            "activity_prefix": ACTIVITY_PREFIX,
            "posters_prefix": POSTERS_PREFIX,
            "flagged_account_prefix": SPAM_ACCOUNT_PREFIX,
            "feature_accounts_cap": FEATURE_ACCOUNTS_CAP,
            "feature_cap": FEATURE_CAP,
            "flagged_cap": FLAGGED_CAP,
            "samples_kept": SAMPLES_KEPT,
            "prune_batch": PRUNE_BATCH,
            "posts_cap": POSTS_CAP,
        },
    )
    stats = WaveStats(
        flagged_posts=int(posts),
        flagged_accounts=int(accounts),
        first_flagged=float(first) if first else None,
        signs=signs.decode().split(",") if signs else [],
    )
    state = SurgeState.from_redis(state_raw)
    decision = assess(stats, state, cfg, facts.at)
    rate = rate_per_hour(stats.flagged_posts, stats.first_flagged, facts.at, span=cfg.window_hours * HOUR)
    if decision is None and not stats.signs:
        return  # an unflagged post teaches the wave nothing about its pace
    alert = SURGES.advance(
        ctx.redis,
        BUCKET,
        decision,
        facts.status_id,
        facts.at,
        stats.flagged_accounts,
        rate,
        state,
        cfg.escalation_cooldown_minutes,
    )
    if alert is not None:
        SURGES.enqueue_alert(ctx, alert)


def handle_account_update(ctx: Context, event: dict[str, Any]) -> None:
    """account.approved and account.updated: keep a flagged account's state current (suspended ones
    count as handled in the next DM)."""
    update_account_state(ctx.redis, SPAM_ACCOUNT_PREFIX, event)


# --- Alert job ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlaggedAccount:
    id: str
    username: str
    signs: list[str]
    suspended: bool
    silenced: bool


@dataclass(frozen=True)
class WaveDetails:
    posts: int
    accounts: list[FlaggedAccount]  # most recently flagged first
    samples: list[tuple[str, str]]  # (username, text), newest first, one per account
    signs: Counter[str]  # accounts per sign
    signups: list[Signup]  # what is remembered of the flagged accounts' sign-ups

    @property
    def active(self) -> list[FlaggedAccount]:
        return [account for account in self.accounts if not account.suspended]

    @property
    def suspended(self) -> int:
        return sum(account.suspended for account in self.accounts)


def wave_details(ctx: Context, at: float) -> WaveDetails:
    window = ctx.settings.section(SpamWaveSettings).window_hours * HOUR
    # Everything flagged since the wave's window began, up to now: the DM reports what is known when sent.
    posts = int(ctx.redis.zcount(FLAGGED_POSTS, f"({at - window}", "+inf"))
    members = redis_text.members(ctx.redis.zrevrangebyscore(FLAGGED, "+inf", f"({at - window}", 0, FLAGGED_CAP))
    ids = [member.split("|", 1)[0] for member in members]
    pipe = ctx.redis.pipeline()
    for account_id in ids:
        pipe.hgetall(SPAM_ACCOUNT_PREFIX + account_id)
    rows = pipe.execute()
    remembered = remembered_signups(ctx.redis, ids)
    accounts, signups = [], []
    for member, account_id, spam_row in zip(members, ids, rows, strict=True):
        fields = {key.decode(): value.decode() for key, value in spam_row.items()}
        signup = remembered.get(account_id)
        if signup is not None:
            signups.append(signup)
        accounts.append(
            FlaggedAccount(
                id=account_id,
                username=member.split("|", 1)[1],
                signs=[sign for sign in fields.get("signs", "duplicate").split(",") if sign],
                suspended=fields.get("suspended") == "1" or bool(signup and signup.suspended),
                silenced=fields.get("silenced") == "1",
            )
        )
    samples: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in ctx.redis.lrange(SAMPLES, 0, -1):
        sample = json.loads(raw)
        if sample["account"] not in seen and sample.get("text") and float(sample["at"]) > at - window:
            seen.add(sample["account"])
            samples.append((sample["account"].split("|", 1)[1], sample["text"]))
    signs = Counter(sign for account in accounts for sign in account.signs)
    return WaveDetails(
        posts=max(posts, len(accounts)), accounts=accounts, samples=samples[:2], signs=signs, signups=signups
    )


def admin_links(instance_url: str) -> dict[str, str]:
    return {
        "account": f"{instance_url}/admin/accounts/",
        "registrations": f"{instance_url}/admin/settings/registrations",
        "email_block": f"{instance_url}/admin/email_domain_blocks/new",
        "invites": f"{instance_url}/admin/invites",
    }


def render_alert(
    alert: Alert,
    details: WaveDetails | None,
    cfg: SpamWaveSettings,
    instance_url: str,
    template_dir: Any = None,
    refused: Mapping[str, str] | None = None,
    compact: bool = False,
) -> str:
    """The DM text for one alert: pure, so tests render it from fixtures. `refused`: email domains not to
    propose blocking, and why (young_accounts.email_block_refusals; without it, the big providers). `compact`:
    one sample and two sign-up paths (the rendering sent when the full one takes more than two statuses)."""
    paths = shared_paths(details)
    if refused is None:
        refused = static_refusals(email_domains(paths))
    return render_text(
        template_dir,
        "spam_quiet.txt.j2" if alert.kind == "quiet" else "spam_wave.txt.j2",
        alert=alert,
        details=details,
        paths=paths[: COMPACT_PATHS if compact else PATHS_SHOWN],
        samples=details.samples[: 1 if compact else None] if details else [],
        accounts_shown=ACCOUNTS_SHOWN,
        accounts_link=accounts_link(instance_url, paths),
        cfg=cfg,
        links=admin_links(instance_url),
        hours=lambda seconds: round(seconds / HOUR, 1),
        proposal=propose(details, paths, refused) or Proposal(),
        refused=refused,
    )


def accounts_link(instance_url: str, paths: list[Cluster]) -> tuple[str, str]:
    """One admin link for the wave's accounts, labelled by what it lists: the sign-up trait they share
    when Mastodon's accounts list can filter by it, else the newest local accounts (young ones first)."""
    path = next((path for path in paths if filters_by(path.kind)), None)
    if path is None:
        return "newest local accounts first", accounts_url(instance_url)
    shown = f"names starting {path.value}" if path.kind == ClusterKind.NAME_PATTERN else f"addresses at {path.value}"
    return shown, accounts_url(instance_url, path.kind, path.value)


def shared_paths(details: WaveDetails | None) -> list[Cluster]:
    """Sign-up traits at least half the flagged accounts' known sign-ups share."""
    if details is None or not details.signups:
        return []
    return find_clusters(details.signups, max(2, (len(details.signups) + 1) // 2))


def propose(details: WaveDetails | None, paths: list[Cluster], refused: Mapping[str, str]) -> Proposal | None:
    """What `approve` does for a spam wave: suspend the flagged accounts not suspended yet, and block the
    email domain their sign-ups share (never a big provider's, nor one established members use:
    `refused`)."""
    if details is None or not details.active:
        return None
    suspensions = tuple(
        Action("suspend_account", account.id, f"suspend {account.username} (#{account.id})")
        for account in details.active
    )
    items = [ProposalItem(f"suspend these {len(suspensions)} accounts", suspensions)]
    for path in paths[:PATHS_SHOWN]:  # those email_block_refusals looked at
        if path.kind == ClusterKind.EMAIL_DOMAIN and path.value not in refused and not path.shared_provider:
            block = Action("email_domain_block", path.value, f"block sign-ups from {path.value}")
            items.append(ProposalItem(f"block sign-ups with email addresses at {path.value}", (block,)))
            break
    return Proposal(items=tuple(items))


def compose_alert(ctx: Context, alert: Alert) -> Message:
    """The alert job's DM: gather what it needs now (it may read Mastodon), render it."""
    cfg = ctx.settings.section(SpamWaveSettings)
    details = None if alert.kind == "quiet" else wave_details(ctx, alert.at)
    paths = shared_paths(details)
    # Established: older than any account this detector calls young, at the window's first post.
    before = alert.at - cfg.window_hours * HOUR - cfg.young_days * DAY
    refused = email_block_refusals(ctx, email_domains(paths[:PATHS_SHOWN]), before) if details else {}
    full, compact = (
        render_alert(alert, details, cfg, ctx.settings.instance_url, ctx.settings.template_dir, refused, compact)
        for compact in (False, True)
    )
    return Message(full, propose(details, paths, refused), shorter=(compact,))
