"""`tocsin worker` whose scans read a local fleet of peers (tests/peers.py) instead of the Internet.

    python -m tests.fleet_worker FLEET_PORT REFUSED_PORT CA_FILE

Everything is the deployed worker's but two things no environment variable can point elsewhere: peer
names resolve as in the fleet (resolve_in_fleet), and certificates are checked against the fleet's CA.
Tests and bench/scan.py start it as a real process, to kill it mid-scan.
"""

from __future__ import annotations

import dataclasses
import ssl
import sys

from bot.core.config import Settings
from bot.core.fetching import Address, Fetcher
from handlers.shared import nodeinfo
from tests.peers import resolve_in_fleet


def main() -> None:
    fleet_port, refused_port, ca_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    deployed = nodeinfo.make_fetcher
    context = ssl.create_default_context(cafile=ca_file)

    async def resolver(host: str, _port: int) -> list[Address]:
        return resolve_in_fleet(host, fleet_port, refused_port)

    def make_fetcher(settings: Settings) -> Fetcher:
        return dataclasses.replace(deployed(settings), resolver=resolver, ssl_context=context)

    nodeinfo.make_fetcher = make_fetcher  # type: ignore[assignment]
    from bot.ops.cli import main as tocsin

    tocsin(["worker"])


if __name__ == "__main__":
    main()
