"""CSV cells a spreadsheet opens as text, never as a formula (CSV injection).

What Tocsin writes in its CSVs comes partly from peers: software names and versions, how they block a
server, their domain as they list it. A cell starting with `=`, `+`, `-` or `@` (or a tab or carriage
return, which some spreadsheets skip first) is read as a formula by Excel, LibreOffice and Google
Sheets: `=HYPERLINK(...)` leaks what the sheet holds, `=cmd|...` runs a program. OWASP's advice, followed
here: such a cell gets a leading single quote (the spreadsheet shows it as text), and the csv module
quotes separators, quotes and line breaks. Mastodon's domain-block import (Admin::Import) reads only
domains, severities, booleans and Tocsin's own comments, none of which start so: that format stays
importable as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""OWASP's list of characters that make a spreadsheet read a cell as a formula."""
CELL_MAX = 1000
"""Characters kept of one cell: evidence quoted from a peer is a line, not a document (and a huge cell
is how a hostile peer would make a sheet unusable)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_cell(value: object) -> str:
    """One cell's text: control characters as spaces (one row a line), capped, and quoted as text when
    it could start a formula (also behind leading spaces, which some spreadsheets skip)."""
    text = _CONTROL.sub(" ", "" if value is None else str(value))[:CELL_MAX]
    return "'" + text if text.lstrip(" ").startswith(FORMULA_START) else text


def safe_row(values: Iterable[object]) -> list[str]:
    return [safe_cell(value) for value in values]
