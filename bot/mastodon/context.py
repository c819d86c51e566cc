"""What a job needs, built once per worker process (workers do not fork per job, see bot/ops/worker.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from bot.core.config import Settings, load_settings
from bot.mastodon.actions import is_staff
from bot.mastodon.client import MastodonLink, make_client
from bot.mastodon.outbox import Outbox


def redis_from_url(url: str) -> redis.Redis:
    # health_check_interval: a worker idle for hours notices a dropped connection before using it.
    return redis.Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5)


@dataclass
class Context:
    settings: Settings
    redis: redis.Redis

    @cached_property
    def mastodon(self) -> MastodonLink:
        return MastodonLink(self.settings, self.redis, make_client(self.settings, self.redis), is_staff=is_staff)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.settings, self.redis, self.mastodon)


_current: Context | None = None


def get_context() -> Context:
    """The process's context; built from the environment on first use."""
    global _current
    if _current is None:
        settings = load_settings()
        if settings.redis_url is None:
            raise RuntimeError("TOCSIN_REDIS_URL is not set in this worker process")
        _current = Context(settings, redis_from_url(settings.redis_url))
    return _current


def set_context(context: Context | None) -> None:
    """Install a context explicitly (the worker at start-up; tests)."""
    global _current
    _current = context
