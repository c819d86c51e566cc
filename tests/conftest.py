"""Fixtures: a real redis-server, the Mastodon double, settings and contexts, the CLI, real processes,
Chromium. Shared helpers that are not fixtures live in tests/helpers.py."""

from __future__ import annotations

import os
import tempfile

# Before bot/ is imported (bot/core/metrics.py reads it at import): this run's metrics files, not the repo's.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tocsin-test-metrics-")
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from click.testing import CliRunner

from bot.core.config import Settings
from bot.mastodon.context import Context, redis_from_url, set_context
from bot.ops.embedded_redis import EmbeddedRedis
from tests.helpers import make_settings
from tests.mastodon_double import MastodonDouble

if TYPE_CHECKING:
    from tests.stack import Stack


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="The reliability suite's long form (tests/reliability/): 10,000-event soak, 10,000 fuzz cases.",
    )


@pytest.fixture(scope="session")
def long_form(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


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
    double.stop(wait=False)  # its port is its own: the next test need not wait for the shutdown


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, mastodon: MastodonDouble) -> Settings:
    return make_settings(tmp_path, redis_url, mastodon)


@pytest.fixture
def make_context(
    tmp_path: Path, redis_url: str, connection: redis.Redis, mastodon: MastodonDouble
) -> Iterator[Callable[..., Context]]:
    """Contexts with settings overridden (`make_context(announce_hold_minutes=10)`); the newest one made is
    the current context (what jobs run in this process see). The one way tests build a context."""

    def make(**overrides: Any) -> Context:
        context = Context(make_settings(tmp_path, redis_url, mastodon, **overrides), connection)
        set_context(context)
        return context

    yield make
    set_context(None)


@pytest.fixture
def ctx(make_context: Callable[..., Context]) -> Context:
    return make_context()


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


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (`apt-get install -y chromium`; .ci/run installs it before the tests). Where it
    is missing the browser tests are skipped, but not under CI (.ci/run sets CI): there they fail."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing, and CI runs the browser tests (.ci/run installs Debian's chromium)")
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
