"""Report surges: many reports against one server (or local accounts, or everywhere) in a short time.

Counting happens in Redis, by the reports' own `created_at`, in one Lua call per event. Whether that
is a surge is decided by the pure function `assess`, over the counts. The transitions
(open, escalate, close) are bot.pipeline.surges' compare-and-sets, so several workers raise one alert per step.
Alert jobs (on the urgent queue) look up the impact through the admin API, render the DM and post it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from mastodon import MastodonError

from bot.core import defaults, redis_text
from bot.core.scripting import NAMED_ARGUMENTS, Lua
from bot.core.templating import render_text
from bot.mastodon.actions import LOCAL_ACCOUNTS, Action, Message, Proposal, ProposalItem, wave_report
from bot.mastodon.client import DomainBlock, Following, Impact, as_webhook_json
from bot.mastodon.context import Context
from bot.pipeline.events import parse_time
from bot.pipeline.surges import (
    DAY,
    HOUR,
    TOUCH_FUNCTION,
    Alert,
    BaselineRatio,
    Decision,
    SurgeDetector,
    SurgeState,
    decide,
    rate_per_hour,
)
from handlers.reports.settings import ReportSurgeSettings
from handlers.shared.payloads import Report, slim_report

log = logging.getLogger(__name__)

LOCAL = "local"
"""Bucket of reports against this instance's own accounts."""
EVERYWHERE = "*"
"""Bucket of all reports, for waves spread over many servers."""

DETAIL_SCAN_CAP = 1000
"""An alert's categories, comments and top servers are read from at most this many of the window's reports."""
REPORT_CAP = 200_000
"""Reports remembered at most (~0.4 KB each): a busy instance's 28 days, while a flood of reports
cannot grow memory without bound (the oldest are forgotten first, so the baseline then covers less)."""
ACTIVE_BUCKET_CAP = 500
"""The largest server of a wave spread over many is looked for among at most this many recent servers."""

TIMES_PREFIX = "tocsin:reports:times:"  # + bucket: sorted set, report id scored by created_at
# TIMES_PREFIX + bucket + ":accounts" / ":reporters": sorted sets, id scored by its latest report
ACTIVE_BUCKETS = "tocsin:reports:buckets"  # sorted set, bucket scored by its latest report
REPORT_PREFIX = "tocsin:report:"  # + report id: hash of what the detector keeps of a report
SURGES = SurgeDetector(
    name="report-surge",
    prefix="tocsin:surge:",
    open_key="tocsin:surges:open",
    quiet_seconds=lambda settings: settings.section(ReportSurgeSettings).quiet_days * DAY,
    compose=lambda ctx, alert: compose_alert(ctx, alert),
)

COMMENT_KEEP = 500
"""Characters of a report comment kept for quoting in alerts (quoted ones are cut shorter)."""


@dataclass(frozen=True)
class WindowStats:
    """One bucket's counts at the time of one report."""

    count: int  # reports in the sliding window
    last_hour: int  # reports in the last hour
    first_in_hour: float | None  # time of the oldest of those
    baseline: int  # reports in the baseline window before the sliding one
    accounts: int = 0  # distinct reported accounts in the window
    reporters: int = 0  # distinct reporters in the window
    top_bucket: int = 0  # reports of the largest single bucket in the window (EVERYWHERE, near its threshold)
    observed_for: float = math.inf  # seconds since the oldest report kept, of any bucket


# --- Pure detection -------------------------------------------------------------------------------


def hourly_rate(stats: WindowStats, now: float) -> float:
    """Reports per hour over the last hour, or over the part of it the wave has lasted."""
    return rate_per_hour(stats.last_hour, stats.first_in_hour, now)


def surge_rule(bucket: str, cfg: ReportSurgeSettings) -> BaselineRatio:
    """The report thresholds of one bucket. The all-servers bucket needs more reports, and reports
    observed for `learning_hours` first (without a baseline, a busy instance's ordinary traffic would look
    like a wave spread over many servers); one server's or the local accounts' need no learning time."""
    everywhere = bucket == EVERYWHERE
    return BaselineRatio(
        window=cfg.window_hours * HOUR,
        baseline=cfg.baseline_days * DAY,
        ratio=cfg.ratio,
        min_count=cfg.overall_min_reports if everywhere else cfg.min_reports,
        learning=cfg.learning_hours * HOUR if everywhere else None,
    )


