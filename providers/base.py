"""The provider base class: HTTP plumbing, deadlines and error translation for every vendor.

A vendor package subclasses :class:`BaseProvider`, names its config fields, and implements
``limits()`` and ``usage()`` by calling :meth:`BaseProvider.get_json` and turning the vendor's
answer into ``gateway.domain`` objects. Everything that can go wrong on the wire becomes one of
the ``gateway.errors.UpstreamError`` classes here, so vendor packages never handle httpx errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import select
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import accumulate
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpcore
import httpx

from gateway.domain import (
    AccountConfig,
    AccountScope,
    FailureCause,
    Granularity,
    Limits,
    ProviderId,
    UsageReport,
    day_start,
    secret_forms,
    utc_now,
)
from gateway.errors import (
    AuthFailed,
    ConnectionFailed,
    MalformedResponse,
    NoFreeSlot,
    RateLimited,
    RequestRejected,
    TimedOut,
    UpstreamError,
    VendorFailed,
    vendor_text,
)

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 10.0
"""Seconds one vendor call may take in all (connect, send, wait, read, retries)."""
RETRIES = 2
"""Extra attempts after a connection failure or a 5xx answer."""
BACKOFF = 0.1
"""Seconds before the first retry; doubled for each next one, with +-50% jitter."""
MAX_PACING_WAIT = 1.0
"""Longest wait for a slot under a vendor's rate before the call is refused as rate limited."""
MAX_ANSWER = 8 * 1024 * 1024
"""Default: bytes of one vendor answer read at most (decoded); past it the call is refused."""
MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error answer (not 200) read for the vendor's explanation; the rest is dropped."""
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a vendor answer."""
THREAD_PARSE = 256 * 1024
"""Answers larger than this are parsed in a worker thread, not on the event loop."""

CallObserver = Callable[[FailureCause | None, float | None], None]
"""Told of every vendor call (:meth:`BaseProvider.get_json`) as it ends: how (``None``: a 200
with JSON; else the failure's ``cause``) and how long it took in seconds (``None`` for a call
the gateway held back itself without sending anything)."""


class OutboundLimiter:
    """At most ``calls`` calls in any ``period`` seconds: a sliding window kept by hand.

    A caller first *reserves* a slot (:meth:`reserve`): the earliest moment at which one more
    call keeps every window of ``period`` seconds at ``calls`` or fewer, counting the slots
    already handed out, and recorded at once, so concurrent callers never share one free slot.
    A slot too far away is refused without being reserved. The caller then waits for its slot,
    and :meth:`send` lets it go once the calls that may have reached the vendor in the last
    ``period`` seconds are fewer than ``calls``, waiting longer if need be; :meth:`settle` says
    its answer is in.

    What counts is when calls *arrive*, as the vendor counts them, and a request sent may
    arrive later than another sent after it (a new connection's handshake, a slow network).
    So a call counts from its send until its answer is in (it arrived by then), and leaves
    the window ``period`` seconds after that: whatever the delays, no ``period`` of the
    vendor's clock sees more than ``calls`` of them. (Counting send moments alone let a vendor
    see 5 to 7 calls in a window of 4, on loopback, when the first calls opened connections.)

    Why not a leaky bucket (aiolimiter)? A bucket of ``calls`` per ``period`` starts full and
    drains continuously, so it admits ``calls`` at once and one more as soon as ``period /
    calls`` has drained: ``calls + 1`` in one window, which a vendor counting a sliding window
    (ReputeAPI: 30 per minute) answers with a 429. Keeping the window's own moments is exact,
    and its size is bounded by ``calls``.
    """

    def __init__(
        self, calls: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.calls = calls
        self.period = period
        self.clock = clock
        self.slots: deque[float] = deque()
        """Slots handed out (some in the future), in order."""
        self.in_flight = 0
        """Calls sent whose answers are not in yet."""
        self.answered: deque[float] = deque()
        """When the answers of calls sent came in (or they gave up), in order."""
        self._settled: asyncio.Event | None = None
        """Set at the next :meth:`settle` (for senders waiting on calls in flight)."""

    def _free_at(self, times: deque[float], now: float) -> float:
        """The earliest moment from ``now`` at which one more entry of ``times`` fits."""
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) < self.calls:
            return max(now, times[-1]) if times else now
        return max(now, times[-1], times[-self.calls] + self.period)

    def _free_to_send(self, now: float) -> float | None:
        """The earliest moment from ``now`` at which one more call may be sent, or ``None``
        while the calls in flight alone fill the window (one must settle first)."""
        answered = self.answered
        while answered and answered[0] <= now - self.period:
            answered.popleft()
        excess = self.in_flight + len(answered) - self.calls + 1
        if excess <= 0:
            return now
        if excess > len(answered):
            return None
        return max(now, answered[excess - 1] + self.period)

    def next_slot(self) -> float:
        """Seconds until the next slot not yet handed out (0: now)."""
        now = self.clock()
        return self._free_at(self.slots, now) - now

    def reserve(self, max_wait: float) -> float | None:
        """Reserve the next slot and return the seconds until it; ``None`` (and nothing
        reserved) when it is more than ``max_wait`` away."""
        now = self.clock()
        slot = self._free_at(self.slots, now)
        if slot - now > max_wait:
            return None
        self.slots.append(slot)
        return slot - now

    async def send(self) -> float:
        """Wait until one more call fits the window, count it as in flight, and return when.
        The caller calls :meth:`settle` once its answer is in (or it gave up)."""
        while True:
            now = self.clock()
            free = self._free_to_send(now)
            if free is None:
                if self._settled is None:
                    self._settled = asyncio.Event()
                await self._settled.wait()
            elif free > now:
                await asyncio.sleep(free - now)
            else:
                self.in_flight += 1
                return now

    def settle(self) -> None:
        """A call sent has its answer (or gave up): it reached the vendor, if at all, by now."""
        self.in_flight -= 1
        self.answered.append(self.clock())
        settled, self._settled = self._settled, None
        if settled is not None:
            settled.set()

    async def acquire(self, max_wait: float) -> float | None:
        """Reserve a slot, wait for it and send at once, for a call answered as it is sent:
        the moment the call may go (by ``clock``), or ``None`` (nothing reserved) when the next
        slot is more than ``max_wait`` away."""
        wait = self.reserve(max_wait)
        if wait is None:
            return None
        if wait > 0:
            await asyncio.sleep(wait)
        moment = await self.send()
        self.settle()
        return moment

    def resize(self, calls: int) -> None:
        """The vendor told us its limit (e.g. ``X-RateLimit-Limit``)."""
        self.calls = max(1, calls)


SHARED_FLIGHT_MARGIN = 1.0
"""Seconds added to a call's deadline as the latest its request may still reach the vendor
after the shared window admitted it (a request written just before the deadline cut it)."""


@dataclass(frozen=True)
class Turn:
    """The answer of a rate window shared with other gateway processes (:class:`SharedOutbound`)
    to "may one more call go now?": ``ticket`` when it may (the call settles it once answered),
    else ``wait`` seconds before a slot may free, or ``held_until`` when the vendor asked for no
    call before that moment."""

    ticket: str | None = None
    wait: float = 0.0
    held_until: datetime | None = None


class SharedOutbound(ABC):
    """One vendor credential's rate window and holds, shared by every gateway process that
    calls the vendor with it (the gateway provides one when it has a shared store; a provider
    without one paces and holds alone).

    The window is exact across processes in two phases. :meth:`turn` admits a call only while
    fewer than ``calls`` admitted calls may have reached the vendor in the last ``period``
    seconds, and records the admitted call as reaching it as late as ``flight`` seconds from
    now (its deadline: it cannot arrive later); :meth:`settle` lowers that to the moment its
    answer was in (it arrived before). An admitted call leaves the window only ``period``
    seconds after the latest moment it may have arrived, so whatever the delays between the
    store, the processes and the vendor, no ``period`` of the vendor's own clock sees more than
    ``calls`` of them.

    Every method answers ``None`` (or nothing) when the shared store cannot be used now: the
    provider then falls back to its own window and holds.
    """

    @abstractmethod
    async def turn(self, calls: int, period: float, flight: float) -> Turn | None:
        """Whether one more call may go now (``calls`` 0: only whether a hold is on)."""

    @abstractmethod
    async def settle(self, ticket: str) -> None:
        """The call admitted with ``ticket`` has its answer (or gave up): it reached the
        vendor, if at all, before now."""

    @abstractmethod
    async def hold(self, until: datetime) -> None:
        """The vendor asked for no call before ``until``: no process calls it before then."""


DEFAULT_CALLS = 64
"""Vendor calls in flight at once, over every host, unless configured (``max_vendor_calls``)."""
DEFAULT_CALLS_PER_HOST = 16
"""Vendor calls in flight at once to one host, unless configured
(``max_vendor_calls_per_host``)."""


class CallGate:
    """Vendor calls in flight at once: at most ``per_host`` to one host and ``total`` in all.

    One gate is shared by every provider client of a gateway. A call takes a slot of its host,
    then one of the total, before it enters httpx, and gives both back once its answer is read;
    callers wait here, first come first served, so that httpx's connection pool never holds a
    queue (its bookkeeping grows badly with thousands of waiting requests): size the pool to
    ``total`` (:meth:`pool_limits`). A host waiting for its own slots holds none of the total.
    The wait counts toward the call's deadline (:meth:`BaseProvider.get_json`).
    """

    def __init__(self, total: int = DEFAULT_CALLS, per_host: int = DEFAULT_CALLS_PER_HOST) -> None:
        if not 1 <= per_host <= total:
            raise ValueError(f"need 1 <= per_host ({per_host}) <= total ({total})")
        self.total = total
        self.per_host = per_host
        self._all = asyncio.Semaphore(total)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        """One per host ever called: as many as the configured accounts have base URLs."""

    def pool_limits(self) -> httpx.Limits:
        """Connection pool limits for the client these calls go through (:func:`pool_limits`)."""
        return pool_limits(self.total)

    @asynccontextmanager
    async def slot(self, host: str, waiting: Waiting | None = None) -> AsyncIterator[None]:
        """Hold a slot of ``host`` and one of the total while the block runs; ``waiting`` says
        whether the caller is still waiting for them."""
        per_host = self._hosts.get(host)
        if per_host is None:
            per_host = self._hosts[host] = asyncio.Semaphore(self.per_host)
        if waiting is not None:
            waiting.now = True
        async with per_host, self._all:
            if waiting is not None:
                waiting.now = False
            yield


def pool_limits(calls: int) -> httpx.Limits:
    """Connection pool limits for a client whose calls a :class:`CallGate` of ``calls`` in all
    lets in: a connection for every call in flight, and each kept alive for the next one."""
    return httpx.Limits(max_connections=calls, max_keepalive_connections=calls)


class VendorTransport(httpx.AsyncHTTPTransport):
    """httpx's transport for vendor calls, whose pool's connections find their socket once.

    At every request it adds or removes, httpcore's pool asks each idle connection whether
    the vendor closed it (its socket is readable); with httpcore's anyio streams each such
    question builds the stream's whole table of attributes to find the socket (about a third
    of the gateway's CPU in a cold read of 1,000 accounts). The streams of this transport
    (:class:`_SocketStream`) keep the socket from the start and answer that question with
    one ``poll``. Everything else is httpx's and httpcore's.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(  # httpx's own, with the backend below
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_SocketBackend(),
        )


