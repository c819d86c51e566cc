"""A peer scan at a large instance's scale, end to end: peer list → NodeInfo → advisories → follows → DM.

    python -m bench.scan [--peers 30000] [--latency 0.2] [--workers 2] [--no-kill]

The fleet (its own process; local HTTPS, a throwaway CA): of the peers, 60 % do not resolve (NXDOMAIN),
5 % refuse the connection, 5 % accept and never answer, 30 % answer NodeInfo after `latency` seconds —
of those, 80 % Mastodon (mostly current; 1.5 % older than 4.2.5, which the account-takeover advisory
affects; some on the 4.4/4.5 quote bug), 2 % Pixelfed (two thirds on 0.12.4), the rest Misskey, Akkoma,
GoToSocial. The Mastodon double lists them as the instance's peers and enforces Mastodon's default API
limit, 300 requests per 5 minutes, with X-RateLimit-* headers. Workers are real `tocsin worker`
processes (tests/fleet_worker.py: names resolve into the fleet, certificates from its CA) on an embedded
Redis, with the default settings (concurrency 100, 10 s timeout, chunks of 500, half the API limit).

Run 1 — the scheduled scan, from enqueueing it to the moderators' DM: wall time, the workers' peak RSS,
the double's 429s, admin calls. Run 2 — the same on an emptied Redis, every worker SIGKILLed once half
the peers are read and fresh ones started: it must complete with exactly one DM, and fetch no peer
twice but those in flight when the workers died.
Baseline, measured in the same run: the floor the latency, the timeouts and the API share impose.
Targets (issue 12, 30,000 peers, 2 cores): ≤ 10 minutes, ≤ 300 MB RSS, zero 429s; the killed run completes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import redis

from bot.core import defaults
from bot.core.config import load_settings
from bot.mastodon.context import Context
from bot.mastodon.ratelimit import BULK_SHARE
from bot.ops.embedded_redis import EmbeddedRedis
from bot.pipeline.queue import enqueue_once
from handlers.scan import runs as scan_runs
from handlers.shared.settings import PeerScanSettings
from tests.mastodon_double import MastodonDouble

MASTODON_VERSIONS = (
    ["4.6.5"] * 90
    + ["4.5.8"] * 30
    + ["4.5.7"] * 16  # the quote bug (harms only them: outreach)
    + ["4.4.15"] * 20
    + ["4.4.14"] * 8  # the quote bug
    + ["4.3.12"] * 30
    + ["4.2.4", "4.2.4", "3.5.3"]  # the account-takeover advisory (a block would not stop it: outreach)
    + ["4.6.0-nightly.2025-07-17", "4.2.10+glitch", "4.4.9+hometown-1.1.3"]
)
OTHERS = ["misskey"] * 10 + ["akkoma"] * 4 + ["gotosocial"] * 4


def fleet_name(n: int) -> str:
    """The n-th peer: 12 of every 20 do not resolve, 1 refuses, 1 hangs, 6 answer."""
    slot = n % 20
    if slot < 12:
        return f"nx{n}.fleet.invalid"
    if slot == 12:
        return f"refused{n}.fleet.example"
    if slot == 13:
        return f"hang{n}.fleet.example"
    return f"peer{n}.fleet.example"


def software_of(n: int) -> tuple[str, str]:
    k = n // 20 * 6 + n % 20 - 14  # the k-th answering peer
    if k % 100 < 2:
        return "pixelfed", "0.12.5" if k % 3 == 0 else "0.12.4"
    if k % 100 < 20:
        name = OTHERS[k % 100 - 2]
        return name, {"misskey": "2025.4.1", "akkoma": "3.15.2", "gotosocial": "0.19.1"}[name]
    return "mastodon", MASTODON_VERSIONS[(k // 100 * 7 + k) % len(MASTODON_VERSIONS)]


def serve_fleet(count: int, latency: float, pipe: Connection) -> None:
    """The fleet, in its own process; answers the bench's questions about what it was asked."""
    from tests.peers import Peer, PeerFleet, nodeinfo

    fleet = PeerFleet(["*.fleet.example"])
    for n in range(count):
        name = fleet_name(n)
        if name.startswith("hang"):
            fleet.peers[name] = Peer(hang=True)
        elif name.startswith("peer"):
            software, version = software_of(n)
            usage = {"users": {"total": 50 + n % 5000, "activeMonth": 10 + n % 3000}}
            fleet.peers[name] = Peer(nodeinfo(software, version, usage=usage), latency=latency)
    fleet.start()
    pipe.send((fleet.ca.cert_pem.bytes(), fleet.port, fleet.refused_port))
    while (command := pipe.recv()) != "stop":
        if command == "fetched":
            pipe.send(Counter(host for host, path, _headers in fleet.requests if path == "/.well-known/nodeinfo"))
        elif command == "reset":
            fleet.requests.clear()
    fleet.stop()


