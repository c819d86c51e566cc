"""Jinja2 environments for posts (plain text) and pages (HTML, autoescaped).

Templates are looked up first in TOCSIN_TEMPLATE_DIR (operator overrides), then in templates/.
User-supplied text reaches a post only through the `neutral` filter (see bot.core.privacy.neutralize).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from bot.core.privacy import neutralize

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
"""The platform's own templates; each family's are in a folder of their own beside them (templates/reports/,
…). Templates are named by file name alone, so an operator's override is one flat folder whatever family a
template belongs to (names are unique: tests/test_packaging.py checks)."""


def builtin_folders() -> list[str]:
    families = sorted(path for path in BUILTIN_TEMPLATES.iterdir() if path.is_dir() and not path.name.startswith("_"))
    return [str(BUILTIN_TEMPLATES), *map(str, families)]


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


@lru_cache(maxsize=8)
def environment(override_dir: Path | None, html: bool) -> jinja2.Environment:
    search = [str(override_dir)] if override_dir else []
    search += builtin_folders()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["neutral"] = neutralize
    env.filters["number"] = _number
    return env


def render_text(override_dir: Path | None, name: str, **context: object) -> str:
    return environment(override_dir, html=False).get_template(name).render(**context).strip()


def render_page(override_dir: Path | None, name: str, **context: object) -> str:
    return environment(override_dir, html=True).get_template(name).render(**context)
