"""Sign-up surges: local sign-ups (`account.created`) far above their usual rate.

Counting is by the accounts' own `created_at`, in one Lua call per sign-up: a sorted set of recent
sign-ups (the window count, and what an alert shows) and hourly counters for the long baseline (28 days
of a busy instance cost ~700 numbers, not an entry per account). Whether that is a surge is decided by
pure functions; the clusters a DM shows (email domain, network, name pattern, invite, app) come from
`find_clusters`, a pure function over the window's sign-ups (handlers/young_accounts.py, which the spam
family reads too). `account.approved` and `account.updated` keep each remembered account's state
current, so escalations show who was approved or suspended since.

Only what intake kept reaches this module: an email's domain and a keyed hash of the IP's network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.core import redis_text
from bot.core.privacy import pii_key, reduce_admin_account
from bot.core.scripting import NAMED_ARGUMENTS, Lua
from bot.core.templating import render_text
from bot.mastodon.actions import Action, Message, Proposal, ProposalItem
from bot.mastodon.client import as_webhook_json, pages_by_max_id
from bot.mastodon.context import Context
from bot.pipeline.events import parse_time
from bot.pipeline.families import Rejected
from bot.pipeline.surges import (
    DAY,
    HOUR,
    OLDEST_TO_FORGET_FUNCTION,
    Alert,
    BaselineRatio,
    Decision,
    SurgeDetector,
    SurgeState,
    decide,
    rate_per_hour,
)
from handlers.shared.admin_urls import accounts_url, filters_by
from handlers.shared.payloads import AdminAccount, slim_account
from handlers.shared.young_accounts import (
    ACCOUNTS_PAGE,
    SIGNUP_PREFIX,
    Cluster,
    ClusterKind,
    Signup,
    email_block_refusals,
    email_domains,
    find_clusters,
    state_fields,
    static_refusals,
    update_account_state,
)
from handlers.signups.settings import SignupSurgeSettings

log = logging.getLogger(__name__)

BUCKET = "local"
"""Sign-ups are local by definition: one bucket."""

SIGNUPS = "tocsin:signups:times"  # sorted set: account id scored by created_at
HOURS = "tocsin:signups:hours"  # hash: hour number (epoch // 3600) -> sign-ups in that hour
FIRST_SEEN = "tocsin:signups:first"  # time of the earliest sign-up counted (how long we have observed)
SURGES = SurgeDetector(
    name="signup-surge",
    prefix="tocsin:signups:surge:",
    open_key="tocsin:signups:surges:open",
    quiet_seconds=lambda settings: settings.section(SignupSurgeSettings).quiet_hours * HOUR,
    compose=lambda ctx, alert: compose_alert(ctx, alert),
)

KEEP_SECONDS = 7 * DAY
"""Sign-ups are remembered for a week: the spam detector shows a young account's sign-up path (email
domain, invite, app) next to its posts."""
KEEP_CAP = 20_000
"""... at most this many (~0.3 KB each), oldest forgotten first, so a flood of sign-ups stays bounded."""
PRUNE_BATCH = 100
"""Forgotten sign-ups removed per event: constant work per event, and still faster than any flood."""
DETAIL_SCAN_CAP = 2000
"""An alert's clusters are found among at most this many of the window's newest sign-ups."""
SHOWN_CLUSTERS = 4
"""Clusters a DM lists (largest first); its shorter rendering lists COMPACT_CLUSTERS."""
COMPACT_CLUSTERS = 2

ESTABLISHED_BEFORE = DAY
"""An account is established when made at least this long before the surge's window: the day before a
wave may hold its vanguard (accounts made ahead, confirmed by the same script)."""


# --- Pure: numbers, names, clusters --------------------------------------------------------------


@dataclass(frozen=True)
class SignupStats:
    """The window's numbers at the time of one sign-up."""

    count: int  # sign-ups in the window
    first_in_window: float | None  # time of the oldest of those
    baseline: int  # sign-ups in the baseline window (only counted when `count` reaches the minimum)
    observed_for: float  # seconds since the earliest sign-up counted


def surge_rule(cfg: SignupSurgeSettings) -> BaselineRatio:
    """The sign-up thresholds: no surge before sign-ups have been observed `learning_hours`."""
    return BaselineRatio(
        window=cfg.window_hours * HOUR,
        baseline=cfg.baseline_days * DAY,
        ratio=cfg.ratio,
        min_count=cfg.min_signups,
        learning=cfg.learning_hours * HOUR,
    )


def hourly_rate(stats: SignupStats, cfg: SignupSurgeSettings, now: float) -> float:
    return rate_per_hour(stats.count, stats.first_in_window, now, span=cfg.window_hours * HOUR)


def is_surge(stats: SignupStats, cfg: SignupSurgeSettings) -> bool:
    return surge_rule(cfg).is_surge(stats.count, stats.baseline, stats.observed_for)


