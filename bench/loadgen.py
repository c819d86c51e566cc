"""A small HTTP/1.1 keep-alive load generator on raw asyncio sockets (fast enough not to be the bottleneck)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self, label: str) -> str:
        return (
            f"{label:<28} {self.rate:8.0f} req/s  p50 {self.percentile(50):6.2f} ms  "
            f"p99 {self.percentile(99):6.2f} ms  mean {statistics.fmean(self.latencies) * 1000:6.2f} ms  "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(host: str, port: int, requests: Sequence[bytes], connections: int) -> Result:
    """As fast as the server answers: `connections` clients, each sending its next request on an answer."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return Result(len(requests), time.perf_counter() - started, latencies, statuses)


async def open_loop(host: str, port: int, requests: Sequence[bytes], rate: float, connections: int = 64) -> Result:
    """Requests sent on a fixed schedule (`rate` a second), whatever the server does: latency under load."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))

    async def one(request: bytes, due: float) -> None:
        reader, writer = await pool.get()
        writer.write(request)
        status = await _read_response(reader)
        latencies.append(time.perf_counter() - due)  # from when it was due: queueing counts
        statuses[status] = statuses.get(status, 0) + 1
        pool.put_nowait((reader, writer))

    started = time.perf_counter()
    tasks = []
    for index, request in enumerate(requests):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return Result(len(requests), seconds, latencies, statuses)
