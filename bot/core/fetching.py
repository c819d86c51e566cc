"""Fetching JSON from other servers (peers' NodeInfo, instance info, block and peers lists), safely.

Peers are strangers: a peer's name can resolve to this machine or the private network (SSRF), answer
forever, send gigabytes, redirect in circles or answer with anything that is not quite HTTP. So this
client:

- speaks https only, identifies itself (User-Agent names Tocsin and the instance), sends no
  credentials or cookies;
- resolves the host itself and refuses loopback, private, link-local, multicast, reserved and other
  non-global addresses (IPv4 and IPv6, IPv4-mapped and 6to4 forms included; NAT64 is reserved) unless inside
  TOCSIN_ALLOWED_PRIVATE_ADDRESSES, then connects to the address it checked (no second lookup) while
  verifying the certificate for the host name (against the system's CAs, or SSL_CERT_FILE's);
- follows at most MAX_REDIRECTS redirects, each one resolved and checked again;
- asks for, and accepts only, the identity encoding (a Content-Encoding such as gzip is refused, never
  decoded: no decompression bomb);
- gives every fetch a connect timeout and a total deadline (headers that trickle in are bounded by it),
  refuses response headers over MAX_HEADER_BYTES, checks the content type before reading the body,
  and stops reading past a size cap (`find` searches a large body as it streams, one chunk in memory)
  or past twice that cap on the wire (where chunk-size lines and their extensions count too);
- refuses what is not HTTP/1.1 as its grammar says: a chunk size that is not 1 to 20 hex digits (a
  negative one included) or whose line is still unfinished past MAX_HEADER_BYTES, a status or
  Content-Length that is not ASCII digits, a header line without a name, a body cut short, and URLs
  (links, Location) that do not parse or name no plausible host;
- parses JSON with orjson (which refuses nesting deeper than 1,024 cleanly, where the standard library
  recurses) and refuses documents nested deeper than MAX_JSON_DEPTH, so that no caller's str() or
  traversal of a peer's document can hit Python's recursion limit.

Every failure is a FetchError with a short `reason` ("refused-address", "timeout", "too-large",
"malformed", "invalid-json", …), which the scan counts as "unreadable" and the federation audit as the
peer's "unknown": a hostile peer's answer is that peer's failure, never the run's.

The HTTP/1.1 is httpcore2's connection (h11 underneath; httpcore2 is the maintained continuation of
httpcore, the layer under httpx2, which Starlette's TestClient already brings in), given a network stream
that this module opens to the vetted IP literal with TLS for the host name (asyncio's own, through
httpcore2's network-stream interface). Why this and not httpx or aiohttp: the vetting must happen
between resolving and connecting, on every redirect hop, so name resolution and redirects stay here;
what is left to a library is what went wrong when written by hand, the HTTP/1.1 framing, and h11 is a
strict, sans-I/O implementation of exactly that. httpx would add redirects, a pool and body decoding
(gzip, brotli, zstd) that would all have to be switched off; aiohttp (a resolver returning the vetted
address) would bring a second HTTP stack whose automatic decompression must be disabled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import h11
import httpcore2
import orjson

MAX_REDIRECTS = 3
MAX_HEADER_BYTES = 16 * 1024
"""Response headers (and any one chunk-size line) larger than this are hostile, not informative."""
MAX_JSON_DEPTH = 64
"""NodeInfo and Mastodon's lists nest a few levels; far deeper is a bomb aimed at whoever walks it."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Address = tuple[str, int]
Resolver = Callable[[str, int], Awaitable[list[Address]]]
"""host, port -> addresses to try, in order."""


READ_CHUNK = 64 * 1024
"""Bytes read from a peer at a time (httpcore2's read size: one chunk in memory while streaming)."""

_HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_.])?")
"""A host name as sent to a resolver and in TLS (after IDNA); anything else is not fetched."""
_TARGET_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))
"""Printable ASCII stays as it is in a request target (existing %-escapes included); the rest is escaped."""


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


def nested_deeper_than(document: Any, limit: int) -> bool:
    """Whether a parsed JSON document nests arrays and objects more than `limit` deep (walked without
    recursion)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(body: bytes) -> Any:
    """A peer's JSON document, or FetchError("invalid-json"): never a RecursionError or the like."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise FetchError("invalid-json", str(error)[:80]) from None
    if nested_deeper_than(document, MAX_JSON_DEPTH):
        raise FetchError("invalid-json", f"nested deeper than {MAX_JSON_DEPTH}")
    return document


