"""What every `tocsin` command needs: settings from the environment, the Redis to use, a context.

Kept apart from bot/ops/cli.py so the families' command modules can use it while bot/ops/cli.py collects them.
"""

from __future__ import annotations

import time

import click

from bot.core.config import ConfigError, Settings, load_settings
from bot.mastodon.context import Context, redis_from_url
from bot.ops.embedded_redis import running_embedded_url
from bot.pipeline.families import registry


def settings_from_environment(**overrides: object) -> Settings:
    """The platform's settings and every installed family's section, checked now: a bad value stops the
    command at once, naming its variable."""
    try:
        settings = load_settings(**overrides)
        registry().check_settings(settings)
        return settings
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def with_redis(settings: Settings) -> Settings:
    """Settings whose redis_url is set: the configured one, or the embedded server `tocsin serve` runs."""
    if settings.redis_url:
        return settings
    url = running_embedded_url(settings.data_dir / "redis")
    if url is None:
        raise click.ClickException(
            "TOCSIN_REDIS_URL is not set and no embedded Redis is running under "
            f"{settings.data_dir / 'redis'}; set TOCSIN_REDIS_URL, or start `tocsin serve` (or `tocsin redis`)"
        )
    return settings.model_copy(update={"redis_url": url})


def cli_context() -> Context:
    """A command's context: unlike a job, a command waits out Tocsin's spent share of the API limit."""
    settings = with_redis(settings_from_environment())
    ctx = Context(settings, redis_from_url(settings.redis_url or ""))
    ctx.mastodon.wait_out_spent_share(_wait_for_reset)
    return ctx


def _wait_for_reset(seconds: float) -> None:
    click.echo(f"Mastodon's API rate limit: Tocsin's share of this window is spent; waiting {seconds:.0f} s", err=True)
    time.sleep(seconds)  # the reset Mastodon announced
