"""POST /webhooks/mastodon: verify, deduplicate, reduce, enqueue. Nothing else on this path.

Status codes are chosen for Mastodon's delivery worker, which retries 401, 408, 429 and 5xx (for
about two days) and drops other 4xx:
- 401 bad or missing signature: retried, so fixing a mis-set secret loses nothing;
- 413 over the size limit, 400 not a JSON event: retrying cannot help;
- 503 Redis unreachable: retried later;
- 202 queued, 200 duplicate or ignored event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bot import defaults
from bot.events import ADDED_DRAIN_NEEDED, APPEND_SCRIPT, DUPLICATE, enqueue_drain
from bot.privacy import reduce_event

log = logging.getLogger(__name__)

router = APIRouter()


@dataclass
class IntakeState:
    secret: bytes
    dedupe_seconds: int
    retry_delays: list[int]
    aio: aioredis.Redis
    sync: redis.Redis
    pii_key: bytes | None = None
    append: Any = field(init=False)

    def __post_init__(self) -> None:
        self.append = self.aio.register_script(APPEND_SCRIPT)

    async def key_for_pii(self) -> bytes:
        """The shared key for IP-prefix hashes: created once, then the same for every web process."""
        if self.pii_key is None:
            await self.aio.set(defaults.PII_KEY, secrets.token_hex(32), nx=True)
            stored = await self.aio.get(defaults.PII_KEY)
            self.pii_key = bytes(stored)
        return self.pii_key


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith(defaults.SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len(defaults.SIGNATURE_PREFIX) :].strip().lower())


def _reply(status: int, outcome: str, detail: str | None = None) -> JSONResponse:
    content = {"status": outcome} if detail is None else {"status": outcome, "detail": detail}
    return JSONResponse(content, status_code=status)


def parse_event(body: bytes) -> dict[str, Any] | str:
    """The envelope, or the reason it is not one."""
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "body is not JSON"
    if not isinstance(event, dict):
        return "body is not a JSON object"
    if not isinstance(event.get("event"), str):
        return "no event name"
    if not isinstance(event.get("object"), dict):
        return "no event object"
    return event


@router.post("/webhooks/mastodon")
async def receive_webhook(request: Request) -> JSONResponse:
    state: IntakeState = request.app.state.intake
    body = await request.body()
    if not signature_ok(state.secret, body, request.headers.get("x-hub-signature")):
        return _reply(401, "rejected", "missing or invalid X-Hub-Signature")
    event = parse_event(body)
    if isinstance(event, str):
        return _reply(400, "rejected", event)
    name = event["event"]
    try:
        if name not in defaults.KNOWN_EVENTS:
            await state.aio.hincrby(defaults.IGNORED_EVENTS, name[:64], 1)
            return _reply(200, "ignored", "unknown event")
        reduced = reduce_event(event, await state.key_for_pii())
        outcome = await state.append(
            keys=[
                defaults.DEDUPE_PREFIX + hashlib.sha256(body).hexdigest(),
                defaults.EVENT_STREAM,
                defaults.DRAIN_FLAG,
                defaults.INTAKE_COUNTS,
            ],
            args=[
                state.dedupe_seconds,
                json.dumps(reduced, separators=(",", ":")),
                defaults.DRAIN_FLAG_TTL,
                name,
            ],
        )
        if outcome == DUPLICATE:
            return _reply(200, "duplicate")
        if outcome == ADDED_DRAIN_NEEDED:
            try:
                await run_in_threadpool(enqueue_drain, state.sync, state.retry_delays)
            except redis.RedisError:
                # The event is stored; the drain flag lapses and the sweep or next event starts a drain.
                log.warning("event stored but no drain job enqueued (Redis error)")
    except redis.RedisError as error:
        log.error("Redis unavailable at intake: %s", type(error).__name__)
        return _reply(503, "unavailable", "queue unavailable; retry later")
    return _reply(202, "queued")
