"""The event stream between intake and detectors: nothing is lost when a worker dies mid-batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis

from bot.core import defaults
from bot.mastodon.context import Context
from bot.pipeline.events import drain_with, ensure_group
from tests.waves import burst

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_entries_of_a_dead_worker_are_reclaimed_and_processed(ctx: Context, connection: redis.Redis) -> None:
    for event in burst(NOW, "spam.example", reports=30, hours=1):
        connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    ensure_group(connection)
    # A worker on another machine read a batch and died before acknowledging it ...
    [(_stream, taken)] = connection.xreadgroup(
        defaults.EVENT_GROUP, "dead-host-1", {defaults.EVENT_STREAM: ">"}, count=20
    )
    ids = [entry_id for entry_id, _fields in taken]
    # ... long enough ago (XCLAIM's IDLE sets how long the entries have been idle).
    connection.xclaim(
        defaults.EVENT_STREAM, defaults.EVENT_GROUP, "dead-host-1", 0, ids, idle=defaults.CLAIM_IDLE_MS + 1000
    )
    counts = drain_with(ctx)
    assert counts["reclaimed"] == 20
    assert counts["processed"] == 30
    assert connection.xlen(defaults.EVENT_STREAM) == 0
    assert connection.xpending(defaults.EVENT_STREAM, defaults.EVENT_GROUP)["pending"] == 0
    assert connection.zcard("tocsin:reports:times:spam.example") == 30


def test_entries_a_live_worker_is_still_processing_are_left_to_it(ctx: Context, connection: redis.Redis) -> None:
    for event in burst(NOW, "spam.example", reports=10, hours=1):
        connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps(event)})
    ensure_group(connection)
    connection.xreadgroup(defaults.EVENT_GROUP, "busy-host-1", {defaults.EVENT_STREAM: ">"}, count=4)
    counts = drain_with(ctx)
    assert (counts["reclaimed"], counts["processed"]) == (0, 6)
    assert connection.xpending(defaults.EVENT_STREAM, defaults.EVENT_GROUP)["pending"] == 4


def test_any_job_schedules_the_sweep_again_if_its_job_was_lost(ctx: Context, connection: redis.Redis) -> None:
    """A worker killed after taking the sweep off its queue can lose that job; the next job any worker
    runs schedules the sweep again (and so does RQ's maintenance round, every 10 minutes)."""
    from bot.ops.sweep import schedule_next_sweep
    from bot.pipeline.queue import enqueue_once, queue
    from handlers.scan.runs import finish_job
    from tests.helpers import run_jobs

    background = queue(defaults.QUEUE_BACKGROUND, connection)
    assert schedule_next_sweep(connection)
    for job_id in background.scheduled_job_registry.get_job_ids():
        background.fetch_job(job_id).delete()  # type: ignore[union-attr]  # lost
    enqueue_once(connection, defaults.QUEUE_BACKGROUND, finish_job, "no-such-run", job_id="any-job")
    run_jobs(connection)
    [sweep] = background.scheduled_job_registry.get_job_ids()
    assert sweep.startswith(defaults.SWEEP_JOB_ID)
