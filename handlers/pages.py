"""The public incident pages, added to the web process by the incident family.

Server-rendered (Jinja2, autoescaped), no JavaScript, a strict Content-Security-Policy; they show
domains (obfuscated where the block says so), actions, dates and public text only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import redis
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.config import Settings
from bot.templating import render_page
from handlers.announcements import settings_view
from handlers.incidents import iso, list_incidents, load, reports_per_hour, svg_bars

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,120}$")


def add_incident_pages(app: FastAPI, settings: Settings) -> None:
    """/incidents, /incidents/<slug>, /incidents/<slug>.json, /incidents.atom: public, nothing personal."""
    base = (settings.public_url or "").rstrip("/")
    instance = settings_view(settings)

    def when(moment: float) -> str:
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def page(name: str, **context: object) -> HTMLResponse:
        html = render_page(settings.template_dir, name, base=base, instance=instance, when=when, iso=iso, **context)
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "max-age=60"})

    def sync(request: Request) -> redis.Redis:
        return request.app.state.intake.sync  # type: ignore[no-any-return]

    @app.get("/incidents", response_class=HTMLResponse)
    async def incident_list(request: Request) -> HTMLResponse:
        return page("incidents.html.j2", incidents=await run_in_threadpool(list_incidents, sync(request)))

    @app.get("/incidents.atom")
    async def incident_feed(request: Request) -> Response:
        items = await run_in_threadpool(list_incidents, sync(request), 50)
        latest = max((at for item in items for at, _text in item.timeline), default=0.0)
        xml = render_page(
            settings.template_dir,
            "incidents.atom.j2",
            incidents=items,
            base=base,
            instance=instance,
            iso=iso,
            updated=iso(latest),
        )
        return Response(xml, media_type="application/atom+xml; charset=utf-8")

    @app.get("/incidents.css")
    async def incident_styles() -> Response:
        css = render_page(settings.template_dir, "incidents.css")
        return Response(css, media_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=3600"})

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
        return page("incident.html.j2", incident=incident, chart=svg_bars(series))
