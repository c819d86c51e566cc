"""`tocsin serve` survives its own children: the real process group, killed the way the kernel kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import redis

from bot.core import defaults
from bot.ops.embedded_redis import free_port
from bot.ops.supervise import STATUS_FILE, Child, CrashLoop, Supervisor
from tests.helpers import SECRET, quiescent, wait_for
from tests.stack import Serve
from tests.waves import burst

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    running = Serve(tmp_path)
    yield running
    running.stop()


@pytest.mark.slow  # a real `tocsin serve`, its Redis killed
def test_embedded_redis_killed_mid_delivery_is_restarted_and_nothing_is_lost_or_doubled(serve: Serve) -> None:
    events = burst(NOW, "slow.example", reports=300, hours=200, first_id=800000)  # too slow to alert
    statuses: list[int] = []
    with httpx2.Client(timeout=5) as client:
        assert {serve.deliver(client, event) for event in events[:50]} == {202}
        old_pid = serve.kill("redis")
        killed_at = time.monotonic()
        recovered_at = None
        waiting = list(events[50:])
        while waiting:  # Mastodon redelivers what got a 503
            event = waiting.pop(0)
            status = serve.deliver(client, event)
            statuses.append(status)
            if status != 202:
                waiting.append(event)
            elif 503 in statuses and recovered_at is None:
                recovered_at = time.monotonic()
            assert time.monotonic() - killed_at < 30, f"intake did not recover: {statuses[-5:]}"
    assert 503 in statuses  # the outage was seen by Mastodon, which retries later
    assert recovered_at is not None and recovered_at - killed_at < 10
    assert set(statuses) <= {202, 503}
    accepted = {int(event["object"]["id"]) for event in events}
    status = serve.status()["redis"]
    assert status["state"] == "running" and status["restarts"] == 1 and status["pid"] != old_pid
    connection = serve.redis()
    wait_for(lambda: quiescent(connection, running_jobs_lost=True), what="every event processed")
    recorded = {int(raw) for raw in connection.zrange("tocsin:reports:times:slow.example", 0, -1)}
    assert recorded == accepted  # none lost (the append-only file brought back the first 50)
    assert int(connection.hget(defaults.INTAKE_COUNTS, "report.created") or 0) == len(accepted)  # none twice
    assert connection.llen(defaults.FAILED_EVENTS) == 0
    readiness = httpx2.get(f"{serve.url}/readyz").json()
    assert (
        readiness["children"]["redis"].startswith("running since") and "1 restart(s)" in readiness["children"]["redis"]
    )
    assert "restart 1 in 1 s" in serve.log.read_text()  # the restart is logged with its attempt


@pytest.mark.slow  # a real `tocsin serve`, a worker killed
def test_a_killed_worker_is_back_within_seconds_and_a_surge_still_alerts_once(serve: Serve) -> None:
    old_pid = serve.kill("worker-1")
    killed_at = time.monotonic()
    wait_for(
        lambda: serve.status()["worker-1"]["state"] == "running" and serve.status()["worker-1"]["pid"] != old_pid,
        timeout=10,
        what="the worker restarted",
    )
    assert time.monotonic() - killed_at < 5
    with httpx2.Client(timeout=5) as client:
        assert {serve.deliver(client, event) for event in burst(NOW, "spam.example", reports=40, hours=1)} == {202}
    connection = serve.redis()

    def surge_dms() -> set[str]:
        entries = [json.loads(raw) for raw in connection.lrange(defaults.OUTBOX_LOG, 0, -1)]
        return {entry["key"] for entry in entries if "Report surge: spam.example" in entry["text"]}

    wait_for(lambda: len(surge_dms()) >= 1, what="the surge DM")
    wait_for(lambda: quiescent(connection), what="the workers to finish")
    assert len(surge_dms()) == 1
    assert "1 restart(s)" in httpx2.get(f"{serve.url}/readyz").json()["children"]["worker-1"]


@pytest.mark.slow  # a real `tocsin serve`, its web process stopped
def test_doctor_names_a_child_that_is_down(serve: Serve) -> None:
    pid = int(serve.status()["web"]["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: serve.status()["web"]["state"] == "down", timeout=10, what="serve to notice")
    # Freeze the supervisor so its 1 s backoff cannot restart web while doctor starts up (slower than 1 s on CI).
    os.kill(serve.process.pid, signal.SIGSTOP)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(TOCSIN_DATA_DIR=str(serve.data))
        doctor = subprocess.run(
            [sys.executable, "-m", "bot.ops.cli", "doctor"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        os.kill(serve.process.pid, signal.SIGCONT)
    assert "BAD  serve: web DOWN since" in doctor.stdout and "(exit status -9)" in doctor.stdout, doctor.stdout
    wait_for(serve.ready, timeout=30, what="web back")


def test_a_child_that_always_crashes_makes_serve_exit_with_its_last_lines(tmp_path: Path) -> None:
    """The crash-loop rule on a fake clock, with a real process that dies at once."""
    clock = [0.0]
    script = "import sys; print('cannot bind 0.0.0.0:8000: address in use', flush=True); sys.exit(3)"
    child = Child(
        "web",
        lambda: subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
    )
    supervisor = Supervisor([child], tmp_path / STATUS_FILE, clock=lambda: clock[0])
    supervisor.start_all()
    delays = []
    with pytest.raises(CrashLoop) as crash:
        for _ in range(20):
            assert child.process is not None
            child.process.wait(10)
            supervisor.step()  # notices the death, schedules the restart
            assert child.restart_at is not None
            delays.append(child.restart_at - clock[0])
            clock[0] = child.restart_at
            supervisor.step()  # restarts it
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]  # then the sixth death within 5 minutes: give up
    message = str(crash.value)
    assert message.startswith("web died 6 times within 5 minutes (last exit status 3)")
    assert "cannot bind 0.0.0.0:8000: address in use" in message  # its last log lines


@pytest.mark.slow  # a real crash loop: 1+2+4+8+16 s of backoff
def test_serve_exits_non_zero_when_a_child_crash_loops(tmp_path: Path) -> None:
    """Through the real command: a web process that cannot start (its port is taken) loops, and serve
    gives up with the message instead of restarting it forever."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(
        TOCSIN_PORT=str(port), TOCSIN_DATA_DIR=str(tmp_path / "data"), TOCSIN_WEBHOOK_SECRET=SECRET, TOCSIN_WORKERS="1"
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bot.ops.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        taken.close()
    assert result.returncode != 0
    assert "web died 6 times within 5 minutes" in result.stderr
    assert "address already in use" in result.stderr.lower()
    assert time.monotonic() - started < 90  # 1+2+4+8+16 s of backoff, plus the starts
    assert not (tmp_path / "data" / STATUS_FILE).exists()


