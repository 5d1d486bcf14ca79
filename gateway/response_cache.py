"""The front of ``POST /graphql``: a bounded request body, and answers kept while their data hold.

An ASGI middleware. It reads a ``POST /graphql`` body itself, at most ``max_body`` bytes: a
``Content-Length`` above that, or a body (chunked or not) that grows past it, is answered at
once with a 413 and a GraphQL-shaped JSON error, and the connection is closed without reading
the rest.

**Answers keyed on data.** When ``ttl`` > 0, an executed answer is kept under the request (its
body: the document, variables, operation name and extensions, byte for byte; its content type
and accept headers) and the caller's ``vary`` (the gateway token and the accounts it may read:
one token's answer is never served to another), together with what its execution read
(:mod:`gateway.answer_reads`): the version of every vendor payload (by cache key) and of the
history store, and the earliest moment any of it stops holding: a payload's TTL, a quota or
rate-limit reset in it, a retry time, the next UTC midnight for answers that read today's date.
The same request is answered with the same bytes, without parsing, executing or encoding
anything, while the gateway's clock is before that moment and every version is unchanged: a
dictionary lookup, a comparison per datum and a send. A new vendor answer (a call or a
background refresh storing one), a changed failure, a history write or a reset makes it
execute again, so an answer is never staler than the data it was built from, and its
``source { state fetchedAt }`` stay true: an answer showing STALE data is not served once the
refresh lands, nor one showing a failure past its retry time (one without a retry time, or
showing the moment itself, as ``headroom`` and forecasts do, is not kept at all). ``ttl`` caps
how long any answer is kept; an answer with an error raised while resolving its fields, not
200, or over 1 MiB is not kept (a refusal of the whole request, its syntax, validity or cost,
is kept: it depends on the request alone).

Concurrent requests for the same key while it executes wait for that one execution and get
its answer, when it is a complete 200 whose data did not change meanwhile; otherwise each
executes on its own (nothing is kept from a failed execution). The executing request's own
client is sent the answer after the waiters have it, so a slow client holds up nobody.

Kept answers are bounded by entries and by bytes (``max_entries``, ``max_bytes``, least
recently used out first); those past their moment are dropped at most every
:data:`PURGE_EVERY` seconds, and those whose data changed when next asked for.

A history store on PostgreSQL, which other gateways write too, asks for its version to be read
again (:func:`gateway.answer_reads.refresh`): a kept answer that read it awaits that read (one
small query, shared by the requests that arrive while it waits) before its versions are
compared, so another gateway's write makes it execute again.

With a Redis ``cache_url``, versions are local to the process: another gateway's refresh is not
seen as a change here, but an answer still shows exactly the ``fetchedAt`` of the data it was
built from and never outlives that data's TTL.

What is kept is the answer as the app made it: a middleware outside this one (CORS, which adds
the headers of the origin that asked) changes the messages it is sent in place, so the start
message is copied before it goes out, and a copy goes out each time the answer is reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway import answer_reads
from gateway.answer_reads import Check
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
"""Default: the most bytes of whole answers kept (answer bodies, headers and what they read)."""
MAX_ANSWER = 1 << 20
"""A whole answer larger than this is never kept."""
CHECK_BYTES = 64
"""What one recorded datum counts toward ``max_bytes``, besides its key."""
PURGE_EVERY = 10.0
"""Seconds between sweeps that drop kept answers past their moment (at most; on a store)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    deadline: datetime
    checks: tuple[Check, ...]
    start: Message
    body: bytes
    refreshes: tuple[Callable[[], Awaitable[None]], ...] = ()
    """Awaited before the checks, to bring versions that other processes change up to date."""

    def holds(self, now: datetime) -> bool:
        return now < self.deadline and all(v(key) == version for v, key, version in self.checks)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A complete answer an execution may share with the requests that waited for it."""

    start: Message
    body: bytes


@dataclass
class AnswerStats:
    """What the answer cache did since it started (for ``/metrics`` and tests)."""

    hits: int = 0
    """Requests answered from a kept answer, nothing executed."""
    executions: int = 0
    """Requests executed (with the answer cache on)."""
    shared: int = 0
    """Requests that waited for a concurrent execution of the same key and got its answer."""
    kept: int = 0
    """Executed answers kept."""
    dropped: int = 0
    """Kept answers found no longer holding (their data changed, or past their moment)."""


class AnswerStore:
    """The kept answers, the executions under way and the counters: one per app, shared by
    every instance of the middleware (Litestar builds one per route)."""

    def __init__(
        self, ttl: float, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.ttl = ttl
        """The longest any answer is kept, in seconds; 0: the answer cache is off."""
        self.entries: BoundedLRU[_Entry] = BoundedLRU(max_entries, max_bytes)
        self.flights: dict[str, asyncio.Future[_Answer | None]] = {}
        self.stats = AnswerStats()
        self._next_purge: datetime | None = None

    @property
    def size(self) -> int:
        """Bytes of every kept answer (bodies, headers and what they read)."""
        return self.entries.bytes

    def land(
        self, key: str, flight: asyncio.Future[_Answer | None], answer: _Answer | None
    ) -> None:
        """End the execution ``flight`` of ``key``: requests arriving from now on do not wait
        for it; those waiting get ``answer`` (``None``: each executes on its own)."""
        if self.flights.get(key) is flight:
            del self.flights[key]
        if not flight.done():
            flight.set_result(answer)

    def keep(self, key: str, now: datetime, answer: _Answer, reads: answer_reads.Reads) -> None:
        """Keep ``answer`` until its data's earliest moment (``ttl`` at most); drop answers
        past theirs (at most every :data:`PURGE_EVERY` seconds), then the least recently used
        while over ``max_entries`` or ``max_bytes``."""
        if self._next_purge is None or now >= self._next_purge:
            self._next_purge = now + timedelta(seconds=min(self.ttl, PURGE_EVERY))
            for stale in [k for k, e in self.entries.items() if now >= e.deadline]:
                self.entries.pop(stale)
        deadline = now + timedelta(seconds=self.ttl)
        if reads.deadline is not None:
            deadline = min(deadline, reads.deadline)
        if now >= deadline:
            return
        checks = reads.checks()
        headers = sum(len(k) + len(v) for k, v in answer.start.get("headers", []))
        size = len(key) + len(answer.body) + headers + len(checks) * CHECK_BYTES
        size += sum(len(str(key)) for _, key, _ in checks)
        entry = _Entry(deadline, checks, answer.start, answer.body, tuple(reads.refreshes))
        self.entries.set(key, entry, size)
        self.stats.kept += 1


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


async def _send_answer(send: Send, answer: _Answer | _Entry) -> None:
    await send(_copy(answer.start))
    await send({"type": "http.response.body", "body": answer.body})


class _TooLarge(Exception):
    pass


class ResponseCache:
    """Bound ``POST /graphql`` bodies; answer repeated ones from memory while their data hold."""

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
        store: AnswerStore | None = None,
    ) -> None:
        self.app = app
        self.vary = vary
        """Who asks, as a string: answers are kept apart by it (one entry per caller)."""
        self.clock = clock
        self.path = path
        self.max_body = max_body
        self.store = store or AnswerStore(ttl, max_entries=max_entries, max_bytes=max_bytes)

    @property
    def ttl(self) -> float:
        return self.store.ttl

    @property
    def entries(self) -> BoundedLRU[_Entry]:
        return self.store.entries

    @property
    def size(self) -> int:
        """Bytes of every kept answer (bodies, headers and what they read)."""
        return self.store.size

    @property
    def stats(self) -> AnswerStats:
        return self.store.stats

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
        replay = _replay(body, receive)
        store = self.store
        if store.ttl <= 0:
            await self.app(scope, replay, send)
            return
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
        entry = store.entries.get(key)
        if entry is not None:
            for refresh in entry.refreshes:
                await refresh()
            if entry.holds(self.clock()):
                store.stats.hits += 1
                await _send_answer(send, entry)
                return
            store.entries.pop(key)
            store.stats.dropped += 1
        flight = store.flights.get(key)
        if flight is not None:
            shared = await asyncio.shield(flight)
            if shared is not None:
                store.stats.shared += 1
                await _send_answer(send, shared)
                return
            await self._execute(scope, replay, send, key)  # on its own, as nothing was shared
            return
        flight = asyncio.get_running_loop().create_future()
        store.flights[key] = flight
        try:
            await self._execute(scope, replay, send, key, flight)
        finally:
            store.land(key, flight, None)

    async def _execute(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str,
        flight: asyncio.Future[_Answer | None] | None = None,
    ) -> None:
        """Run the app, recording what it reads; keep its answer when it may be kept, give it
        to the requests waiting on ``flight`` when it may be shared, then send it."""
        store = self.store
        store.stats.executions += 1
        start: Message | None = None
        parts: list[bytes] = []
        streaming = False
        reads, token = answer_reads.begin()

        async def capture(message: Message) -> None:
            nonlocal start, streaming
            if streaming:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = _copy(message)
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):  # a stream: passed on as it comes, never shared
                streaming = True
                if flight is not None:
                    store.land(key, flight, None)
                await send(_copy(start))
                await send({**message, "body": b"".join(parts)})
                return
            answer = _Answer(start, b"".join(parts))
            shareable = start.get("status") == 200 and reads.current()
            if flight is not None:  # before this client is sent anything: it may be slow
                store.land(key, flight, answer if shareable else None)
            if shareable:
                now = self.clock()
                if not reads.errors and not reads.unsettled and len(answer.body) <= MAX_ANSWER:
                    store.keep(key, now, answer, reads)
            await _send_answer(send, answer)

        try:
            await self.app(scope, receive, capture)
        finally:
            answer_reads.end(reads, token)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body already read, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
