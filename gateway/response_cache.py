"""The front of ``POST /graphql``: a bounded request body, and whole-answer caching.

An ASGI middleware. It reads a ``POST /graphql`` body itself, at most ``max_body`` bytes: a
``Content-Length`` above that, or a body (chunked or not) that grows past it, is answered at
once with a 413 and a GraphQL-shaped JSON error, and the connection is closed without reading
the rest.

Then, when ``ttl`` > 0, the same request body within ``ttl`` seconds (by the gateway's clock),
from a caller with the same ``vary`` (the gateway token and the accounts it may read), gets the
same answer bytes without parsing, executing or encoding anything again: one token's answer is
never served to another. Only 200 answers are kept, in an LRU bounded by entries and by bytes
(``max_entries``, ``max_bytes``); expired entries are dropped. The data inside carries its own
``source.fetchedAt``, so a reused answer is never misleading about age.

What is kept is the answer as the app made it: a middleware outside this one (CORS, which adds
the headers of the origin that asked) changes the messages it is sent in place, so the start
message is copied before it goes out, and a copy goes out each time the answer is reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.lru import BoundedLRU

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_REQUEST_BODY = 64 * 1024
"""Default: the largest ``POST /graphql`` body read (queries are refused past 2,000 tokens)."""
MAX_ENTRIES = 512
"""Default: the most whole answers kept."""
MAX_BYTES = 32 * 1024 * 1024
"""Default: the most bytes of whole answers kept (answer bodies and headers)."""
MAX_ANSWER = 1 << 20
"""A whole answer larger than this is never kept."""


@dataclass(frozen=True)
class _Entry:
    expires: datetime
    start: Message
    body: bytes


def too_large(limit: int) -> tuple[Message, Message]:
    """The 413 answer (start and body messages) for a body past ``limit`` bytes."""
    body = json.dumps(
        {
            "errors": [
                {
                    "message": f"The request body is larger than {limit} bytes, the most this "
                    "gateway reads.",
                    "extensions": {"code": "REQUEST_TOO_LARGE", "maxBytes": limit},
                }
            ],
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the server closes at once, reading no more of the body
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _copy(start: Message) -> Message:
    """A start message whose header list is its own (the headers themselves are bytes)."""
    return {**start, "headers": list(start.get("headers", []))}


class _TooLarge(Exception):
    pass


class ResponseCache:
    """Bound ``POST /graphql`` bodies; serve repeated ones from memory for ``ttl`` seconds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttl: float,
        clock: Callable[[], datetime],
        path: str = "/graphql",
        max_body: int = MAX_REQUEST_BODY,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        vary: Callable[[Scope], str] = lambda scope: "",
    ) -> None:
        self.app = app
        self.vary = vary
        """Who asks, as a string: answers are kept apart by it (one entry per caller)."""
        self.ttl = ttl
        self.clock = clock
        self.path = path
        self.max_body = max_body
        self.entries: BoundedLRU[_Entry] = BoundedLRU(max_entries, max_bytes)
        self._next_purge: datetime | None = None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request body, or ``None`` when the client went away; ``_TooLarge`` past the
        limit (announced or received), with nothing more read."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            for message in too_large(self.max_body):
                await send(message)
            return
        if body is None:
            return
        caching = self.ttl > 0
        key = ""
        now = self.clock()
        if caching:
            headers = dict(scope.get("headers", []))
            key = hashlib.sha256(
                self.vary(scope).encode()
                + b"\0"
                + headers.get(b"content-type", b"")
                + b"\0"
                + headers.get(b"accept", b"")
                + b"\0"
                + body
            ).hexdigest()
            entry = self.entries.get(key)
            if entry is not None and now < entry.expires:
                await send(_copy(entry.start))
                await send({"type": "http.response.body", "body": entry.body})
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if not caching:
            await self.app(scope, replay, send)
            return

        start: Message | None = None
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = _copy(message)
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, capture)
        answer = b"".join(out)
        if start is not None and start.get("status") == 200 and len(answer) <= MAX_ANSWER:
            self._store(key, now, start, answer)

    def _store(self, key: str, now: datetime, start: Message, answer: bytes) -> None:
        """Keep an answer; drop expired entries (at most once per ``ttl``), then the least
        recently used ones while over ``max_entries`` or ``max_bytes``."""
        if self._next_purge is None or now >= self._next_purge:
            self._next_purge = now + timedelta(seconds=self.ttl)
            for stale in [k for k, e in self.entries.items() if now >= e.expires]:
                self.entries.pop(stale)
        size = len(key) + len(answer) + sum(len(k) + len(v) for k, v in start.get("headers", []))
        self.entries.set(key, _Entry(now + timedelta(seconds=self.ttl), start, answer), size)

    @property
    def size(self) -> int:
        """Bytes of every kept answer (bodies and headers)."""
        return self.entries.bytes