@dataclass(frozen=True)
class _Target:
    """Where one request goes: a checked https URL's parts, ready for the wire."""

    host: str  # ASCII (IDNA), lower case; what is resolved, verified in TLS and sent as Host
    port: int
    path: bytes  # path and query, printable ASCII

    @classmethod
    def of(cls, url: str) -> _Target:
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError as error:  # a bracket without its pair, a port that is not one
            raise FetchError("bad-url", f"{url[:120]}: {error}") from None
        if parts.scheme != "https" or not parts.hostname:
            raise FetchError("not-https", url[:120])
        if parts.username or parts.password:
            raise FetchError("credentials-in-url")  # never sent to peers
        return cls(_ascii_host(parts.hostname, url), port, _request_path(parts))

    @property
    def header(self) -> bytes:
        """The Host header's value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == 443 else f"{host}:{self.port}").encode("ascii")


def _ascii_host(host: str, url: str) -> str:
    if ":" in host:  # an IPv6 literal
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise FetchError("bad-url", url[:120]) from None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError("bad-url", url[:120]) from None
    if not _HOST_NAME.fullmatch(ascii_host):
        raise FetchError("bad-url", url[:120])
    return ascii_host


def _request_path(parts: SplitResult) -> bytes:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(path, safe=_TARGET_SAFE).encode("ascii")


class _PeerStream(httpcore2.AsyncNetworkStream):
    """httpcore2's network stream over asyncio's own streams (TCP and TLS as the event loop runs them):
    httpcore2's anyio backend spends a quarter more CPU per fetch, in cancel scopes around every read. No
    timeouts here: the fetch's total deadline cancels whatever is waiting."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.received = 0
        self.budget: int | None = None  # bytes that may be read in all, once set

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = await self._reader.read(max_bytes)
        except OSError as error:  # a reset, a TLS error (ssl.SSLError is an OSError)
            raise httpcore2.ReadError(type(error).__name__) from error
        self.received += len(data)
        if self.budget is not None and self.received > self.budget:
            raise FetchError("too-large", f"over {self.budget} bytes on the wire")
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._writer.write(buffer)
            await self._writer.drain()
        except OSError as error:
            raise httpcore2.WriteError(type(error).__name__) from error

    async def aclose(self) -> None:
        self._writer.transport.abort()  # at once: a TLS close would wait up to 30 s for the peer's

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise NotImplementedError("the stream is opened with TLS")

    def get_extra_info(self, info: str) -> Any:
        return self._writer.get_extra_info(info) if info == "ssl_object" else None


class _PeerConnection(httpcore2.AsyncHTTP11Connection):
    """httpcore2's HTTP/1.1 connection, with h11's buffer for an incomplete event (the response's headers,
    a chunk-size line) bounded by MAX_HEADER_BYTES instead of its 100 KiB."""

    MAX_INCOMPLETE_EVENT_SIZE = MAX_HEADER_BYTES


def _protocol_failure(error: httpcore2.ProtocolError, headers_read: bool) -> FetchError:
    """A peer's answer that h11 refused: headers too large, cut short, or not HTTP/1.1."""
    cause = error.__cause__
    if not headers_read and isinstance(cause, h11.RemoteProtocolError) and cause.error_status_hint == 431:
        return FetchError("too-large", f"response headers over {MAX_HEADER_BYTES} bytes")
    text = str(error)
    if "disconnected" in text or "peer closed" in text:
        return FetchError("broken-response", text[:80])
    return FetchError("malformed", text[:80])


def _head_bytes(response: httpcore2.Response) -> int:
    """The response head's size as sent (status line, header lines, blank line), give or take whitespace."""
    reason = response.extensions.get("reason_phrase", b"")
    status_line = len(b"HTTP/1.1 200 \r\n") + len(reason if isinstance(reason, bytes) else b"")
    return status_line + sum(len(name) + len(value) + len(b": \r\n") for name, value in response.headers) + 2


