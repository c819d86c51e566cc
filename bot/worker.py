"""Workers: RQ's SimpleWorker, which runs jobs in its own process instead of forking one per job.

Forking per job costs more than a batch of events takes to process, and a long-lived process keeps its
Mastodon session and caches. Jobs are short (a drain batch, one alert), so SimpleWorker's lack of a
heartbeat during a job does not matter. Several workers, on one machine or many, share one Redis.
"""

from __future__ import annotations

import logging

from rq import SimpleWorker

from bot import defaults
from bot.config import Settings
from bot.context import Context, redis_from_url, set_context
from bot.queue import SERIALIZER, queue
from bot.sweep import schedule_next_sweep


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    assert settings.redis_url is not None
    connection = redis_from_url(settings.redis_url)
    set_context(Context(settings, connection))
    schedule_next_sweep(connection)
    worker = SimpleWorker(
        [queue(name, connection) for name in defaults.QUEUES],
        connection=connection,
        serializer=SERIALIZER,
        name=name,
    )
    logging.getLogger("rq.worker").setLevel(logging.WARNING)  # one line per job is noise at our volumes
    return bool(worker.work(with_scheduler=True, burst=burst, logging_level="WARNING"))
