"""The one place that posts. Exactly once per message key, split to fit, recorded.

Each logical message has a stable key. Each part `i` of it is posted with the Mastodon
`Idempotency-Key` `<key>#<i>` (Mastodon remembers it for an hour, which covers a crash between its
answer and our bookkeeping), and its status id is stored in Redis before the next part is posted, so a
retried job resumes a half-posted thread instead of starting it again.

In dry-run (no token, or TOCSIN_DRY_RUN) posts are recorded in the outbox log and nothing is sent.
While paused (`tocsin pause`, the panic stop) a post is recorded and held back whole: `tocsin resume`
releases the held posts (each still exactly once, by its key; bot/dm/held.py), `tocsin resume --drop`
discards them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import redis
from mastodon import Mastodon

from bot.core import defaults, metrics
from bot.core.config import Settings
from bot.core.privacy import RECIPIENT, unmention
from bot.mastodon.actions import Message, Proposal, store_proposal
from bot.mastodon.client import MastodonLink

log = logging.getLogger(__name__)

PART_MARK_RESERVE = 8
"""Characters kept free in each part for its " (i/n)" mark."""


@dataclass(frozen=True)
class Post:
    key: str
    text: str
    visibility: str = "direct"
    mentions: tuple[str, ...] = field(default_factory=tuple)
    """Accts this post is addressed to; repeated at the top of every part, or a direct reply reaches no one."""
    spoiler_text: str | None = None
    in_reply_to_id: str | None = None
    subject: str | None = None
    """What the thread is about ("proposal:<id>", "announce:<batch>"): a moderator's reply to any part
    of it is a command about that (bot/dm/commands/)."""
    during_pause: bool = False
    """Sent while paused: an answer to a moderator's command, not Tocsin speaking on its own."""


def status_length(text: str, spoiler_text: str | None = None) -> int:
    """Length as Mastodon counts it: graphemes, URLs as 23, `@user@domain` as `@user`."""
    return int(Mastodon.get_status_length(text, spoiler_text or ""))


_WHITESPACE = re.compile(r"\s+")
PARAGRAPH, LINE, WORD, INSIDE = 0, 1, 2, 3
"""Kinds of break, best first; a part ending at a worse one costs more (see _chunks)."""


def _chunks(text: str, limit: int, spoiler_text: str | None) -> list[str]:
    """Pieces of `text` no longer than `limit`: as few as possible, and among those the ones that end at
    the best breaks — paragraph, then line (commands sit on lines of their own, so they stay whole). A
    line is broken between words only when it does not fit a status by itself, and a word inside only
    when it alone is longer than a status."""
    text = text.strip()
    lengths: dict[int, int] = {}  # status length of text[:position], at the break positions

    def fits(start: int, stop: int) -> bool:
        if start in lengths and stop in lengths:  # lengths add up across whitespace (URLs, mentions and
            return lengths[stop] - lengths[start] <= limit  # graphemes never span it)
        return status_length(text[start:stop], spoiler_text) <= limit

    if status_length(text, spoiler_text) <= limit:
        return [text] if text else []
    # Break points: (where the piece before it ends, where the next one starts, kind).
    lines: list[tuple[int, int, int]] = [(0, 0, PARAGRAPH)]
    words: list[tuple[int, int, int]] = []
    for match in _WHITESPACE.finditer(text):
        newlines = match.group().count("\n")
        kind = PARAGRAPH if newlines >= 2 else LINE if newlines else WORD
        (words if kind == WORD else lines).append((match.start(), match.end(), kind))
    lines.append((len(text), len(text), PARAGRAPH))
    _measure(text, spoiler_text, lines, lengths)
    points: list[tuple[int, int, int]] = []
    for (end, start, kind), (stop, _next, _kind) in itertools.pairwise(lines):
        points.append((end, start, kind))
        if not fits(start, stop):  # a line too long for one status: its word breaks may serve
            points.extend(_inside(fits, [point for point in words if start < point[0] < stop], start, stop))
    points.append(lines[-1])
    _measure(text, spoiler_text, [point for point in points if point[2] != INSIDE], lengths)  # exact inside words
    # Fewest parts, then the least costly breaks: best[k] = (parts, cost, previous point) up to point k.
    best: list[tuple[int, int, int]] = [(0, 0, -1)]
    for k in range(1, len(points)):
        candidates = []
        for j in range(k - 1, -1, -1):
            if not fits(points[j][1], points[k][0]):
                break
            parts, cost, _previous = best[j]
            candidates.append((parts + 1, cost + (points[k][2] if k < len(points) - 1 else 0), j))
        best.append(min(candidates) if candidates else (len(text), len(text), k - 1))
    chunks: list[str] = []
    k = len(points) - 1
    while k > 0:
        j = best[k][2]
        chunks.append(text[points[j][1] : points[k][0]].strip())
        k = j
    return [chunk for chunk in reversed(chunks) if chunk]


