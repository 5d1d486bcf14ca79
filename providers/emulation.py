"""A small ASGI toolkit for the vendor emulators, with the fault modes every emulator offers.

An emulator is a real HTTP app: a subclass of :class:`Emulator` implements ``handle()`` for the
vendor's paths and ``error()`` for the vendor's error format. This base adds, for every vendor:

* request counting per path (``calls``) and the peak number of requests in flight;
* faults, set from Python (``set_fault``) or over HTTP (``POST /_emulator/fault``):
  ``status`` (answer that status in the vendor's error form, with ``Retry-After`` for 429 and
  503: the subclass's ``error()`` may set it, else this base adds ``retry_after`` itself),
  ``delay_ms`` (be slow), ``drop`` (start an answer and break the connection), ``malformed``
  (``"json"``: a 200 that is not JSON; ``"shape"``: a 200 of the wrong shape);
  ``times`` limits how many requests a fault applies to (default: until cleared);
* ``GET /_emulator/calls`` (counts, and ``arrivals``: each vendor-path request's arrival as Unix
  seconds by this process's clock, its path and the status it was answered, in order of
  arrival), ``POST /_emulator/reset`` (clear counts, faults, limits); ``served`` keeps the
  requests themselves, for tests that check what was asked.

Nothing here imports a web framework, so the emulators stay inside the provider packages' rules.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl

from gateway.domain import utc_now

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTROL_PREFIX = "/_emulator/"


@dataclass(frozen=True)
class Request:
    """What an emulator needs of an HTTP request."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""

    def param(self, *names: str) -> str | None:
        """The first value of the first of ``names`` present in the query string."""
        for name in names:
            for key, value in self.query:
                if key == name:
                    return value
        return None

    def has_param(self, name: str) -> bool:
        return any(key == name for key, _ in self.query)


@dataclass
class Response:
    """An emulator's answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls(status=status, body=json.dumps(data).encode(), headers=dict(headers or {}))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status=status, body=text.encode(), content_type=content_type)


@dataclass
class Fault:
    """A misbehaviour the emulator applies to vendor paths."""

    status: int | None = None
    retry_after: int = 30
    delay_ms: int = 0
    drop: bool = False
    malformed: str | None = None  # "json" or "shape"
    times: int | None = None  # None: until cleared

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        allowed = {"status", "retry_after", "delay_ms", "drop", "malformed", "times"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        fault = cls(**data)
        if fault.malformed not in (None, "json", "shape"):
            raise ValueError("malformed must be 'json' or 'shape'")
        return fault


class Emulator:
    """Base ASGI app of a vendor emulator; see the module docstring."""

    vendor: str = "vendor"

    def __init__(self, *, seed: int = 0, clock: Callable[[], datetime] = utc_now) -> None:
        self.seed = seed
        self.clock = clock
        self._lock = threading.Lock()  # tests read counters from another thread
        self.calls: Counter[str] = Counter()
        self.served: deque[Request] = deque(maxlen=10_000)
        """The vendor-path requests served, newest last (for tests: what was asked)."""
        self.arrivals: deque[list[float | str | int]] = deque(maxlen=10_000)
        """When each vendor-path request arrived (Unix seconds), its path and the status it
        was answered (0 until answered; the connection broke off for a ``drop`` fault)."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.fault: Fault | None = None

    # -- to implement --------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        """The vendor's own error answer for ``status``."""
        return Response.json({"error": message, "status": status}, status=status)

    def malformed_shape(self) -> Response:
        """A 200 answer that is valid JSON of the wrong shape for this vendor."""
        return Response.json({"unexpected": ["this", "is", "not", "the", "vendor's", "shape"]})

    def reset_state(self) -> None:
        """Forget vendor-side state (rate-limit windows ...); subclasses extend."""

    # -- control ---------------------------------------------------------------------------

    def set_fault(self, fault: Fault | None) -> None:
        """Apply ``fault`` from the next request on (a copy: ``times`` counts down on it)."""
        with self._lock:
            self.fault = None if fault is None else replace(fault)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.served.clear()
            self.arrivals.clear()
            # ``in_flight`` is left as it is: a request whose answer was sent may still be
            # finishing here, and its end would count it down below zero.
            self.max_in_flight = 0
            self.fault = None
        self.reset_state()

    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def _take_fault(self) -> Fault | None:
        with self._lock:
            fault = self.fault
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = None
            return fault

    async def _control(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX) :]
        if action == "calls" and request.method == "GET":
            with self._lock:
                return Response.json(
                    {
                        "calls": dict(self.calls),
                        "max_in_flight": self.max_in_flight,
                        "arrivals": [list(arrival) for arrival in self.arrivals],
                    }
                )
        if action == "reset" and request.method == "POST":
            self.reset()
            return Response.json({"reset": True})
        if action == "fault" and request.method == "POST":
            try:
                data = json.loads(request.body or b"null")
                self.set_fault(None if data is None else Fault.from_mapping(data))
            except (ValueError, TypeError) as exc:
                return Response.json({"error": str(exc)}, status=400)
            return Response.json({"fault": data})
        return Response.json({"error": "unknown control path"}, status=404)

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=tuple(parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        if request.path.startswith(CONTROL_PREFIX):
            await self._send(send, await self._control(request))
            return
        arrival: list[float | str | int] = [time.time(), request.path, 0]
        with self._lock:
            self.calls[request.path] += 1
            self.served.append(request)
            self.arrivals.append(arrival)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._serve(request, send, arrival)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _serve(self, request: Request, send: Send, arrival: list[float | str | int]) -> None:
        fault = self._take_fault()
        if fault is not None and fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault is not None and fault.drop:
            # Promise a body, send half of nothing, and break the connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"trunc', "more_body": True})
            raise ConnectionAbortedError("emulator fault: connection dropped")
        if fault is not None and fault.status is not None:
            retry = fault.retry_after if fault.status in (429, 503) else None
            response = self.error(fault.status, "Emulated failure", retry_after=retry)
            if retry is not None and not any(k.lower() == "retry-after" for k in response.headers):
                response.headers["Retry-After"] = str(retry)
        elif fault is not None and fault.malformed == "json":
            response = Response.text(
                "<html>502 Bad Gateway</html>", content_type="application/json"
            )
        elif fault is not None and fault.malformed == "shape":
            response = self.malformed_shape()
        else:
            response = await self.handle(request)
        arrival[2] = response.status  # noted under no lock: a list item is set at once
        await self._send(send, response)

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        headers = [(b"content-type", response.content_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


@dataclass(frozen=True)
class EmulatorSpec:
    """How to build a vendor's emulator and which accounts the demo and tests use against it.

    ``factory(seed=..., clock=...)`` builds the emulator; its data is a function of the seed
    and the clock alone, so an instance whose clock is set to a past moment answers as the
    vendor would have then (the demo fills its history that way). ``accounts`` are config
    entries (without ``id``, ``provider`` and ``base_url``) that the emulator accepts;
    ``bad_credentials`` replaces their secrets with ones it rejects.
    """

    factory: Callable[..., Emulator]
    accounts: tuple[Mapping[str, str], ...]
    bad_credentials: Mapping[str, str]
    first_day: date | None = None
    """The first day of seeded usage of the demo ``accounts``; ``None``: the emulator
    generates usage for any day. The demo's history reaches back to it."""