def assess(stats: SignupStats, state: SurgeState | None, cfg: SignupSurgeSettings, now: float) -> Decision | None:
    """Open a surge, escalate it (count and rate both grew by the escalation factor), or nothing."""
    return decide(
        state,
        is_surge(stats, cfg),
        stats.count,
        hourly_rate(stats, cfg, now),
        now,
        cfg.escalation_factor,
        cfg.escalation_cooldown_minutes,
    )


# --- Redis glue -----------------------------------------------------------------------------------

RECORD_SIGNUP = Lua(__file__, "record_signup", include=[NAMED_ARGUMENTS, OLDEST_TO_FORGET_FUNCTION])


def record_signup(ctx: Context, account: AdminAccount) -> tuple[str, float, SignupStats, SurgeState | None] | None:
    """Count one local sign-up; None for something that is not one (a remote account)."""
    if account.created_at is None:
        raise Rejected("sign-up without created_at")
    if account.domain:
        return None  # account.created fires for local sign-ups only; anything else is not one
    account_id, created = account.id, account.created_at
    cfg = ctx.settings.section(SignupSurgeSettings)
    fields = {
        "username": account.username,
        "created_at": repr(created),
        "email_domain": account.email_domain,
        "network": account.network,
        "invite": account.invite,
        "app": account.app,
        **state_fields(account),
    }
    count, oldest, base, observed, state_raw = RECORD_SIGNUP.call(
        ctx.redis,
        keys={
            "signups": SIGNUPS,
            "hours": HOURS,
            "first_seen": FIRST_SEEN,
            "signup": SIGNUP_PREFIX + account_id,
            "surge": SURGES.key(BUCKET),
        },
        args={
            "account_id": account_id,
            "time": repr(created),
            "window": cfg.window_hours * HOUR,
            "baseline": cfg.baseline_days * DAY,
            "min_signups": cfg.min_signups,
            "fields": [item for pair in fields.items() for item in pair],
            "keep_seconds": int(KEEP_SECONDS),
            "keep_cap": KEEP_CAP,
            "signup_prefix": SIGNUP_PREFIX,
            "prune_batch": PRUNE_BATCH,
        },
    )
    stats = SignupStats(
        count=int(count),
        first_in_window=float(oldest) if oldest else None,
        baseline=int(base),
        observed_for=float(observed),
    )
    return account_id, created, stats, SurgeState.from_redis(state_raw)


def handle_signup(ctx: Context, event: dict[str, Any]) -> None:
    """account.created."""
    recorded = record_signup(ctx, AdminAccount.from_event(event))
    if recorded is None:
        return
    account_id, created, stats, state = recorded
    cfg = ctx.settings.section(SignupSurgeSettings)
    decision = assess(stats, state, cfg, created)
    rate = hourly_rate(stats, cfg, created)
    alert = SURGES.advance(
        ctx.redis, BUCKET, decision, account_id, created, stats.count, rate, state, cfg.escalation_cooldown_minutes
    )
    if alert is not None:
        rule = surge_rule(cfg)
        alert = replace(
            alert,
            expected=round(rule.expected_in_window(stats.baseline, stats.observed_for), 2),
            baseline=stats.baseline,
            baseline_days=round(rule.baseline_span(stats.observed_for) / DAY, 1),
        )
        SURGES.enqueue_alert(ctx, alert)
    if state is not None and is_surge(stats, cfg):
        SURGES.touch(ctx.redis, BUCKET, created)  # still at surge level: not "back to normal" yet


def handle_account_update(ctx: Context, event: dict[str, Any]) -> None:
    """account.approved and account.updated: keep a remembered sign-up's state current."""
    update_account_state(ctx.redis, SIGNUP_PREFIX, event)


def signup_history(ctx: Context, since: float) -> Iterator[dict[str, Any]]:
    """The local sign-ups since `since`, read from the admin API, as `account.created` webhook events of
    what the handler reads (`slim_account`; not reduced yet): what `tocsin backfill` records and
    `tocsin replay` replays. Newest first."""
    client = ctx.mastodon.client
    if client is None:
        raise RuntimeError("reading sign-ups needs TOCSIN_MASTODON_URL")
    for page in pages_by_max_id(client.admin_accounts_v2, origin="local", limit=ACCOUNTS_PAGE):
        for item in page:
            account = as_webhook_json(item)
            created = parse_time(account.get("created_at"))
            if created is None or created < since:
                return
            yield {"event": "account.created", "created_at": account["created_at"], "object": slim_account(account)}


def backfill_signups(ctx: Context, days: float) -> int:
    """Record the last `days` of local sign-ups from the admin API, without alerting (a baseline)."""
    key = pii_key(ctx.redis)
    recorded = 0
    for event in signup_history(ctx, time.time() - days * DAY):
        if record_signup(ctx, AdminAccount.parse(reduce_admin_account(event["object"], key))) is not None:
            recorded += 1
    return recorded


# --- Alert job: read the window, find clusters, render, post -------------------------------------


