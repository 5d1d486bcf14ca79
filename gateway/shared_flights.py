"""Coalescing across gateway processes that share a Redis: one vendor call per key at a time.

In one process, :class:`gateway.cache.Singleflight` lets concurrent identical reads share one
call. With ``cache_url = "redis://..."`` that process's one call (per key) first goes through
:meth:`SharedFlights.run`, so that every gateway sharing the Redis makes one call between them:

1. **Claim.** One Lua script (:data:`CLAIM`) reads the key's shared entry, the key's recent
   failure (``done:<key>``) and its lease (``lease:<key>``), and, when nobody holds the lease
   and no failure is recent, takes it (``SET lease:<key> <token> PX <lease>``). A fresh shared
   entry is the answer (a lease just taken is given back); a recent failure is the answer too.
2. **Lead.** The lease holder calls the vendor, stores the answer in the shared cache, then
   gives the lease back and tells the others (:data:`RELEASE`: compare-and-delete of the lease,
   ``PUBLISH`` of the key). While the call runs, the lease is renewed every third of its length
   (:data:`RENEW`, only while the token is still the holder's), so a call that outlives one lease
   keeps it, and a holder that died (``kill -9``) stops renewing: the lease expires at most
   ``lease`` seconds later. A failed call is shared as its status (state, cause, message,
   ``retryAt``) under ``done:<key>`` for :data:`OUTCOME_TTL` seconds: the replicas waiting for
   it, and those arriving just after, show it instead of asking the vendor again.
3. **Wait.** A process that finds the lease held marks the key as waited for (``waited:<key>``:
   a read nobody waits for publishes nothing) and waits for the holder's word, on one pub/sub
   subscription per process (channel :data:`CHANNEL`, messages are keys), and also claims again
   when the lease is due to expire and at least every :data:`POLL_MAX` seconds (a word lost while
   the subscription reconnects costs only that). When the lease expired (its holder died), one
   waiter's claim takes it over and calls. A wait ends after ``max_wait`` seconds (a lease plus
   one more call), as a ``TIMEOUT`` failure on this request.

Bounded: each process waits for at most ``max_waiting`` keys at once (one waiter per key: the
singleflight in front of it), holds one pub/sub connection, and every Redis operation has the
cache's short timeout, under the cache's :class:`~gateway.cache.RedisHealth`. A Redis that is
down, hung, skipped during its cooldown, or a process already waiting for ``max_waiting`` keys:
the call is made here alone (``alone``), as without Redis. Nothing here holds a credential:
keys carry the account's fingerprint only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from functools import partial
from typing import Any

import msgspec
import redis.asyncio
from redis.asyncio.client import PubSub

from gateway.cache import KEY_VERSION, Cache, Cached, RedisUnusable, Unreadable
from gateway.domain import FailureCause, SourceState, SourceStatus
from gateway.errors import SharedFailure, UpstreamError

log = logging.getLogger(__name__)

LEASE_MARGIN = 1.0
"""Seconds a lease lasts beyond the vendor call's own deadline (``upstream_timeout``)."""
OUTCOME_TTL = 1.0
"""Seconds a failed call's status is kept for the other replicas (``done:<key>``)."""
MAX_WAITING = 1024
"""Keys one process may wait for at once; past it, a process calls alone."""
POLL_FIRST = 0.02
"""Seconds before a waiter claims again without a word (doubled each time up to POLL_MAX)."""
POLL_MAX = 0.5
LISTEN_TICK = 1.0
"""Seconds one read of the pub/sub connection waits for a message."""
CHANNEL = f"{KEY_VERSION}:landed"
"""Where lease holders publish the key whose call ended."""
OUTCOMES = ("called", "took_over", "joined", "joined_failure", "alone", "timed_out")
"""How :meth:`SharedFlights.run` ended: this process held the lease and called the vendor
(``took_over``: after waiting for a holder whose lease expired); another gateway's answer or
failure was used; Redis could not be used and this process called on its own; the wait ended
before any answer."""