@pytest.mark.slow  # a real worker through a Redis outage
def test_a_worker_alone_outlives_a_redis_outage_that_outlasts_its_first_retry(tmp_path: Path) -> None:
    """`tocsin worker` (Procfile, several machines) never exits on a Redis outage: it retries until the
    server is back, even when it is still down at the retry (making a worker already talks to Redis)."""
    from bot.ops.embedded_redis import EmbeddedRedis

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(TOCSIN_REDIS_URL=f"redis://127.0.0.1:{port}/0", TOCSIN_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bot.ops.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = None
    try:
        wait_for(lambda: log.read_text().count("starting a fresh worker") >= 2, what="two retries")
        assert worker.poll() is None, log.read_text()[-2000:]  # still there, retrying
        server = EmbeddedRedis(tmp_path / "redis", port=port, persistent=False).start()
        connection = redis.Redis(port=port)
        wait_for(lambda: connection.exists("rq:workers") == 1, timeout=60, what="the worker to register")
    finally:
        worker.terminate()
        worker.wait(30)
        if server is not None:
            server.stop()


@pytest.mark.slow  # a real `tocsin serve`
def test_serve_prints_the_webhook_url_its_web_process_listens_on(tmp_path: Path) -> None:
    """`PORT=… tocsin serve` (a platform's port wins over TOCSIN_PORT): the URL a newcomer pastes into
    Mastodon answers."""
    port, other = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(PORT=str(port), TOCSIN_PORT=str(other), TOCSIN_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot.ops.cli", "serve"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "Webhook URL: " in log.read_text(), what="the webhook URL")
        [url] = [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("Webhook URL: ")]
        assert url == f"http://127.0.0.1:{port}/webhooks/mastodon"

        def answers() -> bool:
            assert serve.poll() is None, log.read_text()
            try:
                return httpx2.get(url.removesuffix("/webhooks/mastodon") + "/healthz", timeout=2).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_for(answers, timeout=60, what="web on the printed URL")
    finally:
        serve.terminate()
        serve.wait(30)
