"""POST /webhooks/mastodon: verify, deduplicate, reduce, enqueue. Nothing else on this path.

The intake is a plain ASGI app in front of FastAPI (which serves everything else): on a webhook burst
this path is the whole load, and routing, dependency solving and middleware layers cost several times
the work itself (bench/intake.py).

Status codes are chosen for Mastodon's delivery worker, which retries 401, 408, 429 and 5xx (for
about two days) and drops other 4xx:
- 401 bad or missing signature: retried, so fixing a mis-set secret loses nothing;
- 413 over the size limit, 400 not a JSON event: retrying cannot help;
- 503 Redis unreachable: retried later;
- 202 queued, 200 duplicate or ignored event.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.core import defaults, metrics
from bot.core.privacy import reduce_event
from bot.pipeline.events import ADDED_DRAIN_NEEDED, APPEND, DUPLICATE, enqueue_drain

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/mastodon"


class BodyTooLarge(Exception):
    pass


class AppendBatcher:
    """Group commit: appends that arrive while one pipeline is in flight go together in the next.

    redis-py's asyncio client spends ~150 us of CPU per command, more than everything else intake does;
    under a burst, one pipeline of N script calls costs little more than one call. Each append is still
    its own atomic script call; a lone delivery is sent at once, so latency at low load is unchanged.
    """

    def __init__(self, connection: aioredis.Redis) -> None:
        self.connection = connection
        self.pending: list[tuple[list[str], list[Any], asyncio.Future[int]]] = []
        self.flushing = False
        self._flush_task: asyncio.Task[None] | None = None  # held so the running flush is not collected

    async def append(self, keys: list[str], args: list[Any]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((keys, args, future))
        if not self.flushing:
            self.flushing = True
            self._flush_task = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await self._execute(batch)
                except redis.RedisError as error:
                    results = [error] * len(batch)
                for (_keys, _args, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(int(result))
        finally:
            self.flushing = False

    async def _execute(self, batch: list[tuple[list[str], list[Any], asyncio.Future[int]]]) -> list[Any]:
        for attempt in (1, 2):
            pipe = self.connection.pipeline(transaction=False)
            for keys, args, _future in batch:
                pipe.evalsha(APPEND.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(result, redis.exceptions.NoScriptError) for result in results):
                await self.connection.script_load(APPEND.source)  # Redis restarted or was flushed
                continue  # nothing ran: a missing script fails before it does anything
            return list(results)
        return list(results)


@dataclass
class IntakeState:
    secret: bytes
    known_events: frozenset[str]  # the webhook events some family handles; others are acknowledged, counted
    dedupe_seconds: int
    retry_delays: list[int]
    aio: aioredis.Redis
    sync: redis.Redis
    pii_key: bytes | None = None
    appender: AppendBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.appender = AppendBatcher(self.aio)

    async def key_for_pii(self) -> bytes:
        """The shared key for IP-prefix hashes: created once, then the same for every web process."""
        if self.pii_key is None:
            await self.aio.set(defaults.PII_KEY, secrets.token_hex(32), nx=True)
            stored = await self.aio.get(defaults.PII_KEY)
            if stored is None:  # flushed between the two calls: the next delivery creates it again
                raise redis.ConnectionError("the PII key vanished")
            self.pii_key = stored.encode() if isinstance(stored, str) else bytes(stored)
        return self.pii_key


def verified_digest(secret: bytes, body: bytes, header: str | None) -> str | None:
    """The body's HMAC-SHA256 (hex) if the header carries it, else None.

    The digest doubles as the deduplication key: a redelivery has the same body, so the same digest.
    """
    if not header or not header.startswith(defaults.SIGNATURE_PREFIX):
        return None
    expected = hmac.digest(secret, body, "sha256").hex()
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError), and a header is any
    # latin-1 text a client cares to send. Non-ASCII bytes simply never match a hex digest.
    provided = header[len(defaults.SIGNATURE_PREFIX) :].encode("utf-8", "replace").strip().lower()
    if hmac.compare_digest(expected.encode(), provided):
        return expected
    return None


def parse_event(body: bytes) -> dict[str, Any] | str:
    """The envelope, or the reason it is not one."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if not isinstance(event, dict):
        return "body is not a JSON object"
    if not isinstance(event.get("event"), str):
        return "no event name"
    if not isinstance(event.get("object"), dict):
        return "no event object"
    return event


async def accept(state: IntakeState, body: bytes, signature: str | None) -> tuple[int, dict[str, str]]:
    """The whole intake decision: (status code, reply) for one delivery."""
    digest = verified_digest(state.secret, body, signature)
    if digest is None:
        metrics.SIGNATURE_FAILURES.inc()
        metrics.WEBHOOKS.labels("-", "401").inc()
        return 401, {"status": "rejected", "detail": "missing or invalid X-Hub-Signature"}
    event = parse_event(body)
    if isinstance(event, str):
        metrics.WEBHOOKS.labels("-", "400").inc()
        return 400, {"status": "rejected", "detail": event}
    name = event["event"]
    status, reply = await _accept_event(state, event, name, digest)
    metrics.WEBHOOKS.labels(name if name in state.known_events else "other", str(status)).inc()
    return status, reply


async def _accept_event(
    state: IntakeState, event: dict[str, Any], name: str, digest: str
) -> tuple[int, dict[str, str]]:
    try:
        if name not in state.known_events:
            await state.aio.hincrby(defaults.IGNORED_EVENTS, name[:64], 1)
            return 200, {"status": "ignored", "detail": "unknown event"}
        reduced = reduce_event(event, await state.key_for_pii())
        outcome = await state.appender.append(
            [
                defaults.DEDUPE_PREFIX + digest,
                defaults.EVENT_STREAM,
                defaults.DRAIN_FLAG,
                defaults.INTAKE_COUNTS,
            ],
            [state.dedupe_seconds, orjson.dumps(reduced), defaults.DRAIN_FLAG_TTL, name],
        )
        if outcome == DUPLICATE:
            metrics.DUPLICATES.inc()
            return 200, {"status": "duplicate"}
        if outcome == ADDED_DRAIN_NEEDED:
            try:
                await run_in_threadpool(enqueue_drain, state.sync, state.retry_delays)
            except redis.RedisError:
                # The event is stored; the drain flag lapses and a worker or the next event starts a drain.
                log.warning("event stored but no drain job enqueued (Redis error)")
    except redis.RedisError as error:
        log.error("Redis unavailable at intake: %s", type(error).__name__)
        return 503, {"status": "unavailable", "detail": "queue unavailable; retry later"}
    return 202, {"status": "queued"}


class IntakeApp:
    """ASGI: POST /webhooks/mastodon is handled here; every other request goes to `app`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.state: IntakeState | None = None  # set by the web app's lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH or self.state is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, {"status": "rejected", "detail": "use POST"})
            return
        headers = dict(scope["headers"])
        try:
            body = await self._read_body(receive, headers.get(b"content-length"))
        except BodyTooLarge:
            metrics.TOO_LARGE.inc()
            metrics.WEBHOOKS.labels("-", "413").inc()
            await _respond(send, 413, {"status": "rejected", "detail": f"body over {self.max_body_bytes} bytes"})
            return
        signature = headers.get(b"x-hub-signature")
        status, reply = await accept(self.state, body, signature.decode("latin-1") if signature else None)
        await _respond(send, status, reply)

    async def _read_body(self, receive: Receive, declared: bytes | None) -> bytes:
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _respond(send: Send, status: int, reply: dict[str, str]) -> None:
    body = orjson.dumps(reply)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
