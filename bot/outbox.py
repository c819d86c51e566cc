"""The one place that posts. Exactly once per message key, split to fit, recorded.

Each logical message has a stable key. Each part `i` of it is posted with the Mastodon
`Idempotency-Key` `<key>#<i>` (Mastodon remembers it for an hour, which covers a crash between its
answer and our bookkeeping), and its status id is stored in Redis before the next part is posted, so a
retried job resumes a half-posted thread instead of starting it again.

In dry-run (no token, or TOCSIN_DRY_RUN) and while paused (`tocsin pause`), posts are recorded in the
outbox log and nothing is sent.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

import redis
from mastodon import Mastodon

from bot import defaults
from bot.config import Settings
from bot.mastodon import MastodonLink

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


def status_length(text: str, spoiler_text: str | None = None) -> int:
    """Length as Mastodon counts it: graphemes, URLs as 23, `@user@domain` as `@user`."""
    return int(Mastodon.get_status_length(text, spoiler_text or ""))


def _chunks(text: str, limit: int, spoiler_text: str | None) -> list[str]:
    """Pieces of `text` no longer than `limit`, broken at paragraphs, then lines, then words."""
    pieces: list[str] = []
    for separator in ("\n\n", "\n", " "):
        pieces = text.split(separator)
        if all(status_length(piece, spoiler_text) <= limit for piece in pieces):
            break
    else:  # a single word longer than a status: cut it
        pieces = [text[i : i + limit] for i in range(0, len(text), limit)]
        separator = ""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}{separator}{piece}" if current else piece
        if status_length(candidate, spoiler_text) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        current = piece if status_length(piece, spoiler_text) <= limit else ""
        if not current:
            chunks.extend(_chunks(piece, limit, spoiler_text))
    if current:
        chunks.append(current)
    return chunks


def split_post(text: str, mentions: tuple[str, ...], max_characters: int, spoiler_text: str | None = None) -> list[str]:
    """Statuses of at most `max_characters`, each starting with the mentions; numbered when more than one."""
    prefix = " ".join(f"@{acct}" for acct in mentions)
    prefix = f"{prefix}\n" if prefix else ""
    whole = prefix + text
    if status_length(whole, spoiler_text) <= max_characters:
        return [whole]
    room = max_characters - status_length(prefix, spoiler_text) - PART_MARK_RESERVE
    if room < 40:
        raise ValueError(f"{len(mentions)} recipients leave no room in a {max_characters}-character status")
    chunks = _chunks(text, room, spoiler_text)
    total = len(chunks)
    return [f"{prefix}{chunk} ({number}/{total})" for number, chunk in enumerate(chunks, start=1)]


_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:@#-]")


class Outbox:
    def __init__(self, settings: Settings, connection: redis.Redis, link: MastodonLink) -> None:
        self.settings = settings
        self.redis = connection
        self.link = link

    def send(self, post: Post) -> list[str]:
        """Post (or record) every part of `post` not posted yet; return all parts' status ids."""
        key = _KEY_CHARS.sub("_", post.key)
        sent_key = defaults.OUTBOX_SENT_PREFIX + key
        posted: dict[bytes, bytes] = self.redis.hgetall(sent_key)  # type: ignore[assignment]
        parts = split_post(post.text, post.mentions, self.link.max_characters(), post.spoiler_text)
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
            if mode == "sent":
                status_id = self.link.post_status(
                    text,
                    visibility=post.visibility,
                    idempotency_key=f"{key}#{index}",
                    in_reply_to_id=reply_to,
                    spoiler_text=post.spoiler_text,
                )
            else:
                status_id = f"{mode}-{uuid.uuid4().hex[:12]}"
            pipe = self.redis.pipeline()
            pipe.hset(sent_key, str(index), status_id)
            pipe.expire(sent_key, defaults.OUTBOX_SENT_TTL)
            pipe.lpush(
                defaults.OUTBOX_LOG,
                json.dumps(
                    {
                        "key": key,
                        "part": index + 1,
                        "of": len(parts),
                        "visibility": post.visibility,
                        "spoiler_text": post.spoiler_text,
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
            reply_to = status_id
            ids.append(status_id)
        return ids

    def to_moderators(self, key: str, text: str) -> list[str]:
        """An alert: a direct message (thread) addressed to the moderators only."""
        return self.send(Post(key=key, text=text, visibility="direct", mentions=tuple(self.link.moderators())))

    def _mode(self) -> str:
        if self.settings.is_dry_run:
            return "dry-run"
        if self.redis.exists(defaults.PAUSED):
            return "paused"
        return "sent"


def read_log(connection: redis.Redis, limit: int = 50) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in connection.lrange(defaults.OUTBOX_LOG, 0, limit - 1)]  # type: ignore[union-attr]
