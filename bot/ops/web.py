"""The web process: webhook intake, health checks, and the local outbox page."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from rq import Worker
from starlette.concurrency import run_in_threadpool

from bot.core import defaults
from bot.core.config import Settings
from bot.core.templating import render_page
from bot.mastodon.context import redis_from_url
from bot.mastodon.outbox import read_log
from bot.ops import scrape
from bot.ops.supervise import describe, read_status
from bot.pipeline.families import registry
from bot.pipeline.intake import IntakeApp, IntakeState

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'"
"""Incident pages: no script at all, styles only from this origin, never framed."""


def create_app(settings: Settings) -> IntakeApp:
    """The web process's ASGI app: the lean webhook intake in front of a FastAPI app for the rest."""
    if settings.redis_url is None or settings.webhook_secret is None:
        raise ValueError("the web app needs TOCSIN_REDIS_URL and TOCSIN_WEBHOOK_SECRET")
    redis_url = settings.redis_url
    secret = settings.webhook_secret.get_secret_value().encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        aio = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        sync = redis_from_url(redis_url)
        intake.state = app.state.intake = IntakeState(
            secret=secret,
            known_events=registry().webhook_events,
            dedupe_seconds=int(settings.dedupe_days * 86400),
            retry_delays=settings.retry_delays,
            aio=aio,
            sync=sync,
        )
        yield
        intake.state = None
        await aio.aclose()
        sync.close()

    app = FastAPI(title="Tocsin", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # Mastodon's payloads are a few KB; a report with many statuses stays far below the 1 MiB default.
    intake = IntakeApp(app, settings.max_body_bytes)

    @app.exception_handler(redis.RedisError)
    async def redis_unavailable(_request: Request, error: redis.RedisError) -> JSONResponse:
        # Pages and checks read Redis; without it they are unavailable for now, not broken.
        return JSONResponse({"error": "storage unavailable", "retry": True}, status_code=503)

    if settings.metrics:

        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics(request: Request) -> Response:
            body, content_type = scrape.exposition(request.app.state.intake.sync)
            return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        # Under `tocsin serve`: its children, which is down and since when, restarts.
        children = describe(read_status(settings.data_dir))
        supervised = {"children": children} if children else {}
        down = any(line.startswith("DOWN") for line in children.values())
        sync: redis.Redis = request.app.state.intake.sync
        try:
            workers = await run_in_threadpool(recent_workers, sync)
        except redis.RedisError:
            return JSONResponse({"status": "unready", "redis": "unreachable", **supervised}, status_code=503)
        if workers == 0 or down:
            return JSONResponse({"status": "unready", "redis": "ok", "workers": workers, **supervised}, status_code=503)
        return JSONResponse({"status": "ready", "redis": "ok", "workers": workers, **supervised})

    @app.get("/outbox", response_class=HTMLResponse)
    async def outbox(request: Request) -> HTMLResponse:
        # DMs quote report comments: only someone on this machine may read them.
        if not _is_local_request(request):
            return HTMLResponse("Not found", status_code=404)
        sync: redis.Redis = request.app.state.intake.sync
        entries = await run_in_threadpool(read_log, sync, 100)
        page = render_page(
            settings.template_dir,
            "outbox.html.j2",
            entries=entries,
            dry_run=settings.is_dry_run,
            when=lambda ts: datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    for family in registry().families:  # the families' pages (the public incident pages, …)
        if family.routes is not None:
            family.routes(app, settings)
    return intake


def recent_workers(connection: redis.Redis) -> int:
    now = datetime.now(UTC)
    return sum(
        1
        for worker in Worker.all(connection=connection)
        if worker.last_heartbeat is not None
        and (now - worker.last_heartbeat.replace(tzinfo=UTC)).total_seconds() < defaults.WORKER_SEEN_SECONDS
    )


PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
"""A request that passed through a proxy is not local, even when the proxy runs on this machine."""


def _is_local_request(request: Request) -> bool:
    if request.client is None or any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
