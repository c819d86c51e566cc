"""The real processes: `tocsin web` and `tocsin worker` on a real Redis, Mastodon as the double, over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from bot.ops.embedded_redis import EmbeddedRedis, free_port
from tests.helpers import quiescent, sign, wait_for
from tests.mastodon_double import MastodonDouble
from tests.stack import Stack
from tests.waves import background, burst, mention_spam, ordinary_posting, signup_background, signup_burst

pytestmark = pytest.mark.slow  # real web and worker processes

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


def test_spam_wave_through_real_processes_gives_one_dm_despite_redeliveries_and_mastodon_errors(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    mastodon.measures["spam.example"] = (7, 3, 210)
    mastodon.fail_next_posts = [429, 500]  # the first two attempts to post the DM fail
    stack = stack_factory(redis_url, mastodon, workers=2)
    quiet_weeks = background(NOW - timedelta(days=14), days=14)
    wave = burst(NOW, "spam.example", reports=150, hours=3)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in quiet_weeks} == {202}
        assert {stack.deliver(client, event) for event in wave} == {202}
        # Mastodon redelivers (up to 16 times in all): identical bytes, acknowledged, not counted again.
        for _ in range(15):
            assert {stack.deliver(client, event) for event in wave[:20]} == {200}
    wait_for(lambda: len(mastodon.direct_threads()) >= 1, what="the surge DM")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.zcard("tocsin:reports:times:*") == len(quiet_weeks) + len(wave), what="all events")
    wait_for(lambda: quiescent(connection), what="the workers to finish")  # a wrong second DM would be out
    [thread] = mastodon.direct_threads()
    for status in thread:
        assert mastodon.recipients(status) == ["mod_anna", "mod_ben"]
    text = mastodon.direct_texts()[0]
    assert "🔔 Report surge: spam.example" in text
    assert "1. limit spam.example (cuts 7 follows from us to there, 3 from there to us)" in text  # its cost
    posts = [request for request in mastodon.requests if request == ("POST", "/api/v1/statuses")]
    assert len(posts) == len(thread) + 2  # each failed attempt retried, every part posted once
    assert mastodon.fail_next_posts == []


def test_ordinary_traffic_through_real_processes_gives_no_dm(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    stack = stack_factory(redis_url, mastodon)
    events = background(NOW - timedelta(days=28), days=28, seed=7)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in events} == {202}
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.zcard("tocsin:reports:times:*") == len(events), what="all events")
    assert mastodon.statuses == []


def test_redis_outage_gives_503_then_recovers_without_losing_an_event(
    tmp_path: Path, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    restarted: EmbeddedRedis | None = None
    try:
        stack = stack_factory(server.url, mastodon)
        events = burst(NOW, "slow.example", reports=12, hours=6)  # too slow to alert: just counted
        with httpx2.Client(timeout=10) as client:
            assert {stack.deliver(client, event) for event in events[:6]} == {202}
            server.stop()
            assert {stack.deliver(client, event) for event in events[6:]} == {503}
            assert client.get(f"{stack.url}/readyz").status_code == 503
            restarted = EmbeddedRedis(tmp_path / "redis", port=server.port, persistent=True).start()
            # Mastodon retries the 503s later.
            wait_for(lambda: stack.deliver(client, events[6]) == 202, what="intake to recover")
            assert {stack.deliver(client, event) for event in events[7:]} == {202}
        connection = redis.Redis.from_url(server.url)
        wait_for(lambda: connection.zcard("tocsin:reports:times:slow.example") == 12, what="every event processed")
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_serve_runs_everything_with_embedded_redis_and_dry_run(tmp_path: Path) -> None:
    """The README's run command: no Redis, no token, no secret, the default (relative) data dir."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(TOCSIN_PORT=str(port), TOCSIN_MODERATORS="mod_anna")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.ops.cli", "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _get(f"{url}/readyz") == 200, what="serve to be ready")
        assert process.poll() is None, "serve exited"
        secret = (tmp_path / "tocsin-data" / "webhook-secret").read_text().strip()
        assert len(secret) == 40
        redis_port = int((tmp_path / "tocsin-data" / "redis" / "redis.port").read_text())
        connection = redis.Redis(port=redis_port)
        for event in burst(NOW, "spam.example", reports=20, hours=1):
            body = json.dumps(event).encode()
            response = httpx2.post(
                f"{url}/webhooks/mastodon", content=body, headers={"X-Hub-Signature": sign(body, secret)}
            )
            assert response.status_code == 202
        wait_for(lambda: connection.llen("tocsin:outbox:log") > 0, what="a dry-run DM in the outbox")
        page = httpx2.get(f"{url}/outbox").text
        assert "Report surge: spam.example" in page and "Dry-run" in page
        assert "default-src 'none'" in httpx2.get(f"{url}/outbox").headers["content-security-policy"]
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"{url}/webhooks/mastodon" in err and secret in err
    assert not (tmp_path / "tocsin-data" / "redis" / "redis.port").exists()  # embedded Redis stopped
    assert (tmp_path / "tocsin-data" / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "tocsin-data" / "redis").glob("*.aof")
    )