def is_surge(bucket: str, stats: WindowStats, cfg: ReportSurgeSettings) -> bool:
    if not surge_rule(bucket, cfg).is_surge(stats.count, stats.baseline, stats.observed_for):
        return False
    if stats.accounts < cfg.min_accounts:
        return False
    # One server's wave is that server's alert; the all-servers bucket is for waves spread over many.
    return bucket != EVERYWHERE or stats.top_bucket * 2 < stats.count


def assess(
    bucket: str, stats: WindowStats, state: SurgeState | None, cfg: ReportSurgeSettings, now: float
) -> Decision | None:
    """Open a surge, escalate it (count and rate both grew by the escalation factor), or nothing."""
    return decide(
        state,
        is_surge(bucket, stats, cfg),
        stats.count,
        hourly_rate(stats, now),
        now,
        cfg.escalation_factor,
        cfg.escalation_cooldown_minutes,
    )


# --- Redis glue -----------------------------------------------------------------------------------

RECORD_REPORT = Lua(__file__, "record_report", include=[NAMED_ARGUMENTS, TOUCH_FUNCTION])


def _stats(raw: list[Any]) -> WindowStats:
    count, hour, first, base, accounts, reporters, top, observed = raw
    return WindowStats(
        count=int(count),
        last_hour=int(hour),
        first_in_hour=float(first) if first else None,
        baseline=int(base),
        accounts=int(accounts),
        reporters=int(reporters),
        top_bucket=int(top),
        observed_for=float(observed),
    )


def handle_report(ctx: Context, event: dict[str, Any]) -> None:
    """report.created and report.updated (an update of a report we never saw counts it too)."""
    recorded = record_report(ctx, Report.from_event(event))
    if recorded is None:
        return
    report_id, created, results = recorded
    cfg = ctx.settings.section(ReportSurgeSettings)
    for bucket, raw, state_raw in results:
        stats = _stats(raw)
        state = SurgeState.from_redis(state_raw)
        decision = assess(bucket, stats, state, cfg, created)
        rate = hourly_rate(stats, created)
        alert = SURGES.advance(
            ctx.redis, bucket, decision, report_id, created, stats.count, rate, state, cfg.escalation_cooldown_minutes
        )
        if alert is not None:
            rule = surge_rule(bucket, cfg)
            alert = replace(
                alert,
                count=stats.count,
                last_hour=stats.last_hour,
                baseline=stats.baseline,
                expected=round(rule.expected_in_window(stats.baseline, stats.observed_for), 2),
                baseline_days=round(rule.baseline_span(stats.observed_for) / DAY, 1),
            )
            SURGES.enqueue_alert(ctx, alert)


def record_report(ctx: Context, report: Report) -> tuple[str, float, list[tuple[str, list[Any], list[bytes]]]] | None:
    """Count one report; return its id, time, and per bucket (its own, EVERYWHERE) raw stats and state."""
    if report.reporter_id and report.reporter_id == ctx.mastodon.known_bot_account_id():
        return None
    report_id, created = report.id, report.created_at
    bucket = report.target_domain or LOCAL
    cfg = ctx.settings.section(ReportSurgeSettings)
    window, baseline = cfg.window_hours * HOUR, cfg.baseline_days * DAY
    fields = {
        "bucket": bucket,
        "account": report.target_id,
        "reporter": report.reporter_id,
        "category": report.category,
        "comment": report.comment[:COMMENT_KEEP],
        "status": "resolved" if report.resolved else "open",
        "created_at": repr(created),
    }
    bucket_raw, everywhere_raw, bucket_state, everywhere_state = RECORD_REPORT.call(
        ctx.redis,
        keys={
            "bucket_times": TIMES_PREFIX + bucket,
            "everywhere_times": TIMES_PREFIX + EVERYWHERE,
            "report": REPORT_PREFIX + report_id,
            "bucket_surge": SURGES.key(bucket),
            "everywhere_surge": SURGES.key(EVERYWHERE),
            "open_surges": SURGES.open_key,
            "active_buckets": ACTIVE_BUCKETS,
        },
        args={
            "report_id": report_id,
            "time": repr(created),
            "window": window,
            "baseline": baseline,
            "bucket": bucket,
            "account": fields["account"],
            "reporter": fields["reporter"],
            "fields": [item for pair in fields.items() for item in pair],
            "ttl": int(window + baseline + DAY),
            "everywhere_threshold": cfg.overall_min_reports,
            "report_cap": REPORT_CAP,
            "report_prefix": REPORT_PREFIX,
            "times_prefix": TIMES_PREFIX,
            "active_bucket_cap": ACTIVE_BUCKET_CAP,
        },
    )
    return (
        report_id,
        created,
        [(bucket, bucket_raw, bucket_state), (EVERYWHERE, everywhere_raw, everywhere_state)],
    )


