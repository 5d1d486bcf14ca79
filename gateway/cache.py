"""A typed seam over aiocache, and in-flight request coalescing.

Every vendor answer is cached as a :class:`Cached` (the value and when it was fetched) under an
explicit key; freshness is decided by the caller from ``fetched_at``, so one entry serves both
"fresh" and "stale" reads. ``memory://`` keeps entries in the process (values are frozen
dataclasses, shared by reference); ``redis://`` shares them between gateway processes, pickled.
A Redis the gateway cannot reach makes the cache a miss, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import PickleSerializer

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_VERSION = "ug1"
"""Bumped when cached classes change shape, so old entries are never read back."""


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A vendor answer and the moment it was fetched."""

    value: T
    fetched_at: datetime


def cache_key(fingerprint: str, resource: str, *params: object) -> str:
    """``ug1:<account fingerprint>:<resource>:<params>``, short and explicit."""
    args = ":".join(str(p) for p in params)
    return f"{KEY_VERSION}:{fingerprint}:{resource}:{args}"


def fingerprint(*parts: str) -> str:
    """A stable short hash of an account's identity (provider, id, endpoint, credentials).

    Two gateways with the same account config share entries; a changed key or base URL does
    not read the old account's answers.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:20]


class Cache:
    """Get and set :class:`Cached` entries by key, in memory or in Redis."""

    def __init__(self, url: str = "memory://") -> None:
        parts = urlsplit(url)
        self.url = url
        self.backend: BaseCache
        if parts.scheme == "memory":
            self.backend = SimpleMemoryCache(timeout=None)  # no wait_for task per read
        elif parts.scheme in ("redis", "rediss"):
            db = (parts.path or "/0").strip("/") or "0"
            self.backend = RedisCache(
                endpoint=parts.hostname or "127.0.0.1",
                port=parts.port or 6379,
                db=int(db),
                password=parts.password,
                ssl=parts.scheme == "rediss",
                serializer=PickleSerializer(),
                create_connection_timeout=2,
                timeout=2,
            )
        else:
            raise ValueError(f"unsupported cache URL scheme {parts.scheme!r}")

    async def get(self, key: str) -> Cached[Any] | None:
        try:
            value = await self.backend.get(key)
        except Exception as exc:  # a cache outage is a miss, not a failed answer
            log.warning("cache read failed (%s): %s", type(exc).__name__, exc)
            return None
        return value if isinstance(value, Cached) else None

    async def set(self, key: str, entry: Cached[Any], ttl: float) -> None:
        try:
            await self.backend.set(key, entry, ttl=max(1, int(ttl)))
        except Exception as exc:
            log.warning("cache write failed (%s): %s", type(exc).__name__, exc)

    async def close(self) -> None:
        await self.backend.close()


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
