"""Events per second through detection with 2 workers, against one RQ job per event, in the same run.

Report events shaped like the brief's incidents (two weeks of background, several waves) are appended
the way intake appends them, while two `tocsin worker` processes drain the stream. The baselines run
the same handler as one RQ job per event on two workers: RQ's default Worker (a fork per job) and
RQ's SimpleWorker (no fork). Every run uses a fresh embedded redis-server with the append-only file on.
Then the same Tocsin run with an instance configured (URL and token) that cannot be reached: nothing
listens on its port. The handlers never call Mastodon, so detection keeps its speed (alerts fail and are
retried on their own queue).
Targets: >= 500 events/s through detection with 2 workers (issue 2); with Mastodon unreachable, >= 90 %
of that (issue 12).

    python -m bench.detection [--events 20000] [--baseline-events 400]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import redis
from rq import Queue

from bot.core import defaults
from bot.core.privacy import reduce_event
from bot.mastodon.context import get_context
from bot.ops.embedded_redis import EmbeddedRedis, free_port
from bot.pipeline.events import ADDED_DRAIN_NEEDED, APPEND, advance_clock, enqueue_drain, parse_time

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((ROOT / "tests" / "fixtures" / "mastodon" / "report.created.json").read_text())
PII_KEY = b"bench-pii-key"
WAVE_DOMAINS = ["spam1.example", "spam2.example", "spam3.example", "spam4.example"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report(number: int, moment: datetime, domain: str | None, account: int, reporter: int) -> dict[str, Any]:
    event = copy.deepcopy(TEMPLATE)
    event["created_at"] = iso(moment)
    obj = event["object"]
    obj.update(id=str(number), created_at=iso(moment), comment=f"spam #{number}", category="spam")
    obj["account"]["id"] = obj["account"]["account"]["id"] = str(reporter)
    obj["account"]["ip"] = f"198.51.100.{reporter % 256}"
    target = obj["target_account"]
    target.update(id=str(account), domain=domain, username=f"user{account}")
    target["account"].update(id=str(account), username=f"user{account}", acct=f"user{account}@{domain}")
    return event


def traffic(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A fifth background over two weeks and many servers, the rest in 3-hour waves, in time order."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    background = count // 5
    for n in range(background):
        moment = start + timedelta(seconds=rng.uniform(0, 14 * 86400))
        domain = rng.choice([f"server{d}.example" for d in range(200)] + [None])
        events.append(report(n, moment, domain, rng.randint(1, 5000), rng.randint(1000, 1300)))
    per_wave = (count - background) // len(WAVE_DOMAINS)
    for index, domain in enumerate(WAVE_DOMAINS):
        wave_start = start + timedelta(days=15 + index)
        for n in range(per_wave):
            moment = wave_start + timedelta(seconds=n * 3 * 3600 / per_wave)
            number = background + index * per_wave + n
            events.append(report(number, moment, domain, 10**6 + rng.randint(0, 200), rng.randint(1000, 1300)))
    events.sort(key=lambda event: event["created_at"])
    return [reduce_event(event, PII_KEY) for event in events]


def handle_one(raw: bytes) -> None:
    """The baselines' job: one event through the same handler a drain runs."""
    from bot.pipeline.families import registry

    ctx = get_context()
    event = orjson.loads(raw)
    registry().dispatch(ctx, event)
    advance_clock(ctx.redis, parse_time(event.get("created_at")) or 0.0)


@contextmanager
def redis_server() -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=True) as server:
        yield server.url, Path(tmp)


@contextmanager
def workers(command: list[str], env: dict[str, str], count: int = 2) -> Iterator[None]:
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                # RQ's own worker (the baseline) can hang on SIGTERM with redis-py 8.2 (its pubsub thread
                # waits for a subscription; TocsinWorker does not): the run is measured, so end it.
                process.kill()
                process.wait(5)


def wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish in time")
        time.sleep(0.02)


def wait_for_workers(connection: redis.Redis, count: int) -> None:
    from rq import Worker

    wait_until(lambda: len(Worker.all(connection=connection)) >= count, 30)


