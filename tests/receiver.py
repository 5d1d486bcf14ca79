"""A webhook receiver for the alert tests: a small ASGI app served over loopback that records
every request and can be told to answer the next few with an error, or to hang."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.servers import ServerThread


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what the receiver answered (``None``: it hung)."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Receiver:
    """Records requests; ``fail(times, status)`` answers the next ``times`` with ``status``
    (``None``: hold them for ``hang`` seconds, past the gateway's timeout)."""

    def __init__(self, delay: float = 0.0, hang: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self._failures: deque[int | None] = deque()
        self.delay = delay
        self.hang = hang
        self.url = ""

    def fail(self, times: int, status: int | None = 503) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def accepted(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.accepted and (path is None or r.path == path)]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            status: int | None = self._failures.popleft() if self._failures else 200
            self.requests.append(Received(scope["path"], headers, body, status))
        if status is None:
            await asyncio.sleep(self.hang)
            status = 200  # too late: the gateway gave up
        elif self.delay:
            await asyncio.sleep(self.delay)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


@contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    """``receiver`` on a free loopback port (``receiver.url``) for the block."""
    with ServerThread(receiver) as server:
        receiver.url = server.urls[0]
        yield receiver
