"""A status.created flood through the real processes, and Redis memory after a million events.

Part 1 (flood): `tocsin web` and two `tocsin worker` processes on an embedded redis-server (append-only
file on). Signed status.created deliveries arrive over HTTP at a fixed rate (default 2,000 a minute,
half of them spam from young accounts: mass mentions, one image, many accounts); every 10 s the script
prints the events processed per second and the queue depth (events accepted but not yet processed).
The baseline, measured in the same run: how fast the same workers drain a backlog of the same traffic,
i.e. the capacity the flood is using a share of.

Part 2 (memory): a million events (statuses from old and young accounts with unique and repeated
content, sign-ups, reports) run through the detectors in this process against a fresh redis-server;
`used_memory` is printed every 100,000 events against the empty server's.

Targets (issue 3): 2,000 events/min without the queue growing, on 2 cores; bounded memory.

    python -m bench.statuses [--minutes 3] [--per-minute 2000] [--memory-events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.intake import start_server
from bench.loadgen import build_request, open_loop
from bot.core import defaults
from bot.core.config import load_settings
from bot.core.privacy import reduce_event
from bot.mastodon.context import Context
from bot.ops.embedded_redis import EmbeddedRedis, free_port
from bot.pipeline.events import ADDED_DRAIN_NEEDED, APPEND, enqueue_drain

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"
WORDS = ["coffee", "trail", "choir", "garden", "river", "bike", "book", "eclipse", "harbor", "market"]
WORDS += ["museum", "rain", "concert", "bread"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(number: int, moment: datetime, account: int, account_created: datetime, text: str, **extra: Any) -> dict:
    """A status.created event with the fields Mastodon sends that the detector reads."""
    mentions = extra.get("mentions", [])
    return {
        "event": "status.created",
        "created_at": iso(moment),
        "object": {
            "id": str(number),
            "created_at": iso(moment),
            "visibility": "public",
            "content": f"<p>{text}</p>",
            "spoiler_text": "",
            "reblog": None,
            "card": None,
            "account": {
                "id": str(account),
                "username": f"user{account}",
                "acct": f"user{account}",
                "created_at": iso(account_created.replace(hour=0, minute=0, second=0, microsecond=0)),
            },
            "mentions": [{"id": str(n), "username": f"v{n}", "acct": f"v{n}@other.example.net"} for n in mentions],
            "media_attachments": [{"type": "image", "blurhash": extra["blurhash"]}] if "blurhash" in extra else [],
        },
    }


def signup(number: int, moment: datetime, rng: random.Random) -> dict:
    return {
        "event": "account.created",
        "created_at": iso(moment),
        "object": {
            "id": str(number),
            "username": f"new{number}",
            "domain": None,
            "created_at": iso(moment),
            "email": f"new{number}@mail{rng.randint(1, 50)}.example",
            "ip": f"198.51.100.{rng.randint(1, 254)}",
            "confirmed": False,
            "approved": True,
            "suspended": False,
        },
    }


def report(number: int, moment: datetime, rng: random.Random) -> dict:
    return {
        "event": "report.created",
        "created_at": iso(moment),
        "object": {
            "id": str(number),
            "created_at": iso(moment),
            "category": "spam",
            "comment": "spam",
            "action_taken": False,
            "account": {"id": str(rng.randint(1, 500)), "domain": None},
            "target_account": {"id": str(rng.randint(1, 5000)), "domain": f"server{rng.randint(1, 300)}.example"},
        },
    }


def flood_event(number: int, moment: datetime, rng: random.Random) -> dict:
    """Half ordinary posts of established accounts, half spam from young accounts."""
    if rng.random() < 0.5:
        text = " ".join(rng.choices(WORDS, k=8)) + f" {number}"
        return status(number, moment, rng.randint(1, 3000), moment - timedelta(days=400), text)
    bot = rng.randint(1, 400)
    return status(
        number,
        moment,
        100_000 + bot,
        moment - timedelta(hours=6),
        f"Look at this! {number}",
        mentions=[rng.randint(1, 10**6) for _ in range(8)],
        blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
    )


def signed(port: int, event: dict) -> bytes:
    body = json.dumps(event, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return build_request("127.0.0.1", port, "/webhooks/mastodon", body, {"X-Hub-Signature": signature})


def accepted(connection: redis.Redis) -> int:
    return sum(int(count) for count in connection.hgetall(defaults.INTAKE_COUNTS).values())


def depth(connection: redis.Redis) -> int:
    """Events accepted but not processed yet (entries are deleted from the stream once processed)."""
    return int(connection.xlen(defaults.EVENT_STREAM))


def run_flood(minutes: float, per_minute: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=True) as server:
        connection = redis.Redis.from_url(server.url)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(
            TOCSIN_REDIS_URL=server.url,
            TOCSIN_WEBHOOK_SECRET=SECRET,
            TOCSIN_DATA_DIR=tmp,
            TOCSIN_PORT=str(port),
            TOCSIN_MODERATORS="mod1,mod2",
            PYTHONPATH=str(ROOT),
        )
        command = [sys.executable, "-m", "bot.ops.cli"]
        web = start_server([*command, "web"], env, port)
        workers = [
            subprocess.Popen(
                [*command, "worker"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(2)
        ]
        rng = random.Random(5)
        number = 10**7
        try:
            # Baseline: the capacity of the same two workers, draining a backlog of the same traffic.
            backlog = 20_000
            now = datetime.now(UTC)
            append = connection.register_script(APPEND.source)
            pipe = connection.pipeline(transaction=False)
            for n in range(backlog):
                event = reduce_event(flood_event(number + n, now + timedelta(milliseconds=n), rng), b"k")
                keys = [defaults.DEDUPE_PREFIX + str(number + n), defaults.EVENT_STREAM, defaults.DRAIN_FLAG, "bench"]
                append(keys, [3600, json.dumps(event), defaults.DRAIN_FLAG_TTL, "status.created"], client=pipe)
            number += backlog
            started = time.perf_counter()
            if ADDED_DRAIN_NEEDED in pipe.execute():
                enqueue_drain(connection, [1])
            while depth(connection) > 0:
                time.sleep(0.05)
            capacity = backlog / (time.perf_counter() - started)
            rate = per_minute / 60
            print(f"capacity of 2 workers (backlog of {backlog:,} events): {capacity:,.0f} events/s")

            # The flood: a fixed rate over HTTP, real event times.
            count = int(rate * minutes * 60)
            start_moment = datetime.now(UTC)
            requests = [
                signed(port, flood_event(number + n, start_moment + timedelta(seconds=n / rate), rng))
                for n in range(count)
            ]
            base_accepted = accepted(connection)
            samples: list[tuple[float, int, int]] = []
            done = threading.Event()

            def sample() -> None:
                began = time.perf_counter()
                while not done.wait(10):
                    samples.append(
                        (time.perf_counter() - began, accepted(connection) - base_accepted, depth(connection))
                    )
                    elapsed, total, queued = samples[-1]
                    previous = samples[-2] if len(samples) > 1 else (0.0, 0, 0)
                    processed = (total - queued) - (previous[1] - previous[2])
                    speed = processed / (elapsed - previous[0])
                    print(
                        f"  t={elapsed:5.0f} s  accepted {total:7,}  processed {speed:6.1f}/s  queue depth {queued:5,}"
                    )

            print(f"flood: {per_minute:,} status.created a minute ({rate:.1f}/s) for {minutes:g} min over HTTP")
            sampler = threading.Thread(target=sample)
            sampler.start()
            result = asyncio.run(open_loop("127.0.0.1", port, requests, rate))
            while depth(connection) > 0:
                time.sleep(0.1)
            done.set()
            sampler.join()
            depths = [queued for _elapsed, _total, queued in samples]
            print(
                f"responses {result.statuses}; p99 {result.percentile(99):.1f} ms; "
                f"queue depth max {max(depths, default=0)}, last {depths[-1] if depths else 0}"
            )
            print(f"the flood used {rate / capacity:.1%} of the workers' capacity ({capacity / rate:.0f}x headroom)")
            steady = len(depths) < 3 or max(depths[len(depths) // 2 :]) <= max(depths[: len(depths) // 2]) + rate * 2
            print(f"target: no queue growth at {per_minute:,}/min -> {'OK' if steady else 'MISSED'}")
        finally:
            for process in [web, *workers]:
                process.terminate()
            for process in [web, *workers]:
                process.wait(20)


def memory_events(count: int, seed: int = 9) -> Any:
    """A mixed day of traffic, many times over: statuses (old and young accounts, unique and repeated
    content), sign-ups, reports. Event times advance 30 ms per event (2,000 a minute)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(count):
        moment = start + timedelta(milliseconds=30 * n)
        roll = rng.random()
        if roll < 0.05:
            yield report(n, moment, rng)
        elif roll < 0.15:
            yield signup(n, moment, rng)
        elif roll < 0.55:
            text = " ".join(rng.choices(WORDS, k=8)) + f" {n}"
            yield status(n, moment, rng.randint(1, 50_000), moment - timedelta(days=300), text)
        elif roll < 0.9:  # young accounts, every post unique: the worst case for near-duplicate sketches
            text = "unique post " + " ".join(rng.choices(WORDS, k=6)) + f" {n}"
            link = f'<a href="https://site{n}.example/page">link</a>'
            yield status(
                n, moment, 200_000 + n % 20_000, moment - timedelta(days=1), f"{text} {link}", blurhash=f"L{n}"
            )
        else:
            yield flood_event(n, moment, rng)