def _header_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1").strip() for key, value in headers if key.lower() == name]


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
                location = next(iter(_header_values(headers, b"location")), "")
                if not location:
                    raise FetchError("bad-redirect", f"{status} without Location")
                try:
                    url = urljoin(url, location)
                except ValueError:
                    raise FetchError("bad-redirect", location[:120]) from None
                if url in seen:
                    raise FetchError("redirect-loop", url[:120])
                seen.add(url)
                continue
            if status == 410:
                raise FetchError("gone", "410 Gone")
            if status != 200:
                raise FetchError(f"http-{status}")
            if sink is not None:
                return None
            return parse_json(body)
        raise FetchError("too-many-redirects", f"more than {MAX_REDIRECTS}")

    async def _get(self, url: str, sink: Sink | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        target = _Target.of(url)
        host = target.host
        try:
            addresses = await asyncio.wait_for(self.resolver(host, target.port), self.policy.connect_timeout)
        except (OSError, UnicodeError) as error:
            raise FetchError("dns", f"{host}: {type(error).__name__}") from None
        if not addresses:
            raise FetchError("dns", f"{host}: no address")
        refusals = [(ip, refusal(ip, self.policy.allowed_private)) for ip, _port in addresses]
        usable = [address for address, (_ip, why) in zip(addresses, refusals, strict=True) if why is None]
        if not usable:
            raise FetchError("refused-address", f"{host}: {refusals[0][1]}")
        return await self._request(usable[0], target, sink)

    async def _connect(self, address: Address, host: str) -> _PeerStream:
        """A TLS stream to the vetted address (an IP literal: nothing is resolved again), its certificate
        verified for `host`."""
        ip, port = address
        try:
            literal = str(ipaddress.ip_address(ip))  # never a name: it would be looked up again
        except ValueError:
            raise FetchError("refused-address", f"{host}: {ip[:60]} is not an IP address") from None
        try:
            async with asyncio.timeout(self.policy.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    literal, port, ssl=self.ssl_context, server_hostname=host, limit=READ_CHUNK
                )
        except TimeoutError:
            raise FetchError("connect-timeout", f"{host} ({ip})") from None
        except ssl.SSLError as error:
            raise FetchError("tls", f"{host}: {error.reason or type(error).__name__}") from None
        except OSError as error:
            raise FetchError("connect", f"{host} ({ip}): {error.strerror or type(error).__name__}") from None
        return _PeerStream(reader, writer)

    async def _request(
        self, address: Address, target: _Target, sink: Sink | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        request = httpcore2.Request(
            b"GET",
            httpcore2.URL(scheme=b"https", host=target.host.encode("ascii"), port=target.port, target=target.path),
            headers=[
                (b"Host", target.header),
                (b"User-Agent", self.policy.user_agent.encode("ascii", "replace")),
                (b"Accept", b"application/json"),
                (b"Accept-Encoding", b"identity"),
                (b"Connection", b"close"),
            ],
        )
        stream = await self._connect(address, target.host)
        connection = _PeerConnection(request.url.origin, stream)
        headers_read = False
        try:
            response = await connection.handle_async_request(request)
            headers_read = True
            if _head_bytes(response) > MAX_HEADER_BYTES:  # h11 bounds only a head still arriving
                raise FetchError("too-large", f"response headers over {MAX_HEADER_BYTES} bytes")
            if response.status != 200:  # a redirect, or a failure: its body is not read
                return response.status, response.headers, b""
            self._check_content(response.headers)
            body = bytearray()
            accepted = sink or Sink(body.extend, self.policy.max_bytes)
            # Chunk-size lines and their extensions are not body: bounded with it, at twice its cap.
            stream.budget = MAX_HEADER_BYTES + 2 * accepted.max_bytes + READ_CHUNK
            declared = _header_values(response.headers, b"content-length")  # h11 checked: ASCII digits
            if declared and int(declared[0]) > accepted.max_bytes:
                raise FetchError("too-large", f"{declared[0]} bytes")
            received = 0
            async for piece in response.aiter_stream():
                received += len(piece)
                if received > accepted.max_bytes:
                    raise FetchError("too-large", f"over {accepted.max_bytes} bytes")
                accepted.take(piece)
            return response.status, response.headers, bytes(body)
        except httpcore2.ProtocolError as error:
            raise _protocol_failure(error, headers_read) from None
        except httpcore2.NetworkError as error:  # a reset, a TLS error mid-answer
            raise FetchError("broken-response", type(error).__name__) from None
        finally:
            await connection.aclose()

    @staticmethod
    def _check_content(headers: list[tuple[bytes, bytes]]) -> None:
        """A JSON content type and the identity encoding, or the body is not read at all."""
        content_type = ", ".join(_header_values(headers, b"content-type"))
        if "json" not in content_type.lower():
            raise FetchError("not-json", f"content type {content_type[:80]!r}")
        encodings = [
            token.strip().lower()
            for value in _header_values(headers, b"content-encoding")
            for token in value.split(",")
        ]
        refused = [encoding for encoding in encodings if encoding not in ("", "identity")]
        if refused:
            raise FetchError("encoded", f"Content-Encoding {refused[0][:40]!r} (identity was asked for)")
