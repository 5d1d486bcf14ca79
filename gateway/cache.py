"""The data cache: a bounded memory tier in front of an optional Redis, and request coalescing.

Every vendor answer is cached as a :class:`Cached` (the value and when it was fetched) under an
explicit key; freshness is decided by the caller from ``fetched_at``, so one entry serves both
"fresh" and "stale" reads.

- **Memory.** Each process keeps entries in a least-recently-used map bounded by entries and by
  bytes (an entry's size is its encoded size); values are frozen dataclasses, kept by reference.
- **Redis** (``redis://``) shares entries between gateway processes. They are stored as plain,
  versioned JSON (:func:`encode_entry`), never pickles: an entry that does not decode to the type
  its key's resource holds, or has another format version, is a miss. Each Redis operation has a
  short timeout; after :data:`REDIS_FAILURES` failures in a row Redis is skipped for a cooldown,
  then one operation probes it again. A Redis that is down or hung costs one warning line per
  outage (and one info line when it is back), and the gateway keeps answering from memory.
  Other Redis work (the leases of :mod:`gateway.shared_flights`) goes through
  :meth:`Cache.redis_op`, under the same timeout and health.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from gateway.domain import Limits, UsageReport
from gateway.lru import BoundedLRU

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_VERSION = "ug2"
"""The first part of every key; bumped when the stored format changes, so gateways of different
formats sharing one Redis never read each other's entries."""
FORMAT = 1
"""The ``v`` of every stored entry; an entry with another is a miss."""
CACHED_TYPES: Mapping[str, type[Any]] = {"limits": Limits, "usage": UsageReport}
"""What each cached resource (the third part of its key) holds: the only types read from Redis."""
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_REDIS_TIMEOUT = 0.25
"""Seconds one Redis read or write may take before it counts as failed (and as a miss)."""
DEFAULT_REDIS_COOLDOWN = 5.0
"""Seconds Redis is skipped after it kept failing, before one operation probes it again."""
REDIS_FAILURES = 3
"""Failed Redis operations in a row that make the cache skip Redis for a cooldown."""
REDIS_CONNECTIONS = 32
"""Connections to Redis per process, at most."""


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A vendor answer and the moment it was fetched."""

    value: T
    fetched_at: datetime


def cache_key(fingerprint: str, resource: str, *params: object) -> str:
    """``ug2:<account fingerprint>:<resource>:<params>``, short and explicit."""
    args = ":".join(str(p) for p in params)
    return f"{KEY_VERSION}:{fingerprint}:{resource}:{args}"


def resource_of(key: str) -> str:
    """The resource part of a :func:`cache_key` (``""`` for a key of another shape)."""
    parts = key.split(":", 3)
    return parts[2] if len(parts) == 4 and parts[0] == KEY_VERSION else ""


def fingerprint(*parts: str) -> str:
    """A stable short hash of an account's identity (provider, id, endpoint, credentials).

    Two gateways with the same account config share entries; a changed key or base URL does
    not read the old account's answers.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:20]


# -- the stored format -------------------------------------------------------------------------


class Unreadable(ValueError):
    """A stored entry that is not one this gateway writes (garbage, another format, wrong type)."""


class _Header(msgspec.Struct):
    v: int
    kind: str
    shape: str


class _Envelope(msgspec.Struct, Generic[T]):
    v: int
    kind: str
    shape: str
    fetched_at: Annotated[datetime, msgspec.Meta(tz=True)]
    value: T


def shape_of(cls: type[Any]) -> str:
    """A short hash of the fields of ``cls`` and of every class inside it (their JSON schema,
    descriptions left out): entries written for a class whose fields since changed are misses."""

    def bare(node: object) -> object:
        if isinstance(node, dict):
            return {k: bare(v) for k, v in node.items() if k != "description"}
        return [bare(v) for v in node] if isinstance(node, list) else node

    schema = msgspec.json.encode(bare(msgspec.json.schema(cls)), order="sorted")
    return hashlib.sha256(schema).hexdigest()[:12]


