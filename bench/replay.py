"""`tocsin replay` speed: a year of a large instance (100,000 reports and sign-ups) replayed from the cache,
against the raw event-parsing loop over the same cache, in the same run.

The history is synthetic: reports against 300 servers and local accounts (a few waves among them),
and local sign-ups (one bot burst), kept and reduced as `tocsin replay` keeps them (what the handlers
read, personal data reduced as intake does) and saved as it caches them. Timed: loading that cache,
replaying it through the installed families' handlers on a throwaway embedded redis-server (as the
command does), scoring. The baseline reads the same cache file and parses
every event's JSON and time, nothing more. Target (issue 24): under a minute on 2 cores.

    python -m bench.replay [--events 100000]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.detection import iso, report
from bot.core.config import load_settings
from bot.core.privacy import reduce_event
from bot.mastodon.context import redis_from_url
from bot.ops.embedded_redis import EmbeddedRedis
from bot.ops.replay import BlockRecord, History, event_time, replay, score
from bot.pipeline.events import parse_time
from bot.pipeline.families import registry
from handlers.shared.payloads import slim_account, slim_report

ROOT = Path(__file__).resolve().parent.parent
SIGNUP = json.loads((ROOT / "tests" / "fixtures" / "mastodon" / "account.created.json").read_text())
TARGET_SECONDS = 60.0


def signup(number: int, moment: datetime, username: str, mail: str, network: int) -> dict[str, Any]:
    event = copy.deepcopy(SIGNUP)
    event["created_at"] = iso(moment)
    obj = event["object"]
    obj.update(
        id=str(number),
        username=username,
        created_at=iso(moment),
        email=f"{username}@{mail}",
        ip=f"203.0.113.{network % 254 + 1}",
        ips=[],
        confirmed=True,
        approved=True,
    )
    obj["account"].update(id=str(number), username=username, acct=username)
    return event


def year_of_history(events: int, seed: int = 24) -> History:
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=365)
    span = (end - start).total_seconds()
    signups = events // 5
    waves = [(start + timedelta(days=day), f"wave{day}.example") for day in (40, 120, 200, 300)]
    generated: list[dict[str, Any]] = []
    wave_reports = 150
    for n in range(events - signups - wave_reports * len(waves)):
        moment = start + timedelta(seconds=rng.uniform(0, span))
        domain = None if rng.random() < 0.2 else f"server{rng.randint(0, 299)}.example"
        generated.append(report(n + 1, moment, domain, rng.randint(1, 50_000), rng.randint(1, 20_000)))
    for w, (moment, domain) in enumerate(waves):
        for n in range(wave_reports):
            at = moment + timedelta(seconds=n * 60)
            generated.append(report(10_000_000 + w * 1000 + n, at, domain, rng.randint(1, 80), rng.randint(1, 20_000)))
    for n in range(signups - 200):
        moment = start + timedelta(seconds=rng.uniform(0, span))
        mail = rng.choice(["mail.example.com", "example.org", "post.example.net"])
        generated.append(signup(20_000_000 + n, moment, f"person{n}", mail, rng.randint(0, 100_000)))
    for n in range(200):  # a bot burst: 200 sign-ups in 40 minutes, one mail domain, one network
        moment = start + timedelta(days=250, seconds=n * 12)
        generated.append(signup(30_000_000 + n, moment, f"cryptodeals{1000 + n}", "spam.example", 7))
    key = secrets.token_bytes(32)
    for event in generated:  # what the history readers keep of each, as `tocsin replay` downloads it
        slim = slim_report if event["event"].startswith("report.") else slim_account
        event["object"] = slim(event["object"])
    reduced = sorted((reduce_event(event, key) for event in generated), key=event_time)
    blocks = [BlockRecord(domain, "silence", (moment + timedelta(hours=2)).timestamp()) for moment, domain in waves]
    return History(reduced, blocks, start.timestamp(), end.timestamp(), key.hex())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    print(f"generating {args.events:,} events (a year of reports and sign-ups)…", flush=True)
    with tempfile.TemporaryDirectory(prefix="tocsin-bench-replay-") as raw_directory:
        directory = Path(raw_directory)
        cache = directory / "history.json"
        year_of_history(args.events).save(cache)

        started = time.perf_counter()  # the baseline: read the cache, parse every event and its time
        parsed = orjson.loads(cache.read_bytes())
        times = [parse_time(event.get("created_at")) for event in parsed["events"]]
        baseline = time.perf_counter() - started
        assert len(times) == args.events

        settings = load_settings(_env_file=None, data_dir=directory / "data")
        families = registry()
        with EmbeddedRedis(directory / "redis", persistent=False) as server:
            connection = redis_from_url(server.url)
            started = time.perf_counter()
            history = History.load(cache)
            assert history is not None
            loaded = time.perf_counter() - started
            alerts, counts = replay(families, settings, connection, history)
            replayed = time.perf_counter() - started - loaded
            scores = score(families, history, alerts, 7.0)
            total = time.perf_counter() - started
            connection.close()

    print(f"baseline (read the cache, parse {args.events:,} events): {baseline:.2f} s")
    print(f"replay: cache loaded in {loaded:.2f} s, replayed in {replayed:.2f} s, {total:.2f} s with scoring")
    print(f"  {counts.events / replayed:,.0f} events/s; {counts.failed} failed, {counts.rejected} rejected")
    for detector in scores:
        figures = detector.summary()
        print(
            f"  {detector.name}: {figures['alerts']} alerts, {figures['hits']} hits, "
            f"{figures['false_alarms']} likely false alarms, {figures['misses']} misses"
        )
    print(f"ratio replay/baseline: {total / baseline:.1f}x")
    verdict = "OK" if total < TARGET_SECONDS else "MISSED"
    print(f"{args.events:,} events in {total:.1f} s (target < {TARGET_SECONDS:.0f} s) -> {verdict}")


if __name__ == "__main__":
    main()