def report_history(ctx: Context, since: float) -> Iterator[dict[str, Any]]:
    """The reports created since `since`, read from the admin API (open and resolved), as `report.created`
    webhook events of what the handler reads (`slim_report`): what `tocsin backfill` records and
    `tocsin replay` replays. Newest first per listing."""
    client = ctx.mastodon.client
    if client is None:
        raise RuntimeError("reading reports needs TOCSIN_MASTODON_URL")
    for resolved in (False, True):  # the API lists unresolved or resolved reports, not both
        page = client.admin_reports(resolved=resolved, limit=200)
        while page:
            for item in page:
                report = as_webhook_json(item)
                created = parse_time(report.get("created_at"))
                if created is None or created < since:
                    page = None
                    break
                yield {"event": "report.created", "created_at": report["created_at"], "object": slim_report(report)}
            else:
                page = client.fetch_next(page)


def backfill_reports(ctx: Context, days: float) -> int:
    """Record the last `days` of reports from the admin API, without alerting: a baseline for a new install."""
    recorded = 0
    for event in report_history(ctx, time.time() - days * DAY):
        if record_report(ctx, Report.from_event(event)) is not None:
            recorded += 1
    return recorded


# --- Alert job: look up, render, post ------------------------------------------------------------


@dataclass(frozen=True)
class WindowDetails:
    """A window's reports as read when the alert is sent (an alert job can run after later events were
    counted, and several workers count out of order: these numbers are the settled ones)."""

    reports: int
    categories: list[tuple[str, int]]
    open_reports: int
    resolved_reports: int
    accounts: int
    reporters: int
    comments: list[str]
    top_buckets: list[tuple[str, int]]


def window_details(ctx: Context, bucket: str, at: float, comments: int = 2) -> WindowDetails:
    window = ctx.settings.section(ReportSurgeSettings).window_hours * HOUR
    key = TIMES_PREFIX + bucket
    total = ctx.redis.zcount(key, f"({at - window}", at)
    ids = redis_text.members(ctx.redis.zrevrangebyscore(key, at, f"({at - window}", start=0, num=DETAIL_SCAN_CAP))
    pipe = ctx.redis.pipeline()
    for report_id in ids:
        pipe.hgetall(REPORT_PREFIX + report_id)
    reports = [{k.decode(): v.decode() for k, v in row.items()} for row in pipe.execute() if row]
    status = Counter(report.get("status", "open") for report in reports)
    return WindowDetails(
        reports=total,
        categories=Counter(report.get("category", "other") for report in reports).most_common(),
        open_reports=status["open"],
        resolved_reports=status["resolved"],
        accounts=len({report.get("account") for report in reports}),
        reporters=len({report.get("reporter") for report in reports}),
        comments=[report["comment"] for report in reports if report.get("comment")][:comments],
        top_buckets=Counter(report.get("bucket", "?") for report in reports).most_common(3),
    )


def admin_links(instance_url: str, bucket: str) -> dict[str, str]:
    if bucket == LOCAL:
        return {
            "reports": f"{instance_url}/admin/reports?target_origin=local",
            # No API switches sign-ups to "approval required" (docs/mastodon-notes.md): the admin page does.
            "registrations": f"{instance_url}/admin/settings/registrations",
        }
    if bucket == EVERYWHERE:
        return {"reports": f"{instance_url}/admin/reports"}
    domain = quote(bucket, safe="")
    return {
        "reports": f"{instance_url}/admin/reports?by_target_domain={domain}",
        "instance": f"{instance_url}/admin/instances/{domain}",
        "limit": f"{instance_url}/admin/domain_blocks/new?_domain={domain}",
    }


def render_alert(
    alert: Alert,
    details: WindowDetails | None,
    block: DomainBlock | None,
    impact: Impact | None,
    cfg: ReportSurgeSettings,
    instance_url: str,
    admin_can_read: bool,
    template_dir: Any = None,
    wave: Wave | None = None,
) -> str:
    """The DM text for one alert: pure, so tests render it from fixtures."""
    proposal = propose(alert, block, wave, impact)
    template = {
        "open": "report_surge.txt.j2",
        "escalate": "report_surge.txt.j2",
        "quiet": "report_quiet.txt.j2",
    }
    bucket = alert.bucket
    return render_text(
        template_dir,
        template[alert.kind],
        alert=alert,
        bucket=bucket,
        is_remote=bucket not in (LOCAL, EVERYWHERE),
        is_local=bucket == LOCAL,
        details=details,
        block=block,
        impact=impact,
        impact_known=admin_can_read,
        cfg=cfg,
        links=admin_links(instance_url, bucket),
        days=lambda seconds: round(seconds / DAY, 1),
        proposal=proposal or Proposal(),
        wave=wave,
    )


