"""Intake throughput and latency: Tocsin's web process against a bare ASGI app doing only HMAC + one LPUSH.

Both run under uvicorn (one process each, same options) against the same real redis-server, in this run;
closed-loop rounds alternate between the two so drift on a shared machine hits both alike.
Targets (issue 2): throughput >= 0.8x the bare app's; p99 <= 20 ms at 300 requests/s.

    python -m bench.intake [--requests 8000] [--rate 300] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import redis

from bench.loadgen import Result, build_request, closed_loop, open_loop
from bot.ops.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"
PAYLOAD = json.loads((ROOT / "tests" / "fixtures" / "mastodon" / "report.created.json").read_text())


def signed_requests(port: int, count: int, offset: int) -> list[bytes]:
    requests = []
    for n in range(count):
        event = copy.deepcopy(PAYLOAD)
        event["object"]["id"] = str(offset + n)
        event["object"]["account"]["ip"] = f"198.51.100.{n % 256}"  # documentation range, varied per report
        body = json.dumps(event, separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        requests.append(build_request("127.0.0.1", port, "/webhooks/mastodon", body, {"X-Hub-Signature": signature}))
    return requests


def start_server(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx2.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not start: {command}") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8000, help="requests per closed-loop round")
    parser.add_argument("--rounds", type=int, default=5, help="closed-loop rounds per app, interleaved")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=True) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(TOCSIN_REDIS_URL=server.url, TOCSIN_WEBHOOK_SECRET=SECRET, TOCSIN_DATA_DIR=tmp)
        print(
            f"{os.cpu_count()} cores; redis-server {redis.Redis.from_url(server.url).info()['redis_version']}; "
            f"{args.rounds} interleaved rounds of {args.requests} requests closed-loop (32 connections); "
            f"{args.rate:.0f}/s for {args.seconds:.0f} s"
        )
        bare_port, tocsin_port = free_port(), free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        servers = [
            start_server([*uvicorn, "bench.bare_app:app", "--port", str(bare_port)], env, bare_port),
            start_server(
                [sys.executable, "-m", "bot.ops.cli", "web"], {**env, "TOCSIN_PORT": str(tocsin_port)}, tocsin_port
            ),
        ]
        offset = 0

        def load(port: int, count: int, rate: float | None = None) -> Result:
            nonlocal offset
            offset += count
            requests = signed_requests(port, count, offset)
            if rate is None:
                return asyncio.run(closed_loop("127.0.0.1", port, requests, 32))
            return asyncio.run(open_loop("127.0.0.1", port, requests, rate))

        try:
            for port in (bare_port, tocsin_port):
                load(port, 1000)  # warm up
            bare_rates, tocsin_rates = [], []
            for round_number in range(1, args.rounds + 1):
                bare, tocsin = load(bare_port, args.requests), load(tocsin_port, args.requests)
                print(bare.line(f"round {round_number} bare ASGI"))
                print(tocsin.line(f"round {round_number} tocsin intake"))
                bare_rates.append(bare.rate)
                tocsin_rates.append(tocsin.rate)
            steady_count = int(args.rate * args.seconds)
            bare_steady = load(bare_port, steady_count, args.rate)
            tocsin_steady = load(tocsin_port, steady_count, args.rate)
            print(bare_steady.line(f"bare ASGI at {args.rate:.0f}/s"))
            print(tocsin_steady.line(f"tocsin intake at {args.rate:.0f}/s"))
        finally:
            for process in servers:
                process.terminate()
                process.wait(10)
        stored = redis.Redis.from_url(server.url).xlen("tocsin:events")
    bare_rate, tocsin_rate = statistics.median(bare_rates), statistics.median(tocsin_rates)
    ratio = tocsin_rate / bare_rate
    print(f"\nmedian max throughput: bare {bare_rate:.0f} req/s, tocsin {tocsin_rate:.0f} req/s")
    print(f"throughput ratio tocsin/bare: {ratio:.2f} (target >= 0.80) -> {'OK' if ratio >= 0.8 else 'MISSED'}")
    p99 = tocsin_steady.percentile(99)
    print(f"tocsin p99 at {args.rate:.0f}/s: {p99:.2f} ms (target <= 20 ms) -> {'OK' if p99 <= 20 else 'MISSED'}")
    print(f"events stored by tocsin: {stored}")


if __name__ == "__main__":
    main()