class Workers:
    def __init__(self, count: int, fleet_port: int, refused_port: int, ca_file: Path, env: dict[str, str]) -> None:
        self.args = [sys.executable, "-m", "tests.fleet_worker", str(fleet_port), str(refused_port), str(ca_file)]
        self.env = env
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []
        self.peak_rss_mb = 0.0

    def start(self) -> None:
        self.processes = [
            subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(self.count)
        ]

    def measure(self) -> None:
        for process in self.processes:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):  # the peak resident set size
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.measure()
        for process in self.processes:
            process.send_signal(sig)
        for process in self.processes:
            process.wait(30)


def scan_once(ctx: Context, double: MastodonDouble, workers: Workers, kill_at: float | None) -> dict[str, float]:
    """Enqueue the scheduled scan and wait for its DM; optionally SIGKILL every worker midway."""
    connection = ctx.redis
    started = time.monotonic()
    enqueue_once(
        connection, defaults.QUEUE_BACKGROUND, scan_runs.scheduled_scan, job_id=f"bench-scan-{int(started * 1000)}"
    )
    killed_after = None
    last_said = 0.0
    run: scan_runs.Run | None = None
    while True:
        time.sleep(0.5)  # polling a real run's progress
        workers.measure()
        if run is None and (current := connection.get(scan_runs.CURRENT_RUN)) is not None:
            run = scan_runs.Run(current.decode())
        if run is None:
            continue
        now = scan_runs.progress(ctx, run)
        read, total = now.read, max(now.total, 1)
        if time.monotonic() - last_said > 30:
            last_said = time.monotonic()
            print(f"  {time.monotonic() - started:5.0f} s: read {read:,}/{total:,}, sized {now.sized}, {now.state}")
        if kill_at is not None and killed_after is None and read >= kill_at * total:
            workers.stop(signal.SIGKILL)
            killed_after = time.monotonic() - started
            print(f"  {killed_after:5.0f} s: every worker SIGKILLed at {read:,}/{total:,} peers read; new ones started")
            workers.start()
        if now.state == "done" and double.direct_threads():
            return {"seconds": time.monotonic() - started, "read": read, "killed_after": killed_after or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=30000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-kill", action="store_true", help="Skip the second run (workers killed midway).")
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    fleet = multiprocessing.Process(target=serve_fleet, args=(args.peers, args.latency, child))
    fleet.start()
    ca_pem, fleet_port, refused_port = parent.recv()
    scratch = Path(tempfile.mkdtemp(prefix="tocsin-bench-scan-"))
    ca_file = scratch / "fleet-ca.pem"
    ca_file.write_bytes(ca_pem)
    server = EmbeddedRedis(scratch / "redis", persistent=False).start()
    connection = redis.Redis.from_url(server.url)
    double = MastodonDouble(max_characters=500).start()  # enforces 300 requests / 5 minutes by default
    names = [fleet_name(n) for n in range(args.peers)]
    double.peers = names
    for n, name in enumerate(names):
        if name.startswith("peer"):
            double.measures[name] = (n % 40, n % 25, 5 + n % 90) if n % 9 else (300 + n % 700, 200, 900)
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("TOCSIN_")},
        "TOCSIN_REDIS_URL": server.url,
        "TOCSIN_MASTODON_URL": double.url,
        "TOCSIN_ACCESS_TOKEN": double.token,
        "TOCSIN_MODERATORS": "mod_anna",
        "TOCSIN_DATA_DIR": str(scratch / "data"),
        "TOCSIN_ALLOWED_PRIVATE_ADDRESSES": "127.0.0.0/8",
        "TOCSIN_SCAN_INTERVAL_HOURS": "0",  # the bench starts the scans
    }
    workers = Workers(args.workers, fleet_port, refused_port, ca_file, env)
    settings = load_settings(_env_file=None)
    ctx = Context(settings, connection)
    try:
        workers.start()
        print(f"{os.cpu_count()} cores; {args.peers:,} peers ({args.latency * 1000:.0f} ms per answer), ", end="")
        scan = settings.section(PeerScanSettings)
        print(f"{args.workers} workers, concurrency {scan.concurrency} each, chunks of {scan.chunk}")
        print("run 1: the scheduled scan")
        first = scan_once(ctx, double, workers, kill_at=None)
        throttled_first = double.throttled
        admin_calls = sum(1 for _method, path in double.requests if "/admin/" in path)
        sized = sum(1 for request in double.requests if request == ("POST", "/api/v1/admin/measures"))
        [thread] = double.direct_threads()
        parent.send("fetched")
        fetched_first: Counter[str] = parent.recv()
        workers.stop()
        rss_first = workers.peak_rss_mb

        killed: dict[str, float] | None = None
        if not args.no_kill:
            connection.flushall()  # no cached NodeInfo, no memory of the first DM
            double.statuses.clear()
            double._idempotency.clear()  # Mastodon forgets idempotency keys after an hour
            parent.send("reset")
            workers.peak_rss_mb = 0.0
            workers.start()
            print("run 2: the same, every worker killed halfway")
            killed = scan_once(ctx, double, workers, kill_at=0.5)
            threads = double.direct_threads()
            parent.send("fetched")
            fetched_again: Counter[str] = parent.recv()
            workers.stop()
    finally:
        if any(process.poll() is None for process in workers.processes):
            workers.stop(signal.SIGKILL)
        parent.send("stop")
        fleet.join(10)
        double.stop()
        server.stop()

    timeout = settings.section(PeerScanSettings).timeout
    readable = sum(1 for name in names if name.startswith("peer"))
    hanging = sum(1 for name in names if name.startswith("hang"))
    reading_floor = (readable * 2 * args.latency + hanging * timeout) / (
        settings.section(PeerScanSettings).concurrency * args.workers
    )
    share = int(300 * settings.api_budget * BULK_SHARE)
    windows = -(-sized // share)
    print()
    print(f"run 1: scan and DM in {first['seconds'] / 60:.1f} min ({first['seconds']:.0f} s)")
    print(f"  reading floor {reading_floor:.0f} s (latency and timeouts over all slots): ", end="")
    print(f"{first['seconds'] / reading_floor:.1f}x; sizing: {sized} look-ups at {share} per 5-minute window ", end="")
    print(f"need {windows} window(s), so up to {(windows - 1) * 5} min of waiting for a reset, by the clock")
    print(f"  {admin_calls} admin API calls, {sized} of them follows; 429s from Mastodon: {throttled_first}")
    print(f"  peers fetched more than once: {sum(1 for count in fetched_first.values() if count > 1)}")
    print(f"  DM: {len(thread)} post(s); first line: {thread[0]['text'].splitlines()[1][:100]}")
    print(f"  workers' peak RSS: {rss_first:.0f} MB")
    if killed is not None:
        in_flight = settings.section(PeerScanSettings).chunk * args.workers
        twice = sum(1 for count in fetched_again.values() if count > 1)
        print(f"run 2: killed after {killed['killed_after']:.0f} s, completed in {killed['seconds']:.0f} s ", end="")
        print(f"({killed['seconds'] / first['seconds']:.2f}x run 1); DM threads: {len(threads)}")
        print(f"  peers fetched twice: {twice} (bound: a chunk per worker, {in_flight}, lost when they died)")
        print(f"  workers' peak RSS: {workers.peak_rss_mb:.0f} MB; 429s in both runs: {double.throttled}")
    ok = first["seconds"] <= 600 and rss_first <= 300 and double.throttled == 0
    print(f"targets: <= 10 min, <= 300 MB, no 429 -> {'OK' if ok else 'MISSED'}", end="")
    if killed is not None:
        resumed = len(threads) == 1 and twice <= in_flight
        print(f"; killed run completes with one DM -> {'OK' if resumed else 'MISSED'}", end="")
    print()


if __name__ == "__main__":
    main()
