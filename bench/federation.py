"""The federation audit's memory at a large instance's scale: does it stay flat as peers grow?

    python -m bench.federation [--small 2000] [--large 20000] [--list 5000]

A local HTTPS fleet (its own process, a throwaway CA) answers for every peer name: a third of the peers
publish a block list (some blocking the target, some obfuscated), a third keep it private, the rest do
not resolve; every answering peer publishes a peers list of `--list` domains (about 25 bytes each: 125 KB
by default), with the target in it for three in four. The audit runs in a child process per size, against an
embedded Redis and the Mastodon double listing the fleet as the instance's peers; each child reports
its peak RSS and how long it took. Baseline, in the same run: the same child with nothing to audit
(the process's own import and set-up). Target (issue 15): memory bounded — the large audit's peak RSS
above the baseline no more than twice the small one's, though it reads ten times the peers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

TARGET = "threads.net"


def peer_name(n: int) -> str:
    return f"nx{n}.fleet.invalid" if n % 3 == 2 else f"peer{n}.fleet.example"


def serve_fleet(count: int, listed: int, pipe: Connection) -> None:
    from tests.peers import Peer, PeerFleet, nodeinfo

    others = [f"known{n:06d}.example" for n in range(listed)]
    with_target = json.dumps([*others[: listed // 2], TARGET, *others[listed // 2 :]]).encode()
    without = json.dumps(others).encode()
    digest = hashlib.sha256(TARGET.encode()).hexdigest()
    fleet = PeerFleet(["*.fleet.example"])
    for n in range(count):
        name = peer_name(n)
        if name.endswith(".invalid"):
            continue
        blocks: object = 404  # private (Mastodon's default)
        if n % 3 == 0:
            shown = "thr****.net" if n % 9 == 0 else TARGET
            blocks = [
                {"domain": shown, "digest": digest, "severity": "suspend"},
                {"domain": "b.example", "digest": "0"},
            ]
        fleet.peers[name] = Peer(
            nodeinfo("mastodon", "4.5.2"), domain_blocks=blocks, peer_list=with_target if n % 4 else without
        )
    fleet.start()
    pipe.send((fleet.ca.cert_pem.bytes(), fleet.port, fleet.refused_port))
    pipe.recv()
    fleet.stop()


def child(count: int, fleet_port: int, refused_port: int, ca_file: str, audit: bool) -> None:
    """One audit (or only the set-up, for the baseline) in this process; prints JSON figures."""
    import ipaddress
    import ssl

    import redis

    from bot.core.config import load_settings
    from bot.core.fetching import Fetcher, FetchPolicy
    from bot.mastodon.context import Context
    from bot.ops.embedded_redis import EmbeddedRedis
    from handlers.federation import audit as federation
    from handlers.shared import nodeinfo
    from tests.mastodon_double import MastodonDouble
    from tests.peers import resolve_in_fleet

    async def resolver(host: str, port: int) -> list[tuple[str, int]]:
        return resolve_in_fleet(host, fleet_port, refused_port)

    context = ssl.create_default_context(cafile=ca_file)
    nodeinfo.make_fetcher = lambda settings: Fetcher(  # type: ignore[assignment]
        FetchPolicy("Tocsin bench", allowed_private=(ipaddress.ip_network("127.0.0.0/8"),), total_timeout=20),
        resolver=resolver,
        ssl_context=context,
    )
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder) / "redis", persistent=False).start()
        double = MastodonDouble(peers=[peer_name(n) for n in range(count)], rate_limit=100_000).start()
        settings = load_settings(
            _env_file=None,
            redis_url=server.url,
            mastodon_url=double.url,
            access_token=double.token,
            data_dir=Path(folder) / "data",
        )
        connection = redis.Redis.from_url(server.url)
        ctx = Context(settings, connection)
        started = time.monotonic()
        counts = {}
        if audit:
            report = federation.audit(ctx, TARGET)
            counts = dict(report.counts)
        seconds = time.monotonic() - started
        connection.close()
        double.stop()
        server.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peers": count, "seconds": round(seconds, 1), "peak_rss_mb": round(rss, 1), "counts": counts}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--list", type=int, default=5000, help="domains in each peer's peers list")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        count, port, refused, ca_file, audit = options.child
        child(int(count), int(port), int(refused), ca_file, audit == "1")
        return
    results = {}
    runs = (("baseline", options.small, False), ("small", options.small, True), ("large", options.large, True))
    for label, count, audit in runs:
        here, there = multiprocessing.Pipe()
        fleet = multiprocessing.Process(target=serve_fleet, args=(count, options.list, there), daemon=True)
        fleet.start()
        ca, port, refused = here.recv()
        with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as ca_file:
            ca_file.write(ca)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.federation",
                "--child",
                *map(str, (count, port, refused)),
                ca_file.name,
                str(int(audit)),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        here.send("stop")
        fleet.join(30)
        if run.returncode != 0:
            raise SystemExit(run.stderr[-3000:])
        results[label] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{label:<9} {json.dumps(results[label])}")
    base = results["baseline"]["peak_rss_mb"]
    small = results["small"]["peak_rss_mb"] - base
    large = results["large"]["peak_rss_mb"] - base
    ratio = large / small if small > 0 else float("inf")
    verdict = "OK" if ratio <= 2 else "MISSED"
    print(
        f"peak RSS above the baseline ({base:.0f} MB): {small:.0f} MB for {options.small:,} peers, "
        f"{large:.0f} MB for {options.large:,} (x{ratio:.2f}; target <= 2x for 10x the peers) -> {verdict}"
    )


if __name__ == "__main__":
    main()