CLAIM = """
local lease, entry, done = KEYS[1], KEYS[2], KEYS[3]
local value = redis.call('GET', entry)
local failed = redis.call('GET', done)
local holder = redis.call('GET', lease)
local left = 0
if holder then
  left = redis.call('PTTL', lease)
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
elseif not failed then
  redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
  holder = ARGV[1]
end
return {holder, left, value, failed}
"""
"""KEYS: lease, entry, done, waited; ARGV: token, lease ms. Returns the holder (``false`` when a
recent failure stops the claim), the lease's milliseconds left (0 when just taken), the shared
entry and the recent failure. Finding the lease held marks the key as waited for."""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""KEYS: lease; ARGV: token, lease ms. Extends the lease while ``token`` holds it."""

RELEASE = """
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('DEL', KEYS[3]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"""
"""KEYS: lease, done, waited; ARGV: token, failure ('' after a success), failure ms, channel,
key. Records the outcome, gives the lease back if ``token`` still holds it, and says so when
someone waited for the key (a read nobody waited for costs the subscribers nothing)."""


def lease_key(key: str) -> str:
    return f"lease:{key}"


def done_key(key: str) -> str:
    return f"done:{key}"


def waited_key(key: str) -> str:
    return f"waited:{key}"


async def _ping(client: redis.asyncio.Redis) -> None:
    await client.ping()


async def _subscribe(pubsub: PubSub, _: object) -> None:
    await pubsub.subscribe(CHANNEL)


class _Done(msgspec.Struct):
    v: int
    status: SourceStatus


_done_decoder = msgspec.json.Decoder(_Done)


def encode_failure(status: SourceStatus) -> bytes:
    """A failed call's status as stored under ``done:<key>`` (no ``fetched_at``: it is none)."""
    return msgspec.json.encode(_Done(1, status))


def decode_failure(data: bytes) -> SourceStatus:
    """The status :func:`encode_failure` stored; :class:`Unreadable` for anything else."""
    try:
        done = _done_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise Unreadable(f"not a shared failure ({exc})") from None
    status = done.status
    if done.v != 1 or status.state in (SourceState.FRESH, SourceState.STALE):
        raise Unreadable("not a failure")
    if status.retry_at is not None and status.retry_at.tzinfo is None:
        raise Unreadable("a datetime without a timezone")
    return status


@dataclass
class FlightStats:
    """How each :meth:`SharedFlights.run` ended, by :data:`OUTCOMES`."""

    called: int = 0
    took_over: int = 0
    joined: int = 0
    joined_failure: int = 0
    alone: int = 0
    timed_out: int = 0

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SharedFlights:
    """Leases in the cache's Redis, so gateway processes sharing it call a vendor once per key.

    ``call_timeout`` is the vendor call's deadline (``upstream_timeout``): a lease lasts
    :data:`LEASE_MARGIN` longer, and a wait at most a lease plus one more call.
    """

    def __init__(
        self,
        cache: Cache,
        call_timeout: float,
        *,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        if cache.redis is None:
            raise ValueError("shared flights need a cache on Redis")
        self.cache = cache
        self.lease = call_timeout + LEASE_MARGIN
        self.max_wait = self.lease + call_timeout
        self.max_waiting = max_waiting
        self.stats = FlightStats()
        self._claim = cache.redis.register_script(CLAIM)
        self._renew = cache.redis.register_script(RENEW)
        self._release = cache.redis.register_script(RELEASE)
        self._waiting: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None

    async def run(
        self,
        key: str,
        fresh_since: datetime,
        lead: Callable[[], Awaitable[Cached[Any]]],
        describe: Callable[[UpstreamError], SourceStatus],
        vendor: str,
    ) -> Cached[Any]:
        """The answer for ``key``: a shared entry fetched after ``fresh_since``, or ``lead()``'s
        (which calls the vendor and stores the answer in the shared cache) when this process
        holds the lease or cannot use Redis.

        Raises what ``lead()`` raises, and :class:`SharedFailure` for another gateway's failure
        (``describe`` turns this process's failures into the status shared with the others)
        or for a wait that ended without an answer.
        """
        if key in self._waiting or len(self._waiting) >= self.max_waiting:
            self.stats.alone += 1
            return await lead()
        token = secrets.token_hex(8)
        woken = asyncio.Event()
        self._waiting[key] = woken
        self._listen()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        pause, waited = POLL_FIRST, False
        try:
            while True:
                woken.clear()
                try:
                    holder, left, value, failed = await self.cache.redis_op(
                        lambda r: self._claim(
                            keys=[lease_key(key), key, done_key(key), waited_key(key)],
                            args=[token, round(self.lease * 1000)],
                            client=r,
                        )
                    )
                except RedisUnusable:
                    self.stats.alone += 1
                    return await lead()
                entry = self._entry(key, value, fresh_since)
                if entry is not None:
                    if holder == token.encode():
                        await self._finish(key, token, b"")
                    self.stats.joined += 1
                    return entry
                status = self._failure(key, failed)
                if status is not None:
                    self.stats.joined_failure += 1
                    raise SharedFailure(status)
                if holder is None and failed is not None:  # not a failure this gateway wrote:
                    with contextlib.suppress(RedisUnusable):  # cleared, then claimed again
                        await self.cache.redis_op(lambda r: r.delete(done_key(key)))
                elif holder == token.encode():
                    if waited:
                        self.stats.took_over += 1
                    else:
                        self.stats.called += 1
                    del self._waiting[key]
                    return await self._lead(key, token, lead, describe)
                now = loop.time()
                if now >= deadline:
                    self.stats.timed_out += 1
                    raise SharedFailure(self._timed_out(vendor))
                waited = waited or holder is not None
                expires = max(int(left), 0) / 1000 + 0.005
                try:
                    async with asyncio.timeout(min(deadline - now, pause, expires)):
                        await woken.wait()
                except TimeoutError:
                    pass
                pause = min(pause * 2, POLL_MAX)
        finally:
            if self._waiting.get(key) is woken:
                del self._waiting[key]

    async def start(self) -> None:
        """Open the subscription and load the scripts before the first read needs them (a
        burst of cold reads then pays no script loading); a Redis that does not answer now is
        tried again as usual, by the reads."""
        self._listen()
        with contextlib.suppress(RedisUnusable):
            await self.cache.redis_op(self._load)

    async def _load(self, client: redis.asyncio.Redis) -> None:
        for script in (self._claim, self._renew, self._release):
            await client.script_load(script.script)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None

    # -- internals -----------------------------------------------------------------------------

    def _timed_out(self, vendor: str) -> SourceStatus:
        message = (
            f"another gateway's call to {vendor} for this did not end within "
            f"{self.max_wait:g} s (waited for it instead of calling)"
        )
        return SourceStatus(
            SourceState.UNAVAILABLE, None, message, cause=FailureCause.TIMEOUT, vendor=vendor
        )

    def _entry(self, key: str, data: object, fresh_since: datetime) -> Cached[Any] | None:
        """The shared entry ``data`` when it was fetched after ``fresh_since`` (kept in this
        process's memory too, as a Redis hit), else ``None``."""
        if not isinstance(data, bytes):
            return None
        entry, size = self.cache.decoded(key, data)
        if entry is None or entry.fetched_at <= fresh_since:
            return None
        self.cache.stats.redis_hits += 1
        self.cache.memory.set(key, entry, size)
        return entry

    def _failure(self, key: str, data: object) -> SourceStatus | None:
        if not isinstance(data, bytes):
            return None
        try:
            return decode_failure(data)
        except Unreadable as exc:
            log.info("cache: ignoring the shared failure of %s: %s", key, exc)
            return None

    async def _lead(
        self,
        key: str,
        token: str,
        lead: Callable[[], Awaitable[Cached[Any]]],
        describe: Callable[[UpstreamError], SourceStatus],
    ) -> Cached[Any]:
        """``lead()`` under the lease, renewed while it runs; the outcome told to the others."""
        renewal = asyncio.ensure_future(self._keep(key, token))
        try:
            entry = await lead()
        except UpstreamError as exc:
            renewal.cancel()
            await self._finish(key, token, encode_failure(describe(exc)))
            raise
        except BaseException:
            renewal.cancel()
            await self._finish(key, token, b"")  # nothing to share: a waiter takes over
            raise
        renewal.cancel()
        await self._finish(key, token, b"")
        return entry

    async def _keep(self, key: str, token: str) -> None:
        """Renew the lease every third of its length until cancelled or no longer held."""
        ms = round(self.lease * 1000)
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                held = await self.cache.redis_op(
                    lambda r: self._renew(keys=[lease_key(key)], args=[token, ms], client=r)
                )
            except RedisUnusable:
                continue
            if not held:
                return

    async def _finish(self, key: str, token: str, failure: bytes) -> None:
        ms = round(OUTCOME_TTL * 1000)
        with contextlib.suppress(RedisUnusable):  # else the lease expires by itself
            await self.cache.redis_op(
                lambda r: self._release(
                    keys=[lease_key(key), done_key(key), waited_key(key)],
                    args=[token, failure, ms, CHANNEL, key],
                    client=r,
                )
            )

    def _listen(self) -> None:
        """Start the process's one subscription to :data:`CHANNEL`, if not yet running."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._subscription())

    async def _subscription(self) -> None:
        """Wake the waiter of each key published, over one connection; after a failure, start
        again once Redis may be used (its health decides, as for every other operation).
        While Redis is down, probe it once a tick (within its cooldown), so the process finds
        it back by itself even when no read needs it."""
        assert self.cache.redis is not None
        while True:
            pubsub = self.cache.redis.pubsub()
            try:
                await self.cache.redis_op(partial(_subscribe, pubsub))
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_TICK
                    )
                    if message is not None and message.get("type") == "message":
                        data = message.get("data")
                        text = data.decode(errors="replace") if isinstance(data, bytes) else ""
                        woken = self._waiting.get(text)
                        if woken is not None:
                            woken.set()
                    health = self.cache.health
                    if health is not None and not health.up:  # no read may come to probe it
                        with contextlib.suppress(RedisUnusable):
                            await self.cache.redis_op(_ping)
            except RedisUnusable:
                pass
            except Exception as exc:
                self.cache.redis_failed(exc)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: no annotations
            health = self.cache.health
            await asyncio.sleep(health.cooldown if health is not None else POLL_MAX)
