"""RQ queues and how Tocsin enqueues: JSON-serialized jobs, retried with backoff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from bot import defaults

SERIALIZER = "json"
"""Jobs carry plain dicts and name their function by import path; no pickle from Redis."""


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, serializer=SERIALIZER, default_timeout=defaults.JOB_TIMEOUT)


def retry_policy(delays: list[int]) -> Retry | None:
    return Retry(max=len(delays), interval=delays) if delays else None


def enqueue_once(
    connection: redis.Redis,
    queue_name: str,
    function: Callable[..., Any],
    *args: Any,
    job_id: str,
    retry_delays: list[int] | None = None,
    delay_seconds: float | None = None,
) -> bool:
    """Enqueue unless a job with this id is queued, running, scheduled or failed; True if enqueued.

    The job function is passed as the function itself (RQ stores its import path), so a renamed or moved
    job fails where it is enqueued, in tests, not in a worker. Job ids are derived from what the job does
    (an alert's key), so a repeated decision costs nothing.
    Finished jobs are deleted at once (result_ttl=0); the outbox's own keys prevent double posts after that.
    """
    target = queue(queue_name, connection)
    options: dict[str, Any] = {
        "job_id": job_id,
        "unique": True,
        "result_ttl": 0,
        "retry": retry_policy(retry_delays or []),
        "args": args,
    }
    try:
        if delay_seconds:
            target.enqueue_in(timedelta(seconds=delay_seconds), function, **options)
        else:
            target.enqueue_call(function, **options)
    except DuplicateJobError:
        return False
    return True