def environment(redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(TOCSIN_REDIS_URL=redis_url, TOCSIN_DATA_DIR=str(data_dir), TOCSIN_MODERATORS="mod1,mod2")
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_tocsin(events: list[dict[str, Any]], **extra_env: str) -> tuple[float, list[str]]:
    """Seconds from the first append until every event is acknowledged; the keys of the DMs written
    to the dry-run outbox (one key per DM, however many thread parts)."""
    with redis_server() as (url, data_dir):
        connection = redis.Redis.from_url(url)
        env = {**environment(url, data_dir), **extra_env}
        with workers([sys.executable, "-m", "bot.ops.cli", "worker"], env):
            wait_for_workers(connection, 2)
            append = connection.register_script(APPEND.source)
            started = time.perf_counter()
            for chunk in range(0, len(events), 500):
                pipe = connection.pipeline(transaction=False)
                for event in events[chunk : chunk + 500]:
                    keys = [
                        defaults.DEDUPE_PREFIX + str(event["object"]["id"]),
                        defaults.EVENT_STREAM,
                        defaults.DRAIN_FLAG,
                        defaults.INTAKE_COUNTS,
                    ]
                    append(keys, [3600, orjson.dumps(event), defaults.DRAIN_FLAG_TTL, event["event"]], client=pipe)
                if ADDED_DRAIN_NEEDED in pipe.execute():
                    enqueue_drain(connection, [1])

            def drained() -> bool:
                pending = connection.xpending(defaults.EVENT_STREAM, defaults.EVENT_GROUP)["pending"]
                return connection.xlen(defaults.EVENT_STREAM) == 0 and pending == 0

            wait_until(drained, 600)
            seconds = time.perf_counter() - started
            wait_until(lambda: Queue(defaults.QUEUE_URGENT, connection=connection).count == 0, 60)
            time.sleep(1)  # let an alert job in flight finish writing
            logged = [json.loads(raw) for raw in connection.lrange(defaults.OUTBOX_LOG, 0, -1)]
    return seconds, sorted({str(entry["key"]) for entry in logged})


def run_per_event_jobs(events: list[dict[str, Any]], worker_class: str) -> float:
    """Seconds for two plain RQ workers to run one job per event."""
    with redis_server() as (url, data_dir):
        connection = redis.Redis.from_url(url)
        queue = Queue("bench", connection=connection)
        command = [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--worker-class", worker_class, "bench"]
        with workers(command, environment(url, data_dir)):
            wait_for_workers(connection, 2)
            started = time.perf_counter()
            with queue.connection.pipeline() as pipe:
                for event in events:
                    queue.enqueue("bench.detection.handle_one", orjson.dumps(event), pipeline=pipe)
                pipe.execute()
            wait_until(lambda: queue.count == 0 and queue.started_job_registry.count == 0, 600)
            return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--baseline-events", type=int, default=400, help="events for the fork-per-job baseline")
    args = parser.parse_args()
    events = traffic(args.events)
    print(f"{os.cpu_count()} cores; {len(events)} report events ({len(WAVE_DOMAINS)} waves); 2 workers per run")

    fork_events = traffic(args.baseline_events)
    fork_rate = len(fork_events) / run_per_event_jobs(fork_events, "rq.Worker")
    print(f"one RQ job per event, rq.Worker (fork per job): {fork_rate:8.0f} events/s  ({len(fork_events)} events)")
    simple_events = traffic(args.baseline_events * 5)
    simple_rate = len(simple_events) / run_per_event_jobs(simple_events, "rq.SimpleWorker")
    print(f"one RQ job per event, rq.SimpleWorker:          {simple_rate:8.0f} events/s  ({len(simple_events)} events)")
    seconds, dms = run_tocsin(events)
    rate = len(events) / seconds
    print(f"tocsin workers (stream drained in batches):      {rate:8.0f} events/s  ({len(events)} events)")
    print(f"\nspeed-up over fork per job: {rate / fork_rate:.0f}x; over SimpleWorker jobs: {rate / simple_rate:.1f}x")
    print(f"DMs in the dry-run outbox: {len(dms)} for {len(WAVE_DOMAINS)} waves")
    for key in dms:
        print(f"  {key}")
    print(f"target >= 500 events/s -> {'OK' if rate >= 500 else 'MISSED'}")

    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    cut_off, _dms = run_tocsin(events, TOCSIN_MASTODON_URL=unreachable, TOCSIN_ACCESS_TOKEN="bench-token")
    cut_off_rate = len(events) / cut_off
    print(f"\nwith the instance unreachable ({unreachable}, token set): {cut_off_rate:8.0f} events/s")
    ratio = cut_off_rate / rate
    print(f"ratio to the run above: {ratio:.2f} -> target >= 0.90 {'OK' if ratio >= 0.9 else 'MISSED'}")


if __name__ == "__main__":
    main()
