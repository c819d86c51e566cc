"""How long `approve 3` takes to resolve a 200-report flood at Mastodon's default rate limit.

    python -m bench.resolve_flood [--reports 200] [--period 10]

Mastodon allows 300 API calls per account per 5 minutes (fixed windows). The double enforces the same
300 calls in windows of `--period` seconds, so the run is short and the pacing real; the figure is
scaled back to 5-minute windows (each reset waited for is 5 minutes; the calls themselves take what
they took). Tocsin resolves as bulk work
within its share (TOCSIN_API_BUDGET, half by default, of which bulk work takes BULK_SHARE), pausing at
the share and going on at the window's reset; in-process worker, embedded Redis, the default settings.
Printed: the calls made, the windows it took, the time at Mastodon's default, the 429s (must be 0).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from bot.core.config import load_settings
from bot.dm import wave
from bot.mastodon.actions import Action
from bot.mastodon.context import Context, set_context
from bot.mastodon.ratelimit import BULK_SHARE
from bot.ops.embedded_redis import EmbeddedRedis
from tests.helpers import enqueue_due_scheduled, report_event, run_jobs
from tests.mastodon_double import MastodonDouble

FLOOD = "flood.example"
DEFAULT_WINDOW_MINUTES = 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--period", type=float, default=10.0, help="seconds per rate-limit window in the double")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = EmbeddedRedis(Path(directory) / "redis").start()
        mastodon = MastodonDouble(rate_limit=300, rate_period=args.period).start()
        try:
            run(server, mastodon, args.reports, Path(directory))
        finally:
            mastodon.stop()
            server.stop()


def run(server: EmbeddedRedis, mastodon: MastodonDouble, count: int, directory: Path) -> None:
    now = time.time()
    for n in range(count):
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 3600 + n))
        mastodon.add_report(report_event(500000 + n, created, FLOOD, str(700000 + n % 60))["object"])
    settings = load_settings(
        _env_file=None,
        redis_url=server.url,
        webhook_secret="bench-webhook-secret-0123456789",
        data_dir=directory / "data",
        mastodon_url=mastodon.url,
        access_token=mastodon.token,
        moderators=["mod_anna"],
    )
    ctx = Context(settings, redis.Redis.from_url(server.url))
    set_context(ctx)
    command = mastodon.say("101", "@tocsin approve 3")
    action = Action("resolve_reports", FLOOD, f"resolve reports of {FLOOD}", since=now - 7200, until=now)
    time.sleep(until_next_window(mastodon.rate_period))  # from a fresh window: the figure does not depend on luck
    started = time.monotonic()
    calls_before = len(mastodon.requests)
    wave.start(ctx, action, key="bench", command_id=command["id"], subject=None, by="@mod_anna", command="approve 3")
    while not any("Resolved" in status["text"] for status in mastodon.replies_to(command["id"])):
        run_jobs(ctx.redis)
        enqueue_due_scheduled(ctx.redis)
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    windows = elapsed / mastodon.rate_period
    resolved = sum(1 for _id, action_name in mastodon.report_actions if action_name == "resolve")
    share = settings.api_budget * BULK_SHARE * mastodon.rate_limit
    print(f"reports resolved: {resolved} of {count}; API calls: {len(mastodon.requests) - calls_before}")
    print(f"bulk share per window: {share:.0f} calls of {mastodon.rate_limit}")
    resets = int(windows)  # started at a window's start: each whole window is a wait for a reset
    working = elapsed - resets * mastodon.rate_period
    print(f"took {elapsed:.1f} s = {windows:.2f} windows of {mastodon.rate_period:g} s: {resets} reset(s) waited")
    print(
        f"at Mastodon's default (300 calls / 5 min): {resets} × {DEFAULT_WINDOW_MINUTES} min + {working:.0f} s"
        f" of calls ≈ {resets * DEFAULT_WINDOW_MINUTES + working / 60:.1f} min from a fresh window;"
        f" up to {(resets + 1) * DEFAULT_WINDOW_MINUTES} min when the window's share is already spent"
    )
    print(f"429s: {mastodon.throttled}")


def until_next_window(period: float) -> float:
    """Seconds until the next window of the double begins."""
    return period - (time.time() % period) + 0.05


if __name__ == "__main__":
    main()