_encoder = msgspec.json.Encoder()
_header = msgspec.json.Decoder(_Header)
_shapes = {kind: shape_of(cls) for kind, cls in CACHED_TYPES.items()}
_decoders: dict[str, msgspec.json.Decoder[_Envelope[Any]]] = {
    kind: msgspec.json.Decoder(_Envelope[cls])  # type: ignore[valid-type]
    for kind, cls in CACHED_TYPES.items()
}


def encode_entry(kind: str, entry: Cached[Any]) -> bytes:
    """``entry`` as versioned JSON: ``{"v": 1, "kind", "shape", "fetched_at", "value"}``.

    Enums are stored by value, datetimes as RFC 3339 (UTC as ``Z``), frozensets as arrays and
    integers exactly, whatever their size. Raises ``TypeError`` for a value msgspec cannot encode.
    """
    shape = _shapes.get(kind, "")
    return _encoder.encode(_Envelope(FORMAT, kind, shape, entry.fetched_at, entry.value))


def decode_entry(kind: str, data: bytes) -> Cached[Any]:
    """The :class:`Cached` that :func:`encode_entry` stored for ``kind``, with the same typed
    value (dataclasses, enums, aware datetimes, frozensets, dates as mapping keys).

    Raises :class:`Unreadable` for anything else: not JSON, another format version, another
    kind, a value not of ``kind``'s type, or a datetime without a timezone.
    """
    try:
        header = _header.decode(data)
    except msgspec.DecodeError as exc:
        raise Unreadable(f"not a cache entry ({exc})") from None
    if header.v != FORMAT:
        raise Unreadable(f"format version {header.v}, this gateway reads {FORMAT}")
    decoder = _decoders.get(kind)
    if header.kind != kind or decoder is None:
        raise Unreadable(f"holds {header.kind!r}, the key is for {kind!r}")
    if header.shape != _shapes[kind]:
        raise Unreadable(f"written for other fields of {CACHED_TYPES[kind].__name__}")
    try:
        envelope = decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise Unreadable(f"not a {kind} entry ({exc})") from None
    if _has_naive_datetime(envelope.value):
        raise Unreadable("a datetime without a timezone")
    return Cached(envelope.value, envelope.fetched_at)


