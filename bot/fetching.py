"""Fetching JSON from other servers (peers' NodeInfo and instance info), safely.

Peers are strangers: a peer's name can resolve to this machine or the private network (SSRF), answer
forever, send gigabytes or redirect in circles. So this client, on raw asyncio streams:

- speaks https only, identifies itself (User-Agent names Tocsin and the instance), sends no
  credentials or cookies;
- resolves the host itself and refuses loopback, private, link-local, multicast, reserved and other
  non-global addresses (IPv4 and IPv6, IPv4-mapped and 6to4 forms included; NAT64 is reserved) unless inside
  TOCSIN_ALLOWED_PRIVATE_ADDRESSES, then connects to the address it checked (no second lookup) while
  verifying the certificate for the host name;
- follows at most MAX_REDIRECTS redirects, each one resolved and checked again;
- gives every fetch a connect timeout and a total deadline, and stops reading past a size cap.

Every failure is a FetchError with a short `reason` ("refused-address", "timeout", "too-large", …),
which the scan counts as "unreadable".
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 3
MAX_HEADER_BYTES = 16 * 1024
"""Response headers larger than this are hostile, not informative."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Address = tuple[str, int]
Resolver = Callable[[str, int], Awaitable[list[Address]]]
"""host, port -> addresses to try, in order."""


READ_CHUNK = 64 * 1024
"""Bytes read from a peer at a time."""


@dataclass(frozen=True)
class Sink:
    """Where a streamed body goes, and how much of it is accepted."""

    take: Callable[[bytes], object]
    max_bytes: int


class FetchError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    user_agent: str
    allowed_private: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    connect_timeout: float = 5.0
    total_timeout: float = 10.0
    max_bytes: int = 256 * 1024


async def system_resolver(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys((str(info[4][0]), port) for info in infos))


