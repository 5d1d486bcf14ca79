"""ASGI apps that stand in front of an emulator and watch (or bend) what reaches it.

They are test equipment, like the emulators: real HTTP servers (served by ``ServerThread``)
between the gateway and a vendor emulator, never a patch of the gateway's own code.

* :class:`Rendezvous` holds each vendor request until ``count`` of them are in flight together
  (or ``patience`` seconds passed), then lets them all through: ``together`` is the most that
  ever were. Requests made in one round all meet; a second round never meets the first.
* :class:`InFlight` counts requests in flight, per app and over every app sharing it, and the
  distinct client connections (address and port) each app saw.
* :class:`Refusing` answers one path with an error status instead of the emulator.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
CONTROL = "/_emulator/"


def _vendor_request(scope: Scope) -> bool:
    return scope["type"] == "http" and not scope["path"].startswith(CONTROL)


class Rendezvous:
    """Each vendor request waits until ``count`` are waiting together, or ``patience`` s."""

    def __init__(self, app: ASGIApp, count: int, patience: float = 10.0) -> None:
        self.app = app
        self.count = count
        self.patience = patience
        self.waiting = 0
        self.together = 0
        self.arrived = 0
        self._met: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if not _vendor_request(scope):
            await self.app(scope, receive, send)
            return
        if self._met is None:
            self._met = asyncio.Event()
        self.arrived += 1
        self.waiting += 1
        self.together = max(self.together, self.waiting)
        if self.waiting >= self.count:
            self._met.set()
        try:
            await asyncio.wait_for(self._met.wait(), self.patience)
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
        await self.app(scope, receive, send)


class InFlight:
    """Shared by several apps (:meth:`wrap`): requests in flight now and at most, per app and in
    all, and the client connections each app saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_now = 0
        self.total_peak = 0
        self.connections: dict[str, set[tuple[str, int]]] = {}
        self.served: Counter[str] = Counter()

    def wrap(self, name: str, app: ASGIApp) -> ASGIApp:
        self.connections.setdefault(name, set())

        async def counted(scope: Scope, receive: Any, send: Any) -> None:
            if not _vendor_request(scope):
                await app(scope, receive, send)
                return
            with self._lock:
                self.now[name] += 1
                self.peak[name] = max(self.peak[name], self.now[name])
                self.total_now += 1
                self.total_peak = max(self.total_peak, self.total_now)
                self.served[name] += 1
                client = scope.get("client")
                if client:
                    self.connections[name].add((client[0], client[1]))
            try:
                await app(scope, receive, send)
            finally:
                with self._lock:
                    self.now[name] -= 1
                    self.total_now -= 1

        return counted


class Refusing:
    """Answers vendor requests whose path ends with ``suffix`` with ``status`` (plain text)."""

    def __init__(self, app: ASGIApp, suffix: str, status: int) -> None:
        self.app = app
        self.suffix = suffix
        self.status = status
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if not (_vendor_request(scope) and scope["path"].endswith(self.suffix)):
            await self.app(scope, receive, send)
            return
        self.refused += 1
        body = f"refused by the test ({self.status})".encode()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
