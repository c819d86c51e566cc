"""Prometheus metrics, through the official client in its multiprocess mode.

Web and workers are separate processes: each writes its counters to files (memory-mapped, a few
microseconds an increment) in PROMETHEUS_MULTIPROC_DIR, and GET /metrics adds them up. The directory is
`<TOCSIN_DATA_DIR>/metrics` unless PROMETHEUS_MULTIPROC_DIR is set; it must be chosen before the client
is imported (this module sets it first), be shared by the processes of one machine, and be emptied when
they all restart (`tocsin serve` does it; the systemd units' ExecStartPre does). What is state rather
than a count (backlog, queues, held announcements, the API's remaining calls) is read from Redis when
scraped, so it is right whichever process serves it and wherever the workers run.

Exposed by the web process at /metrics when TOCSIN_METRICS=true, or on a separate listener bound to
127.0.0.1:TOCSIN_METRICS_PORT, so the public webhook listener never shows it by accident.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(Path(os.environ.get("TOCSIN_DATA_DIR", "tocsin-data")) / "metrics")
)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

import redis  # noqa: E402  (the directory above must be set before prometheus_client is imported)
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from bot import defaults  # noqa: E402

WEBHOOKS = Counter("tocsin_webhooks", "Webhook deliveries answered, by event and HTTP status.", ["event", "status"])
SIGNATURE_FAILURES = Counter("tocsin_webhook_signature_failures", "Deliveries with a missing or wrong signature.")
DUPLICATES = Counter("tocsin_webhook_duplicates", "Deliveries of a body already accepted (Mastodon's retries).")
TOO_LARGE = Counter("tocsin_webhook_too_large", "Deliveries refused for a body over TOCSIN_MAX_BODY_BYTES.")
EVENTS = Counter("tocsin_events", "Events handled by each family, by outcome.", ["family", "outcome"])
SURGES = Counter("tocsin_surge_transitions", "Surges opened, escalated and closed, by detector.", ["detector", "kind"])
POSTS = Counter("tocsin_posts", "Statuses posted (or not), by kind of message and outcome.", ["kind", "outcome"])
API_CALLS = Counter("tocsin_mastodon_api_calls", "Calls to Mastodon's API, by class and status.", ["kind", "status"])
COMMANDS = Counter("tocsin_commands", "Moderators' DM commands, by outcome (ignored: not one).", ["outcome"])
SCAN_SECONDS = Histogram(
    "tocsin_scan_duration_seconds",
    "How long a peer scan took, from start to the moderators' DM.",
    buckets=(60, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
SCAN_PEERS = Counter("tocsin_scan_peers", "Peers read by scans: read, or unreadable by reason.", ["result"])


def api_kind(method: str) -> str:
    """A Mastodon.py method's endpoint class (a label with a handful of values)."""
    for prefix, kind in (
        ("admin_", "admin"),
        ("status", "statuses"),
        ("notifications", "notifications"),
        ("stream_", "streaming"),
        ("instance", "instance"),
        ("account", "accounts"),
    ):
        if method.startswith(prefix):
            return kind
    return "other"


class RedisState(Collector):
    """Gauges read from Redis at scrape time."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def collect(self) -> Iterator[Metric]:
        from rq import Queue

        from bot.events import backlog
        from bot.queue import SERIALIZER
        from bot.ratelimit import BUDGET_KEY

        waiting = backlog(self.redis)
        yield GaugeMetricFamily("tocsin_stream_backlog", "Events waiting in the stream.", value=waiting["stream"])
        yield GaugeMetricFamily("tocsin_stream_pending", "Events read but not acknowledged.", value=waiting["pending"])
        yield GaugeMetricFamily(
            "tocsin_stream_oldest_pending_seconds",
            "Age of the oldest event waiting (0: none).",
            value=_oldest_age(self.redis),
        )
        queued = GaugeMetricFamily("tocsin_queue_jobs", "Jobs waiting in each queue.", None, ["queue"])
        failed = GaugeMetricFamily(
            "tocsin_queue_failed_jobs", "Jobs in each queue's failed registry.", labels=["queue"]
        )
        for name in defaults.QUEUES:
            queue = Queue(name, connection=self.redis, serializer=SERIALIZER)
            queued.add_metric([name], queue.count)
            failed.add_metric([name], queue.failed_job_registry.count)
        yield queued
        yield failed
        from bot.families import registry  # (bot.families counts events here: imported when scraped)

        for family in registry().families:
            for name, documentation, value in family.gauges(self.redis) if family.gauges is not None else ():
                yield GaugeMetricFamily(name, documentation, value=value)
        yield GaugeMetricFamily(
            "tocsin_paused", "1 while the panic stop holds posts back.", value=int(self.redis.exists(defaults.PAUSED))
        )
        budget: dict[bytes, bytes] = self.redis.hgetall(BUDGET_KEY)  # type: ignore[assignment]
        remaining = GaugeMetricFamily(
            "tocsin_mastodon_ratelimit_remaining", "X-RateLimit-Remaining of Mastodon's last answer (-1: unknown)."
        )
        remaining.add_metric([], float(budget.get(b"remaining", b"-1")))
        yield remaining


def _oldest_age(connection: redis.Redis) -> float:
    first = connection.xrange(defaults.EVENT_STREAM, count=1)
    if not first:
        return 0.0
    entry_id = first[0][0]
    milliseconds = int((entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)).split("-")[0])
    return max(time.time() - milliseconds / 1000, 0.0)


def exposition(connection: redis.Redis) -> tuple[bytes, str]:
    """The /metrics body: every process's counters, and the state in Redis."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RedisState(connection))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_locally(port: int, redis_url: str) -> None:
    """TOCSIN_METRICS_PORT: /metrics on a listener of its own, on 127.0.0.1 only (a thread of the web
    process), for a Prometheus on the same machine or behind a tunnel."""
    from prometheus_client import start_http_server

    from bot.context import redis_from_url

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RedisState(redis_from_url(redis_url)))
    start_http_server(port, addr="127.0.0.1", registry=registry)
