"""Mastodon redelivers: every event 1 to 16 times, in random order, interleaved with the others, gives
the same alerts as one delivery of each (short form: 400 events; `--long`: 3,000)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from bot.core import defaults
from bot.mastodon.context import Context
from bot.mastodon.outbox import read_log
from bot.ops.web import create_app
from tests.helpers import run_jobs, sign
from tests.mastodon_double import MastodonDouble
from tests.waves import background, burst, signup_background, signup_burst

pytestmark = pytest.mark.slow  # 3,000 events delivered many times over

NOW = datetime.now(UTC).replace(microsecond=0)


def events(count: int) -> list[dict[str, Any]]:
    """Ordinary reports and sign-ups for a week, a report wave from two servers and a sign-up burst: about
    `count` distinct events."""
    waves = burst(NOW - timedelta(hours=2), "spam.example", 40, 1) + burst(
        NOW - timedelta(hours=1), "bots.example", 40, 1, first_id=600000
    )
    signups = signup_burst(NOW - timedelta(minutes=40), count=40, minutes=30)
    ordinary_signups = signup_background(NOW - timedelta(days=7), days=7)
    per_week = max(count - len(waves) - len(signups) - len(ordinary_signups), 20)
    return background(NOW - timedelta(days=7), days=7, per_week=per_week) + ordinary_signups + waves + signups


def alerts(connection: redis.Redis) -> list[tuple[str, ...]]:
    """The DMs sent, as (detector, bucket, step): the surge id differs between runs."""
    keys = {entry["key"] for entry in read_log(connection, defaults.OUTBOX_LOG_CAP)}
    return sorted(tuple(str(key).split(":")[i] for i in (0, 1, 3)) for key in keys if str(key).count(":") == 3)


def deliver_all(ctx: Context, deliveries: list[dict[str, Any]]) -> list[int]:
    import json

    statuses = []
    with TestClient(create_app(ctx.settings)) as client:
        for event in deliveries:
            body = json.dumps(event, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body)}
            statuses.append(client.post("/webhooks/mastodon", content=body, headers=headers).status_code)
            if len(statuses) % 200 == 0:
                run_jobs(ctx.redis)  # workers drain while deliveries go on
    run_jobs(ctx.redis, rounds=3)
    return statuses


def test_redelivered_and_shuffled_events_give_the_same_alerts(
    make_context: Callable[..., Context], mastodon: MastodonDouble, long_form: bool
) -> None:
    mastodon.max_characters = 5000
    ctx = make_context(moderators=["mod_anna"])
    stream = events(3000 if long_form else 400)
    assert set(deliver_all(ctx, stream)) == {202}
    once = alerts(ctx.redis)
    assert len(once) >= 3  # two report surges and the sign-up surge, at least
    intake_once = ctx.redis.hgetall(defaults.INTAKE_COUNTS)

    ctx.redis.flushall()
    rng = random.Random(7)
    repeated = [event for event in stream for _copy in range(rng.randint(1, 16))]
    rng.shuffle(repeated)
    statuses = deliver_all(ctx, repeated)
    assert statuses.count(202) == len(stream) and set(statuses) <= {200, 202}  # each body accepted once
    assert alerts(ctx.redis) == once
    assert ctx.redis.hgetall(defaults.INTAKE_COUNTS) == intake_once
    print(f"\nredelivery: {len(stream):,} events delivered {len(repeated):,} times; alerts {once}")