def _get(url: str) -> int:
    try:
        return httpx2.get(url, timeout=1).status_code
    except httpx2.HTTPError:
        return 0


def test_bot_signup_burst_through_real_processes_gives_one_dm_naming_the_mail_domain(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    mastodon.max_characters = 2000
    stack = stack_factory(redis_url, mastodon, workers=2)
    ordinary = signup_background(NOW - timedelta(days=14), days=14)
    bots = signup_burst(NOW, count=120, minutes=30)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in ordinary + bots} == {202}
    wait_for(lambda: len(mastodon.direct_threads()) >= 1, what="the sign-up surge DM")
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: quiescent(connection), what="the workers to finish")  # a wrong second DM would be out
    [text] = mastodon.direct_texts()
    assert "🔔 Sign-up surge: " in text
    assert "- email domain spam.example: " in text
    assert "1. block sign-ups with email addresses at spam.example" in text


def test_mention_spam_through_real_processes_gives_one_dm(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    mastodon.max_characters = 3000
    stack = stack_factory(redis_url, mastodon, workers=2)
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in mention_spam(NOW, posts=40, minutes=20)} == {202}
    wait_for(lambda: len(mastodon.direct_threads()) >= 1, what="the spam-wave DM")
    wait_for(lambda: quiescent(redis.Redis.from_url(redis_url)), what="the workers to finish")
    [text] = mastodon.direct_texts()
    assert "🔔 Local spam wave: " in text and "spambot" in text
    assert all(mastodon.recipients(status) == ["mod_anna", "mod_ben"] for status in mastodon.direct_messages())


def test_ordinary_signups_and_posting_through_real_processes_give_no_dm(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    stack = stack_factory(redis_url, mastodon)
    events = signup_background(NOW - timedelta(days=14), days=14) + ordinary_posting(
        NOW - timedelta(hours=12), hours=12
    )
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in events} == {202}
    connection = redis.Redis.from_url(redis_url)
    wait_for(lambda: connection.xlen("tocsin:events") == 0 and _idle(connection), what="all events")
    assert mastodon.statuses == []


def _idle(connection: redis.Redis) -> bool:
    return not connection.exists("tocsin:events:drain-scheduled")


