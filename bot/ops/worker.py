"""Workers: RQ's SimpleWorker, which runs jobs in its own process instead of forking one per job.

Forking per job costs more than a batch of events takes to process, and a long-lived process keeps its
Mastodon session and caches. Jobs are short (a drain batch, one alert), so SimpleWorker's lack of a
heartbeat during a job does not matter. Several workers, on one machine or many, share one Redis.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from bot.core import defaults
from bot.core.config import Settings
from bot.dm.mentions import schedule_next_poll
from bot.mastodon.context import Context, get_context, redis_from_url, set_context
from bot.ops.sweep import schedule_next_sweep
from bot.pipeline.events import backlog, enqueue_drain
from bot.pipeline.queue import SERIALIZER, TocsinJob, queue

log = logging.getLogger(__name__)

SCHEDULER_CHECK_SECONDS = 10
"""How soon an idle worker notices that no RQ scheduler is running (see TocsinWorker)."""
RESTART_DELAYS = (1, 2, 5, 10, 30)
"""Seconds before starting a fresh worker after one quit on a Redis outage (the last one repeats)."""


class TocsinWorker(SimpleWorker):
    """RQ's SimpleWorker that keeps the sweep scheduled: before each job, and at each of RQ's maintenance
    rounds (every 10 minutes, idle or not). The sweep is what resumes everything else, and a worker
    killed just after taking the sweep job off its queue can lose that job (seen with RQ 3.0: left
    "queued" in no queue), which would end the chain of sweeps for good."""

    job_class = TocsinJob  # a job queued before an upgrade finds its function where it moved

    def execute_job(self, job: Job, queue: Queue) -> None:
        _keep_sweep_scheduled(self.connection)
        super().execute_job(job, queue)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        _keep_sweep_scheduled(self.connection)

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes up this often (RQ: every 405 s), to look after the scheduler (below)."""
        return SCHEDULER_CHECK_SECONDS

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        self._keep_scheduler_running()

    def unsubscribe(self) -> None:
        """Stop listening for RQ's commands (`rq shutdown`, stop-job) without waiting on the listener.

        RQ sends UNSUBSCRIBE, then stops its listener thread. That thread reads UNSUBSCRIBE's reply, finds
        no subscription left and, when it loops before the stop flag is down, waits for a new subscription
        for RQ's poll period, 60 s; since redis-py 8.2 stopping the thread waits for it, so a stopped
        worker outlived the 15 s that our systemd units, `tocsin serve` and the tests give it (one worker
        in six, four stopped together on two cores). Here the flag goes down first, so the thread leaves
        as soon as it reads the reply, and the wait for it is bounded."""
        listener = self.pubsub_thread
        if listener is None:
            return
        listener._running.clear()  # PubSubWorkerThread.stop() without its (8.2) unbounded wait
        try:
            # The reply wakes the thread. Should the thread close the connection under us (woken by
            # something else just now), the error changes nothing: the connection is closed next anyway.
            with contextlib.suppress(redis.RedisError):
                self.pubsub.unsubscribe()
        finally:
            listener.join(timeout=defaults.PUBSUB_STOP_SECONDS)  # a daemon thread: never holds the exit
            self.pubsub.close()

    def _keep_scheduler_running(self) -> None:
        """RQ's scheduler (a process the worker forks; it moves retries and delayed jobs, the sweep among
        them, onto their queues) exits when Redis goes away, and RQ starts another only at its next
        maintenance round, ten minutes on: every retry and the sweep itself would wait that long after a
        Redis restart. Start one as soon as the lock is free."""
        scheduler = self.scheduler
        if scheduler is None or (scheduler._process is not None and scheduler._process.is_alive()):
            return
        if _stop_was_requested(self):
            return  # shutting down: RQ stopped the scheduler on purpose (a new one would keep us alive)
        with contextlib.suppress(redis.RedisError):
            scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]


def _keep_sweep_scheduled(connection: redis.Redis) -> None:
    # One job per slot: a no-op when it is scheduled already. Redis away: the job meets the outage itself.
    with contextlib.suppress(redis.RedisError):
        schedule_next_sweep(connection)


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> None:
    """Work until asked to stop. RQ's worker quits when Redis vanishes mid-job; we start a fresh one."""
    assert settings.redis_url is not None
    connection = redis_from_url(settings.redis_url)
    set_context(Context(settings, connection))
    logging.getLogger("rq.worker").setLevel(logging.WARNING)  # one line per job is noise at our volumes
    failures = 0
    while True:
        worker: TocsinWorker | None = None
        try:
            # Inside the try: making a worker talks to Redis (CLIENT SETNAME), which may still be down.
            worker = TocsinWorker(
                [queue(queue_name, connection) for queue_name in defaults.QUEUES],
                connection=connection,
                serializer=SERIALIZER,
                name=name,
            )
            resume_after_restart(connection, settings.retry_delays)
            worker.work(with_scheduler=True, burst=burst, logging_level="WARNING")
        except redis.RedisError as error:
            log.error("worker lost Redis: %s", type(error).__name__)
            if worker is not None and _stop_was_requested(worker):
                return  # asked to stop while Redis was away
        else:
            if burst or _stop_was_requested(worker):
                return
        # Between two workers no job runs: a stop request may end the process at once (RQ's own
        # handlers, which only set a flag for the worker loop, are still installed otherwise).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
        failures += 1
        log.warning("starting a fresh worker in %d s", delay)
        time.sleep(delay)


def _stop_was_requested(worker: TocsinWorker) -> bool:
    # RQ records SIGTERM/SIGINT as _stop_requested when busy, _shutdown_requested_date when idle.
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


def resume_after_restart(connection: redis.Redis, retry_delays: list[int]) -> None:
    """A (re)started worker: keep the sweep and the mention poll scheduled, drain whatever waits (a spare
    drain is cheap), and learn the bot's own account id and the instance's domain (the handlers and pages
    only read them from Redis)."""
    schedule_next_sweep(connection)
    schedule_next_poll(get_context())
    get_context().mastodon.refresh_bot_account_id()
    get_context().mastodon.refresh_instance_domain()
    if backlog(connection)["stream"]:
        enqueue_drain(connection, retry_delays)
