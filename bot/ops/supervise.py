"""`tocsin serve`'s supervision of its children: the embedded redis-server, the web process, the workers.

A child that exits is restarted after a backoff (1 s, 2 s, 4 s … at most 60 s; the backoff starts over
once a child has stayed up for a minute). The embedded Redis restarts on the same port and data directory,
so its append-only file brings back queued events, dedupe keys and detector state, and the other
children reconnect by themselves. A child that dies more than CRASH_LOOP_DEATHS times within
CRASH_LOOP_SECONDS is not healing: everything is stopped and `serve` exits non-zero with the child's last
log lines, so a service manager (systemd `Restart=on-failure`, Docker `restart: unless-stopped`) takes over.

What is up, down and since when is written to STATUS_FILE in the data directory for `/readyz` and
`tocsin doctor`, which are in other processes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
"""Seconds before the n-th consecutive restart of a child."""
STABLE_SECONDS = 60.0
"""A child up this long has recovered: its next crash starts the backoff over."""
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_SECONDS = 300.0
"""More than CRASH_LOOP_DEATHS deaths of one child within CRASH_LOOP_SECONDS: give up, exit non-zero."""
LOG_TAIL_LINES = 20
"""A child's last log lines kept for the crash-loop message."""
STATUS_FILE = "serve-status.json"


class CrashLoop(RuntimeError):
    """A child keeps dying; the message names it and quotes its last log lines."""


@dataclass
class Child:
    """One supervised process: how to start it, and what happened to it."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    log_tail: Callable[[], list[str]] | None = None  # where its log is not its output (redis-server)
    process: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restarts: int = 0
    started_at: float = 0.0
    down_since: float | None = None
    restart_at: float | None = None
    last_exit: int | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))

    def tail(self) -> list[str]:
        return self.log_tail() if self.log_tail is not None else list(self.output)


def forward_output(child: Child, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, line by line, prefixed with its name; keep the last lines."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        child.output.append(line)
        sys.stderr.write(f"{child.name:<9}| {line}\n")
    stream.close()


def tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 64 * 1024, 0))
            return [line.decode("utf-8", "replace") for line in handle.read().splitlines()[-lines:]]
    except OSError:
        return []


class Supervisor:
    def __init__(self, children: list[Child], status_path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.children = children
        self.status_path = status_path
        self.clock = clock
        self.wall_offset = time.time() - clock()  # status times are wall-clock for other processes

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)
        self.write_status()

    def _start(self, child: Child) -> None:
        child.process = child.start()
        child.started_at = self.clock()
        child.down_since = child.restart_at = None
        if child.process.stdout is not None:
            threading.Thread(target=forward_output, args=(child, child.process.stdout), daemon=True).start()

    def step(self) -> None:
        """Notice children that exited, restart those whose backoff is over; raise CrashLoop to give up."""
        now = self.clock()
        changed = False
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (attempt %d)", child.name, child.restarts)
                    try:
                        self._start(child)
                    except Exception as error:  # e.g. redis-server refusing to start: counts as a death
                        log.error("%s did not start: %s", child.name, error)
                        child.output.append(f"did not start: {error}")
                        self._died(child, now, None)
                    changed = True
                continue
            if child.process is None or child.process.poll() is None:
                continue
            self._died(child, now, child.process.returncode)
            changed = True
        if changed:
            self.write_status()

    def _died(self, child: Child, now: float, status: int | None) -> None:
        child.last_exit = status
        child.down_since = now
        if now - child.started_at >= STABLE_SECONDS:
            child.deaths.clear()
        child.deaths.append(now)
        while child.deaths and now - child.deaths[0] > CRASH_LOOP_SECONDS:
            child.deaths.popleft()
        if len(child.deaths) > CRASH_LOOP_DEATHS:
            lines = "\n".join(f"  {line}" for line in child.tail()) or "  (no output)"
            raise CrashLoop(
                f"{child.name} died {len(child.deaths)} times within {CRASH_LOOP_SECONDS / 60:.0f} minutes "
                f"(last exit status {status}); giving up. Its last log lines:\n{lines}"
            )
        delay = RESTART_BACKOFF[min(len(child.deaths) - 1, len(RESTART_BACKOFF) - 1)]
        child.restart_at = now + delay
        log.error("%s exited with status %s; restart %d in %.0f s", child.name, status, child.restarts + 1, delay)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM in reverse start order (workers and web before Redis: a worker finishing a job needs it)."""
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.status_path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        def wall(moment: float | None) -> float | None:
            return None if moment is None else round(moment + self.wall_offset, 3)

        return {
            "pid": os.getpid(),
            "children": {
                child.name: {
                    "pid": child.process.pid if child.process is not None else None,
                    "state": "down" if child.down_since is not None else "running",
                    "since": wall(child.down_since if child.down_since is not None else child.started_at),
                    "restarts": child.restarts,
                    "last_exit": child.last_exit,
                }
                for child in self.children
            },
        }

    def write_status(self) -> None:
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.status()))
        temporary.replace(self.status_path)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """What a running `tocsin serve` last wrote; None when none runs (no file, or its process is gone)."""
    try:
        status = json.loads((data_dir / STATUS_FILE).read_text())
        os.kill(int(status["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if isinstance(status, dict) else None


def describe(status: dict[str, Any] | None) -> dict[str, str]:
    """Each supervised child as a line for people: "running since …, 2 restarts" / "DOWN since …"."""
    children = status.get("children") if status is not None else None
    if not isinstance(children, dict):
        return {}
    lines = {}
    for name, info in children.items():
        since = info.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, int | float) else "?"
        restarts = f", {info.get('restarts')} restart(s)" if info.get("restarts") else ""
        if info.get("state") == "down":
            lines[name] = f"DOWN since {when} (exit status {info.get('last_exit')}){restarts}"
        else:
            lines[name] = f"running since {when}{restarts}"
    return lines
