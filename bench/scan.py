"""A peer scan of 1,000 simulated servers: time and memory against the theoretical floor.

The peers are local HTTPS servers (one asyncio server in its own process answering for
`peerN.fleet.example`, certificates from a throwaway CA): every answer comes after 200 ms, and 5 % of
the peers accept the connection and never answer. The scanner is Tocsin's own (bot.fetching with
the SSRF guard on, loopback allowed as TOCSIN_ALLOWED_PRIVATE_ADDRESSES would allow it; handlers.scan's
NodeInfo discovery, parsing and advisory matching), with the default concurrency and timeout.

The floor is what the latency alone costs at this concurrency: every readable peer needs two requests
(discovery, then the document), every hanging one holds its slot until the timeout:
(readable x 2 x latency + hanging x timeout) / concurrency.
Targets (issue 4): a full scan <= 20 s and <= 200 MB RSS.

    python -m bench.scan [--peers 1000] [--latency 0.2] [--hanging 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import os
import resource
import ssl
import time
from collections import Counter
from multiprocessing.connection import Connection

from bot.config import load_settings
from bot.fetching import Fetcher, FetchPolicy
from handlers.advisories import load_advisories, load_forks
from handlers.findings import find
from handlers.nodeinfo import read_peers


def peer_names(count: int) -> list[str]:
    return [f"peer{n}.fleet.example" for n in range(count)]


def serve_fleet(count: int, latency: float, hanging: float, pipe: Connection) -> None:
    """The fleet, in its own process: versions like the brief's (a third fixed, half 0.12.4, the rest older)."""
    from tests.peers import Peer, PeerFleet, nodeinfo

    fleet = PeerFleet(["*.fleet.example"])
    every = round(1 / hanging) if hanging else 0
    for n, name in enumerate(peer_names(count)):
        if every and n % every == 0:
            fleet.peers[name] = Peer(hang=True)
        else:
            version = ["0.12.5", "0.12.4", "0.12.4", "0.11.9"][n % 4]
            fleet.peers[name] = Peer(nodeinfo("pixelfed", version), latency=latency)
    fleet.start()
    pipe.send((fleet.ca.cert_pem.bytes(), fleet.port))
    pipe.recv()  # until told to stop
    fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--hanging", type=float, default=0.05)
    args = parser.parse_args()
    settings = load_settings(_env_file=None)
    concurrency, timeout = settings.scan_concurrency, settings.scan_timeout

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve_fleet, args=(args.peers, args.latency, args.hanging, child))
    server.start()
    ca_pem, port = parent.recv()
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=ca_pem.decode())

    async def resolver(host: str, _port: int) -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    fetcher = Fetcher(
        FetchPolicy(
            user_agent="Tocsin/0.1 (+https://social.example.org; bench)",
            allowed_private=(ipaddress.ip_network("127.0.0.0/8"),),
            connect_timeout=min(5.0, timeout),
            total_timeout=timeout,
            max_bytes=settings.scan_max_bytes,
        ),
        resolver=resolver,
        ssl_context=context,
    )
    names = peer_names(args.peers)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_before = time.process_time()
    started = time.perf_counter()
    try:
        results = asyncio.run(read_peers(fetcher, names, concurrency))
    finally:
        parent.send("stop")
        server.join(10)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    advisory = next(item for item in load_advisories() if item.id == "CVE-2025-30741")
    finding = find(advisory, results, load_forks())
    errors = Counter(result.error for result in results if result.error)
    hanging = sum(1 for n in range(args.peers) if args.hanging and n % round(1 / args.hanging) == 0)
    readable = args.peers - hanging
    floor = (readable * 2 * args.latency + hanging * timeout) / concurrency
    print(
        f"{os.cpu_count()} cores; {args.peers} peers, {args.latency * 1000:.0f} ms per answer, {hanging} never answer"
    )
    print(f"concurrency {concurrency}, timeout {timeout:g} s per fetch")
    print(f"scan: {seconds:.1f} s  (floor {floor:.1f} s: {seconds / floor:.2f}x the floor)")
    if hanging:
        print(f"  (a peer that never answers holds its slot for the whole {timeout:g} s timeout, so the last one")
        print(f"   to be started ends the scan at least {timeout:g} s after it started: the floor is not reachable)")
    print(f"scanner CPU: {cpu:.1f} s ({cpu / seconds:.0%} of one core; TLS handshakes are most of it)")
    print(f"read {len(results) - sum(errors.values())}, unreadable {dict(errors)}")
    print(f"{advisory.id}: {finding.total} pixelfed, {len(finding.fixed)} fixed, {len(finding.vulnerable)} vulnerable")
    print(f"RSS: {rss:.0f} MB at the end ({rss_before:.0f} MB before the scan)")
    print(f"targets: <= 20 s -> {'OK' if seconds <= 20 else 'MISSED'}; <= 200 MB -> {'OK' if rss <= 200 else 'MISSED'}")


if __name__ == "__main__":
    main()
