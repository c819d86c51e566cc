"""The incident pages in a real headless Chromium (Debian's `chromium`), served by a real `tocsin web`.

The page must show its servers and timeline, draw the chart, log nothing to the console (a CSP refusal
or a script error would), and stay readable on a phone-sized window. A screenshot is kept as a test
artifact in test-artifacts/.

Chromium comes from Debian's package (`apt-get install -y chromium`), which .ci/run installs before the
tests. Without it these tests are skipped, except under CI (the `chromium` fixture, tests/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.mastodon.context import Context
from bot.pipeline.events import drain_with
from handlers.incidents import announcements
from handlers.incidents import blocks as domain_blocks
from handlers.incidents import store as incidents
from tests.helpers import feed, run_until
from tests.mastodon_double import MastodonDouble
from tests.stack import Stack
from tests.waves import burst

pytestmark = pytest.mark.slow  # a real Chromium against a real `tocsin web`

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def headless(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_incident_page_in_headless_chromium(
    ctx: Context, redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack], chromium: str
) -> None:
    binary = chromium
    feed(ctx, burst(NOW, "spam.example", reports=60, hours=4))  # reports for the chart
    slug = incidents.open_incident(
        ctx.redis, "spam wave", "Spam wave", "Crypto spam from two servers <b>not bold</b>", NOW.timestamp()
    )
    for offset, domain in enumerate(["spam.example", "spam2.example"]):
        at = NOW.timestamp() + 3600 * (offset + 1)
        server = incidents.Server(domain, incidents.public_domain(domain, offset == 1), "silence", at)
        incidents.save_server(ctx.redis, slug, server)
        incidents.add_timeline(ctx.redis, slug, f"t{offset}", at, f"{server.shown} limited.")
    stack = stack_factory(redis_url, mastodon, workers=0, TOCSIN_INSTANCE_NAME="Social Example")
    url = f"{stack.url}/incidents/{slug}"

    dom = headless(binary, "--dump-dom", "--virtual-time-budget=3000", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<h1>Spam wave</h1>" in html
    assert "spam.example" in html and "spam*.****ple" in html  # the second block is obfuscated
    assert "spam.example limited." in html  # the timeline
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # escaped, not rendered
    assert len(re.findall(r"<rect class=\"bar\"", html)) >= 4  # the chart's bars, drawn server-side
    assert 'role="img"' in html and '<title id="chart-title">' in html

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "incident-page.png"
    shot.unlink(missing_ok=True)
    screenshot = headless(binary, f"--screenshot={shot}", "--window-size=412,1400", "--hide-scrollbars", url)
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 5000

    console = [line for line in dom.stderr.splitlines() + screenshot.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console  # no script errors, no Content-Security-Policy refusals


def test_the_page_an_announcement_links_in_headless_chromium(
    make_context: Callable[..., Context],
    redis_url: str,
    mastodon: MastodonDouble,
    stack_factory: Callable[..., Stack],
    chromium: str,
) -> None:
    """A block made in Mastodon's web UI, in no incident: after the poll and the hold-off the public post
    links an entry that a member's browser shows with the server, the reason and the date."""
    ctx = make_context(announce_hold_minutes=0, public_url="https://tocsin.example.org")
    domain_blocks.poll(ctx)  # Tocsin was running before
    mastodon.add_block("world.example", public_comment="Crypto spam wave: limited until the spam stops")
    domain_blocks.poll(ctx)
    drain_with(ctx)
    run_until(ctx.redis, lambda: ctx.redis.zcard(announcements.PENDING) == 0, timeout=20)
    [post] = [status for status in mastodon.statuses if status["visibility"] == "public"]
    link = post["text"].rsplit("Details: ", 1)[1].strip()
    parts = urlsplit(link)
    stack = stack_factory(redis_url, mastodon, workers=0)
    url = f"{stack.url}{parts.path}#{parts.fragment}"  # the link, on this test's `tocsin web`

    dom = headless(chromium, "--dump-dom", "--virtual-time-budget=3000", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    [row] = re.findall(rf'<tr id="{re.escape(parts.fragment)}">(.*?)</tr>', dom.stdout, re.DOTALL)
    assert "world.example" in row and "limited" in row
    assert "Crypto spam wave: limited until the spam stops" in row
    assert datetime.now(UTC).strftime("%Y-%m-%d") in row

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "other-limits-page.png"
    shot.unlink(missing_ok=True)
    screenshot = headless(chromium, f"--screenshot={shot}", "--window-size=412,900", "--hide-scrollbars", url)
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 5000
    console = [line for line in dom.stderr.splitlines() + screenshot.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
