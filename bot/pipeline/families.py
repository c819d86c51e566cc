"""Event families: what each handler module brings to the platform, and the registry that holds them.

The platform (bot/) never imports a handler. Each family — reports, sign-ups, spam waves, domain
blocks, peer scans, incidents — describes itself as a `Family`: the events it handles (and which of them
Mastodon sends as webhooks), what runs after each drained batch and on the periodic sweep, its CLI
commands, its web pages and its `tocsin doctor` lines. Families are found through the `tocsin.families`
entry point (pyproject.toml), so an operator's own package can add one; the worker, web process and CLI
receive the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from bot.core import metrics
from bot.core.config import Section
from bot.mastodon.ratelimit import BudgetExhausted

if TYPE_CHECKING:
    import click
    import redis
    from fastapi import FastAPI

    from bot.core.config import Settings
    from bot.mastodon.context import Context
    from bot.pipeline.replies import ReplyCommand
    from bot.pipeline.surges import SurgeDetector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tocsin.families"

Handler = Callable[["Context", dict[str, Any]], None]


class Rejected(ValueError):
    """Raised by a handler for an event whose shape it cannot use (no id, no time, not an object): the
    drain counts it per event name (REJECTED_EVENTS, shown by `tocsin doctor`) and moves on. Retrying
    it would not help, so it is not kept with the failed events, which are for handler bugs."""


@dataclass(frozen=True)
class Family:
    name: str
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    """Event name -> handler. A handler updates state in Redis and enqueues jobs; it never calls Mastodon.
    Several families may handle one event (each keeps its own state); they run in registry order."""
    detectors: Sequence[SurgeDetector] = ()
    """Its surge detectors: the platform closes their quiet surges after each batch and on the sweep, and
    sends their alerts."""
    webhooks: frozenset[str] = frozenset()
    """Which of those events Mastodon sends as admin webhooks (intake accepts only these; the others are
    put on the stream by Tocsin itself, like domain_block.changes)."""
    after_batch: Callable[[Context], object] | None = None
    """After each drained batch: checks that follow the event clock (surges gone quiet)."""
    sweep: Callable[[Context, float], object] | None = None
    """On the periodic sweep (once a minute, one worker): the same checks on the wall clock, polls, scans."""
    commands: Sequence[click.Command] = ()
    routes: Callable[[FastAPI, Settings], None] | None = None
    """Adds the family's web pages to the web process's app."""
    doctor: Callable[[Context], Iterable[tuple[bool, str]]] | None = None
    """Lines for `tocsin doctor`: (fine?, text)."""
    backfill: Callable[[Context, float | None], str] | None = None
    """`tocsin backfill`: seed the baseline from the admin API over so many days (None: the detector's
    own window); says what it recorded."""
    history: Callable[[Context, float], Iterable[dict[str, Any]]] | None = None
    """`tocsin replay`: its events since that time, read from the admin API, as the webhook events the
    handlers take (personal data not reduced yet: the replay reduces them as intake does)."""
    replies: Sequence[ReplyCommand] = ()
    """Commands moderators write in a DM (bot/dm/commands/), besides the platform's own."""
    status: Callable[[Context], Iterable[str]] | None = None
    """Lines for the `status` DM command: what is waiting (held announcements, open incidents)."""
    gauges: Callable[[redis.Redis], Iterable[tuple[str, str, float]]] | None = None
    """Its state for /metrics, read from Redis when scraped: (metric name, help, value)."""
    ephemeral_keys: tuple[str, ...] = ()
    """Prefixes of its Redis keys that `tocsin export` leaves out: caches, claims, work in flight."""
    settings: tuple[type[Section], ...] = ()
    """Its settings sections (each with its own TOCSIN_<PREFIX>_ variables), checked at start-up."""


@dataclass(frozen=True)
class Registry:
    families: tuple[Family, ...]

    @cached_property
    def handlers(self) -> dict[str, list[tuple[str, Handler]]]:
        """Event name -> (family name, handler), in registry order."""
        found: dict[str, list[tuple[str, Handler]]] = {}
        for family in self.families:
            for event, handler in family.handlers.items():
                found.setdefault(event, []).append((family.name, handler))
        return found

    @property
    def webhook_events(self) -> frozenset[str]:
        return frozenset().union(*(family.webhooks for family in self.families))

    def dispatch(self, ctx: Context, event: dict[str, Any]) -> None:
        """Every family's handler of this event, counted per family (tocsin_events_total)."""
        for family, handler in self.handlers.get(str(event.get("event")), ()):
            try:
                handler(ctx, event)
            except Rejected:
                metrics.EVENTS.labels(family, "rejected").inc()
                raise
            except Exception:
                metrics.EVENTS.labels(family, "failed").inc()
                raise
            metrics.EVENTS.labels(family, "processed").inc()

    @property
    def sections(self) -> list[type[Section]]:
        found = [section for family in self.families for section in family.settings]
        return list(dict.fromkeys(found))  # a shared section (handlers.shared) once

    def check_settings(self, settings: Settings) -> None:
        """Reads every family's section now, so a bad value fails at start-up (ConfigError names it)."""
        for section in self.sections:
            settings.section(section)

    def detector(self, name: str) -> SurgeDetector:
        found = [detector for family in self.families for detector in family.detectors if detector.name == name]
        if not found:
            raise LookupError(f"no surge detector {name!r} is installed")
        return found[0]

    def after_batch(self, ctx: Context) -> None:
        for family in self.families:
            for detector in family.detectors:
                detector.close_quiet_surges(ctx)
            if family.after_batch is not None:
                family.after_batch(ctx)

    def sweep(self, ctx: Context, now: float) -> None:
        """Every family's periodic work. One family's failure does not stop the others' (a scan that spent
        the API share must not hold up announcements); the first failure is raised at the end, so the
        sweep job shows as failed. A spent API share is no failure: that work waits for the next sweep."""
        failures: list[Exception] = []
        for family in self.families:
            try:
                for detector in family.detectors:
                    detector.close_quiet_surges(ctx, now)
                if family.sweep is not None:
                    family.sweep(ctx, now)
            except BudgetExhausted as spent:
                log.info("sweep: %s waits for the API share (%.0f s)", family.name, spent.wait)
            except Exception as error:
                log.exception("sweep: %s failed", family.name)
                failures.append(error)
        if failures:
            raise failures[0]


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The installed families (entry point group `tocsin.families`: a Family, or a list of them)."""
    families: list[Family] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda item: item.name):
        loaded = point.load()
        families.extend(loaded if isinstance(loaded, list | tuple) else [loaded])
    if not families:
        log.warning("no event families installed (entry point group %s): nothing will be detected", ENTRY_POINT_GROUP)
    names = [family.name for family in families]
    if len(set(names)) != len(names):
        raise ValueError(f"two event families share a name: {sorted(names)}")
    return Registry(tuple(families))
