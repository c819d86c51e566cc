"""The event families this package brings to the platform (entry point `tocsin.families` in
pyproject.toml), in the order their handlers run for a shared event. Each family is a package of its own
— its events, detector, settings, Lua, templates (templates/<family>/), commands and pages — whose
family.py says what it brings; adding one is a package and a line here (docs/adding-a-family.md)."""

from __future__ import annotations

from bot.pipeline.families import Family
from handlers.federation import family as federation
from handlers.incidents import family as incidents
from handlers.reports import family as reports
from handlers.scan import family as scan
from handlers.signups import family as signups
from handlers.spam import family as spam

FAMILIES: list[Family] = [
    *reports.FAMILIES,
    *signups.FAMILIES,
    *spam.FAMILIES,
    *scan.FAMILIES,
    *federation.FAMILIES,
    *incidents.FAMILIES,
]
