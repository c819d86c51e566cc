"""Four real workers on one Redis race for the same wave: exactly one alert per surge, one post per
announcement."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import redis

from tests.helpers import quiescent, wait_for
from tests.mastodon_double import MastodonDouble
from tests.waves import burst

pytestmark = pytest.mark.slow  # four real worker processes

NOW = datetime.now(UTC).replace(microsecond=0)


def test_four_workers_one_alert_per_surge_and_one_post_per_announcement(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Any]
) -> None:
    mastodon.max_characters = 5000
    stack = stack_factory(redis_url, mastodon, workers=4, TOCSIN_ANNOUNCE_HOLD_MINUTES="0")
    connection = redis.Redis.from_url(redis_url)
    cli = [sys.executable, "-m", "bot.ops.cli", "blocks", "poll"]
    subprocess.run(cli, env=stack.env, check=True, timeout=60, capture_output=True)  # the state before
    waves = burst(NOW - timedelta(hours=1), "spam.example", 60, 1) + burst(
        NOW - timedelta(hours=1), "bots.example", 60, 1, first_id=700000
    )
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in waves} == {202}
    mastodon.add_block("spam.example", public_comment="Crypto spam")
    mastodon.add_block("bots.example", public_comment="Crypto spam")
    subprocess.run(cli, env=stack.env, check=True, timeout=60, capture_output=True)
    wait_for(lambda: any(s["visibility"] == "public" for s in mastodon.statuses), what="the announcement")
    wait_for(lambda: quiescent(connection), what="every worker idle")  # a second DM or post would be out
    threads = [thread[0]["text"].split("\n")[1] for thread in mastodon.direct_threads()]
    surges = sorted(line for line in threads if line.startswith("🔔"))
    assert surges == ["🔔 Report surge: bots.example", "🔔 Report surge: spam.example"]  # each once
    [post] = [status for status in mastodon.statuses if status["visibility"] == "public"]
    assert "spam.example" in post["text"] and "bots.example" in post["text"]  # two blocks, one post
