"""Whole-response caching for repeated GraphQL documents (dashboards poll the same query).

An ASGI middleware in front of ``POST /graphql``: the same request body within ``ttl`` seconds
(by the gateway's clock) gets the same answer bytes without parsing, executing or encoding
anything again. Only 200 answers are kept, in a bounded LRU; ``ttl = 0`` turns it off. The data
inside carries its own ``source.fetchedAt``, so a reused answer is never misleading about age.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_ENTRIES = 512
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class _Entry:
    expires: datetime
    start: Message
    body: bytes


class ResponseCache:
    """Serve repeated ``POST /graphql`` bodies from memory for ``ttl`` seconds."""

    def __init__(
        self, app: ASGIApp, *, ttl: float, clock: Callable[[], datetime], path: str = "/graphql"
    ) -> None:
        self.app = app
        self.ttl = ttl
        self.clock = clock
        self.path = path
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.ttl <= 0
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = dict(scope.get("headers", []))
        key = hashlib.sha256(
            headers.get(b"content-type", b"") + b"\0" + headers.get(b"accept", b"") + b"\0" + body
        ).hexdigest()
        now = self.clock()
        entry = self.entries.get(key)
        if entry is not None and now < entry.expires:
            self.entries.move_to_end(key)
            await send(entry.start)
            await send({"type": "http.response.body", "body": entry.body})
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message | None = None
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, capture)
        answer = b"".join(out)
        if start is not None and start.get("status") == 200 and len(answer) <= MAX_BODY:
            self.entries[key] = _Entry(now + timedelta(seconds=self.ttl), start, answer)
            self.entries.move_to_end(key)
            while len(self.entries) > MAX_ENTRIES:
                self.entries.popitem(last=False)