@dataclass(frozen=True)
class Wave:
    """What the DM's three choices act on: the reports against the bucket created in (since, until] (from
    the window before the surge opened to when the DM is written), their distinct reported accounts (and
    how many of them our members follow), and the open ones item 3 would resolve (as Mastodon lists them:
    unassigned, spam; other categories only with `all`)."""

    since: float
    until: float
    accounts: tuple[str, ...]
    open_spam: int
    open_other: int
    assigned: int = 0
    all_read: bool = True  # every open report of the window was read (False: the counts are lower bounds)
    followed: Following | None = None  # how many of the (remote) accounts our members follow; None: unknown


def following_words(followed: Following | None) -> str:
    """Who a suspension of the reported accounts cuts off, in the moderator's words: never "none" unless
    every account was read (an account hiding its followers, or one past the caps, is not known)."""
    if followed is None or (not followed.read and followed.asked):
        return "our members following them: not known"
    unknown = followed.asked - followed.read
    if followed.complete and not followed.followed:
        return "none of them followed by any of our members"
    if followed.complete:
        return f"{followed.followed:,} of them followed by {followed.members:,} of our members"
    if not followed.followed:
        return f"none of the {followed.read:,} read followed by our members; {unknown:,} not known"
    return (
        f"at least {followed.followed:,} of them followed by at least {followed.members:,} of our members;"
        f" {unknown:,} not known"
    )


def propose(
    alert: Alert, block: DomainBlock | None, wave: Wave | None = None, impact: Impact | None = None
) -> Proposal | None:
    """A surge from one server: 1. limit it, 2. suspend the reported accounts (saying how many of them our
    members follow), 3. resolve the wave's open reports; local accounts: 1. limit (silence) them,
    2. suspend them, 3. resolve (requiring approval for sign-ups is a line of the DM: no API does it).
    `approve` alone is item 1, the least reaching. The numbers stay the same in every DM of a surge, the
    quiet-again one included while some of the wave's reports are still open (an item that has nothing
    left to do still holds its place)."""
    bucket = alert.bucket
    if bucket == EVERYWHERE:
        return None
    if alert.kind == "quiet" and (wave is None or not wave.open_spam + wave.open_other):
        return None  # quiet again with nothing of the wave left open: nothing to decide
    if wave is None:  # nothing known of the wave's reports: the limit alone, as before
        if bucket == LOCAL or block is not None:
            return None
        limit = Action("domain_block", bucket, f"limit {bucket}", severity="silence")
        return Proposal(items=(ProposalItem(f"limit {bucket} until the wave passes", (limit,)),))
    accounts = len(wave.accounts)
    if bucket == LOCAL:  # our own members (sign-up spam, or accounts taken over): their own words
        first = ProposalItem(
            f"limit (silence) the {accounts} reported local accounts",
            (Action("silence_accounts", LOCAL_ACCOUNTS, f"silence {accounts} local accounts", targets=wave.accounts),),
        )
        suspend_label = f"suspend the {accounts} reported local accounts (asks yes: members' accounts)"
    else:
        if block is None:
            cost = ""
            if impact is not None:
                cost = f" (cuts {impact.local_follows:,} follows from us to there, "
                cost += f"{impact.remote_followers:,} from there to us)"
            first_label = f"limit {bucket}{cost}"
        else:
            first_label = f"limit {bucket} (it is {BLOCK_WORDS.get(block.severity, 'blocked')} already)"
        first = ProposalItem(first_label, (Action("domain_block", bucket, f"limit {bucket}", severity="silence"),))
        suspend_label = f"suspend the {accounts} reported accounts of {bucket} ({following_words(wave.followed)})"
    suspend = ProposalItem(
        suspend_label,
        (Action("suspend_accounts", bucket, f"suspend {accounts} accounts of {bucket}", targets=wave.accounts),),
    )
    plus = "" if wave.all_read else "+"
    others = f"; {wave.open_other}{plus} other: approve 3 all" if wave.open_other else ""
    assigned = f"; {wave.assigned} assigned, left" if wave.assigned else ""
    resolve = ProposalItem(
        f"resolve the {wave.open_spam}{plus} open spam reports of the wave{others}{assigned}",
        (Action("resolve_reports", bucket, f"resolve reports of {bucket}", since=wave.since, until=wave.until),),
    )
    return Proposal(items=(first, suspend, resolve))


