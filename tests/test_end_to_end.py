"""The real processes: `tocsin web` and `tocsin worker` on a real Redis, Mastodon as the double, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from bot.embedded_redis import EmbeddedRedis, free_port
from tests.conftest import SECRET, sign
from tests.mastodon_double import MastodonDouble
from tests.waves import background, burst

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Stack:
    """One web process and N workers, configured through the environment like a deployment."""

    def __init__(
        self, tmp_path: Path, redis_url: str, mastodon: MastodonDouble | None, workers: int = 1, **extra_env: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")},
            "TOCSIN_REDIS_URL": redis_url,
            "TOCSIN_WEBHOOK_SECRET": SECRET,
            "TOCSIN_DATA_DIR": str(tmp_path / "tocsin-data"),
            "TOCSIN_PORT": str(self.port),
            "TOCSIN_RETRY_DELAYS": "1,1,2,2",
            **extra_env,
        }
        if mastodon is not None:
            self.env.update(TOCSIN_MASTODON_URL=mastodon.url, TOCSIN_ACCESS_TOKEN=mastodon.token)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workers = workers
        self.cwd = tmp_path

    def start(self) -> Stack:
        command = [sys.executable, "-m", "bot.cli"]
        self.processes.append(subprocess.Popen([*command, "web"], env=self.env, cwd=self.cwd))
        for _ in range(self.workers):
            self.processes.append(subprocess.Popen([*command, "worker"], env=self.env, cwd=self.cwd))
        wait_for(self._healthy, what="web process")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx2.HTTPError:
            return False

    def deliver(self, client: httpx2.Client, event: dict[str, Any]) -> int:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body)}
        return client.post(f"{self.url}/webhooks/mastodon", content=body, headers=headers).status_code

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(15)  # a process that ignores SIGTERM fails the test here


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(redis_url: str, mastodon: MastodonDouble | None, **kwargs: Any) -> Stack:
        stack = Stack(tmp_path, redis_url, mastodon, **kwargs).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


def test_spam_wave_through_real_processes_gives_one_dm_despite_redeliveries_and_mastodon_errors(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    mastodon.measures["spam.example"] = (7, 3, 210)
    mastodon.fail_next_posts = [429, 500]  # the first two attempts to post the DM fail
    stack = stack_factory(redis_url, mastodon, workers=2)
    quiet_weeks = background(NOW - timedelta(days=14), days=14)
    wave = burst(NOW, "spam.example", reports=150, hours=3)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in quiet_weeks} == {202}
        assert {stack.deliver(client, event) for event in wave} == {202}
        # Mastodon redelivers (up to 16 times in all): identical bytes, acknowledged, not counted again.
        for _ in range(15):
            assert {stack.deliver(client, event) for event in wave[:20]} == {200}
    wait_for(lambda: len(mastodon.direct_threads()) >= 1, what="the surge DM")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.zcard("tocsin:reports:times:*") == len(quiet_weeks) + len(wave), what="all events")
    time.sleep(2)  # room for a wrong second DM to show up
    [thread] = mastodon.direct_threads()
    for status in thread:
        assert mastodon.recipients(status) == ["mod_anna", "mod_ben"]
    text = mastodon.direct_texts()[0]
    assert "🔔 Report surge: spam.example" in text
    assert "Cost of limiting: 7 follows from local accounts to there, 3 from there to local accounts" in text
    posts = [request for request in mastodon.requests if request == ("POST", "/api/v1/statuses")]
    assert len(posts) == len(thread) + 2  # each failed attempt retried, every part posted once
    assert mastodon.fail_next_posts == []


def test_ordinary_traffic_through_real_processes_gives_no_dm(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    stack = stack_factory(redis_url, mastodon)
    events = background(NOW - timedelta(days=28), days=28, seed=7)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in events} == {202}
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.zcard("tocsin:reports:times:*") == len(events), what="all events")
    assert mastodon.statuses == []


def test_redis_outage_gives_503_then_recovers_without_losing_an_event(
    tmp_path: Path, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    restarted: EmbeddedRedis | None = None
    try:
        stack = stack_factory(server.url, mastodon)
        events = burst(NOW, "slow.example", reports=12, hours=6)  # too slow to alert: just counted
        with httpx2.Client(timeout=10) as client:
            assert {stack.deliver(client, event) for event in events[:6]} == {202}
            server.stop()
            assert {stack.deliver(client, event) for event in events[6:]} == {503}
            assert client.get(f"{stack.url}/readyz").status_code == 503
            restarted = EmbeddedRedis(tmp_path / "redis", port=server.port, persistent=True).start()
            # Mastodon retries the 503s later.
            wait_for(lambda: stack.deliver(client, events[6]) == 202, what="intake to recover")
            assert {stack.deliver(client, event) for event in events[7:]} == {202}
        connection = redis.Redis.from_url(server.url)
        wait_for(lambda: connection.zcard("tocsin:reports:times:slow.example") == 12, what="every event processed")
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_serve_runs_everything_with_embedded_redis_and_dry_run(tmp_path: Path) -> None:
    """The README's run command: no Redis, no token, no secret, the default (relative) data dir."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(TOCSIN_PORT=str(port), TOCSIN_MODERATORS="mod_anna")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _get(f"{url}/readyz") == 200, what="serve to be ready")
        assert process.poll() is None, "serve exited"
        secret = (tmp_path / "tocsin-data" / "webhook-secret").read_text().strip()
        assert len(secret) == 40
        redis_port = int((tmp_path / "tocsin-data" / "redis" / "redis.port").read_text())
        connection = redis.Redis(port=redis_port)
        for event in burst(NOW, "spam.example", reports=20, hours=1):
            body = json.dumps(event).encode()
            response = httpx2.post(
                f"{url}/webhooks/mastodon", content=body, headers={"X-Hub-Signature": sign(body, secret)}
            )
            assert response.status_code == 202
        wait_for(lambda: connection.llen("tocsin:outbox:log") > 0, what="a dry-run DM in the outbox")
        page = httpx2.get(f"{url}/outbox").text
        assert "Report surge: spam.example" in page and "Dry-run" in page
        assert "default-src 'none'" in httpx2.get(f"{url}/outbox").headers["content-security-policy"]
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"{url}/webhooks/mastodon" in err and secret in err
    assert not (tmp_path / "tocsin-data" / "redis" / "redis.port").exists()  # embedded Redis stopped
    assert (tmp_path / "tocsin-data" / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "tocsin-data" / "redis").glob("*.aof")
    )


def _get(url: str) -> int:
    try:
        return httpx2.get(url, timeout=1).status_code
    except httpx2.HTTPError:
        return 0
