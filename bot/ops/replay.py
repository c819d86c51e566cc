"""`tocsin replay`: what Tocsin would have said over an instance's past, scored against what its
moderators did, so a team can judge it and pick thresholds on its own history.

One path, not a second implementation: the history (each family's `history` reader, the admin API) is
reduced as intake reduces it, then handed event by event, in time order, to `Registry.dispatch` — the
very call the drain makes — on a throwaway Redis. The event clock advances per batch as the drain
advances it, `Registry.after_batch` closes quiet surges as after each drained batch, and the sweep's
"quiet again" check runs at the moment it would have fallen due. Alerts are the jobs the detectors
queued (`send_alert`); each is composed by its detector's own `compose` (which renders the DM), never
sent. The replay's Mastodon has no client: nothing can be posted or written, and blocks come from the
history as they stood at the alert's time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
import redis

from bot.core import defaults
from bot.core.config import ENV_PREFIX, ConfigError, Settings, load_settings
from bot.core.privacy import reduce_event
from bot.mastodon.actions import is_staff
from bot.mastodon.client import DomainBlock, Impact, MastodonLink, covering_block
from bot.mastodon.context import Context, redis_from_url
from bot.ops.embedded_redis import EmbeddedRedis, running_embedded_url
from bot.pipeline.events import advance_clock, parse_time
from bot.pipeline.families import Registry, Rejected, registry
from bot.pipeline.queue import queue
from bot.pipeline.surges import Alert, send_alert

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SEND_ALERT = f"{send_alert.__module__}.{send_alert.__name__}"
LOOK_SECONDS = 3600.0
"""While no surge is open, the replay looks for new ones once per hour of event time (or per quiet period,
if a detector's is set shorter), so every quiet-again is still closed at its time."""
LOCAL_BUCKETS = frozenset({"local", "*"})
"""Buckets that are no server: alerts about them are listed, not scored against domain blocks."""


# --- The history: read once, kept reduced ----------------------------------------------------------


@dataclass(frozen=True)
class BlockRecord:
    """A domain block as the admin API lists it now (blocks lifted since are not in the listing)."""

    domain: str
    severity: str
    created_at: float


@dataclass(frozen=True)
class History:
    events: list[dict[str, Any]]  # webhook events, personal data reduced, in time order
    blocks: list[BlockRecord]
    since: float
    read_at: float
    pii_key: str  # the key the sign-up networks were hashed with (the same hashes on every run)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": CACHE_VERSION, **asdict(self)}
        temporary = path.with_suffix(".tmp")
        temporary.touch(mode=0o600)
        temporary.write_bytes(orjson.dumps(data))
        temporary.replace(path)

    def starting(self, start: float) -> History:
        """The part of the history from `start` on."""
        events = [event for event in self.events if event_time(event) >= start]
        return History(events, self.blocks, start, self.read_at, self.pii_key)

    @classmethod
    def load(cls, path: Path) -> History | None:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return None
        return cls(
            events=data["events"],
            blocks=[BlockRecord(**block) for block in data["blocks"]],
            since=float(data["since"]),
            read_at=float(data["read_at"]),
            pii_key=str(data["pii_key"]),
        )


def event_time(event: dict[str, Any]) -> float:
    return parse_time(event.get("created_at")) or 0.0


def _order(event: dict[str, Any]) -> tuple[float, str, int, str]:
    obj = event.get("object") or {}
    raw_id = str(obj.get("id", "")) if isinstance(obj, dict) else ""
    return (event_time(event), str(event.get("event")), int(raw_id) if raw_id.isdigit() else 0, raw_id)


def download(ctx: Context, families: Registry, since: float) -> History:
    """Read the history through the admin API as bulk work (paced to Tocsin's share of the rate limit,
    leaving room for the live workers), reduce it as intake does, order it by event time."""
    key = secrets.token_bytes(32)
    events = []
    with ctx.mastodon.bulk():
        for family in families.families:
            if family.history is not None:
                events += [reduce_event(event, key) for event in family.history(ctx, since)]
        blocks = [
            BlockRecord(str(block["domain"]), str(block["severity"]), _block_time(block.get("created_at")))
            for block in ctx.mastodon.all_domain_blocks()
        ]
    events.sort(key=_order)
    blocks.sort(key=lambda block: (block.created_at, block.domain))
    return History(events, blocks, since, time.time(), key.hex())


def _block_time(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return parse_time(value) or 0.0


# --- Replay: the live handlers on a throwaway Redis, by event time ----------------------------------


class ReplayLink(MastodonLink):
    """The instance as it stood at `now` in the history. No client: nothing is read, posted or written."""

    def __init__(self, settings: Settings, connection: redis.Redis, blocks: Sequence[BlockRecord]) -> None:
        super().__init__(settings, connection, None, is_staff=is_staff)
        self.blocks = blocks
        self.now = 0.0

    @property
    def can_read_admin(self) -> bool:
        return True  # the history holds the blocks: the DM says whether the server was limited then

    def known_bot_account_id(self) -> str | None:
        return None

    def refresh_bot_account_id(self) -> str | None:
        return None

    def bot_account_id(self) -> str | None:
        return None

    def moderators(self) -> list[str]:
        return list(self.settings.moderators)

    def max_characters(self) -> int:
        return defaults.DEFAULT_MAX_CHARACTERS

    def domain_blocks(self) -> list[DomainBlock]:
        return [
            DomainBlock(block.domain, block.severity, False, False, _iso(block.created_at))
            for block in self.blocks
            if block.created_at <= self.now
        ]

    def block_for(self, domain: str) -> DomainBlock | None:
        return covering_block(domain, {block.domain: block for block in self.domain_blocks()})

    def impact(self, domain: str, fresh: bool = False) -> Impact | None:
        return None  # Mastodon's measures are today's totals, not the past's


@dataclass(frozen=True)
class ReplayedAlert:
    detector: str
    kind: str  # open | escalate | quiet
    bucket: str
    at: float
    alert_no: int
    text: str
    proposals: tuple[str, ...]


@dataclass(frozen=True)
class ReplayCounts:
    events: int = 0
    rejected: int = 0
    failed: int = 0


def replay(
    families: Registry, settings: Settings, connection: redis.Redis, history: History
) -> tuple[list[ReplayedAlert], ReplayCounts]:
    """Run the history through the installed families' handlers, as the drain and the sweep would have;
    the alerts they would have sent, in order. `connection` is emptied first: a throwaway database."""
    connection.flushdb()
    connection.set(defaults.PII_KEY, history.pii_key)
    ctx = Context(settings, connection)
    link = ReplayLink(settings, connection, history.blocks)
    ctx.mastodon = link
    detectors = [detector for family in families.families for detector in family.detectors]
    queues = [queue(name, connection) for name in defaults.QUEUES]
    alerts: list[ReplayedAlert] = []
    counts = {"events": 0, "rejected": 0, "failed": 0}

    def collect() -> None:
        """Compose the alerts queued so far, as the alert job would (the DM is rendered, not sent)."""
        for jobs in queues:
            for job in jobs.get_jobs():
                if job.func_name == SEND_ALERT:
                    name, raw = job.args
                    alert = Alert.from_json(raw)
                    detector = families.detector(name)
                    link.now = alert.at
                    message = detector.compose(ctx, alert)
                    proposed = tuple(item.label for item in message.proposal.items) if message.proposal else ()
                    alerts.append(
                        ReplayedAlert(name, alert.kind, alert.bucket, alert.at, alert.alert_no, message.text, proposed)
                    )
            jobs.empty()  # type: ignore[no-untyped-call]  # other families' jobs (fetches, polls) are not replayed

    def look() -> tuple[float, bool, bool]:
        """In one round trip: when the next quiet period runs out, whether a surge is open, whether jobs wait."""
        pipe = connection.pipeline(transaction=False)
        for detector in detectors:
            pipe.zrange(detector.open_key, 0, 0, withscores=True)
        for jobs in queues:
            pipe.llen(jobs.key)
        answers = pipe.execute()
        oldest = answers[: len(detectors)]
        due = min(
            (
                float(found[0][1]) + detector.quiet_seconds(settings)
                for detector, found in zip(detectors, oldest, strict=True)
                if found
            ),
            default=math.inf,
        )
        return due, any(oldest), any(answers[len(detectors) :])

    def sweep_until(moment: float) -> None:
        """The sweep's check, at the time each quiet period ran out (the sweep runs every minute)."""
        advance_clock(connection, latest)
        for detector in detectors:
            quiet = detector.quiet_seconds(settings)
            for _ in range(1000):  # each round closes a surge or moves a stale score forward
                oldest = connection.zrange(detector.open_key, 0, 0, withscores=True)
                due = float(oldest[0][1]) + quiet if oldest else math.inf
                if due > moment:
                    break
                detector.close_quiet_surges(ctx, due)
        collect()

    def end_batch() -> tuple[float, bool]:
        """What the drain does after a batch; when the sweep next has something to close, whether a surge
        is open."""
        due, surging, queued = look()
        if surging:  # the clock is read only to close open surges: advanced when one is open
            advance_clock(connection, latest)
            families.after_batch(ctx)
            due, surging, queued = look()
        if queued:
            collect()
        return due, surging

    # While no surge is open, after_batch has nothing to close, and a surge that opens cannot fall quiet
    # before its quiet period: looking once per LOOK_SECONDS of event time (or DRAIN_BATCH events) then
    # finds it in time. An alert composed later reads the same: its window and the blocks are read as
    # of its own time. While a surge is open, every batch ends as the drain ends it.
    look_seconds = min([LOOK_SECONDS, *(detector.quiet_seconds(settings) for detector in detectors)])
    batch, first, latest, next_due, surging, looked_at, unlooked = 0, 0.0, 0.0, math.inf, False, 0.0, 0
    for event in history.events:
        at = event_time(event)
        if batch and (batch >= defaults.DRAIN_BATCH or at - first > defaults.REPLAY_SWEEP_SECONDS):
            batch = 0
            if surging or unlooked >= defaults.DRAIN_BATCH or at - looked_at >= look_seconds:
                next_due, surging = end_batch()
                looked_at, unlooked = at, 0
        if not batch:
            if next_due <= at:
                sweep_until(at)
            first = at
        try:
            families.dispatch(ctx, event)
        except Rejected:
            counts["rejected"] += 1
        except redis.RedisError:
            raise
        except Exception as error:  # as the drain: a bad event does not stop the ones behind it
            counts["failed"] += 1
            log.warning("replay: an event failed in its handler: %s", type(error).__name__)
        counts["events"] += 1
        batch += 1
        unlooked += 1
        latest = max(latest, at)
    end_batch()
    sweep_until(history.read_at)
    alerts.sort(key=lambda alert: (alert.at, alert.detector, alert.bucket, alert.alert_no, alert.kind))
    return alerts, ReplayCounts(**counts)


# --- Scoring against what moderators did -----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one alert compares with the moderators' blocks."""

    verdict: str  # hit | false alarm | already blocked | not scored
    lead: float | None = None  # seconds from the alert to the block (hits)
    block: BlockRecord | None = None


@dataclass(frozen=True)
class Miss:
    block: BlockRecord
    reports: int  # against the server in the REPLAY_MISS_HOURS before the block


@dataclass
class DetectorScore:
    name: str
    alerts: list[tuple[ReplayedAlert, Outcome]] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(outcome.verdict == verdict for _alert, outcome in self.alerts)

    @property
    def leads(self) -> list[float]:
        return sorted(outcome.lead for _alert, outcome in self.alerts if outcome.lead is not None)

    def summary(self) -> dict[str, Any]:
        kinds = [alert.kind for alert, _outcome in self.alerts]
        leads = self.leads
        return {
            "alerts": kinds.count("open"),
            "escalations": kinds.count("escalate"),
            "quiet_again": kinds.count("quiet"),
            "proposals": sum(bool(alert.proposals) for alert, _outcome in self.alerts),
            "hits": self.count("hit"),
            "false_alarms": self.count("false alarm"),
            "already_blocked": self.count("already blocked"),
            "not_scored": sum(o.verdict == "not scored" for a, o in self.alerts if a.kind == "open"),
            "misses": len(self.misses),
            "median_lead_seconds": leads[len(leads) // 2] if leads else None,
        }


def is_server(bucket: str) -> bool:
    return bucket not in LOCAL_BUCKETS and "." in bucket


def covers(block: BlockRecord, domain: str) -> bool:
    """Mastodon's rule: a block covers its domain and every subdomain."""
    return domain == block.domain or domain.endswith("." + block.domain)


def judge(alert: ReplayedAlert, blocks: Sequence[BlockRecord], within: float) -> Outcome:
    if alert.kind != "open" or not is_server(alert.bucket):
        return Outcome("not scored")
    covering = [block for block in blocks if covers(block, alert.bucket)]
    if any(block.created_at <= alert.at for block in covering):
        return Outcome("already blocked")
    after = [block for block in covering if block.created_at - alert.at <= within]
    if not after:
        return Outcome("false alarm")
    first = min(after, key=lambda block: block.created_at)
    return Outcome("hit", first.created_at - alert.at, first)


def report_domain(event: dict[str, Any]) -> str | None:
    """The server a report is about (its target account's domain; None: a local account)."""
    obj = event.get("object")
    target = obj.get("target_account") if isinstance(obj, dict) else None
    domain = target.get("domain") if isinstance(target, dict) else None
    return str(domain).lower() if domain else None


def find_misses(history: History, alerted: Iterable[ReplayedAlert]) -> list[Miss]:
    """Blocks made in the replayed span after a burst of reports against the server, with no alert
    about it in the REPLAY_ACTION_DAYS before."""
    lookback = defaults.REPLAY_MISS_HOURS * 3600
    opened = [alert for alert in alerted if alert.kind == "open" and is_server(alert.bucket)]
    reports = [
        (event_time(event), domain)
        for event in history.events
        if str(event.get("event", "")).startswith("report.") and (domain := report_domain(event))
    ]
    misses = []
    for block in history.blocks:
        if not history.since <= block.created_at <= history.read_at:
            continue
        start = block.created_at - lookback
        burst = sum(1 for at, domain in reports if covers(block, domain) and start <= at <= block.created_at)
        if burst < defaults.REPLAY_MISS_REPORTS:
            continue
        warned = any(
            covers(block, alert.bucket)
            and block.created_at - defaults.REPLAY_ACTION_DAYS * 86400 <= alert.at <= block.created_at
            for alert in opened
        )
        if not warned:
            misses.append(Miss(block, burst))
    return misses


def score(
    families: Registry, history: History, alerts: Sequence[ReplayedAlert], within_days: float
) -> list[DetectorScore]:
    """Per detector: each alert's outcome; misses go to the detectors of the families that take reports."""
    within = within_days * 86400
    scores = {
        detector.name: DetectorScore(detector.name)
        for family in families.families
        for detector in family.detectors
        if family.history is not None or any(a.detector == detector.name for a in alerts)
    }
    for alert in alerts:
        scores.setdefault(alert.detector, DetectorScore(alert.detector)).alerts.append(
            (alert, judge(alert, history.blocks, within))
        )
    report_families = {name for name, _handler in families.handlers.get("report.created", [])}
    report_detectors = [
        detector.name for family in families.families if family.name in report_families for detector in family.detectors
    ]
    for name in report_detectors:
        own = [alert for alert in alerts if alert.detector == name]
        scores[name].misses = find_misses(history, own)
    return list(scores.values())


# --- Output ----------------------------------------------------------------------------------------


def when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """`2 h 10 min`, `40 min`, `3 d 4 h`."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def describe_outcome(alert: ReplayedAlert, outcome: Outcome, within_days: float) -> str:
    action = {"silence": "limited", "suspend": "suspended"}
    if outcome.verdict == "hit" and outcome.block is not None and outcome.lead is not None:
        done = action.get(outcome.block.severity, "blocked")
        return f"hit: alerted {duration(outcome.lead)} before you {done} {outcome.block.domain}"
    if outcome.verdict == "false alarm":
        return f"likely false alarm: no block of {alert.bucket} within {within_days:g} days"
    if outcome.verdict == "already blocked":
        return f"{alert.bucket} was already blocked"
    return ""


def render_run(label: str, scores: Sequence[DetectorScore], within_days: float, show_texts: bool) -> list[str]:
    lines = [f"=== {label} ===" if label else "=== current settings ==="]
    for detector in scores:
        lines.append("")
        lines.append(f"--- {detector.name} ---")
        for alert, outcome in detector.alerts:
            verdict = describe_outcome(alert, outcome, within_days)
            lines.append(f"{when(alert.at)}  {alert.kind:<8}  {alert.bucket}" + (f"  → {verdict}" if verdict else ""))
            for proposal in alert.proposals:
                lines.append(f"    would have proposed: {proposal}")
            if show_texts:
                lines.append("    [replay: not sent]")
                lines += ["    | " + line if line else "    |" for line in alert.text.splitlines()]
        for miss in detector.misses:
            lines.append(
                f"{when(miss.block.created_at)}  MISSED    {miss.block.domain}  → you blocked it after "
                f"{miss.reports} reports in {defaults.REPLAY_MISS_HOURS:g} h, with no alert"
            )
        lines.append(summary_line(detector))
    return lines


def summary_line(detector: DetectorScore) -> str:
    figures = detector.summary()
    leads = ", ".join(duration(lead) for lead in detector.leads)
    return (
        f"{detector.name}: {figures['alerts']} alerts ({figures['escalations']} escalations, "
        f"{figures['quiet_again']} quiet-agains, {figures['proposals']} with proposals) · "
        f"{figures['hits']} hits{f' (lead {leads})' if leads else ''} · {figures['false_alarms']} likely false alarms"
        f" · {figures['misses']} misses"
        + (f" · {figures['already_blocked']} already blocked" if figures["already_blocked"] else "")
        + (f" · {figures['not_scored']} not scored" if figures["not_scored"] else "")
    )


def comparison_table(runs: Sequence[tuple[str, Sequence[DetectorScore]]]) -> list[str]:
    """Side by side: one row per settings variant and detector."""
    header = ("settings", "detector", "alerts", "hits", "false alarms", "misses", "median lead")
    rows = [header]
    for label, scores in runs:
        for detector in scores:
            figures = detector.summary()
            lead = figures["median_lead_seconds"]
            rows.append(
                (
                    label or "current",
                    detector.name,
                    str(figures["alerts"]),
                    str(figures["hits"]),
                    str(figures["false_alarms"]),
                    str(figures["misses"]),
                    duration(lead) if lead is not None else "-",
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def as_json(
    history: History, runs: Sequence[tuple[dict[str, str], Sequence[DetectorScore]]], within_days: float
) -> str:
    def alert_json(alert: ReplayedAlert, outcome: Outcome) -> dict[str, Any]:
        return {
            "at": _iso(alert.at),
            "kind": alert.kind,
            "bucket": alert.bucket,
            "alert_no": alert.alert_no,
            "verdict": outcome.verdict,
            "lead_seconds": outcome.lead,
            "blocked": outcome.block.domain if outcome.block else None,
            "proposals": list(alert.proposals),
            "text": alert.text,
        }

    return json.dumps(
        {
            "replay": True,
            "since": _iso(history.since),
            "read_at": _iso(history.read_at),
            "events": len(history.events),
            "domain_blocks": len(history.blocks),
            "action_days": within_days,
            "runs": [
                {
                    "settings": overrides,
                    "detectors": {
                        detector.name: {
                            "summary": detector.summary(),
                            "alerts": [alert_json(alert, outcome) for alert, outcome in detector.alerts],
                            "misses": [
                                {"domain": m.block.domain, "blocked_at": _iso(m.block.created_at), "reports": m.reports}
                                for m in detector.misses
                            ],
                        }
                        for detector in scores
                    },
                }
                for overrides, scores in runs
            ],
        },
        ensure_ascii=False,
        indent=1,
        allow_nan=False,
    )


# --- The command ------------------------------------------------------------------------------------

DURATION_UNITS = {"d": 86400.0, "w": 7 * 86400.0, "h": 3600.0}


def parse_since(text: str) -> float:
    """`90d`, `12w`, `36h` (a bare number is days) as seconds."""
    text = text.strip().lower()
    unit = DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        value = float(number) * (unit or 86400.0)
    except ValueError:
        raise click.BadParameter(f"{text!r}: write it like 90d, 12w or 36h") from None
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{text!r}: must be a positive duration")
    return value


def detector_setting_names() -> dict[str, str]:
    """TOCSIN_REPORT_RATIO -> report_ratio, for every family's setting (their sections)."""
    return {name: field for section in registry().sections for name, field in section.variable_names().items()}


def variants(assignments: Sequence[str]) -> list[dict[str, str]]:
    """`--set TOCSIN_REPORT_RATIO=3,4,6 --set TOCSIN_REPORT_MIN_REPORTS=10` → every combination."""
    known = detector_setting_names()
    choices: list[tuple[str, list[str]]] = []
    for assignment in assignments:
        name, sep, values = assignment.partition("=")
        name = name.strip().upper()
        if not name.startswith(ENV_PREFIX):
            name = ENV_PREFIX + name
        if not sep or name not in known:
            raise click.BadParameter(
                f"{assignment!r}: write NAME=VALUE[,VALUE…] with a detector setting, e.g. TOCSIN_REPORT_RATIO=3,4,6",
                param_hint="--set",
            )
        listed = [value.strip() for value in values.split(",") if value.strip()]
        if not listed:
            raise click.BadParameter(f"{assignment!r}: no value", param_hint="--set")
        choices.append((name, listed))
    combinations: list[dict[str, str]] = [{}]
    for name, listed in choices:
        combinations = [{**done, name: value} for done in combinations for value in listed]
    return combinations


def _settings_for(overrides: dict[str, str]) -> Settings:
    known = detector_setting_names()
    try:
        settings = load_settings(**{known[name]: value for name, value in overrides.items()})
        registry().check_settings(settings)
        return settings
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _live_redis(settings: Settings) -> redis.Redis | None:
    url = settings.redis_url or running_embedded_url(settings.data_dir / "redis")
    return redis_from_url(url) if url else None


def _history(settings: Settings, since_seconds: float, refresh: bool, families: Registry) -> tuple[History, Path]:
    """The cached history if it reaches back far enough, else read through the admin API (and cached)."""
    path = settings.data_dir / defaults.REPLAY_CACHE_FILE
    since = time.time() - since_seconds
    cached = None if refresh else History.load(path)
    if cached is not None and cached.since <= since + defaults.REPLAY_SWEEP_SECONDS:
        click.echo(f"history read {when(cached.read_at)}, from {path} (--refresh reads it again)", err=True)
        return cached.starting(cached.read_at - since_seconds), path
    if settings.access_token is None or settings.mastodon_url is None:
        raise click.ClickException(
            "replay reads the admin API once: set TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN "
            "(scopes admin:read:reports, admin:read:accounts, admin:read:domain_blocks)"
        )
    live = _live_redis(settings)
    if live is None:
        raise click.ClickException(
            "reading the history is paced by the API budget the workers share: set TOCSIN_REDIS_URL "
            "or start `tocsin serve` (or `tocsin redis`)"
        )
    ctx = Context(settings, live)  # only the rate-limit budget lives there: nothing else is written
    ctx.mastodon.wait_out_spent_share(_wait_for_reset)
    click.echo(f"reading {duration(since_seconds)} of history through the admin API…", err=True)
    history = download(ctx, families, since)
    history.save(path)
    click.echo(f"{len(history.events)} events and {len(history.blocks)} domain blocks cached in {path}", err=True)
    # The window as the cached path gives it (from the reading's time): a second run says the same.
    return history.starting(history.read_at - since_seconds), path


def _wait_for_reset(seconds: float) -> None:
    click.echo(f"Tocsin's share of the API rate limit is spent; waiting {seconds:.0f} s", err=True)
    time.sleep(seconds)


@click.command("replay")
@click.option("--since", "since_text", default=f"{defaults.REPLAY_SINCE_DAYS:g}d", show_default=True,
              help="How far back: 90d, 12w, 36h.")  # fmt: skip
@click.option("--set", "assignments", multiple=True, metavar="NAME=V1[,V2…]",
              help="A detector setting to try (several values: each replayed, side by side). Repeatable.")  # fmt: skip
@click.option("--within", "within_days", type=click.FloatRange(min=0, min_open=True),
              default=defaults.REPLAY_ACTION_DAYS, show_default=True,
              help="Days after an alert in which a block of that server counts as a hit.")  # fmt: skip
@click.option("--json", "as_json_output", is_flag=True, help="One JSON document, for scripts.")
@click.option("--brief", is_flag=True, help="Without the DMs' text.")
@click.option("--refresh", is_flag=True, help="Read the history from the instance again, not from the cache.")
@click.option("--redis-url", default=None,
              help="A Redis database to replay in (emptied first), instead of a throwaway embedded one.")  # fmt: skip
def replay_command(
    since_text: str,
    assignments: tuple[str, ...],
    within_days: float,
    as_json_output: bool,
    brief: bool,
    refresh: bool,
    redis_url: str | None,
) -> None:
    """What Tocsin would have said over this instance's past, scored against what moderators did.
    Nothing is sent and nothing is written to the instance or to the live Redis."""
    since_seconds = parse_since(since_text)
    runs_settings = [(overrides, _settings_for(overrides)) for overrides in variants(assignments)]
    base = runs_settings[0][1]
    if redis_url is not None and base.redis_url is not None and _same_database(redis_url, base.redis_url):
        raise click.ClickException("--redis-url names the live database (TOCSIN_REDIS_URL), which replay would empty")
    history, cache = _history(base, since_seconds, refresh, registry())
    runs: list[tuple[dict[str, str], list[DetectorScore]]] = []
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tocsin-replay-")))
            server = stack.enter_context(EmbeddedRedis(directory / "redis", persistent=False))
            redis_url, separate_databases = server.url, True
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tocsin-replay-")))
            separate_databases = False
        tasks = [(redis_url, overrides, cache, history.since, within_days) for overrides, _settings in runs_settings]
        processes = min(len(tasks), os.cpu_count() or 1) if separate_databases else 1
        for scores, counts in _in_children(tasks, processes, directory / "metrics", separate_databases):
            if counts.failed or counts.rejected:
                click.echo(f"{counts.failed} events failed and {counts.rejected} were rejected by a handler", err=True)
            runs.append((tasks[len(runs)][1], scores))
    if as_json_output:
        click.echo(as_json(history, runs, within_days))
        return
    click.echo(
        f"Replay (nothing was sent): {len(history.events)} events from {when(history.since)} to "
        f"{when(history.read_at)}, {len(history.blocks)} domain blocks. A hit: a block within {within_days:g} days "
        "after the alert."
    )
    for overrides, scores in runs:
        click.echo("")
        label = " ".join(f"{name}={value}" for name, value in overrides.items())
        click.echo("\n".join(render_run(label, scores, within_days, show_texts=not brief)))
    if len(runs) > 1:
        click.echo("")
        labels = [" ".join(f"{name}={value}" for name, value in overrides.items()) for overrides, _ in runs]
        click.echo("\n".join(comparison_table(list(zip(labels, [scores for _, scores in runs], strict=True)))))


Task = tuple[str, dict[str, str], Path, float, float]  # Redis URL, settings, cache, start, action days

_database: int | None = None
"""The throwaway server's database this child replays in (each child its own)."""


def _take_database(numbers: Any) -> None:
    global _database
    _database = int(numbers.get())


def _run_variant(task: Task) -> tuple[list[DetectorScore], ReplayCounts]:
    """One settings variant, in a child process: its metrics go to a throwaway directory, never into the
    files the live processes' /metrics adds up (the replayed events and surges are no live counts)."""
    redis_url, overrides, cache, start, within_days = task
    loaded = History.load(cache)
    if loaded is None:
        raise RuntimeError(f"the replay cache {cache} could not be read")
    history = loaded.starting(start)
    if _database is not None:
        redis_url = redis_url.rsplit("/", 1)[0] + f"/{_database}"
    families = registry()
    connection = redis_from_url(redis_url)
    try:
        alerts, counts = replay(families, _settings_for(overrides), connection, history)
        connection.flushdb()
    finally:
        connection.close()
    return score(families, history, alerts, within_days), counts


def _in_children(
    tasks: list[Task], processes: int, metrics: Path, separate_databases: bool
) -> list[tuple[list[DetectorScore], ReplayCounts]]:
    """The variants side by side on the machine's cores, each child in its own database of the throwaway
    server (or, one at a time, in the database --redis-url names)."""
    context = multiprocessing.get_context("spawn")
    metrics.mkdir(parents=True, exist_ok=True)
    live_metrics = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)  # what the children inherit
    try:
        numbers = context.Queue()
        for number in range(processes):
            numbers.put(number)
        initializer = _take_database if separate_databases else None
        with context.Pool(
            processes, initializer=initializer, initargs=(numbers,) if separate_databases else ()
        ) as pool:
            return pool.map(_run_variant, tasks, chunksize=1)
    finally:
        if live_metrics is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = live_metrics


def _same_database(one: str, other: str) -> bool:
    def where(url: str) -> tuple[object, ...]:
        kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs  # connects to nothing
        return (kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0), kwargs.get("path"))

    return where(one) == where(other)