BLOCK_WORDS = {"silence": "limited", "suspend": "suspended"}


def wave_of(ctx: Context, bucket: str, alert: Alert, impact: Impact | None = None) -> Wave | None:
    """The wave the DM offers to act on: its reports from Redis (their accounts), the open ones from the
    admin API when the token can read it (exactly what `approve 3` would resolve; at most
    REPORT_PAGES_PER_DM pages), else from Redis; for a remote server, how many of the accounts our
    members follow (bounded reads, within Tocsin's share of the rate limit)."""
    if bucket == EVERYWHERE:
        return None
    window = ctx.settings.section(ReportSurgeSettings).window_hours * HOUR
    state = SURGES.state(ctx.redis, bucket)
    opened = state.opened_at if state is not None and state.surge_id == alert.surge_id else alert.at
    if alert.kind == "quiet":  # the surge is closed: its life is in the alert
        opened = alert.opened_at if alert.opened_at is not None else alert.at
    # Up to now, not only to the event that raised the alert: the DM's numbers are what the moderator
    # decides on, and a report that arrives after it waits for the next DM.
    since, until = min(opened, alert.at) - window, max(alert.at, time.time())
    ids = redis_text.members(ctx.redis.zrangebyscore(TIMES_PREFIX + bucket, f"({since}", until))
    pipe = ctx.redis.pipeline()
    for report_id in ids:
        pipe.hgetall(REPORT_PREFIX + report_id)
    rows = [{k.decode(): v.decode() for k, v in row.items()} for row in pipe.execute() if row]
    accounts = tuple(sorted({row["account"] for row in rows if row.get("account")}, key=_by_number))
    action = Action("resolve_reports", bucket, "", since=since, until=until)
    verdicts: list[str]
    all_read = True
    try:
        listed, all_read = ctx.mastodon.open_reports(since=since, max_pages=defaults.REPORT_PAGES_PER_DM)
        verdicts = [wave_report(report, action) for report in listed]
    except (MastodonError, RuntimeError):  # no admin read (or not now): what the webhooks said
        open_rows = [row for row in rows if row.get("status", "open") == "open"]
        verdicts = ["resolve" if row.get("category") == "spam" else "category" for row in open_rows]
    return Wave(
        since=since,
        until=until,
        accounts=accounts,
        open_spam=verdicts.count("resolve"),
        open_other=verdicts.count("category"),
        assigned=verdicts.count("assigned"),
        all_read=all_read,
        followed=followed_by_members(ctx, bucket, accounts, impact),
    )


def followed_by_members(
    ctx: Context, bucket: str, accounts: tuple[str, ...], impact: Impact | None
) -> Following | None:
    """How many of a remote wave's accounts our members follow. Nobody here follows anyone there (the
    server's `instance_follows` measure, read for the first choice's cost): none, without a request; else
    their followers, read within FOLLOWED_ACCOUNTS_PER_DM and FOLLOWER_PAGES_PER_DM, until the follows
    found are all our members have there."""
    if bucket in (LOCAL, EVERYWHERE) or not ctx.mastodon.can_read_admin:
        return None
    if impact is not None and impact.local_follows == 0:
        return Following(followed=0, members=0, read=len(accounts), asked=len(accounts))
    return ctx.mastodon.followed_by_members(
        list(accounts),
        impact.local_follows if impact is not None else None,
        defaults.FOLLOWED_ACCOUNTS_PER_DM,
        defaults.FOLLOWER_PAGES_PER_DM,
    )


def _by_number(account_id: str) -> tuple[int, str]:
    return (int(account_id) if account_id.isdigit() else 0, account_id)


def compose_alert(ctx: Context, alert: Alert) -> Message:
    """The alert job's DM: gather what it needs now (it may read Mastodon), render it."""
    bucket = alert.bucket
    remote = bucket not in (LOCAL, EVERYWHERE)
    details = None if alert.kind == "quiet" else window_details(ctx, bucket, alert.at)
    block = ctx.mastodon.block_for(bucket) if remote else None
    # Read now: what the DM says of the reported accounts is checked against its count of follows.
    impact = ctx.mastodon.impact(bucket, fresh=True) if remote else None
    wave = wave_of(ctx, bucket, alert, impact)
    text = render_alert(
        alert,
        details,
        block,
        impact,
        ctx.settings.section(ReportSurgeSettings),
        ctx.settings.instance_url,
        ctx.mastodon.can_read_admin,
        ctx.settings.template_dir,
        wave,
    )
    return Message(text, propose(alert, block, wave, impact))