def test_no_email_or_ip_in_any_post_log_line_or_redis_value(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    mastodon.max_characters = 3000
    stack = stack_factory(redis_url, mastodon, workers=0)  # events wait in Redis as intake stored them
    events = (
        signup_background(NOW - timedelta(days=3), days=3)
        + signup_burst(NOW, count=60, minutes=30)
        + burst(NOW, "spam.example", reports=40, hours=1)
        + mention_spam(NOW, posts=10, minutes=5)
    )
    emails, ips = set(), set()
    for event in events:
        for account in _admin_accounts(event):
            emails.add(account["email"].encode())
            ips.update(item["ip"].encode() for item in account.get("ips") or [])
            ips.add(account["ip"].encode())
    assert len(emails) > 60 and len(ips) > 30
    with httpx2.Client(timeout=10) as client:
        assert {stack.deliver(client, event) for event in events} == {202}
    connection = redis.Redis.from_url(redis_url)
    assert connection.xlen("tocsin:events") == len(events)
    queued = b"\n".join(_redis_values(connection))
    stack.start_process("worker")
    wait_for(lambda: len(mastodon.direct_threads()) >= 3, what="the DMs")
    wait_for(lambda: connection.xlen("tocsin:events") == 0 and _idle(connection), what="all events")
    stack.stop()  # logs complete

    posts = "\n".join(status["text"] for status in mastodon.statuses).encode()
    logs = stack.log_file.read_bytes()
    stored = queued + b"\n".join(_redis_values(connection))
    for where, blob in {"posts": posts, "logs": logs, "redis": stored}.items():
        leaked = [value for value in emails | ips if value in blob]
        assert leaked == [], f"{where} holds {leaked[:3]}"
    assert "Sign-up surge" in posts.decode() and "Report surge" in posts.decode()


def _admin_accounts(event: dict[str, Any]) -> list[dict[str, Any]]:
    obj = event["object"]
    if event["event"].startswith("account."):
        return [obj]
    if event["event"].startswith("report."):
        return [obj[name] for name in ("account", "target_account") if obj.get(name) and obj[name].get("email")]
    return []


def _redis_values(connection: redis.Redis) -> list[bytes]:
    """Every key and value in Redis, decompressed where RQ compressed it (job data)."""
    values: list[bytes] = []
    for key in connection.scan_iter(count=1000):
        values.append(key)
        kind = connection.type(key)
        if kind == b"string":
            items = [connection.get(key) or b""]
        elif kind == b"hash":
            items = [part for pair in connection.hgetall(key).items() for part in pair]
        elif kind == b"list":
            items = connection.lrange(key, 0, -1)
        elif kind == b"set":
            items = list(connection.smembers(key))
        elif kind == b"zset":
            items = [member for member, _score in connection.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            items = [part for _id, fields in connection.xrange(key) for pair in fields.items() for part in pair]
        else:
            items = []
        for item in items:
            values.append(item)
            with contextlib.suppress(zlib.error):
                values.append(zlib.decompress(item))
    return values


def test_domain_actions_through_real_processes_become_one_announcement_a_page_and_a_resolution(
    redis_url: str, mastodon: MastodonDouble, stack_factory: Callable[..., Stack]
) -> None:
    stack = stack_factory(
        redis_url,
        mastodon,
        TOCSIN_ANNOUNCE_HOLD_MINUTES="0",
        TOCSIN_DOMAIN_POLL_SECONDS="0",  # polled by the command below instead of the minute sweep
        TOCSIN_PUBLIC_URL="https://tocsin.example.org",
    )
    poll = [sys.executable, "-m", "bot.ops.cli", "blocks", "poll"]
    subprocess.run(poll, env=stack.env, cwd=stack.cwd, check=True, capture_output=True)  # records the start
    slug = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.ops.cli",
            "incident",
            "open",
            "--title",
            "Threads",
            "--summary",
            "Policy change.",
            "threads.example",
            "instagram-threads.example",
        ],
        env=stack.env,
        cwd=stack.cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    mastodon.add_block("threads.example", "suspend", public_comment="Policy change: no data to Meta")
    mastodon.add_block("instagram-threads.example", "suspend")
    subprocess.run(poll, env=stack.env, cwd=stack.cwd, check=True, capture_output=True)

    def public() -> list[dict[str, Any]]:
        return [status for status in mastodon.statuses if status["visibility"] == "public"]

    wait_for(lambda: len(public()) == 1, what="the batched announcement")
    [post] = public()
    assert "we have suspended instagram-threads.example, threads.example." in post["text"]
    assert "Why: Policy change: no data to Meta" in post["text"]
    assert f"https://tocsin.example.org/incidents/{slug}" in post["text"]
    page = httpx2.get(f"{stack.url}/incidents/{slug}").text
    assert "threads.example" in page and "instagram-threads.example" in page

    # A moderator marks threads.example's block a mistake (in its private comment), then lifts both.
    mastodon.domain_blocks[0]["private_comment"] = "[tocsin correction] wrong domain"
    subprocess.run(poll, env=stack.env, cwd=stack.cwd, check=True, capture_output=True)
    mastodon.domain_blocks = []
    subprocess.run(poll, env=stack.env, cwd=stack.cwd, check=True, capture_output=True)
    wait_for(lambda: len(public()) == 3, what="the update and the resolution")
    wait_for(lambda: quiescent(redis.Redis.from_url(stack.env["TOCSIN_REDIS_URL"])), what="the workers to finish")
    update, resolution = public()[1:]
    assert "Correction: threads.example was suspended by mistake." in update["text"]  # the moderator's marker
    assert "instagram-threads.example is no longer suspended." in update["text"]  # no marker: neutral
    assert update["in_reply_to_id"] == post["id"]
    assert resolution["text"].startswith("✅ Threads: all servers un-limited; incident resolved.")
    assert len(public()) == 3
    assert '"status":"resolved"' in httpx2.get(f"{stack.url}/incidents/{slug}.json").text.replace(" ", "")
