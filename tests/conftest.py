from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from click.testing import CliRunner, Result
from rq import SimpleWorker
from rq.scheduler import RQScheduler

from bot import defaults
from bot.cli import main
from bot.config import Settings, load_settings
from bot.context import Context, redis_from_url, set_context
from bot.embedded_redis import EmbeddedRedis
from bot.events import drain_with
from bot.privacy import pii_key, reduce_event
from bot.queue import SERIALIZER, queue
from tests.mastodon_double import FIXTURES, MastodonDouble

if TYPE_CHECKING:
    from tests.stack import Stack

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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def mastodon() -> Iterator[MastodonDouble]:
    double = MastodonDouble().start()
    yield double
    double.stop()


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


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, mastodon: MastodonDouble) -> Settings:
    return make_settings(tmp_path, redis_url, mastodon)


@pytest.fixture
def ctx(settings: Settings, connection: redis.Redis) -> Iterator[Context]:
    context = Context(settings, connection)
    set_context(context)
    yield context
    set_context(None)


def run_jobs(connection: redis.Redis, rounds: int = 1) -> None:
    """Run every queued job in this process (RQ's SimpleWorker in burst mode), then due scheduled ones."""
    for _ in range(rounds):
        worker = SimpleWorker(
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


def feed(ctx: Context, events: list[dict[str, Any]]) -> None:
    """As intake does (personal data reduced, onto the event stream); then one drain, as a worker runs it."""
    key = pii_key(ctx.redis)
    for event in events:
        ctx.redis.xadd(defaults.EVENT_STREAM, {"event": json.dumps(reduce_event(event, key))})
    drain_with(ctx)


def alert_jobs(connection: redis.Redis) -> list[dict[str, Any]]:
    """The payloads of the alert jobs waiting on the urgent queue."""
    return [job.args[0] for job in queue(defaults.QUEUE_URGENT, connection).get_jobs()]


@pytest.fixture
def tocsin(
    tmp_path: Path, redis_url: str, mastodon: MastodonDouble, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("TOCSIN_DRY_RUN", "TOCSIN_MODERATORS", "TOCSIN_TEMPLATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "TOCSIN_REDIS_URL": redis_url,
        "TOCSIN_MASTODON_URL": mastodon.url,
        "TOCSIN_ACCESS_TOKEN": mastodon.token,
        "TOCSIN_DATA_DIR": str(tmp_path / "data"),
    }
    yield CliRunner(env=env)


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    from tests.stack import Stack

    stacks: list[Stack] = []

    def make(redis_url: str, mastodon: MastodonDouble | None, **kwargs: Any) -> Stack:
        stack = Stack(tmp_path, redis_url, mastodon, **kwargs).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
