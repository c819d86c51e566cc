"""The life of a surge, shared by every detector: open → escalate (→ escalate …) → quiet again.

A surge is a Redis hash per bucket (a server, "local", …) plus a sorted set of the open ones. Every
transition is a compare-and-set in Lua, so several workers that see the same wave raise one alert per
step. Whether a step is due is decided by pure functions: here the rule shared by the detectors that
compare a window with its baseline (`BaselineRatio`) and the step an event calls for (`decide`); in the
detectors, their thresholds and gates of their own.

`SurgeDetector` is the skeleton every detector fills in: it owns the surge state, the alert keys, the
alert job (queued once per step, sent once), and closing the surges gone quiet; a detector supplies how
long "quiet" is and `compose`, which gathers what its DM needs and renders it. Families hand their
detectors to the platform (bot/pipeline/families.py), which runs the quiet checks after each batch and on the sweep.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

import redis

from bot.core import defaults, metrics
from bot.core.config import Settings
from bot.core.scripting import NAMED_ARGUMENTS, Lua
from bot.mastodon.actions import Message
from bot.mastodon.context import Context, get_context
from bot.pipeline.events import current_clock
from bot.pipeline.families import registry
from bot.pipeline.queue import enqueue_once, fails_at_once_on_permanent_errors

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0
HANDLED_PREFIX = "tocsin:surge:handled:"  # + detector:bucket:surge id
MIN_RATE_SPAN = 900.0
"""A rate is never measured over less than 15 minutes: the first events of a wave would look infinite."""
MIN_BASELINE_SPAN = DAY
"""A baseline observed for less than a day counts as a day's worth, so a new install's rates stay sane."""


class Decision(StrEnum):
    OPEN = "open"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class SurgeState:
    surge_id: str
    opened_at: float
    alerts: int
    alerted_count: int  # the size measure (reports, sign-ups, flagged accounts) when last alerted
    alerted_rate: float  # per hour, when last alerted
    alerted_at: float
    last_event_at: float  # latest event that kept the surge going (the quiet period counts from it)

    @classmethod
    def from_redis(cls, flat: list[bytes] | dict[bytes, bytes]) -> SurgeState | None:
        fields = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        if not fields:
            return None
        text = {key.decode(): value.decode() for key, value in fields.items()}
        return cls(
            surge_id=text["surge_id"],
            opened_at=float(text["opened_at"]),
            alerts=int(text["alerts"]),
            alerted_count=int(text["alerted_count"]),
            alerted_rate=float(text["alerted_rate"]),
            alerted_at=float(text["alerted_at"]),
            last_event_at=float(text["last_event_at"]),
        )


def rate_per_hour(count: int, first: float | None, now: float, span: float = HOUR) -> float:
    """Events per hour over the last `span` seconds, or over the part of it the wave has lasted."""
    if count == 0 or first is None:
        return 0.0
    return count * HOUR / min(span, max(now - first, MIN_RATE_SPAN))


def escalates(state: SurgeState, count: int, rate: float, now: float, factor: float, cooldown_minutes: float) -> bool:
    """Another DM when both the size and the hourly rate reached `factor` times the last alert's, at most
    once per cooldown."""
    if now - state.alerted_at < cooldown_minutes * 60:
        return False
    return count >= factor * state.alerted_count and rate >= factor * state.alerted_rate


@dataclass(frozen=True)
class BaselineRatio:
    """When a count is a surge, for detectors that compare a sliding window with the long run before it.

    A window's count is a surge when it reaches `min_count` and `ratio` times what the baseline rate
    predicts for the window. The baseline rate is the count in the `baseline` seconds before the window
    over the part of them observed so far (a new install has not seen them all), and at least
    MIN_BASELINE_SPAN: a few events on a new install are not a rate. With `learning`, nothing is a surge
    before events have been observed that long. A family fills these from its settings; gates of its own
    (distinct accounts, one server dominating) it checks beside this."""

    window: float  # seconds
    baseline: float  # seconds before the window
    ratio: float
    min_count: int
    learning: float | None = None  # seconds; None: no learning time

    def baseline_span(self, observed_for: float) -> float:
        """Seconds the baseline count covers: the baseline window, or what has been observed of it."""
        return min(self.baseline, max(observed_for - self.window, MIN_BASELINE_SPAN))

    def expected_in_window(self, baseline_count: int, observed_for: float) -> float:
        """How many events the baseline rate predicts for one window. A negative count (a record script's
        "not counted": it sums the baseline only when the window reaches the minimum) predicts none."""
        return max(baseline_count, 0) / self.baseline_span(observed_for) * self.window

    def is_surge(self, count: int, baseline_count: int, observed_for: float) -> bool:
        if count < self.min_count:
            return False
        if self.learning is not None and observed_for < self.learning:
            return False
        return count >= self.ratio * self.expected_in_window(baseline_count, observed_for)


def decide(
    state: SurgeState | None, opens: bool, count: int, rate: float, now: float, factor: float, cooldown_minutes: float
) -> Decision | None:
    """The step one event calls for: with no surge open, open one when the detector's rule says so
    (`opens`); with one open, escalate when its size and hourly rate both grew (`escalates`)."""
    if state is None:
        return Decision.OPEN if opens else None
    return Decision.ESCALATE if escalates(state, count, rate, now, factor, cooldown_minutes) else None


def settling(state: SurgeState | None, now: float, cooldown_minutes: float) -> bool:
    """In the cooldown after a DM the surge learns its pace: its reference count and rate rise to the
    highest seen, so only growth beyond the wave's real pace escalates (the first minutes of a wave,
    or events processed out of order by several workers, under-measure it)."""
    return state is not None and 0 <= now - state.alerted_at < cooldown_minutes * 60


TRANSITION = Lua(__file__, "surge_transition", include=[NAMED_ARGUMENTS])
SETTLE = Lua(__file__, "surge_settle")
TOUCH_FUNCTION = Lua(__file__, "touch_surge_function")
"""A library: `touch_surge(key, open_key, ts, bucket)`, for detectors whose record script keeps the surge
going in the same call (include it)."""
TOUCH = Lua(__file__, "surge_touch", include=[TOUCH_FUNCTION])
CLOSE_QUIET = Lua(__file__, "surge_close_quiet")
OLDEST_TO_FORGET_FUNCTION = Lua(__file__, "oldest_to_forget_function")
"""A library: `oldest_to_forget(index, cutoff, cap, batch)`, for detectors that prune their bounded
time-scored indexes in their record script (include it)."""


@dataclass(frozen=True)
class Alert:
    """One step of a surge that is worth a DM: what every detector's template reads, with explicit fields.
    Travels to the alert job as JSON (`to_json` / `from_json`)."""

    kind: str  # open | escalate | quiet
    bucket: str  # a server, "local", "*"
    surge_id: str
    alert_no: int  # how many alerts this surge has had (this one included)
    at: float  # event time of the decision
    rate: float | None = None  # per hour, when decided (open, escalate)
    previous_count: int | None = None  # the size at the last alert (escalate)
    previous_rate: float | None = None
    count: int | None = None  # the window's count when decided (reports)
    last_hour: int | None = None
    baseline: int | None = None  # events in the baseline span (reports, sign-ups)
    expected: float | None = None  # what the baseline predicts for the window
    baseline_days: float | None = None  # the span the baseline was measured over
    opened_at: float | None = None  # quiet: the surge's life
    last_event_at: float | None = None
    alerted_count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        """Lenient: fields this version does not know (a job queued by another version) are ignored."""
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


@dataclass(frozen=True)
class SurgeDetector:
    """One detector's surges: `prefix` + bucket is a surge's hash, `open_key` the set of open ones, `name`
    names its alerts' message keys; `quiet_seconds` says how long below surge level closes a surge and
    `compose` writes an alert's DM (in the alert job: it may read Mastodon)."""

    name: str
    prefix: str
    open_key: str
    quiet_seconds: Callable[[Settings], float]
    compose: Callable[[Context, Alert], Message]

    def alert_key(self, alert: Alert) -> str:
        """The message key of one alert: one per surge and step (each escalation, the quiet one)."""
        step = "quiet" if alert.kind == "quiet" else str(alert.alert_no)
        return f"{self.name}:{alert.bucket}:{alert.surge_id}:{step}"

    def enqueue_alert(self, ctx: Context, alert: Alert) -> None:
        """Queue the alert job, unless it is queued already: the job id is derived from the message key,
        so a decision repeated by a replayed event costs nothing."""
        key = self.alert_key(alert)
        job_id = "alert-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        enqueue_once(
            ctx.redis,
            defaults.QUEUE_URGENT,
            send_alert,
            self.name,
            alert.to_json(),
            job_id=job_id,
            retry_delays=ctx.settings.retry_delays,
        )
        log.info("%s %s: %s alert queued", self.name, alert.bucket, alert.kind)

    def handled_key(self, bucket: str, surge_id: str) -> str:
        """Set when a moderator approved or dismissed one of this surge's proposals (bot/dm/commands/)."""
        return f"{HANDLED_PREFIX}{self.name}:{bucket}:{surge_id}"

    def send(self, ctx: Context, alert: Alert) -> list[str]:
        """The alert's DM to the moderators, posted once, with what it proposes (the thread's `approve`).
        A surge a moderator handled gets no escalation DMs."""
        handled = self.handled_key(alert.bucket, alert.surge_id)
        if alert.kind == "escalate" and ctx.redis.exists(handled):
            log.info("%s %s: escalation not sent, the surge was handled", self.name, alert.bucket)
            return []
        message = self.compose(ctx, alert)
        if alert.kind == "quiet" and not (message.proposal and message.proposal.items):
            return ctx.outbox.to_moderators(self.alert_key(alert), message.text)
        return ctx.outbox.propose(self.alert_key(alert), message, handles=handled)

    def close_quiet_surges(self, ctx: Context, now: float | None = None) -> int:
        """Close the surges below surge level for `quiet_seconds` (by the event clock, or by `now`, the
        sweep's wall clock, when no events arrive) and queue their "quiet again" alerts."""
        alerts = self.quiet_alerts(ctx.redis, now, self.quiet_seconds(ctx.settings))
        for alert in alerts:
            metrics.SURGES.labels(self.name, "quiet").inc()
            self.enqueue_alert(ctx, alert)
        return len(alerts)

    def key(self, bucket: str) -> str:
        return self.prefix + bucket

    def state(self, connection: redis.Redis, bucket: str) -> SurgeState | None:
        return SurgeState.from_redis(connection.hgetall(self.key(bucket)))  # type: ignore[arg-type]

    def transition(
        self,
        connection: redis.Redis,
        bucket: str,
        decision: Decision,
        trigger: str,
        now: float,
        count: int,
        rate: float,
        state: SurgeState | None,
    ) -> tuple[int, str] | None:
        """Make the transition; (alert number, surge id), or None when another worker made it first."""
        result = TRANSITION.call(
            connection,
            keys={"surge": self.key(bucket), "open_surges": self.open_key},
            args={
                "decision": decision.value,
                "trigger": trigger,
                "time": repr(now),
                "count": count,
                "rate": repr(rate),
                "alerts_seen": state.alerts if state else 0,
                "bucket": bucket,
            },
        )
        if not result:
            return None
        return int(result[0]), result[1].decode()

    def advance(
        self,
        connection: redis.Redis,
        bucket: str,
        decision: Decision | None,
        trigger: str,
        now: float,
        count: int,
        rate: float,
        state: SurgeState | None,
        cooldown_minutes: float,
    ) -> Alert | None:
        """Make the detector's decision (or, without one, let the surge learn its pace during the
        cooldown); return the alert when this call made a transition (a detector may add its figures)."""
        if decision is None:
            if state is not None and settling(state, now, cooldown_minutes):
                self.settle(connection, bucket, state, count, rate)
            return None
        made = self.transition(connection, bucket, decision, trigger, now, count, rate, state)
        if made is None:
            return None  # another worker made this transition first
        alert_no, surge_id = made
        metrics.SURGES.labels(self.name, decision.value).inc()
        return Alert(
            kind=decision.value,
            bucket=bucket,
            surge_id=surge_id,
            alert_no=alert_no,
            at=now,
            rate=round(rate, 1),
            previous_count=state.alerted_count if state else None,
            previous_rate=round(state.alerted_rate, 1) if state else None,
        )

    def settle(self, connection: redis.Redis, bucket: str, state: SurgeState, count: int, rate: float) -> None:
        SETTLE(connection, [self.key(bucket)], [state.alerts, count, repr(rate)])

    def touch(self, connection: redis.Redis, bucket: str, at: float) -> None:
        TOUCH(connection, [self.key(bucket), self.open_key], [repr(at), bucket])

    def quiet_alerts(self, connection: redis.Redis, now: float | None, quiet_seconds: float) -> list[Alert]:
        """Close the surges quiet for `quiet_seconds` by the event clock (or by `now`, the sweep's wall
        clock, when no events arrive); return their "quiet again" alerts."""
        clock = current_clock(connection) if now is None else max(now, current_clock(connection))
        if not clock:
            return []
        return [
            Alert(
                kind="quiet",
                bucket=bucket,
                surge_id=state.surge_id,
                alert_no=state.alerts,
                at=clock,
                opened_at=state.opened_at,
                last_event_at=state.last_event_at,
                alerted_count=state.alerted_count,
            )
            for bucket, state in self.close_quiet(connection, clock - quiet_seconds)
        ]

    def close_quiet(self, connection: redis.Redis, cutoff: float) -> list[tuple[str, SurgeState]]:
        """Close (and return) the surges whose last event is at or before `cutoff`."""
        closed = CLOSE_QUIET(connection, [self.open_key], [repr(cutoff), self.prefix])
        states = []
        for bucket, raw in zip(closed[::2], closed[1::2], strict=True):
            state = SurgeState.from_redis(raw)
            if state is not None:
                states.append((bucket.decode(), state))
        return states


@fails_at_once_on_permanent_errors
def send_alert(detector: str, alert: dict[str, Any]) -> list[str]:
    """RQ job (urgent queue): one detector's alert, composed and posted once."""
    return registry().detector(detector).send(get_context(), Alert.from_json(alert))
