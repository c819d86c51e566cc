"""A scan at scale: dead peers left alone on a backoff, a run that resumes after its worker is killed and
DMs once, sizing paced to Tocsin's share of the rate limit. Real Redis, real HTTPS peers, the double."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from bot.core import defaults
from bot.core.fetching import Fetcher
from bot.mastodon.context import Context
from bot.ops import sweep
from bot.pipeline.queue import enqueue_once, queue
from handlers.scan import runs as scan_runs
from handlers.scan.findings import ALL_CLEAR_SIZED
from handlers.shared import nodeinfo
from handlers.shared.nodeinfo import CACHE_PREFIX, DEAD_BACKOFF, DEAD_COUNT_PREFIX, FAILURE_TTL, SUCCESS_TTL
from handlers.shared.settings import PeerScanSettings
from tests.helpers import quiescent, run, run_until, wait_for
from tests.mastodon_double import MastodonDouble
from tests.peers import Peer, PeerFleet
from tests.peers import nodeinfo as document

DAY = 24 * 3600
NXDOMAIN = [f"nx{n}.invalid" for n in range(150)]
REFUSED = [f"refused{n}.example" for n in range(30)]
HANGING = [f"hang{n}.example" for n in range(10)]
PIXELFED = [f"pf{n}.example" for n in range(60)]  # a third fixed, the rest on 0.12.4
MASTODON = [f"masto{n}.example" for n in range(150)]  # current, but five on 4.1.12 (takeover advisory)
PEERS = NXDOMAIN + REFUSED + HANGING + PIXELFED + MASTODON


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet(REFUSED + HANGING + PIXELFED + MASTODON)
    for name in HANGING:
        fleet.peers[name] = Peer(hang=True)
    for n, name in enumerate(PIXELFED):
        fleet.peers[name] = Peer(document("pixelfed", "0.12.5" if n % 3 == 0 else "0.12.4"), latency=0.2)
    for n, name in enumerate(MASTODON):
        fleet.peers[name] = Peer(document("mastodon", "4.1.12" if n % 30 == 0 else "4.6.5"), latency=0.2)
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.fixture
def local_fleet(fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch) -> PeerFleet:
    """Scans in this process read the fleet."""
    fleet.requests.clear()
    fleet.resolved.clear()
    monkeypatch.setattr(
        "handlers.shared.nodeinfo.make_fetcher",
        lambda settings: Fetcher(
            fleet.policy(total_timeout=settings.section(PeerScanSettings).timeout),
            resolver=fleet.resolver,
            ssl_context=fleet.client_context(),
        ),
    )
    return fleet


def ttl(connection: redis.Redis, domain: str) -> int:
    return int(connection.ttl(CACHE_PREFIX + domain))  # type: ignore[arg-type]


@pytest.mark.slow  # three rounds of a peer hanging to its timeout
def test_dead_peers_are_asked_again_ever_later(
    make_context: Callable[..., Context], local_fleet: PeerFleet, connection: redis.Redis
) -> None:
    ctx = make_context(scan_timeout=1.0)
    fetcher = nodeinfo.make_fetcher(ctx.settings)
    names = ["nx1.invalid", "refused1.example", "hang1.example", "pf1.example"]
    for round_number, backoff in enumerate(DEAD_BACKOFF[:3]):
        results = {r.domain: r for r in nodeinfo.read_peers_cached(ctx, fetcher, names, fresh=round_number > 0)}
        assert (results["nx1.invalid"].error, results["refused1.example"].error) == ("dns", "connect")
        assert backoff - 5 <= ttl(connection, "nx1.invalid") <= backoff  # 1 day, then 3, then 7
        assert backoff - 5 <= ttl(connection, "refused1.example") <= backoff
        assert results["hang1.example"].error == "timeout"  # up, but not answering: not dead, a day each time
        assert FAILURE_TTL - 5 <= ttl(connection, "hang1.example") <= FAILURE_TTL
        assert SUCCESS_TTL - 5 <= ttl(connection, "pf1.example") <= SUCCESS_TTL
    local_fleet.resolved.clear()
    nodeinfo.read_peers_cached(ctx, fetcher, names)  # within the backoff: nobody is asked
    assert local_fleet.resolved == []


def test_a_dead_peer_that_answers_again_starts_the_backoff_over(
    ctx: Context, local_fleet: PeerFleet, connection: redis.Redis
) -> None:
    connection.set(DEAD_COUNT_PREFIX + "pf2.example", 4)  # it was gone for weeks
    [result] = nodeinfo.read_peers_cached(ctx, nodeinfo.make_fetcher(ctx.settings), ["pf2.example"])
    assert result.software is not None
    assert not connection.exists(DEAD_COUNT_PREFIX + "pf2.example")


def run_of(connection: redis.Redis) -> scan_runs.Run:
    """The one run this test made."""
    [meta] = list(connection.scan_iter(scan_runs.RUN_PREFIX + "*:meta"))
    return scan_runs.Run(meta.decode().removeprefix(scan_runs.RUN_PREFIX).removesuffix(":meta"))


@pytest.mark.slow  # waits out real rate-limit windows
def test_sizing_waits_for_the_reset_instead_of_hitting_the_limit(
    make_context: Callable[..., Context], mastodon: MastodonDouble, local_fleet: PeerFleet, connection: redis.Redis
) -> None:
    """40 vulnerable Pixelfed servers (and 3 unaffected ones, for the all-clear) to size at 10 admin calls
    per 3 s window (share 0.5 of 20): the finish reschedules itself for each reset; Mastodon never
    answers 429; one DM."""
    ctx = make_context(api_budget=0.5, scan_chunk=100, scan_timeout=1.0, moderators=["mod_anna"])
    mastodon.rate_limit, mastodon.rate_period = 20, 3.0
    mastodon.peers = PIXELFED
    mastodon.max_characters = 5000
    assert scan_runs.schedule_scan(ctx, 1_000_000.0)
    run_until(connection, lambda: connection.get(scan_runs.LAST_SCAN) is not None, timeout=60)
    sized = [request for request in mastodon.requests if request == ("POST", "/api/v1/admin/measures")]
    assert len(sized) == 40 + ALL_CLEAR_SIZED and mastodon.throttled == 0  # and the all-clear's few
    assert int(connection.hget(run_of(connection).key("jobs"), "finish:jobs") or 0) >= 4  # rescheduled 3+ times
    [text] = mastodon.direct_texts()
    assert "Vulnerable: 40 of 60 Pixelfed servers" in text
    wait_for(lambda: quiescent(connection), what="nothing left to do")


def start_worker(tmp_path: Path, fleet: PeerFleet, env: dict[str, str]) -> subprocess.Popen[bytes]:
    ca_file = tmp_path / "fleet-ca.pem"
    fleet.ca.cert_pem.write_to_path(str(ca_file))
    log = (tmp_path / "workers.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fleet_worker", str(fleet.port), str(fleet.refused_port), str(ca_file)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow  # real worker processes, one killed
def test_a_scan_whose_worker_is_killed_resumes_and_dms_once(
    tmp_path: Path, ctx: Context, mastodon: MastodonDouble, fleet: PeerFleet, redis_url: str, connection: redis.Redis
) -> None:
    mastodon.peers = PEERS
    mastodon.max_characters = 5000
    fleet.requests.clear()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("TOCSIN_")},
        "TOCSIN_REDIS_URL": redis_url,
        "TOCSIN_MASTODON_URL": mastodon.url,
        "TOCSIN_ACCESS_TOKEN": mastodon.token,
        "TOCSIN_MODERATORS": "mod_anna",
        "TOCSIN_DATA_DIR": str(tmp_path / "data"),
        "TOCSIN_ALLOWED_PRIVATE_ADDRESSES": "127.0.0.0/8",
        "TOCSIN_SCAN_CHUNK": "40",
        "TOCSIN_SCAN_CONCURRENCY": "10",
        "TOCSIN_SCAN_TIMEOUT": "1.5",
        "TOCSIN_SCAN_INTERVAL_HOURS": "0",  # this test starts the scan itself
        "TOCSIN_RETRY_DELAYS": "1,1,2",
    }
    enqueue_once(connection, defaults.QUEUE_BACKGROUND, scan_runs.scheduled_scan, job_id="scan-now")
    worker = start_worker(tmp_path, fleet, env)
    wait_for(lambda: connection.get(scan_runs.CURRENT_RUN) is not None, what="the run to start")
    run = scan_runs.Run(connection.get(scan_runs.CURRENT_RUN).decode())  # type: ignore[union-attr]
    wait_for(lambda: scan_runs.progress(ctx, run).read >= len(PEERS) // 2, timeout=60, what="half the peers read")
    worker.send_signal(signal.SIGKILL)  # mid-chunk, as the OOM killer would
    worker.wait(10)
    killed_at = scan_runs.progress(ctx, run).read
    assert killed_at < len(PEERS), "the scan finished before the kill: nothing was tested"

    replacement = start_worker(tmp_path, fleet, env)
    try:
        # The dead job's lease runs out (scan_runs.lease_seconds: 23 s here); then the next sweep resumes it.
        for lease in connection.scan_iter(run.key("lease:*")):
            connection.delete(lease)
        enqueue_once(connection, defaults.QUEUE_BACKGROUND, sweep.run, job_id="sweep-now")  # due every minute
        wait_for(lambda: scan_runs.progress(ctx, run).state == "done", timeout=90, what="the run to complete")
        # The killed job may have stored its chunk before dying: then nothing is resumed, and RQ declares
        # the job abandoned later (and retries it: a no-op for a chunk that is done).
        wait_for(lambda: quiescent(connection, running_jobs_lost=True), what="the workers to finish")
    finally:
        replacement.send_signal(signal.SIGTERM)
        replacement.wait(15)

    assert connection.hlen(run.key("results")) == len(PEERS)
    [text] = mastodon.direct_texts()
    assert f"Peer scan: {len(PEERS)} servers read ({len(NXDOMAIN) + len(REFUSED) + len(HANGING)} unreadable)" in text
    assert "Vulnerable: 40 of 60 Pixelfed servers" in text
    fetched = Counter(host for host, path, _headers in fleet.requests if path == "/.well-known/nodeinfo")
    twice = [host for host, count in fetched.items() if count > 1]
    # Lost with the worker: its fetches in flight and results not stored yet, at most a chunk's worth.
    assert len(twice) <= 40, f"more than the chunk in flight fetched again: {twice}"
    for name in defaults.QUEUES:
        assert queue(name, connection).failed_job_registry.count == 0


@pytest.mark.slow  # waits out a real rate-limit window
def test_tocsin_scan_waits_out_the_limit_and_shows_its_progress(
    mastodon: MastodonDouble, local_fleet: PeerFleet, tocsin: CliRunner
) -> None:
    mastodon.rate_limit, mastodon.rate_period = 40, 3.0  # 16 follows look-ups per window (0.5 x 0.8 of 40)
    mastodon.peers = PIXELFED
    result = run(tocsin, "scan")
    assert result.exit_code == 0, result.output
    assert "read 60/60 peers (100%)" in result.stderr
    assert "Tocsin's share of this window is spent; waiting" in result.stderr
    assert "60 servers: 20 fixed, 40 run 0.12.4 -> 40 vulnerable" in result.stdout
    assert mastodon.throttled == 0
