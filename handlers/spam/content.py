"""What a local status looks like to the spam-wave detector, pure: its visible text and links (from
Mastodon's HTML), the fingerprints that make two posts near-duplicates (text modulo mentions and
whitespace, link host and path, image blurhash), and the facts of a status event (`examine`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from bot.pipeline.surges import DAY
from handlers.shared.payloads import Status
from handlers.spam.settings import SpamWaveSettings

MIN_TEXT_CHARS = 20
"""Shorter texts ("hello!", "good morning") are too common to call two of them duplicates."""
MAX_LINKS = 3
MAX_MEDIA = 4
"""Fingerprints taken per post: enough for any real post, bounded for a hostile one."""
SAMPLE_CHARS = 300
"""Visible text kept per flagged post, for quoting in the DM."""


class _ContentParser(HTMLParser):
    """Visible text of a status's HTML without its mentions, and the links it carries."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self._skip_depth = 0  # inside a mention's <a>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p"):
            self.text.append(" ")
        if tag != "a":
            if self._skip_depth:
                self._skip_depth += 1
            return
        classes = (dict(attrs).get("class") or "").split()
        if self._skip_depth or ("mention" in classes and "hashtag" not in classes):
            self._skip_depth += 1
        elif "hashtag" not in classes and (href := dict(attrs).get("href")):
            self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_depth:
            self._skip_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.text.append(data)


_PLAIN_MENTION = re.compile(r"(?<![\w/])@[\w.-]+(?:@[\w.-]+)?")


def parse_content(html: str) -> tuple[str, list[str]]:
    """(visible text without mentions, whitespace collapsed; links other than mentions and hashtags)."""
    parser = _ContentParser()
    try:
        parser.feed(html)
        parser.close()
    except (ValueError, AssertionError):  # malformed HTML: keep what was parsed
        pass
    text = _PLAIN_MENTION.sub(" ", "".join(parser.text))
    return " ".join(text.split()), parser.links


def _digest(kind: str, value: str) -> str:
    return kind + ":" + hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


def normalized_link(url: str) -> str | None:
    """Host and path: spam varies query strings and fragments to look unique."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().removeprefix("www.")
    return host + (parts.path.rstrip("/") or "")


def fingerprints(status: Status, own_host: str | None) -> list[str]:
    """What makes two posts the same: their text, each link (not to this instance), each image."""
    text, links = parse_content(status.content)
    return _fingerprints(status, text, links, own_host)


def _fingerprints(status: Status, text: str, links: list[str], own_host: str | None) -> list[str]:
    full_text = f"{status.spoiler_text} {text}".strip().lower()
    found = []
    if len(full_text) >= MIN_TEXT_CHARS:
        found.append(_digest("text", full_text))
    if status.card_url:
        links = [*links, status.card_url]
    seen_links: set[str] = set()
    for url in links:
        link = normalized_link(url)
        if link and link.split("/", 1)[0] != own_host and link not in seen_links and len(seen_links) < MAX_LINKS:
            seen_links.add(link)
            found.append(_digest("link", link))
    found += [_digest("media", blurhash) for blurhash in status.blurhashes[:MAX_MEDIA]]
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class PostFacts:
    """What the detector needs of one status."""

    status_id: str
    account_id: str
    username: str
    at: float
    young: bool
    mentions: int
    fingerprints: list[str]
    sample: str  # visible text, for quoting (neutralized when rendered)


def examine(
    event: dict[str, Any], bot_account_id: str | None, own_host: str | None, cfg: SpamWaveSettings
) -> PostFacts | None:
    """The facts of a status event, or None for one the detector ignores: the bot's own statuses (its
    DMs come back as status.created), boosts (no text of their own), posts without an author or a time."""
    status = Status.from_event(event)
    at = status.created_at
    if not status.account_id or status.boost or status.account_id == bot_account_id or at is None or not status.id:
        return None
    young = status.account_created_at is not None and at - status.account_created_at < cfg.young_days * DAY
    # Only young accounts' posts are looked into; the others just count towards normal posting speed.
    text, links = parse_content(status.content) if young else ("", [])
    return PostFacts(
        status_id=status.id,
        account_id=status.account_id,
        username=status.username,
        at=at,
        young=young,
        mentions=len(status.mentions),
        fingerprints=_fingerprints(status, text, links, own_host) if young else [],
        sample=text[:SAMPLE_CHARS],
    )
