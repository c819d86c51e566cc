"""A fleet of fake peers: one local HTTPS server answering for many host names, each with its behaviour.

Certificates come from a throwaway CA (trustme) that the fetcher under test trusts; every host name
resolves to this server (`resolver`), except names ending in `.internal`, which resolve to a private
address, for the SSRF tests, names under `.invalid` (RFC 6761), which do not resolve at all, and names
starting with `refused`, which resolve to a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trustme

from bot.core.fetching import Address, FetchPolicy
from bot.ops.embedded_redis import free_port

PRIVATE_SUFFIX = ".internal"
PRIVATE_ADDRESS = "10.1.2.3"
NXDOMAIN_SUFFIX = ".invalid"
REFUSED_PREFIX = "refused"


def resolve_in_fleet(host: str, fleet_port: int, refused_port: int) -> list[Address]:
    """Where a fleet's peer name leads (see the module's docstring)."""
    if host.endswith(NXDOMAIN_SUFFIX):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if host.startswith(REFUSED_PREFIX):
        return [("127.0.0.1", refused_port)]
    if host.endswith(PRIVATE_SUFFIX):
        return [(PRIVATE_ADDRESS, fleet_port)]
    return [("127.0.0.1", fleet_port)]


def nodeinfo(name: str, version: str, **extra: Any) -> dict[str, Any]:
    """A NodeInfo 2.0 document."""
    document: dict[str, Any] = {
        "version": "2.0",
        "software": {"name": name, "version": version},
        "protocols": ["activitypub"],
        "services": {"outbound": [], "inbound": []},
        "usage": {"users": {"total": 10, "activeMonth": 5, "activeHalfyear": 8}, "localPosts": 100},
        "openRegistrations": False,
        "metadata": {},
    }
    document.update(extra)
    return document


Step = bytes | float | tuple[bytes, int] | None
"""One step of a raw answer: bytes written as they are, a pause in seconds, (bytes, n): those bytes n
times over (megabytes without holding them), or None: the connection reset (TCP RST) there."""


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
CHUNKED_HEAD = JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
MALFORMED_ANSWERS: dict[str, list[Step]] = {
    # -7fffffff once made the bytes counted negative: the 4 MiB chunk after it slipped under any cap.
    "negative-chunk": [
        CHUNKED_HEAD,
        b"-7fffffff\r\n\r\n",
        f"{4 * 2**20:x}\r\n".encode(),
        (b" ", 4 * 2**20 - 2),
        b"{}\r\n0\r\n\r\n",
    ],
    # 90 KiB: past the 16 KiB cap while unfinished however it is read (a read takes 64 KiB at most), and
    # within h11's own 100 KiB.
    "long-chunk-line": [CHUNKED_HEAD, b"2;", (b"x", 90 * 1024), b"\r\n{}\r\n0\r\n\r\n"],
    "superscript-length": [JSON_HEAD + b"Content-Length: \xb2\r\n\r\n{}"],  # latin-1 '²', which isdigit()
    "superscript-status": [b"HTTP/1.1 \xb200 OK\r\nContent-Type: application/json\r\n\r\n{}"],
}
"""Answers that are not HTTP/1.1 as its grammar says, each of which once escaped the fetcher as something
other than a FetchError."""


def bracket_bomb(size: int) -> list[Step]:
    """`size` bytes of '[' as a JSON body (Python's json recursed into it)."""
    return [JSON_HEAD + f"Content-Length: {size}\r\n\r\n".encode(), (b"[", size)]


@dataclass
class Peer:
    document: dict[str, Any] | None = None  # the NodeInfo document
    discovery: Any = None  # /.well-known/nodeinfo; None: a 2.0 link to /nodeinfo/2.0
    latency: float = 0.0
    hang: bool = False  # accept, read the request, never answer
    status: int = 200
    content_type: str = "application/json; charset=utf-8"
    body: bytes | None = None  # the NodeInfo document's raw bytes, instead of `document`
    redirect: str | None = None  # answer the discovery request with 302 to this URL
    slow_body: bool = False  # headers, then a byte a second, forever
    huge: bool = False  # a chunked NodeInfo body that never ends
    gzip: bool = False  # the NodeInfo document gzip-encoded (Content-Encoding: gzip), although identity was asked
    declared_bytes: int | None = None  # a Content-Length this large, then the body streamed up to it
    slow_headers: bool = False  # the status line, then a header byte a second
    contact: dict[str, Any] | None = None  # /api/v2/instance contact
    domain_blocks: Any = None  # /api/v1/instance/domain_blocks: a list (200), a status code, None (404)
    peer_list: Any = None  # /api/v1/instance/peers: likewise
    raw: Sequence[Step] | None = None  # the answer to any request, byte for byte (hostile framing)


@dataclass
class PeerFleet:
    names: list[str]
    peers: dict[str, Peer] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # host, path, headers

    def __post_init__(self) -> None:
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert(*self.names)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self.resolved: list[str] = []
        self.refused_port = free_port()  # nothing listens there

    # --- for the fetcher under test

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    async def resolver(self, host: str, port: int) -> list[Address]:
        self.resolved.append(host)
        return resolve_in_fleet(host, self.port, self.refused_port)

    def policy(self, **overrides: Any) -> FetchPolicy:
        import ipaddress

        values: dict[str, Any] = {
            "user_agent": "Tocsin/0.1 (+https://social.example.org; test)",
            "allowed_private": (ipaddress.ip_network("127.0.0.0/8"),),
            "connect_timeout": 2.0,
            "total_timeout": 3.0,
            "max_bytes": 64 * 1024,
        }
        values.update(overrides)
        return FetchPolicy(**values)

    # --- server

    def start(self) -> PeerFleet:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shut_down() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        # Hostile peers keep writing to clients that hung up; asyncio warns of each such write.
        logging.getLogger("asyncio").setLevel(logging.ERROR)
        self._loop = asyncio.new_event_loop()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context, backlog=2048)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:])
                if name
            }
            host = headers.get("host", "").split(":")[0]
            self.requests.append((host, path, headers))
            await self._answer(self.peers.get(host, Peer(status=404)), host, path, writer)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            ssl.SSLError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
        ):
            pass
        finally:
            writer.close()

    async def _answer(self, peer: Peer, host: str, path: str, writer: asyncio.StreamWriter) -> None:
        if peer.hang:
            await asyncio.sleep(3600)
        if peer.latency:
            await asyncio.sleep(peer.latency)
        if peer.raw is not None:
            return await _send_raw(writer, peer.raw)
        if path == "/.well-known/nodeinfo":
            if peer.redirect:
                return await _send(writer, 302, b"", "text/html", {"Location": peer.redirect})
            discovery = peer.discovery
            if discovery is None:
                discovery = {
                    "links": [
                        {
                            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                            "href": f"https://{host}/nodeinfo/2.0",
                        }
                    ]
                }
            return await _send(writer, 200, json.dumps(discovery).encode(), "application/json")
        if path.startswith("/nodeinfo/") or path.startswith("/api/nodeinfo/"):
            if peer.slow_body:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                for _second in range(120):
                    await asyncio.sleep(1)
                    if writer.is_closing() or reader_gone(writer):
                        return None
                    writer.write(b" ")
                    await writer.drain()
                return None
            if peer.gzip:
                import gzip

                packed = gzip.compress(json.dumps(peer.document).encode())
                return await _send(writer, 200, packed, "application/json", {"Content-Encoding": "gzip"})
            if peer.declared_bytes is not None:
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {peer.declared_bytes}"
                    "\r\n\r\n".encode()
                )
                chunk = b" " * 65536
                for _chunk in range(peer.declared_bytes // len(chunk)):
                    if writer.is_closing() or reader_gone(writer):
                        return None
                    writer.write(chunk)
                    await writer.drain()
                return None
            if peer.slow_headers:
                writer.write(b"HTTP/1.1 200 OK\r\n")
                for _second in range(120):
                    await asyncio.sleep(1)
                    if writer.is_closing() or reader_gone(writer):
                        return None
                    writer.write(b"X")
                    await writer.drain()
                return None
            if peer.huge:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b" " * 65536
                for _chunk in range(2000):  # 128 MiB at most, if nobody hangs up
                    if writer.is_closing() or reader_gone(writer):
                        return None
                    writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    await writer.drain()
                return None
            body = peer.body if peer.body is not None else json.dumps(peer.document).encode()
            return await _send(writer, peer.status, body, peer.content_type)
        lists = {"/api/v1/instance/domain_blocks": peer.domain_blocks, "/api/v1/instance/peers": peer.peer_list}
        if lists.get(path) is not None:
            listed = lists[path]
            if isinstance(listed, int):
                return await _send(
                    writer, listed, b'{"error":"This method requires an authenticated user"}', "application/json"
                )
            body = listed if isinstance(listed, bytes) else json.dumps(listed).encode()  # bytes: sent as they are
            return await _send(writer, 200, body, "application/json")
        if path == "/api/v2/instance" and peer.contact is not None:
            return await _send(
                writer, 200, json.dumps({"domain": host, "contact": peer.contact}).encode(), "application/json"
            )
        return await _send(writer, 404, b'{"error":"not found"}', "application/json")


def reader_gone(writer: asyncio.StreamWriter) -> bool:
    transport = writer.transport
    return transport is None or transport.is_closing() or transport.get_extra_info("socket") is None


async def _send_raw(writer: asyncio.StreamWriter, steps: Sequence[Step]) -> None:
    for step in steps:
        if writer.is_closing() or reader_gone(writer):
            return
        if step is None:  # linger 0: closing sends RST, not FIN
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if isinstance(step, float):
            await asyncio.sleep(step)
            continue
        piece, times = step if isinstance(step, tuple) else (step, 1)
        per_write = max(1, 65536 // max(1, len(piece)))
        while times > 0 and not (writer.is_closing() or reader_gone(writer)):
            writer.write(piece * min(per_write, times))
            await writer.drain()
            times -= per_write


async def _send(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "Connection": "close", **(extra or {})}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