def window_signups(ctx: Context, at: float) -> tuple[int, list[Signup]]:
    """How many sign-ups the window holds, and the newest of them as remembered now (approved or
    suspended since, as it happens)."""
    window = ctx.settings.section(SignupSurgeSettings).window_hours * HOUR
    total = int(ctx.redis.zcount(SIGNUPS, f"({at - window}", at))
    ids = redis_text.members(ctx.redis.zrevrangebyscore(SIGNUPS, at, f"({at - window}", 0, DETAIL_SCAN_CAP))
    pipe = ctx.redis.pipeline()
    for account_id in ids:
        pipe.hgetall(SIGNUP_PREFIX + account_id)
    rows = pipe.execute()
    return total, [Signup.from_redis(account_id, raw) for account_id, raw in zip(ids, rows, strict=True) if raw]


def admin_links(instance_url: str) -> dict[str, str]:
    return {
        "account": f"{instance_url}/admin/accounts/",
        "pending": accounts_url(instance_url, pending=True),
        "registrations": f"{instance_url}/admin/settings/registrations",
        "email_block": f"{instance_url}/admin/email_domain_blocks/new",
        "ip_block": f"{instance_url}/admin/ip_blocks/new",
        "invites": f"{instance_url}/admin/invites",
    }


def render_alert(
    alert: Alert,
    total: int,
    signups: list[Signup],
    cfg: SignupSurgeSettings,
    instance_url: str,
    template_dir: Any = None,
    refused: Mapping[str, str] | None = None,
    compact: bool = False,
) -> str:
    """The DM text for one alert: pure, so tests render it from fixtures. `refused`: email domains not to
    propose blocking, and why (email_block_refusals; without it, the big providers). `compact`: fewer
    clusters (the rendering sent when the full one would take more than two statuses)."""
    clusters = find_clusters(signups, cfg.cluster_min)
    if refused is None:
        refused = static_refusals(email_domains(clusters))
    proposal = propose(alert, clusters, refused)
    return render_text(
        template_dir,
        "signup_quiet.txt.j2" if alert.kind == "quiet" else "signup_surge.txt.j2",
        alert=alert,
        count=total,
        pending=sum(signup.pending for signup in signups),
        suspended=sum(signup.suspended for signup in signups),
        able_to_post=sum(signup.able_to_post for signup in signups),
        clusters=clusters[: COMPACT_CLUSTERS if compact else SHOWN_CLUSTERS],
        largest=clusters[0] if clusters else None,
        cfg=cfg,
        links=admin_links(instance_url),
        accounts_url=lambda cluster: (
            accounts_url(instance_url, cluster.kind, cluster.value) if filters_by(cluster.kind) else None
        ),
        hours=lambda seconds: round(seconds / HOUR, 1),
        proposal=proposal or Proposal(),
        refused=refused,
    )


def propose(alert: Alert, clusters: list[Cluster], refused: Mapping[str, str]) -> Proposal | None:
    """What `approve` does for a sign-up surge: block the email domain most of the wave shares (never a
    big provider's, nor one established members use: `refused`), and reject that cluster's pending
    sign-ups (or the largest cluster's)."""
    if alert.kind == "quiet" or not clusters:
        return None
    by_email = next(  # among the clusters shown, those email_block_refusals looked at
        (
            cluster
            for cluster in clusters[:SHOWN_CLUSTERS]
            if cluster.kind == ClusterKind.EMAIL_DOMAIN and cluster.value not in refused and not cluster.shared_provider
        ),
        None,
    )
    target = by_email or clusters[0]
    items = []
    if by_email is not None:
        block = Action("email_domain_block", by_email.value, f"block sign-ups from {by_email.value}")
        items.append(ProposalItem(f"block sign-ups with email addresses at {by_email.value}", (block,)))
    pending = [signup for signup in target.members if signup.pending]
    if pending:
        rejections = tuple(
            Action("reject_account", signup.id, f"reject {signup.username} (#{signup.id})") for signup in pending
        )
        items.append(ProposalItem(f"reject the {len(pending)} pending sign-ups of that cluster", rejections))
    return Proposal(items=tuple(items)) if items else None


def compose_alert(ctx: Context, alert: Alert) -> Message:
    """The alert job's DM: gather what it needs now (it may read Mastodon), render it."""
    cfg = ctx.settings.section(SignupSurgeSettings)
    total, signups = window_signups(ctx, alert.at)
    clusters = find_clusters(signups, cfg.cluster_min)
    refused: Mapping[str, str] = {}
    if alert.kind != "quiet":
        before = alert.at - cfg.window_hours * HOUR - ESTABLISHED_BEFORE
        refused = email_block_refusals(ctx, email_domains(clusters[:SHOWN_CLUSTERS]), before)
    texts = [
        render_alert(alert, total, signups, cfg, ctx.settings.instance_url, ctx.settings.template_dir, refused, compact)
        for compact in (False, True)
    ]
    return Message(texts[0], propose(alert, clusters, refused), shorter=(texts[1],))
