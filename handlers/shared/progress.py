"""Progress of a long CLI read over the peers (`tocsin scan`, `tocsin audit-federation`)."""

from __future__ import annotations

import sys
import time

import click


class Meter:
    """Progress on stderr: done/total, rate, ETA — redrawn in place on a terminal, a line every
    LOG_EVERY seconds otherwise (a log file)."""

    LOG_EVERY = 10.0

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0
        self.live = sys.stderr.isatty()

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.shown >= (0.5 if self.live else self.LOG_EVERY) or self.done >= self.total:
            self.shown = now
            self.say(self.line(now - self.started), end="" if self.live and self.done < self.total else "\n")

    def line(self, seconds: float) -> str:
        rate = self.done / seconds if seconds > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        eta = f", ETA {_duration(left)}" if self.done < self.total and rate > 0 else f" in {_duration(seconds)}"
        return f"read {self.done:,}/{self.total:,} peers ({share:.0%}), {rate:,.0f}/s{eta}"

    def say(self, text: str, end: str = "\n") -> None:
        click.echo(("\r\033[K" if self.live else "") + text, err=True, nl=False)
        click.echo(end, err=True, nl=False)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