def _measure(text: str, spoiler_text: str | None, points: list[tuple[int, int, int]], lengths: dict[int, int]) -> None:
    """Status lengths of text[:position] at every break point's two positions, by adding up the pieces
    between them (one status_length call per piece instead of one per candidate part)."""
    positions = sorted({position for end, start, _kind in points for position in (end, start)} | {0})
    total = 0
    lengths[0] = 0
    for before, after in itertools.pairwise(positions):
        total += status_length(text[before:after], spoiler_text) if after > before else 0
        lengths[after] = total


def _inside(
    fits: Callable[[int, int], bool], words: list[tuple[int, int, int]], start: int, stop: int
) -> list[tuple[int, int, int]]:
    """A long line's word breaks, plus cuts inside any word longer than a status by itself."""
    points: list[tuple[int, int, int]] = []
    position = start
    for end, begin in [*((end, begin) for end, begin, _kind in words), (stop, stop)]:
        while not fits(position, end):  # an overlong word: cut where the longest piece that fits ends
            low, high = position + 1, end
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(position, middle) else (low, middle - 1)
            points.append((low, low, INSIDE))
            position = low
        if end < stop:
            points.append((end, begin, WORD))
        position = begin
    return points


def split_post(text: str, mentions: tuple[str, ...], max_characters: int, spoiler_text: str | None = None) -> list[str]:
    """Statuses of at most `max_characters`, each starting with the mentions; numbered when more than one.

    The mentions at the top are the only ones: every "@" of the text and spoiler is broken
    (bot.core.privacy.unmention), so no template, label or quoted word can add a recipient.
    """
    for acct in mentions:
        if not RECIPIENT.fullmatch(acct):
            raise ValueError(f"not an account to address a post to: {acct!r}")
    prefix = " ".join(f"@{acct}" for acct in mentions)
    prefix = f"{prefix}\n" if prefix else ""
    text = unmention(text)
    whole = prefix + text
    if status_length(whole, spoiler_text) <= max_characters:
        return [whole]
    room = max_characters - status_length(prefix, spoiler_text) - PART_MARK_RESERVE
    if room < 40:
        raise ValueError(f"{len(mentions)} recipients leave no room in a {max_characters}-character status")
    chunks = _chunks(text, room, spoiler_text)
    total = len(chunks)
    return [f"{prefix}{chunk} ({number}/{total})" for number, chunk in enumerate(chunks, start=1)]


def fitting(texts: tuple[str, ...], mentions: tuple[str, ...], max_characters: int) -> str:
    """The first text that splits into at most defaults.ALERT_MAX_STATUSES statuses (the last otherwise):
    `texts` are renderings of one alert, most detailed first."""
    for text in texts[:-1]:
        if len(split_post(text, mentions, max_characters)) <= defaults.ALERT_MAX_STATUSES:
            return text
    return texts[-1]


_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:@#-]")