def refusal(ip: str, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str | None:
    """Why this address may not be fetched from, or None when it may."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if any(address in network for network in allowed):
        return None
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates = [address.ipv4_mapped]  # ::ffff:a.b.c.d is a.b.c.d
    elif isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        candidates.append(address.sixtofour)  # 2002:a.b.c.d::/48 routes to a.b.c.d
    # NAT64 (64:ff9b::/96) is refused as reserved, whatever it embeds.
    for candidate in candidates:
        if any(candidate in network for network in allowed):
            continue  # an embedded IPv4 address the operator allowed
        for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
            if getattr(candidate, f"is_{kind}"):
                return f"{candidate} is {kind.replace('_', '-')}"
        if not candidate.is_global:
            return f"{candidate} is not a public address"
    return None


@dataclass
class Fetcher:
    policy: FetchPolicy
    resolver: Resolver = system_resolver
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)  # honours SSL_CERT_FILE

    async def get_json(self, url: str) -> Any:
        """The JSON document at `url` (https, 200, a JSON content type), redirects followed and checked."""
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                return await self._get_json(url)
        except TimeoutError:
            raise FetchError("timeout", f"no complete answer within {self.policy.total_timeout:g} s") from None

    async def find(self, url: str, needles: Sequence[bytes], max_bytes: int) -> set[bytes]:
        """Which of `needles` occur in the JSON document at `url`, searched as it streams: a body of up to
        `max_bytes` (a peer's list of every server it knows can be megabytes) is never held whole."""
        found: set[bytes] = set()
        tail = b""
        overlap = max(len(needle) for needle in needles) - 1

        def search(chunk: bytes) -> None:
            nonlocal tail
            window = tail + chunk
            found.update(needle for needle in needles if needle in window)
            tail = window[-overlap:] if overlap > 0 else b""

        try:
            async with asyncio.timeout(self.policy.total_timeout):
                await self._get_json(url, Sink(search, max_bytes))
        except TimeoutError:
            raise FetchError("timeout", f"no complete answer within {self.policy.total_timeout:g} s") from None
        return found

    async def _get_json(self, url: str, sink: Sink | None = None) -> Any:
        """The document at `url` after redirects: parsed, or (with a sink) streamed to the sink."""
        seen = {url}
        for _hop in range(MAX_REDIRECTS + 1):
            status, headers, body = await self._get(url, sink)
            if status in REDIRECTS:
                location = headers.get("location")
                if not location:
                    raise FetchError("bad-redirect", f"{status} without Location")
                url = urljoin(url, location)
                if url in seen:
                    raise FetchError("redirect-loop", url)
                seen.add(url)
                continue
            if status == 410:
                raise FetchError("gone", "410 Gone")
            if status != 200:
                raise FetchError(f"http-{status}")
            if sink is not None:
                return None
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError) as error:
                raise FetchError("invalid-json", str(error)[:80]) from None
        raise FetchError("too-many-redirects", f"more than {MAX_REDIRECTS}")

    async def _get(self, url: str, sink: Sink | None = None) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise FetchError("not-https", url[:120])
        host, port = parts.hostname, parts.port or 443
        if parts.username or parts.password:
            raise FetchError("credentials-in-url")  # never sent to peers
        try:
            addresses = await asyncio.wait_for(self.resolver(host, port), self.policy.connect_timeout)
        except (OSError, UnicodeError) as error:
            raise FetchError("dns", f"{host}: {type(error).__name__}") from None
        if not addresses:
            raise FetchError("dns", f"{host}: no address")
        refusals = [(ip, refusal(ip, self.policy.allowed_private)) for ip, _port in addresses]
        usable = [address for address, (_ip, why) in zip(addresses, refusals, strict=True) if why is None]
        if not usable:
            raise FetchError("refused-address", f"{host}: {refusals[0][1]}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return await self._request(usable[0], host, path, sink)

    async def _request(
        self, address: Address, host: str, path: str, sink: Sink | None
    ) -> tuple[int, dict[str, str], bytes]:
        ip, port = address
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, port, ssl=self.ssl_context, server_hostname=host, limit=MAX_HEADER_BYTES),
                self.policy.connect_timeout,
            )
        except TimeoutError:
            raise FetchError("connect-timeout", f"{host} ({ip})") from None
        except ssl.SSLError as error:
            raise FetchError("tls", f"{host}: {error.reason or type(error).__name__}") from None
        except OSError as error:
            raise FetchError("connect", f"{host} ({ip}): {error.strerror or type(error).__name__}") from None
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {self.policy.user_agent}\r\n"
                f"Accept: application/json\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return await self._read_response(reader, sink)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as error:
            raise FetchError("broken-response", type(error).__name__) from None
        finally:
            writer.close()

    async def _read_response(
        self, reader: asyncio.StreamReader, sink: Sink | None
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise FetchError("too-large", "response headers") from None
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
            raise FetchError("not-http", lines[0][:80])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        status = int(status_line[1])
        if status in REDIRECTS or status >= 300:
            return status, headers, b""
        content_type = headers.get("content-type", "")
        if "json" not in content_type.lower():
            raise FetchError("not-json", f"content type {content_type[:80]!r}")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError("encoded", f"Content-Encoding {encoding[:40]!r} (identity was asked for)")
        body = bytearray()
        target = sink or Sink(body.extend, self.policy.max_bytes)
        async for chunk in self._body(reader, headers, target.max_bytes):
            target.take(chunk)
        return status, headers, bytes(body)

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str], cap: int) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive, stopping with "too-large" past `cap` bytes."""
        received = 0
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise FetchError("not-http", "bad chunk size") from None
                if size == 0:
                    return
                received += size
                if received > cap:
                    raise FetchError("too-large", f"over {cap} bytes")
                while size > 0:
                    piece = await reader.readexactly(min(size, READ_CHUNK))
                    size -= len(piece)
                    yield piece
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise FetchError("not-http", "bad Content-Length")
        if length is not None and int(length) > cap:
            raise FetchError("too-large", f"{length} bytes")
        left = int(length) if length is not None else None
        while left is None or left > 0:
            piece = await reader.read(READ_CHUNK if left is None else min(left, READ_CHUNK))
            if not piece:
                if left:
                    raise asyncio.IncompleteReadError(piece, left)
                return
            received += len(piece)
            if received > cap:
                raise FetchError("too-large", f"over {cap} bytes")
            if left is not None:
                left -= len(piece)
            yield piece
