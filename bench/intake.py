"""Intake throughput and latency: Tocsin's web process against a bare ASGI app doing only HMAC + one LPUSH.

Both run under uvicorn (one process each, same options) against the same real redis-server, in this run.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.loadgen import Result, build_request, closed_loop, open_loop
from bot.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"
PAYLOAD = json.loads((ROOT / "tests" / "fixtures" / "mastodon" / "report.created.json").read_text())


def signed_requests(port: int, count: int, offset: int) -> list[bytes]:
    requests = []
    for n in range(count):
        event = copy.deepcopy(PAYLOAD)
        event["object"]["id"] = str(offset + n)
        body = json.dumps(event, separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        requests.append(build_request("127.0.0.1", port, "/webhooks/mastodon", body, {"X-Hub-Signature": signature}))
    return requests


def start_server(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not start: {command}") from None
            time.sleep(0.1)


def measure(
    label: str, command: list[str], env: dict[str, str], port: int, args: argparse.Namespace, offset: int
) -> tuple[Result, Result]:
    process = start_server(command, env, port)
    try:
        asyncio.run(closed_loop("127.0.0.1", port, signed_requests(port, 500, offset), 16))  # warm up
        burst = asyncio.run(closed_loop("127.0.0.1", port, signed_requests(port, args.requests, offset + 10**6), 32))
        steady_count = int(args.rate * args.seconds)
        steady = asyncio.run(
            open_loop("127.0.0.1", port, signed_requests(port, steady_count, offset + 2 * 10**6), args.rate)
        )
    finally:
        process.terminate()
        process.wait(10)
    print(burst.line(f"{label} max throughput"))
    print(steady.line(f"{label} at {args.rate:.0f}/s"))
    return burst, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=True) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(TOCSIN_REDIS_URL=server.url, TOCSIN_WEBHOOK_SECRET=SECRET, TOCSIN_DATA_DIR=tmp)
        print(
            f"{os.cpu_count()} cores; redis-server {redis.Redis.from_url(server.url).info()['redis_version']}; "
            f"{args.requests} requests closed-loop (32 connections), {args.rate:.0f}/s for {args.seconds:.0f} s"
        )
        port = free_port()
        bare_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        bare_env = {**env}
        bare_burst, _bare_steady = measure("bare ASGI (HMAC+LPUSH)", bare_cmd, bare_env, port, args, 0)
        port = free_port()
        tocsin_cmd = [sys.executable, "-m", "bot.cli", "web"]
        tocsin_env = {**env, "TOCSIN_PORT": str(port)}
        tocsin_burst, tocsin_steady = measure("tocsin intake", tocsin_cmd, tocsin_env, port, args, 5 * 10**6)
        stored = redis.Redis.from_url(server.url).xlen("tocsin:events")
    ratio = tocsin_burst.rate / bare_burst.rate
    print(f"\nthroughput ratio tocsin/bare: {ratio:.2f} (target >= 0.80) -> {'OK' if ratio >= 0.8 else 'MISSED'}")
    p99 = tocsin_steady.percentile(99)
    print(f"tocsin p99 at {args.rate:.0f}/s: {p99:.2f} ms (target <= 20 ms) -> {'OK' if p99 <= 20 else 'MISSED'}")
    print(f"events stored by tocsin: {stored}")


if __name__ == "__main__":
    main()
