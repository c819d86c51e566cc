"""Soak: mixed events at a steady rate through a real `tocsin serve` (web, two workers, the embedded Redis)
while Redis is killed twice, a worker is SIGKILLed mid-batch twice, and Mastodon answers 429, 500 and
503 to posts for stretches. Nothing accepted may be lost, nothing posted twice.

Short form: 800 events; `--long`: 10,000. The figures are printed (`pytest -s`) and written to
test-artifacts/soak.json; the README's "Reliability" section has the long form's.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from bot.core import defaults
from tests.helpers import quiescent, wait_for
from tests.mastodon_double import MastodonDouble
from tests.stack import Serve
from tests.waves import background, burst, ordinary_posting, signup_background

pytestmark = pytest.mark.slow  # a real `tocsin serve` soaked while Redis and workers are killed

NOW = datetime.now(UTC).replace(microsecond=0)
RATE = 150
"""Deliveries a second, at most (a busy instance sends a few a second; this is far above)."""
WAVES = ("wave-a.example", "wave-b.example", "wave-c.example")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def mixed_events(count: int) -> list[dict[str, Any]]:
    """Ordinary reports, sign-ups and posts (about 70/15/15 %, three weeks of them: within the detectors'
    memory), with three report waves placed at a quarter, a half and three quarters of the way."""
    reports = background(NOW - timedelta(days=21), days=21, per_week=max(count * 70 // 300, 10))
    signups = signup_background(NOW - timedelta(days=21), days=21, per_day=max(count * 15 // 2100, 1))
    posts = ordinary_posting(NOW - timedelta(hours=6), hours=3, per_hour=max(count * 15 // 300, 1))
    ordinary = sorted(reports + signups + posts, key=lambda event: event["created_at"])
    waves = [
        burst(NOW - timedelta(hours=3 - n), domain, 30, 1, first_id=900000 + 1000 * n) for n, domain in enumerate(WAVES)
    ]
    stream = list(ordinary)
    for n, wave in enumerate(waves):
        at = len(ordinary) * (n + 1) // 4 + n * 30
        stream[at:at] = wave
    return stream


class Sender(threading.Thread):
    """Delivers every event at a steady rate, each until accepted (as Mastodon retries a 5xx or no answer)."""

    def __init__(self, serve: Serve, events: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.serve = serve
        self.events = events
        self.sent = 0
        self.accepted = 0
        self.duplicates = 0
        self.refused: dict[int, int] = {}
        self.last_ok = time.monotonic()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx2.Client(timeout=5) as client:
                started = time.monotonic()
                for n, event in enumerate(self.events):
                    wait = started + n / RATE - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)  # pacing the load, not waiting for a result
                    deadline = time.monotonic() + 60
                    while True:
                        status = self.serve.deliver(client, event)
                        if status in (200, 202):
                            self.accepted += status == 202
                            self.duplicates += status == 200
                            self.last_ok = time.monotonic()
                            break
                        self.refused[status] = self.refused.get(status, 0) + 1
                        assert time.monotonic() < deadline, f"no 2xx for a minute: {status}"
                        time.sleep(0.05)  # as Mastodon waits before it redelivers
                    self.sent = n + 1
        except BaseException as error:  # reported by the test
            self.error = error


def recorded_reports(connection: redis.Redis) -> set[bytes]:
    found: set[bytes] = set()
    for key in connection.scan_iter(match="tocsin:reports:times:*"):
        found.update(connection.zrange(key, 0, -1))
    return found


def test_soak_with_redis_and_worker_kills_and_mastodon_failures(
    tmp_path: Path, mastodon: MastodonDouble, long_form: bool
) -> None:
    count = 10_000 if long_form else 800
    events = mixed_events(count)
    mastodon.max_characters = 5000
    serve = Serve(tmp_path, workers=2, mastodon=mastodon)
    figures: dict[str, Any] = {"events": len(events), "faults": []}
    try:
        sender = Sender(serve, events)
        backlog = [0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                with contextlib.suppress(redis.RedisError, OSError, ValueError):  # Redis is down right now
                    backlog[0] = max(backlog[0], int(serve.redis().xlen(defaults.EVENT_STREAM)))
                sampling.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sender.start()

        def at(share: float) -> None:
            wait_for(
                lambda: sender.sent >= len(events) * share or sender.error is not None, timeout=300, what=f"{share:.0%}"
            )
            assert sender.error is None, sender.error

        def kill_redis() -> None:
            killed = time.monotonic()
            serve.kill("redis")
            wait_for(lambda: sender.last_ok > killed + 0.5, timeout=60, what="intake back after Redis")
            figures["faults"].append({"fault": "redis killed", "recovered_s": round(sender.last_ok - killed, 2)})

        def kill_worker(name: str) -> None:
            before = int(serve.status()[name]["restarts"])
            killed = time.monotonic()
            serve.kill(name)
            wait_for(
                lambda: (
                    int(serve.status().get(name, {}).get("restarts", 0)) > before
                    and serve.status()[name]["state"] == "running"
                ),
                timeout=60,
                what=f"{name} back",
            )
            figures["faults"].append({"fault": f"{name} SIGKILLed", "recovered_s": round(time.monotonic() - killed, 2)})

        at(0.15)
        mastodon.fail_next_posts = [429, 500, 503]  # the next alert's post fails three times, then goes
        at(0.2)
        kill_redis()
        at(0.4)
        kill_worker("worker-1")
        at(0.55)
        mastodon.fail_next_posts = [503, 429, 500]
        at(0.6)
        kill_redis()
        at(0.8)
        kill_worker("worker-2")
        sender.join(600)
        assert sender.error is None and not sender.is_alive(), sender.error
        connection = serve.redis()
        reports = {str(event["object"]["id"]).encode() for event in events if event["event"] == "report.created"}
        try:
            wait_for(lambda: reports <= recorded_reports(connection), timeout=180, what="every report recorded")
        except AssertionError:
            missing = reports - recorded_reports(connection)
            times = sorted(e["created_at"] for e in events if str(e["object"].get("id")).encode() in missing)
            raise AssertionError(f"{len(missing)} reports not recorded, written {times[:3]} … {times[-3:]}") from None
        wait_for(lambda: quiescent(connection, running_jobs_lost=True), timeout=180, what="the workers to finish")
        sampling.set()

        alerts = [thread[0]["text"].split("\n")[1] for thread in mastodon.direct_threads()]
        expected = [f"🔔 Report surge: {domain}" for domain in WAVES]
        figures.update(
            accepted=sender.accepted,
            redelivered_after_a_refusal=sum(sender.refused.values()),
            refusals=sender.refused,
            duplicates_answered=sender.duplicates,
            lost=len(reports - recorded_reports(connection)),
            alerts_expected=len(expected),
            alerts_posted=sum(alert in expected for alert in alerts),
            other_alerts=[alert for alert in alerts if alert not in expected],
            duplicate_alerts=len(alerts) - len(set(alerts)),
            max_backlog=backlog[0],
            failed_events=int(connection.llen(defaults.FAILED_EVENTS)),
        )
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "soak.json").write_text(json.dumps(figures, indent=2))
        print("\nsoak:", json.dumps(figures))
        assert sender.accepted == len(events)  # each body accepted once (a retry after a 503 may be a 200)
        assert figures["lost"] == 0 and figures["failed_events"] == 0
        assert sorted(alert for alert in alerts if alert in expected) == sorted(expected)  # each wave once
        assert figures["duplicate_alerts"] == 0
        assert {status for status in sender.refused} <= {0, 503}  # down Redis: 503 (or no answer), never 500
    finally:
        serve.stop()
