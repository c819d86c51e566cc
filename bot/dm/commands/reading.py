"""Reading a DM as the moderator wrote it: their own words (HTML decoded once, quoted mentions and
format characters dropped) and which mentions cannot be commands at all (screened before a job exists)."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from typing import Any


class _OwnText(HTMLParser):
    """A status's HTML as plain text without what is not the author's command: mentions (links with
    class "mention"), quotes (Mastodon's "quote-inline" paragraph of a quote post, blockquotes)."""

    SKIPPED = ("mention", "quote-inline")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []  # tags whose content is being skipped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._skipping or tag == "blockquote" or any(name in classes for name in self.SKIPPED):
            self._skipping.append(tag)
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        elif tag == "p" and not self._skipping:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self._skipping:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_LEADING_MENTIONS = re.compile(r"^(\s*@[\w.-]+(@[\w.-]+)?)+\s*")


def own_text(content: str) -> str:
    """The command of a status: its author's own lines of text, without mentions or quotes (lines
    starting with ">" are quotes too), read as one line ("approve" then "1,3" on the next line is
    `approve 1,3`, never a bare `approve`), as the moderator sees it: the HTML decoded once (a typed
    "&#108;ift" stays those characters) and without invisible format characters."""
    parser = _OwnText()
    parser.feed(content)
    parser.close()
    lines = []
    for raw in "".join(parser.parts).splitlines():
        visible = "".join(char for char in raw if unicodedata.category(char) != "Cf")  # zero-width, bidi, …
        line = _LEADING_MENTIONS.sub("", visible).strip()
        if line and not line.startswith(">"):
            lines.append(line)
    return " ".join(lines)


def screen(notification: dict[str, Any]) -> str | None:
    """Why this mention is no command at all (counted, never answered); None when it may be one."""
    status = notification.get("status") or {}
    sender = notification.get("account") or {}
    if notification.get("type") != "mention" or not status.get("id"):
        return "not a mention"
    if status.get("reblog"):
        return "boost"
    if "@" in str(sender.get("acct") or "@"):
        return "remote account"
    if status.get("visibility") != "direct":
        return "not direct"
    return None
