"""The handler (pure bookkeeping, one Lua call) and what the family shows: a CLI command, a page, a DM
reply command, doctor lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bot.core import redis_text
from bot.core.config import Settings
from bot.core.scripting import Lua
from bot.mastodon.context import Context, redis_from_url
from bot.ops.clitools import cli_context
from bot.pipeline.families import Rejected
from bot.pipeline.replies import Outcome, Request
from tests.example_family.settings import ExampleSettings

COUNTS = "tocsin:example:categories"
COUNT_CATEGORY = Lua(__file__, "count_category")


def handle_report(ctx: Context, event: dict[str, Any]) -> None:
    report = event.get("object")
    if not isinstance(report, dict):
        raise Rejected("report.created without an object")
    COUNT_CATEGORY(ctx.redis, [COUNTS], [str(report.get("category") or "other")])


def counts(ctx: Context) -> dict[str, int]:
    return {name: int(value) for name, value in redis_text.text_map(ctx.redis.hgetall(COUNTS)).items()}


@click.command("example-counts")
def show_counts() -> None:
    """Reports per category (the example family)."""
    for name, count in sorted(counts(cli_context()).items()):
        click.echo(f"{name}: {count}")


def add_pages(app: FastAPI, settings: Settings) -> None:
    @app.get("/example")
    def page() -> JSONResponse:
        return JSONResponse(counts(Context(settings, redis_from_url(settings.redis_url or ""))))


def doctor(ctx: Context) -> Iterator[tuple[bool, str]]:
    notable = ctx.settings.section(ExampleSettings).notable
    for name, count in sorted(counts(ctx).items()):
        if count >= notable:
            yield True, f"example: {count} {name} reports"


def reply_counts(ctx: Context, request: Request) -> Outcome:
    return Outcome("done", ", ".join(f"{name}: {count}" for name, count in sorted(counts(ctx).items())) or "none")
