"""What tests share that is not a fixture: payload builders, signing, settings, running jobs, waiting.

Waiting is always for a state (`wait_for`, `quiescent`), never for time to pass: a test that sleeps to
see that nothing happened passes on a slow machine for the wrong reason.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from click.testing import CliRunner, Result
from rq.scheduler import RQScheduler

from bot.core import defaults
from bot.core.config import Settings, load_settings
from bot.core.privacy import pii_key, reduce_event
from bot.mastodon.context import Context
from bot.ops.cli import main
from bot.ops.worker import TocsinWorker
from bot.pipeline.events import backlog, drain_with
from bot.pipeline.queue import SERIALIZER, queue
from tests.mastodon_double import FIXTURES, MastodonDouble

SECRET = "test-webhook-secret-0123456789"


def fixture(name: str) -> dict[str, Any]:
    """One of the example payloads (Mastodon 4.6.5 shapes), as a fresh dict."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def report_event(
    report_id: int | str,
    created_at: str,
    domain: str | None,
    account_id: str,
    reporter_id: str = "112027569415983250",
    comment: str = "",
    category: str = "spam",
    event: str = "report.created",
) -> dict[str, Any]:
    """A variant of the example report.created payload."""
    payload = copy.deepcopy(_REPORT)
    payload["event"] = event
    payload["created_at"] = created_at
    obj = payload["object"]
    obj.update(id=str(report_id), created_at=created_at, updated_at=created_at, comment=comment, category=category)
    obj["account"]["id"] = reporter_id
    obj["account"]["account"]["id"] = reporter_id
    target = obj["target_account"]
    target.update(id=account_id, domain=domain, username=f"user{account_id}")
    target["account"].update(id=account_id, username=f"user{account_id}")
    target["account"]["acct"] = f"user{account_id}@{domain}" if domain else f"user{account_id}"
    return payload


_REPORT = fixture("report.created")


def make_settings(tmp_path: Path, redis_url: str, mastodon: MastodonDouble | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "redis_url": redis_url,
        "webhook_secret": SECRET,
        "data_dir": tmp_path / "data",
        "retry_delays": [1, 1, 1],
    }
    if mastodon is not None:
        values.update(mastodon_url=mastodon.url, access_token=mastodon.token)
    values.update(overrides)
    return load_settings(**values)


def run_jobs(connection: redis.Redis, rounds: int = 1) -> None:
    """Run every queued job in this process (a worker as `tocsin worker` makes them, in burst mode), then
    due scheduled ones."""
    for _ in range(rounds):
        worker = TocsinWorker(
            [queue(name, connection) for name in defaults.QUEUES], connection=connection, serializer=SERIALIZER
        )
        worker.work(burst=True, logging_level="WARNING")
        enqueue_due_scheduled(connection)


def run_until(connection: redis.Redis, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Work jobs, including retries as they fall due, until `done()` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached while running jobs")
        run_jobs(connection)
        time.sleep(0.2)


def enqueue_due_scheduled(connection: redis.Redis) -> None:
    """What `--with-scheduler` does once a second: move due scheduled jobs (retries) to their queues."""
    scheduler = RQScheduler(list(defaults.QUEUES), connection=connection, serializer=SERIALIZER)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()


def feed(ctx: Context, events: list[dict[str, Any]], allow_failures: bool = False) -> dict[str, int]:
    """As intake does (personal data reduced, onto the event stream); then one drain, as a worker runs it.
    A handler that failed on any event fails the test, unless it opts in (`allow_failures`): a detector
    that "never alerts" must not pass because it raised on every event."""
    key = pii_key(ctx.redis)
    for event in events:
        ctx.redis.xadd(defaults.EVENT_STREAM, {"event": json.dumps(reduce_event(event, key))})
    counts = drain_with(ctx)
    if not allow_failures:
        failed = [json.loads(raw)["error"] for raw in ctx.redis.lrange(defaults.FAILED_EVENTS, 0, 4)]
        assert counts["failed"] == 0, f"{counts['failed']} event(s) failed in their handler: {failed}"
    return counts


def alert_jobs(connection: redis.Redis) -> list[dict[str, Any]]:
    """The payloads of the alert jobs waiting on the urgent queue."""
    return [
        job.args[1]
        for job in queue(defaults.QUEUE_URGENT, connection).get_jobs()
        if job.func_name == "bot.pipeline.surges.send_alert"
    ]


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def quiescent(connection: redis.Redis, running_jobs_lost: bool = False) -> bool:
    """Nothing left to do: the event stream drained and acknowledged, no drain scheduled, no job queued,
    running, or waiting for its time (a retry, a held announcement) but the periodic sweep and mention
    poll. Wait for this (with `wait_for`) before asserting that something happened only once. After Redis
    was killed, pass `running_jobs_lost`: a job that was running then stays in RQ's started registry until
    RQ declares it abandoned."""

    def idle(name: str) -> bool:
        jobs = queue(name, connection)
        scheduled = jobs.scheduled_job_registry.get_job_ids()
        return (
            jobs.count == 0
            and all(job_id.startswith((defaults.SWEEP_JOB_ID, defaults.MENTIONS_JOB_ID)) for job_id in scheduled)
            and (running_jobs_lost or jobs.started_job_registry.count == 0)
        )

    return (
        backlog(connection) == {"stream": 0, "pending": 0}
        and not connection.exists(defaults.DRAIN_FLAG)
        and all(idle(name) for name in defaults.QUEUES)
    )