def run_memory(count: int) -> None:
    from bot.pipeline.families import registry

    families = registry()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=False) as server:
        connection = redis.Redis.from_url(server.url)
        settings = load_settings(_env_file=None, redis_url=server.url, data_dir=Path(tmp), moderators=["mod1"])
        ctx = Context(settings, connection)
        empty = int(connection.info("memory")["used_memory"])
        print(f"\nmemory: {count:,} events through the detectors; empty redis-server uses {empty / 2**20:.1f} MiB")
        started = time.perf_counter()
        step = max(count // 10, 1)
        for n, event in enumerate(memory_events(count), start=1):
            families.dispatch(ctx, reduce_event(event, b"k"))
            if n % 1000 == 0:
                families.after_batch(ctx)
            if n % step == 0:
                used = int(connection.info("memory")["used_memory"])
                print(
                    f"  {n:9,} events  used_memory {used / 2**20:7.1f} MiB  (+{(used - empty) / 2**20:.1f})"
                    f"  keys {connection.dbsize():8,}  {n / (time.perf_counter() - started):,.0f} events/s"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--per-minute", type=int, default=2000)
    parser.add_argument("--memory-events", type=int, default=1_000_000, help="0 skips the memory part")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    if args.minutes > 0:
        run_flood(args.minutes, args.per_minute)
    if args.memory_events > 0:
        run_memory(args.memory_events)


if __name__ == "__main__":
    main()
