"""RQ queues and how Tocsin enqueues: JSON-serialized jobs, retried with backoff."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import redis
from mastodon import MastodonAPIError
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.utils import import_attribute

from bot.core import defaults
from bot.mastodon.client import http_status

P = ParamSpec("P")
R = TypeVar("R")

SERIALIZER = "json"
"""Jobs carry plain dicts and name their function by import path; no pickle from Redis."""


MOVED_MODULES = {
    "bot.commands": "bot.dm.commands.job",
    "bot.events": "bot.pipeline.events",
    "bot.held": "bot.dm.held",
    "bot.mentions": "bot.dm.mentions",
    "bot.surges": "bot.pipeline.surges",
    "bot.sweep": "bot.ops.sweep",
    "bot.wave": "bot.dm.wave",
    "handlers.announcements": "handlers.incidents.announcements",
    "handlers.domain_blocks": "handlers.incidents.blocks",
    "handlers.federation": "handlers.federation.audit",
    "handlers.scan": "handlers.scan.messages",
    "handlers.scan_runs": "handlers.scan.runs",
}
"""Where the modules of jobs' functions went when the tree took its layers and family packages (issue
22). A job queued by the version before — an alert, a retry, a scheduled sweep or scan chunk, a held
announcement — names its function by the old path; the worker runs it under the new one, so an upgrade
that does not drain the queues first loses none. Names only: the platform imports no family."""


def current_function_name(name: str) -> str:
    module, _, attribute = name.rpartition(".")
    return f"{MOVED_MODULES[module]}.{attribute}" if module in MOVED_MODULES else name


class TocsinJob(Job):
    """RQ's job, reading a function moved since it was queued at its new place (MOVED_MODULES)."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if name is None or self.instance:
            return super().func
        return import_attribute(current_function_name(name))


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(
        name,
        connection=connection,
        serializer=SERIALIZER,
        default_timeout=defaults.JOB_TIMEOUT,
        job_class=TocsinJob,
    )


PERMANENT_STATUSES = {
    401: "the token is not accepted (revoked or wrong): set TOCSIN_ACCESS_TOKEN again",
    403: "the token lacks a scope this needs (see the README's token scopes)",
    404: "Mastodon does not have it (a deleted status or account, or a disabled API)",
    422: "Mastodon refused the request as invalid",
}
"""Mastodon answers that retrying cannot change; a job failing with one fails at once, with its reason.
429, 5xx and network errors are transient: RQ retries those with backoff."""


class PermanentError(RuntimeError):
    """A Mastodon call that will not succeed by retrying; the message says why and what to do."""


def fails_at_once_on_permanent_errors(job: Callable[P, R]) -> Callable[P, R]:
    """For RQ jobs that call Mastodon: a 401/403/404/422 marks the job as having no retries left, so it
    lands in the failed registry now (`tocsin failed`, `tocsin doctor`) instead of after hours of retries."""

    @functools.wraps(job)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return job(*args, **kwargs)
        except MastodonAPIError as error:
            status = http_status(error)
            if status not in PERMANENT_STATUSES:
                raise
            current = get_current_job()
            if current is not None:
                current.retries_left = 0  # read by the worker when it handles this failure
            detail = str(error.args[-1]) if len(error.args) > 3 else ""
            raise PermanentError(f"Mastodon answered {status} ({detail}): {PERMANENT_STATUSES[status]}") from error

    return run


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
    timeout: int | None = None,
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
    if timeout is not None:  # a long job (an audit of every peer); the others keep JOB_TIMEOUT
        options["job_timeout" if delay_seconds else "timeout"] = timeout  # (RQ names it both ways)
    try:
        if delay_seconds:
            target.enqueue_in(timedelta(seconds=delay_seconds), function, **options)
        else:
            target.enqueue_call(function, **options)
    except DuplicateJobError:
        return False
    return True
