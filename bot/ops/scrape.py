"""What GET /metrics shows: every process's counters (bot/core/metrics.py defines them) and the state read
from Redis at scrape time (backlog, queues, failed jobs, the families' gauges, paused, the API's
remaining calls) — right whichever process serves it and wherever the workers run.

Apart from bot/core/metrics.py, which every module counts into, so that reading the platform's state here
never makes the counters reach back into the modules that count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

# isort: off
from bot.core import metrics  # noqa: F401  (first: it sets the multiprocess directory prometheus_client reads)

# isort: on
import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue

from bot.core import defaults
from bot.mastodon.context import redis_from_url
from bot.mastodon.ratelimit import BUDGET_KEY
from bot.pipeline.events import backlog
from bot.pipeline.families import registry
from bot.pipeline.queue import SERIALIZER


class RedisState(Collector):
    """Gauges read from Redis at scrape time."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def collect(self) -> Iterator[Metric]:
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
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RedisState(redis_from_url(redis_url)))
    start_http_server(port, addr="127.0.0.1", registry=registry)