class Outbox:
    def __init__(self, settings: Settings, connection: redis.Redis, link: MastodonLink) -> None:
        self.settings = settings
        self.redis = connection
        self.link = link

    def send(self, post: Post) -> list[str]:
        """Post (or record) every part of `post` not posted yet; return all parts' status ids (none while
        paused: the post is held until `tocsin resume`)."""
        key = _KEY_CHARS.sub("_", post.key)
        if not self.settings.is_dry_run and not post.during_pause and self.redis.exists(defaults.PAUSED):
            return self._hold(key, post)
        sent_key = defaults.OUTBOX_SENT_PREFIX + key
        posted: dict[bytes, bytes] = self.redis.hgetall(sent_key)  # type: ignore[assignment]
        spoiler_text = unmention(post.spoiler_text) if post.spoiler_text else post.spoiler_text
        parts = split_post(post.text, post.mentions, self.link.max_characters(), spoiler_text)
        if post.visibility == "direct" and not post.mentions and not self.settings.is_dry_run:
            raise RuntimeError("a direct message without recipients reaches no one; set TOCSIN_MODERATORS")
        ids: list[str] = []
        reply_to = post.in_reply_to_id
        for index, text in enumerate(parts):
            done = posted.get(str(index).encode())
            if done is not None:
                reply_to = done.decode()
                ids.append(reply_to)
                continue
            mode = self._mode()
            kind = key.split(":", 1)[0]
            if mode == "sent":
                try:
                    status_id = self.link.post_status(
                        text,
                        visibility=post.visibility,
                        idempotency_key=f"{key}#{index}",
                        in_reply_to_id=reply_to,
                        spoiler_text=spoiler_text,
                    )
                except Exception:
                    metrics.POSTS.labels(kind, "failed").inc()
                    raise
            else:
                status_id = f"{mode}-{uuid.uuid4().hex[:12]}"
            pipe = self.redis.pipeline()
            pipe.hset(sent_key, str(index), status_id)
            pipe.expire(sent_key, defaults.OUTBOX_SENT_TTL)
            if post.subject is not None:
                pipe.set(defaults.THREAD_PREFIX + status_id, post.subject, ex=defaults.THREAD_TTL)
            pipe.lpush(
                defaults.OUTBOX_LOG,
                json.dumps(
                    {
                        "key": key,
                        "part": index + 1,
                        "of": len(parts),
                        "visibility": post.visibility,
                        "spoiler_text": spoiler_text,
                        "text": text,
                        "status_id": status_id,
                        "in_reply_to_id": reply_to,
                        "mode": mode,
                        "at": time.time(),
                    }
                ),
            )
            pipe.ltrim(defaults.OUTBOX_LOG, 0, defaults.OUTBOX_LOG_CAP - 1)
            pipe.execute()
            log.info("outbox %s part %d/%d: %s (%s)", key, index + 1, len(parts), mode, status_id)
            metrics.POSTS.labels(kind, mode).inc()
            reply_to = status_id
            ids.append(status_id)
        return ids

    def to_moderators(self, key: str, text: str, subject: str | None = None) -> list[str]:
        """An alert: a direct message (thread) addressed to the moderators only."""
        return self.send(
            Post(key=key, text=text, visibility="direct", mentions=tuple(self.link.moderators()), subject=subject)
        )

    def propose(self, key: str, message: Message, handles: str | None = None) -> list[str]:
        """An alert that proposes something: the proposal is kept for the DM's thread, where a moderator's
        `approve` carries it out (bot/dm/commands/). Without a proposal, `dismiss` still marks it handled."""
        proposal = replace(message.proposal or Proposal(), handles=handles)
        proposal_id = hashlib.sha256(key.encode()).hexdigest()[:12]
        subject = store_proposal(self.redis, proposal_id, proposal, time.time())
        texts = (message.text, *message.shorter)
        text = fitting(texts, tuple(self.link.moderators()), self.link.max_characters()) if len(texts) > 1 else texts[0]
        return self.to_moderators(key, text, subject)

    def _mode(self) -> str:
        return "dry-run" if self.settings.is_dry_run else "sent"

    def _hold(self, key: str, post: Post) -> list[str]:
        """The panic stop: keep the whole post for `tocsin resume`, and show it in the outbox log."""
        if self.redis.hsetnx(defaults.OUTBOX_HELD, key, json.dumps(asdict(post))):
            mentions = " ".join(f"@{acct}" for acct in post.mentions)
            text = f"{mentions}\n{post.text}" if mentions else post.text
            entry = {"key": key, "part": 1, "of": 1, "visibility": post.visibility, "text": text}
            pipe = self.redis.pipeline()
            pipe.lpush(
                defaults.OUTBOX_LOG, json.dumps({**entry, "mode": "paused", "status_id": None, "at": time.time()})
            )
            pipe.ltrim(defaults.OUTBOX_LOG, 0, defaults.OUTBOX_LOG_CAP - 1)
            pipe.execute()
            log.info("outbox %s held: paused", key)
            metrics.POSTS.labels(key.split(":", 1)[0], "paused").inc()
        return []


def pause(connection: redis.Redis) -> None:
    """The panic stop (`tocsin pause`, or `pause` in a DM): posts are held until `resume`."""
    connection.set(defaults.PAUSED, str(time.time()))


def read_log(connection: redis.Redis, limit: int = 50) -> list[dict[str, object]]:
    entries: list[bytes] = connection.lrange(defaults.OUTBOX_LOG, 0, limit - 1)  # type: ignore[assignment]
    return [json.loads(raw) for raw in entries]
