"""Real processes: `tocsin web` and `tocsin worker` against a Redis URL (Stack), or a whole `tocsin serve`
(Serve), configured through the environment like a deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import redis

from bot.ops.embedded_redis import free_port
from bot.ops.supervise import STATUS_FILE
from tests.helpers import SECRET, sign, wait_for
from tests.mastodon_double import MastodonDouble

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """One web process and N workers, configured through the environment like a deployment."""

    def __init__(
        self, tmp_path: Path, redis_url: str, mastodon: MastodonDouble | None, workers: int = 1, **extra_env: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")},
            "TOCSIN_REDIS_URL": redis_url,
            "TOCSIN_WEBHOOK_SECRET": SECRET,
            "TOCSIN_DATA_DIR": str(tmp_path / "tocsin-data"),
            "TOCSIN_PORT": str(self.port),
            "TOCSIN_RETRY_DELAYS": "1,1,2,2",
            **extra_env,
        }
        if mastodon is not None:
            self.env.update(TOCSIN_MASTODON_URL=mastodon.url, TOCSIN_ACCESS_TOKEN=mastodon.token)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workers = workers
        self.cwd = tmp_path
        self.log_file = tmp_path / f"stack-{self.port}.log"  # every process's log lines

    def start(self) -> Stack:
        for role in ["web"] + ["worker"] * self.workers:
            self.start_process(role)
        wait_for(self._healthy, what="web process")
        return self

    def start_process(self, role: str) -> None:
        with self.log_file.open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot.ops.cli", role],
                    env=self.env,
                    cwd=self.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def _healthy(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx2.HTTPError:
            return False

    def deliver(self, client: httpx2.Client, event: dict[str, Any]) -> int:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body)}
        return client.post(f"{self.url}/webhooks/mastodon", content=body, headers=headers).status_code

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(15)  # a process that ignores SIGTERM fails the test here


class Serve:
    """`tocsin serve` in its own data directory, with a known webhook secret: dry-run, or live against a
    Mastodon double."""

    def __init__(
        self, tmp_path: Path, workers: int = 1, mastodon: MastodonDouble | None = None, **extra_env: str
    ) -> None:
        self.data = tmp_path / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(
            TOCSIN_PORT=str(self.port),
            TOCSIN_DATA_DIR=str(self.data),
            TOCSIN_WEBHOOK_SECRET=SECRET,
            TOCSIN_MODERATORS="mod_anna",
            TOCSIN_RETRY_DELAYS="1,1,2",
        )
        if mastodon is not None:
            env.update(TOCSIN_MASTODON_URL=mastodon.url, TOCSIN_ACCESS_TOKEN=mastodon.token)
        env.update(extra_env)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.ops.cli", "serve", "--workers", str(workers)],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, timeout=60, what="serve to be ready")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.data / STATUS_FILE).read_text())["children"]  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def ready(self) -> bool:
        assert self.process.poll() is None, f"serve exited:\n{self.log.read_text()}"
        try:
            return httpx2.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx2.HTTPError:
            return False

    def redis(self) -> redis.Redis:
        port = int((self.data / "redis" / "redis.port").read_text())
        return redis.Redis(port=port)

    def deliver(self, client: httpx2.Client, event: dict[str, Any]) -> int:
        body = json.dumps(event).encode()
        try:
            return client.post(
                f"{self.url}/webhooks/mastodon", content=body, headers={"X-Hub-Signature": sign(body)}
            ).status_code
        except httpx2.HTTPError:
            return 0

    def kill(self, child: str) -> int:
        pid = int(self.status()[child]["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
