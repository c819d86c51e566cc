"""The baseline for bench/intake.py: a bare ASGI app doing what intake must do at minimum,
HMAC over the raw body and one Redis LPUSH, and nothing else."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import redis.asyncio as aioredis

SECRET = os.environ["TOCSIN_WEBHOOK_SECRET"].encode()
client = aioredis.Redis.from_url(os.environ["TOCSIN_REDIS_URL"])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    signature = dict(scope["headers"]).get(b"x-hub-signature", b"").decode()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, signature):
        await client.lpush("bare:events", body)
        status, reply = 202, b'{"status":"queued"}'
    else:
        status, reply = 401, b'{"status":"rejected"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": reply})
