"""A small HTTP/1.1 load generator on raw asyncio streams (httpx itself tops out near 400 req/s
here, which would measure the client, not the server)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


async def _one_connection(
    host: str, port: int, request: bytes, stop: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if status != 200 or b'"errors"' in body[:200]:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            counts[0] += 1
    finally:
        writer.close()


async def post_load(url: str, body: dict[str, Any], seconds: float, connections: int) -> float:
    """Requests per second of ``POST url`` with a JSON ``body`` over keep-alive connections."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counts = [0]
    await _one_connection(host, port, request, time.perf_counter() + 0.3, [0])  # warm up
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(
        *(_one_connection(host, port, request, stop, counts) for _ in range(connections))
    )
    return counts[0] / (time.perf_counter() - start)