class _SocketBackend(httpcore.AnyIOBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await super().connect_tcp(host, port, timeout, local_address, socket_options)
        return _SocketStream(stream)


class _SocketStream(httpcore.AsyncNetworkStream):
    """An httpcore stream that knows its socket (also after TLS: the same socket). Its
    ``timeout`` parameters are httpcore's interface (ASYNC109 does not apply)."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return _SocketStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has something to read (or is gone): on an idle kept-alive connection,
    that the vendor closed it."""
    if sock is None or sock.fileno() == -1:
        return True
    if hasattr(select, "poll"):
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        return bool(poll.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)  # pragma: no cover - no poll (Windows)
    return bool(readable)


@dataclass
class Waiting:
    """Whether a call is waiting for a slot of the :class:`CallGate` right now."""

    now: bool = False


@dataclass(frozen=True)
class ConfigField:
    """A provider-specific field of an ``[[accounts]]`` entry."""

    name: str
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""
    integer: tuple[int, int] | None = None
    """For a whole-number field, its (min, max); the value reaches the provider as a string."""


@dataclass(frozen=True)
class VendorAnswer:
    """A successful vendor answer: the parsed JSON body and the response headers."""

    body: Any
    headers: httpx.Headers


class ShapeError(ValueError):
    """A vendor answer of the wrong shape. Its message names what is wrong in our words and
    never quotes a value the vendor sent (a body may echo a credential back)."""


@contextmanager
def parsing(vendor: str, redact: Callable[[str], str] = str) -> Iterator[None]:
    """Turn a vendor body of the wrong shape into ``MalformedResponse`` (never a 500).

    The detail is our own words only: a :class:`ShapeError`'s message, the name of a missing
    field (through ``redact``), or else just the kind of error — never the text of an exception
    that may quote the body (``Invalid isoformat string: '<whatever the vendor sent>'``).
    """
    try:
        yield
    except ShapeError as exc:
        raise MalformedResponse(vendor, detail=f"unexpected shape: {redact(str(exc))}") from exc
    except KeyError as exc:
        field = redact(str(exc.args[0])) if exc.args else "?"
        raise MalformedResponse(vendor, detail=f"unexpected shape: no field {field!r}") from exc
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        kind = {TypeError: "a value of the wrong type", AttributeError: "a value of the wrong type"}
        what = kind.get(type(exc), "a value it cannot read")
        raise MalformedResponse(vendor, detail=f"unexpected shape: {what}") from exc


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(content: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without parsing it
    (brackets outside strings), so that a hostile depth never reaches a recursive parser."""
    brackets = _JSON_STRING.sub(b"", content).translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class NestedTooDeep(ValueError):
    """A JSON text nested deeper than the gateway reads."""


def decode_json(content: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a vendor's JSON answer: ``NestedTooDeep`` when it is nested deeper than
    ``max_depth`` (checked first), ``ValueError`` when it is not JSON."""
    if json_depth(content) > max_depth:
        raise NestedTooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(content)


def as_int(value: object, what: str) -> int:
    """A vendor count as an exact ``int``; accepts ints, integral floats and digit strings."""
    if isinstance(value, bool):
        raise ShapeError(f"{what} is a boolean, not a count")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ShapeError(f"{what} is not an integer")


def as_count(value: object, what: str) -> int:
    """A vendor count: an exact, non-negative ``int``."""
    number = as_int(value, what)
    if number < 0:
        raise ShapeError(f"{what} is negative")
    return number


def as_object(value: object, what: str) -> dict[str, Any]:
    """A JSON object of a vendor answer, or ``TypeError`` naming what it should have been."""
    if not isinstance(value, dict):
        raise ShapeError(f"{what} is not an object")
    return value


def as_list(value: object, what: str) -> list[Any]:
    """A JSON array of a vendor answer, or ``TypeError`` naming what it should have been."""
    if not isinstance(value, list):
        raise ShapeError(f"{what} is not a list")
    return value


def as_time(value: object) -> datetime:
    """A vendor timestamp (``...Z``, an offset, naive, or a bare date) as aware UTC."""
    if not isinstance(value, str):
        raise ShapeError("a timestamp is not a string")
    text = value.strip()
    try:
        if len(text) == 10:
            return day_start(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ShapeError("a timestamp is not ISO 8601") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def retry_after(headers: httpx.Headers, now: datetime) -> datetime | None:
    """When a 429 (or 503) allows the next call, from ``Retry-After`` (seconds or HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else None


class BaseProvider(ABC):
    """One configured account of one vendor."""

    id: ClassVar[ProviderId]
    """The config's ``provider`` string, e.g. ``ProviderId("acme")``; the graph's ``Provider``
    value is it upper-cased, so: lower-case letters, digits and ``_``, starting with a letter."""
    display_name: ClassVar[str]
    """The vendor's name in messages."""
    description: ClassVar[str]
    """One sentence on the vendor, shown on its ``Provider`` value in the graph."""
    default_base_url: ClassVar[str]
    fields: ClassVar[tuple[ConfigField, ...]] = ()
    outbound_rate: ClassVar[tuple[int, float] | None] = None
    """At most this many calls per this many seconds, where the vendor documents a limit."""
    rate_header_period: ClassVar[float | None] = None
    """Seconds the vendor's ``X-RateLimit-Limit`` counts over; set to follow that header."""
    basic_auth: ClassVar[tuple[str, str] | None] = None
    """The (user, password) secret fields of a vendor that authenticates with HTTP Basic."""
    native_granularities: ClassVar[frozenset[Granularity]] = frozenset({Granularity.DAY})
    """Granularities the vendor itself reports. WEEK is always rolled up from DAY, and so is
    MONTH unless listed here: then ``usage()`` is asked for MONTH and may answer with month
    points (for whole months) mixed with day points (for partial months at the edges)."""

    def __init__(
        self,
        account: AccountConfig,
        http: httpx.AsyncClient,
        *,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        max_answer: int = MAX_ANSWER,
        observe: CallObserver | None = None,
        gate: CallGate | None = None,
        shared: SharedOutbound | None = None,
    ) -> None:
        self.account = account
        self.shared = shared
        """The credential's rate window and holds shared with other gateway processes
        (``None``: this client paces and holds alone)."""
        self.gate = gate or CallGate()
        """Bounds the vendor calls in flight at once; the gateway shares one among all its
        clients (a client built alone gets its own, with the default bounds)."""
        self.observe = observe
        """Told of every vendor call as it ends (metrics); ``None``: nobody is."""
        self.http = http
        self.deadline = deadline
        self.max_answer = max_answer
        """Bytes of one answer read at most (after decompression)."""
        self.clock = clock
        self.monotonic = monotonic
        """The clock of outbound pacing (seconds, never jumps)."""
        self.base_url = (account.base_url or self.default_base_url).rstrip("/")
        self.host = urlsplit(self.base_url).netloc.lower()
        """Whose slots of the gate a call takes: the vendor's host (and port)."""
        self.held_until: datetime | None = None
        """No call before this moment: the vendor said so (429) or its window is spent."""
        self._shared_hold: datetime | None = None
        """The last hold this process and the others (``shared``) agreed on."""
        self.limiter = (
            OutboundLimiter(*self.outbound_rate, clock=monotonic) if self.outbound_rate else None
        )

    @classmethod
    def validate_options(cls, options: Mapping[str, str]) -> tuple[str, str] | None:
        """Check field combinations the field list cannot express.

        Returns ``(field, message)`` for the first problem, or ``None``.
        """
        return None

    snapshot_days: ClassVar[int] = 35
    """How many recent days a snapshot stores each run (vendors revise recent days)."""

    def live_since(self, today: date) -> date | None:
        """The oldest day the vendor still answers for; ``None``: it keeps everything."""
        return None

    def check_range(self, start: date, end: date, granularity: Granularity) -> str | None:
        """Why the vendor cannot answer ``start``..``end`` per ``granularity``, or ``None``.

        Called before any call, with the granularity the provider will be asked for; the
        reason is shown to the caller as an error on the ``usage`` field.
        """
        return None

    @property
    @abstractmethod
    def scope(self) -> AccountScope:
        """Whose usage this account reports."""

    @abstractmethod
    async def limits(self) -> Limits:
        """The account's quotas and rate limits as the vendor reports them now."""

    @abstractmethod
    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        """Usage per bucket of a native ``granularity`` for the days ``start``..``end``."""

    # -- HTTP plumbing ---------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a call; vendor packages override."""
        return {}

    def auth(self) -> httpx.Auth | None:
        """An httpx auth flow: HTTP Basic when ``basic_auth`` names the fields; overridable."""
        if self.basic_auth is None:
            return None
        user, password = self.basic_auth
        return httpx.BasicAuth(self.account.secret(user), self.account.secret(password))

    @classmethod
    def derived_secrets(cls, account: AccountConfig) -> tuple[str, ...]:
        """Credentials built from ``account``'s secrets that a log line may carry (HTTP Basic's
        ``user:password``), so logs redact them, and their encodings, too. Overridable."""
        if cls.basic_auth is None:
            return ()
        user, password = cls.basic_auth
        return (f"{account.secret(user)}:{account.secret(password)}",)

    def error_message(self, response: httpx.Response) -> str | None:
        """The vendor's own explanation in an error body, if it has one; overridable.

        The ``message`` (or ``error``) of a JSON body, or a plain-text body itself. Raw vendor
        text: the base class blanks secrets (:meth:`redact`) and bounds it.
        """
        try:
            body = response.json()
        except ValueError:
            if response.headers.get("content-type", "").startswith("text/plain"):
                return response.text or None
            return None
        if isinstance(body, dict):
            for key in ("message", "error"):
                value = body.get(key)
                if isinstance(value, str):
                    return value
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return str(value["message"])
        return None

    def refusal(self, response: httpx.Response, detail: str | None) -> AuthFailed | RequestRejected:
        """The error for a 4xx other than 429; overridable where a vendor's 403 means config.

        By default 401 and 403 say the credentials were rejected; any other 4xx says the
        request (the account's config: group, user, parameters) was.
        """
        status = response.status_code
        if status in (401, 403):
            return AuthFailed(self.display_name, status=status, detail=detail)
        return RequestRejected(self.display_name, status=status, detail=detail)

    def parsing(self) -> AbstractContextManager[None]:
        """``with self.parsing():`` around reading a body: a wrong shape becomes
        ``MalformedResponse`` in our words, with this account's secrets blanked."""
        return parsing(self.display_name, lambda text: self.redact(text) or "")

    def redact(self, text: str | None) -> str | None:
        """``text`` with this account's secrets blanked in every form a vendor may echo them
        (as is, URL-encoded, base64, and credentials built from them such as HTTP Basic's)."""
        if text is None:
            return None
        values = [s.reveal() for s in self.account.secrets.values()]
        values += self.derived_secrets(self.account)
        forms = {form for value in values if value for form in secret_forms(value)}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "********")
        return text

    def _note_rate_window(
        self, headers: httpx.Headers, status: int, now: datetime | None = None
    ) -> None:
        """Follow the vendor's limit, and hold calls while its window is spent (429 or
        ``X-RateLimit-Remaining: 0``)."""
        now = self.clock() if now is None else now
        announced = headers.get("x-ratelimit-limit", "")
        if self.rate_header_period and announced.isdigit() and int(announced) > 0:
            if self.limiter is None:
                self.limiter = OutboundLimiter(
                    int(announced), self.rate_header_period, clock=self.monotonic
                )
            else:
                self.limiter.resize(int(announced))
        until = retry_after(headers, now) if status == 429 else None
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if until is None and remaining is not None and reset is not None:
            try:
                if int(remaining) <= 0:
                    until = datetime.fromtimestamp(int(reset), UTC)
            except (ValueError, OverflowError, OSError):
                until = None
        if until is not None and until > now:
            self.held_until = until

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> VendorAnswer:
        """GET ``path`` and return the parsed JSON answer.

        The whole call, retries included, has one deadline. Connection failures and 5xx answers
        are retried (``RETRIES`` times, jittered exponential backoff) while the deadline allows;
        nothing else is. Calls are paced below the vendor's documented rate, and none is made
        while the vendor's rate window is spent; with ``shared``, the window and the holds are
        those of every gateway process using the credential.

        The deadline is also each request's httpx timeout, so an injected client's own
        (shorter) timeout never cuts a call the configuration allows.

        Each attempt waits for a slot of the gate (:class:`CallGate`) within the same deadline:
        a call still waiting when it is up raises ``NoFreeSlot`` (the vendor was never asked).

        Raises ``AuthFailed`` or ``RequestRejected`` (4xx, see :meth:`refusal`),
        ``RateLimited`` (429, or held back by us), ``ConnectionFailed``, ``TimedOut``,
        ``NoFreeSlot``, ``VendorFailed`` (5xx) or ``MalformedResponse`` (not JSON, larger than
        ``max_answer`` bytes, or nested deeper than ``MAX_DEPTH``: the rest of a too large
        answer is never read).
        """
        started = time.perf_counter()
        try:
            answer = await self._get_json(path, params)
        except UpstreamError as exc:
            held = (isinstance(exc, RateLimited) and exc.status is None) or isinstance(
                exc, NoFreeSlot
            )
            self._observed(exc.cause, None if held else started)
            raise
        except Exception:
            self._observed(FailureCause.INTERNAL, started)
            raise
        self._observed(None, started)
        return answer

    def _observed(self, cause: FailureCause | None, started: float | None) -> None:
        if self.observe is not None:
            took = None if started is None else time.perf_counter() - started
            self.observe(cause, took)

    async def _get_json(self, path: str, params: Mapping[str, str] | None) -> VendorAnswer:
        self._check_held()
        waiting = Waiting()
        try:
            try:
                async with asyncio.timeout(self.deadline):
                    response = await self._send(path, params, waiting)
            except TimeoutError as exc:
                if waiting.now:  # the gateway's own queue, not the vendor, took the time
                    gate = self.gate
                    raise NoFreeSlot(
                        self.display_name,
                        deadline=self.deadline,
                        per_host=gate.per_host,
                        total=gate.total,
                    ) from exc
                raise TimedOut(self.display_name, deadline=self.deadline) from exc
            self._check_status(response)
        except UpstreamError:
            await self._share_hold()
            raise
        await self._share_hold()
        content = response.content
        try:
            if len(content) > THREAD_PARSE:
                body = await asyncio.to_thread(decode_json, content)
            else:
                body = decode_json(content)
        except NestedTooDeep as exc:
            raise MalformedResponse(self.display_name, detail=str(exc)) from exc
        except ValueError as exc:
            raise MalformedResponse(self.display_name, detail="a body that is not JSON") from exc
        return VendorAnswer(body=body, headers=response.headers)

    def _check_held(self) -> None:
        if self.held_until is not None and self.clock() < self.held_until:
            raise RateLimited(self.display_name, retry_at=self.held_until)

    async def _share_hold(self) -> None:
        """Tell the other gateway processes of a hold this one heard from the vendor."""
        until = self.held_until
        if self.shared is not None and until is not None and until != self._shared_hold:
            self._shared_hold = until
            await self.shared.hold(until)

    async def _send(
        self, path: str, params: Mapping[str, str] | None, waiting: Waiting
    ) -> httpx.Response:
        """The request, retried on connection failures and 5xx (inside the caller's deadline).

        Each attempt first takes its turn under the vendor's rate (:meth:`_pace`), then a slot
        of the gate (:class:`CallGate`). Paced alone, it reserves its moment and waits for it,
        and, holding the gate's slot, sends when the window allows (:meth:`OutboundLimiter.send`):
        a wait for a slot never lets real sends crowd a rate window. Either way (alone, or with
        other processes: :class:`SharedOutbound`) it settles its turn once the answer is in.
        """
        vendor = self.display_name
        for attempt in range(RETRIES + 1):
            ticket, limiter = await self._pace()
            last = attempt == RETRIES
            sent = False
            try:
                async with self.gate.slot(self.host, waiting):
                    if limiter is not None:
                        await limiter.send()
                        sent = True
                    async with self.http.stream(
                        "GET",
                        self.base_url + path,
                        params=dict(params or {}),
                        headers=self.auth_headers(),
                        auth=self.auth() or httpx.USE_CLIENT_DEFAULT,
                        timeout=self.deadline,
                    ) as streamed:
                        response = await self._read(streamed)
            except (httpx.HTTPError, UpstreamError) as exc:
                await self._settle(ticket)
                if isinstance(exc, UpstreamError):
                    raise
                if isinstance(exc, httpx.TimeoutException):
                    raise TimedOut(vendor, deadline=self.deadline) from exc
                if last:
                    broke_off = not isinstance(exc, httpx.ConnectError)
                    raise ConnectionFailed(vendor, broke_off=broke_off) from exc
            else:
                await self._settle(ticket)
                if response.status_code < 500 or last:
                    return response
                self._note_rate_window(response.headers, response.status_code)
            finally:
                if sent and limiter is not None:
                    limiter.settle()  # also when cancelled: the answer will never come
            await asyncio.sleep(BACKOFF * 2**attempt * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _settle(self, ticket: str | None) -> None:
        if ticket is not None and self.shared is not None:
            await self.shared.settle(ticket)

    async def _pace(self) -> tuple[str | None, OutboundLimiter | None]:
        """Take this attempt's turn under the vendor's rate: ``(ticket, None)`` when the window
        shared with other processes admitted it (the caller settles the ticket), ``(None,
        limiter)`` when this process paces alone (the caller calls
        :meth:`~OutboundLimiter.send` as it really sends), ``(None, None)`` when nothing paces.

        Alone: reserve a slot and wait for it, or refuse at once when the slot is more than
        ``MAX_PACING_WAIT`` away (``retry_at``: that slot). Shared: see :meth:`_shared_turn`.
        """
        if self.shared is not None:
            decided, ticket = await self._shared_turn(self.shared)
            if decided:
                return ticket, None
        limiter = self.limiter
        if limiter is None:
            return None, None
        wait = limiter.reserve(MAX_PACING_WAIT)
        if wait is None:
            raise RateLimited(
                self.display_name,
                retry_at=self.clock() + timedelta(seconds=limiter.next_slot()),
                pacing=(limiter.calls, limiter.period),
            )
        if wait > 0:
            await asyncio.sleep(wait)
        return None, limiter

    async def _shared_turn(self, shared: SharedOutbound) -> tuple[bool, str | None]:
        """Ask the shared window for a turn until it gives one: ``(True, ticket)``, with no
        ticket when this vendor has no rate to keep (only the shared hold was checked);
        ``(False, None)`` when the shared store cannot be used (the caller paces alone).

        A vendor's hold raises ``RateLimited`` (``retry_at``: its end). A full window is asked
        again when its oldest call may have left it, as long as the waits add up to at most
        ``MAX_PACING_WAIT``; otherwise ``RateLimited`` (``retry_at``: when a slot may free).
        """
        limiter = self.limiter
        calls, period = (limiter.calls, limiter.period) if limiter is not None else (0, 0.0)
        waited = 0.0
        while True:
            turn = await shared.turn(calls, period, self.deadline + SHARED_FLIGHT_MARGIN)
            if turn is None:
                return False, None
            if turn.held_until is not None:
                self.held_until = self._shared_hold = turn.held_until
                raise RateLimited(self.display_name, retry_at=turn.held_until)
            if turn.ticket is not None or limiter is None:
                return True, turn.ticket
            if waited + turn.wait > MAX_PACING_WAIT:
                raise RateLimited(
                    self.display_name,
                    retry_at=self.clock() + timedelta(seconds=turn.wait),
                    pacing=(limiter.calls, limiter.period),
                )
            await asyncio.sleep(turn.wait)
            waited += turn.wait

    async def _read(self, streamed: httpx.Response) -> httpx.Response:
        """The answer with its body read, at most ``max_answer`` bytes once decompressed.

        A 200 announced or growing past that is refused (``MalformedResponse``) without reading
        the rest; an error answer keeps its status, and its body only if it is small
        (``MAX_ERROR_BODY``). The returned response holds the decoded body.
        """
        status = streamed.status_code
        limit = self.max_answer if status == 200 else MAX_ERROR_BODY
        announced = streamed.headers.get("content-length", "")
        chunks: list[bytes] = []
        size = 0
        if not (announced.isdigit() and int(announced) > limit):
            async for chunk in streamed.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
        else:
            size = int(announced)
        if size > limit:
            if status == 200:
                raise MalformedResponse(
                    self.display_name,
                    detail=f"an answer larger than {limit} bytes, the most the gateway reads "
                    "from one vendor call (max_vendor_answer)",
                )
            chunks = []
        headers = [
            (name, value)
            for name, value in streamed.headers.multi_items()
            if name not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            status, headers=headers, content=b"".join(chunks), request=streamed.request
        )

    def _check_status(self, response: httpx.Response) -> None:
        """Follow the vendor's rate headers; raise the error a non-200 answer means."""
        vendor = self.display_name
        status = response.status_code
        now = self.clock()
        self._note_rate_window(response.headers, status, now)
        if status != 200:
            raw = self.error_message(response)
            detail = None if raw is None else vendor_text(self.redact(raw))
            if status == 429:
                when = retry_after(response.headers, now)  # the moment held_until has
                raise RateLimited(vendor, status=status, detail=detail, retry_at=when)
            if status >= 500:
                raise VendorFailed(vendor, status=status, detail=detail)
            if 400 <= status < 500:
                raise self.refusal(response, detail)
            raise MalformedResponse(vendor, status=status, detail="an unexpected HTTP status")