def _has_naive_datetime(value: object) -> bool:
    if isinstance(value, datetime):
        return value.tzinfo is None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_naive_datetime(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, msgspec.Struct):
        return any(_has_naive_datetime(getattr(value, f)) for f in value.__struct_fields__)
    if isinstance(value, (tuple, list, frozenset, set)):
        return any(_has_naive_datetime(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_naive_datetime(v) for v in value.values())
    return False


# -- the memory tier ---------------------------------------------------------------------------


class MemoryTier(BoundedLRU["Cached[Any]"]):
    """The process's own copies of vendor answers (see :class:`~gateway.lru.BoundedLRU`).

    Entries have no expiry of their own: one past its use is never served (the caller judges
    ``fetched_at``) and leaves as the least recently used, or when a newer answer replaces it.
    """


# -- the Redis tier ----------------------------------------------------------------------------


@dataclass
class CacheStats:
    """What the cache did since it started (for tests and operators)."""

    memory_hits: int = 0
    redis_hits: int = 0
    misses: int = 0
    unreadable: int = 0
    """Redis entries that were not this gateway's format (treated as misses)."""
    redis_failures: int = 0
    """Redis operations that failed or timed out."""
    redis_skipped: int = 0
    """Redis operations not tried because Redis kept failing (during its cooldown)."""


class RedisUnusable(Exception):
    """Redis is not configured, skipped during its cooldown, or an operation on it failed:
    the caller goes on without it."""


class RedisHealth:
    """A circuit breaker around Redis that also owns the outage's log lines.

    After ``threshold`` failed operations in a row, operations are skipped for ``cooldown``
    seconds; then one probes Redis (a success closes the circuit, a failure opens it again).
    The first failure of an outage logs one warning; the first success after it, one info line.
    ``role``, ``degraded`` and ``restored`` word those lines for the part that uses Redis (the
    cache by default), on ``logger``.
    """

    def __init__(
        self,
        where: str,
        timeout: float,
        cooldown: float,
        threshold: int = REDIS_FAILURES,
        clock: Callable[[], float] = time.monotonic,
        *,
        role: str = "cache",
        degraded: str = "answering from this process's memory and its own vendor calls",
        restored: str = "shared entries are used again",
        logger: logging.Logger = log,
    ) -> None:
        self.role, self.degraded, self.restored, self.log = role, degraded, restored, logger
        self.where = where
        self.timeout = timeout
        self.cooldown = cooldown
        self.threshold = threshold
        self.clock = clock
        self.failures = 0
        self.open_until: float | None = None
        self.probing = False
        self.down_since: float | None = None

    @property
    def up(self) -> bool:
        """False from an outage's first failure until an operation succeeds again."""
        return self.down_since is None

    def allows(self) -> bool:
        """Whether an operation may go to Redis now (one probe at a time once cooled down)."""
        if self.open_until is None:
            return True
        if self.probing or self.clock() < self.open_until:
            return False
        self.probing = True
        return True

    def abandon(self) -> None:
        """An operation was cancelled before Redis answered: no verdict, but a probe is over."""
        self.probing = False

    def success(self) -> None:
        self.failures, self.open_until, self.probing = 0, None, False
        if self.down_since is not None:
            self.log.info(
                "%s: Redis at %s answers again (after %.1f s); %s",
                self.role,
                self.where,
                self.clock() - self.down_since,
                self.restored,
            )
            self.down_since = None

    def failure(self, exc: BaseException) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.open_until = self.clock() + self.cooldown
        self.probing = False
        if self.down_since is None:
            self.down_since = self.clock()
            reason = f"no answer within {self.timeout:g} s" if _is_timeout(exc) else str(exc)
            self.log.warning(
                "%s: Redis at %s failed (%s: %s); %s, and trying Redis again every %g s until "
                "it answers",
                self.role,
                self.where,
                type(exc).__name__,
                reason or "no detail",
                self.degraded,
                self.cooldown,
            )
        else:
            self.log.debug(
                "%s: Redis at %s still failing (%s)", self.role, self.where, type(exc).__name__
            )


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


# -- the cache ---------------------------------------------------------------------------------


class Cache:
    """Get and set :class:`Cached` entries by key: memory first, then Redis when configured."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
        redis_cooldown: float = DEFAULT_REDIS_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.memory = MemoryTier(max_entries, max_bytes)
        self.stats = CacheStats()
        self.redis: redis.asyncio.Redis | None = None
        self.health: RedisHealth | None = None
        self._reads = Singleflight()
        """Concurrent reads of one key share one Redis read (a burst of cold requests costs
        Redis one read per key, not one per request, and never empties the pool)."""
        self.timeout = redis_timeout
        if parts.scheme == "memory":
            return
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported cache URL scheme {parts.scheme!r}")
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS,
            timeout=redis_timeout,
            socket_timeout=redis_timeout,
            socket_connect_timeout=redis_timeout,
            retry=Retry(NoBackoff(), 0),  # a failed operation is a miss; the breaker retries
            # without it, redis-py skips its check that a pooled connection is still open ("auto"
            # counts as on), so after Redis restarts an idle connection fails the first operation
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"  # never the password
        self.health = RedisHealth(where, redis_timeout, redis_cooldown, clock=clock)

    async def get(self, key: str, fresh_since: datetime | None = None) -> Cached[Any] | None:
        """The entry under ``key``, or ``None``.

        A memory entry fetched after ``fresh_since`` (any, when it is ``None``) is answered
        at once; otherwise Redis is asked too (one read per key at a time, whose answer every
        concurrent caller shares) and the more recently fetched wins (another gateway may
        have refreshed it). A Redis that fails, is skipped or holds an unreadable
        entry leaves the memory entry, if any.
        """
        found = self.peek(key, fresh_since)
        if found is not None:
            return found
        local = self.memory.get(key)
        shared, size = await self._reads.run(key, lambda: self._redis_get(key))
        if shared is not None and (local is None or shared.fetched_at > local.fetched_at):
            self.stats.redis_hits += 1
            self.memory.set(key, shared, size)
            return shared
        if local is not None:
            self.stats.memory_hits += 1
        else:
            self.stats.misses += 1
        return local

    def peek(self, key: str, fresh_since: datetime | None = None) -> Cached[Any] | None:
        """The memory entry under ``key`` when it was fetched after ``fresh_since`` (any, when
        it is ``None``), else ``None``: what :meth:`get` answers at once, without waiting for
        anything (Redis is not asked)."""
        local = self.memory.get(key)
        if local is not None and (fresh_since is None or local.fetched_at > fresh_since):
            self.stats.memory_hits += 1
            return local
        return None

    async def set(self, key: str, entry: Cached[Any], ttl: float) -> None:
        """Keep ``entry`` for ``ttl`` seconds (not at all when ``ttl <= 0``), here and in Redis."""
        if ttl <= 0:
            return
        data = self._encoded(key, entry)
        if data is None:
            return
        self.memory.set(key, entry, len(data))
        if self.redis is None or self.health is None or not self._allowed():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.set(key, data, ex=max(1, round(ttl)))
        except Exception as exc:  # a cache outage costs the sharing, never the answer
            self._failed(exc)
        except BaseException:
            self.health.abandon()
            raise
        else:
            self.health.success()

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.aclose(close_connection_pool=True)
            except Exception as exc:
                log.debug("cache: closing Redis failed (%s)", type(exc).__name__)

    # -- internals -----------------------------------------------------------------------------

    def _encoded(self, key: str, entry: Cached[Any]) -> bytes | None:
        try:
            return encode_entry(resource_of(key), entry)
        except (TypeError, ValueError) as exc:
            log.warning("cache: cannot store %s (%s); not cached", key, exc)
            return None

    def _allowed(self) -> bool:
        assert self.health is not None
        if self.health.allows():
            return True
        self.stats.redis_skipped += 1
        return False

    def _failed(self, exc: BaseException) -> None:
        assert self.health is not None
        self.stats.redis_failures += 1
        self.health.failure(exc)

    async def redis_op(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        """``operation`` on this cache's Redis, within its timeout and under its health (a
        failure counts toward the cooldown, like a read's); :class:`RedisUnusable` when there
        is no Redis, it is skipped during its cooldown, or the operation failed."""
        if self.redis is None or self.health is None or not self._allowed():
            raise RedisUnusable
        try:
            async with asyncio.timeout(self.timeout):
                result = await operation(self.redis)
        except Exception as exc:
            self._failed(exc)
            raise RedisUnusable from exc
        except BaseException:
            self.health.abandon()
            raise
        self.health.success()
        return result

    def redis_failed(self, exc: BaseException) -> None:
        """A Redis operation made outside :meth:`redis_op` failed (a subscription's read)."""
        if self.health is not None:
            self._failed(exc)

    def decoded(self, key: str, data: bytes) -> tuple[Cached[Any] | None, int]:
        """The entry ``data`` holds for ``key`` and its size; ``None`` (logged, counted as
        unreadable) when it is not one this gateway writes."""
        try:
            return decode_entry(resource_of(key), data), len(data)
        except Unreadable as exc:
            self.stats.unreadable += 1
            log.info("cache: ignoring the Redis entry %s: %s", key, exc)
            return None, 0

    async def _redis_get(self, key: str) -> tuple[Cached[Any] | None, int]:
        """Redis's entry under ``key`` (``None`` when absent, unreadable, or Redis failed or was
        skipped) and its encoded size."""
        if self.redis is None or self.health is None or not self._allowed():
            return None, 0
        try:
            async with asyncio.timeout(self.timeout):
                data = await self.redis.get(key)
        except Exception as exc:
            self._failed(exc)
            return None, 0
        except BaseException:
            self.health.abandon()
            raise
        self.health.success()
        if not isinstance(data, bytes):
            return None, 0
        return self.decoded(key, data)


class Singleflight:
    """Concurrent calls with the same key share one in-flight call and its outcome."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Any]] = {}

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    def _land(self, key: str, flight: asyncio.Future[Any]) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here too, so a flight nobody awaits stays quiet

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(call())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        result: T = await asyncio.shield(flight)
        return result
