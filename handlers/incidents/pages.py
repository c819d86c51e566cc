"""The public incident pages, added to the web process by the incident family.

Server-rendered (Jinja2, autoescaped), no JavaScript, a strict Content-Security-Policy; they show
domains (obfuscated where the block says so), actions, dates and public text only. Announced blocks
that belong to no incident are on a dated list of their own, /incidents/other, so every announcement's
link leads to the server it names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.core.config import Settings
from bot.core.templating import render_page
from bot.mastodon.client import known_instance_domain
from handlers.incidents.announcements import OTHER_PATH, settings_view
from handlers.incidents.store import iso, list_incidents, list_other, load, reports_per_hour, svg_bars

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,120}$")
OTHER_ON_LIST_PAGE = 20
"""The newest other limits and suspensions shown on /incidents (all of them on /incidents/other)."""
FEED_OTHER = 50
"""Other limits and suspensions in the Atom feed, next to at most 50 incidents."""


def add_incident_pages(app: FastAPI, settings: Settings) -> None:
    """/incidents, /incidents/<slug>, /incidents/<slug>.json, /incidents/other(.json), /incidents.atom:
    public, nothing personal."""
    base = (settings.public_url or "").rstrip("/")

    def instance(connection: redis.Redis) -> dict[str, Any]:
        # The instance's own domain as a worker last read it: a page never waits for Mastodon.
        return settings_view(settings, known_instance_domain(connection))

    def when(moment: float) -> str:
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def page(name: str, connection: redis.Redis, **context: object) -> HTMLResponse:
        html = render_page(
            settings.template_dir,
            name,
            base=base,
            instance=instance(connection),
            when=when,
            iso=iso,
            other_path=OTHER_PATH,
            **context,
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "max-age=60"})

    def sync(request: Request) -> redis.Redis:
        return request.app.state.intake.sync  # type: ignore[no-any-return]

    def listing(connection: redis.Redis) -> HTMLResponse:
        return page(
            "incidents.html.j2",
            connection,
            incidents=list_incidents(connection),
            others=list_other(connection, OTHER_ON_LIST_PAGE + 1),
            others_shown=OTHER_ON_LIST_PAGE,
        )

    @app.get("/incidents", response_class=HTMLResponse)
    async def incident_list(request: Request) -> HTMLResponse:
        return await run_in_threadpool(listing, sync(request))

    def feed(connection: redis.Redis) -> Response:
        items = list_incidents(connection, 50)
        others = list_other(connection, FEED_OTHER)
        latest = max(
            [at for item in items for at, _text in item.timeline] + [other.at for other in others], default=0.0
        )
        xml = render_page(
            settings.template_dir,
            "incidents.atom.j2",
            incidents=items,
            others=others,
            other_path=OTHER_PATH,
            base=base,
            instance=instance(connection),
            iso=iso,
            updated=iso(latest),
        )
        return Response(xml, media_type="application/atom+xml; charset=utf-8")

    @app.get("/incidents.atom")
    async def incident_feed(request: Request) -> Response:
        return await run_in_threadpool(feed, sync(request))

    @app.get("/incidents.css")
    async def incident_styles() -> Response:
        css = render_page(settings.template_dir, "incidents.css")
        return Response(css, media_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=3600"})

    # Before /incidents/{slug}: "other" is a page of its own (incident slugs start with their date).
    @app.get(OTHER_PATH + ".json")
    async def other_json(request: Request) -> JSONResponse:
        others = await run_in_threadpool(list_other, sync(request))
        url = f"{base}{OTHER_PATH}"
        return JSONResponse({"url": url, "entries": [other.public_json(url) for other in others]})

    @app.get(OTHER_PATH, response_class=HTMLResponse)
    async def other_page(request: Request) -> HTMLResponse:
        def render(connection: redis.Redis) -> HTMLResponse:
            return page("incidents_other.html.j2", connection, others=list_other(connection))

        return await run_in_threadpool(render, sync(request))

    @app.get("/incidents/{slug}.json")
    async def incident_json(request: Request, slug: str) -> JSONResponse:
        incident = await run_in_threadpool(load, sync(request), slug) if _SLUG.match(slug) else None
        if incident is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(incident.public_json(f"{base}/incidents/{slug}"))

    @app.get("/incidents/{slug}", response_class=HTMLResponse)
    async def incident_page(request: Request, slug: str) -> HTMLResponse:
        incident = await run_in_threadpool(load, sync(request), slug) if _SLUG.match(slug) else None
        if incident is None:
            return HTMLResponse("Not found", status_code=404, headers={"Content-Security-Policy": PAGE_CSP})
        series = await run_in_threadpool(reports_per_hour, sync(request), incident)

        def render(connection: redis.Redis) -> HTMLResponse:
            return page("incident.html.j2", connection, incident=incident, chart=svg_bars(series))

        return await run_in_threadpool(render, sync(request))
