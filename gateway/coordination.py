"""What gateway processes sharing one Redis agree on: vendor rate windows, holds and circuits.

With ``cache_url = "redis://…"`` several gateways behave as one towards each vendor:

- **Rate windows** (:class:`SharedWindow`): one sliding window per vendor credential (a
  fingerprint of the vendor's host and the credential, never the credential), a sorted set of
  admitted calls, each scored with the latest moment it may have reached the vendor. A Lua
  script (:data:`TURN`) drops the calls that left the window and admits one more only while
  fewer than ``calls`` remain; it reads the time from Redis (``TIME``), so the processes' clocks
  never matter. See :class:`providers.base.SharedOutbound` for why this is exact.
- **Holds**: a vendor's ``Retry-After`` (or a spent rate window) heard by one process is a key
  that expires at that moment; every process checks it in the same script before it calls.
- **Circuits** (:class:`SharedCircuits`): an account's breaker. Failures count in Redis (shared:
  five failures in a row across all processes open it), the open circuit is a moment every
  process reads, and once it passes one process takes the probe's lease (``SET NX``) while the
  others keep answering that the circuit is open.

Every operation goes through the cache's :class:`~gateway.cache.RedisHealth`: a Redis that is
down or slow costs one warning line, is skipped for its cooldown, and meanwhile each process
paces, holds and breaks on its own (:class:`providers.base.OutboundLimiter`,
:class:`gateway.upstream.Breaker`); it rejoins the others once Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio
from redis.commands.core import AsyncScript

from gateway.cache import KEY_VERSION, Cache, RedisHealth
from gateway.domain import utc_now
from providers.base import SharedOutbound, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")

NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

TURN = (
    NOW_MS
    + """
-- KEYS[1] the credential's window (a sorted set), KEYS[2] its hold
-- ARGV[1] calls per period (0: only the hold), ARGV[2] period (ms), ARGV[3] flight (ms),
-- ARGV[4] a new call's ticket
-- -> {0, 0}: admitted; {1, ms}: full, a slot may free in ms; {2, ms, moment}: held
local held = redis.call('PTTL', KEYS[2])
if held > 0 then
  return {2, held, redis.call('GET', KEYS[2])}
end
local calls = tonumber(ARGV[1])
if calls <= 0 then
  return {0, 0}
end
local period = tonumber(ARGV[2])
local flight = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - period))
if redis.call('ZCARD', KEYS[1]) < calls then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + flight), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', flight + period + 1000))
  return {0, 0}
end
-- a settled call leaves at its score + period; one still in flight (score in the future)
-- settles at now at the earliest, and leaves a period after that
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return {1, period + math.min(0, oldest - now)}
"""
)

SETTLE = """
-- KEYS[1] the window; ARGV[1] the ticket: its call has its answer, so it reached the vendor
-- before now (rounded up); only ever lowers the score
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now), ARGV[1])
end
return 0
"""

HOLD = """
-- KEYS[1] the hold; ARGV[1] ms it lasts, ARGV[2] its end (text); a longer hold stays
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
end
return 0
"""

CIRCUIT_CHECK = (
    NOW_MS
    + """
-- KEYS[1] the circuit (a hash: failures, open_until ms, cooldown ms, retry_at text),
-- KEYS[2] the probe's lease; ARGV[1] this caller's token, ARGV[2] the lease (ms)
-- -> {0, failures}: closed; {1, failures, retry_at}: open; {2}: this caller probes
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if open_until == 0 then
  return {0, failures}
end
if now < open_until then
  return {1, failures, redis.call('HGET', KEYS[1], 'retry_at')}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {1, failures, redis.call('HGET', KEYS[1], 'retry_at')}
"""
)

CIRCUIT_FAILURE = (
    NOW_MS
    + """
-- KEYS[1] the circuit, KEYS[2] the probe's lease; ARGV[1] token, ARGV[2] threshold,
-- ARGV[3] first cooldown (ms), ARGV[4] longest cooldown (ms), ARGV[5] ms the record is kept
-- after it last opened, ARGV[6] this caller's clock (ms since the epoch, for retry_at)
-- -> {opened (0/1), cooldown ms}
local probing = redis.call('GET', KEYS[2]) == ARGV[1]
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local cooldown = tonumber(redis.call('HGET', KEYS[1], 'cooldown') or ARGV[3])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if probing then
  cooldown = math.min(cooldown * 2, tonumber(ARGV[4]))
  redis.call('DEL', KEYS[2])
end
local opened = 0
if probing or (failures >= tonumber(ARGV[2]) and now >= open_until) then
  redis.call('HSET', KEYS[1], 'open_until', string.format('%.0f', now + cooldown),
    'cooldown', string.format('%.0f', cooldown),
    'retry_at', string.format('%.0f', tonumber(ARGV[6]) + cooldown))
  opened = 1
end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', cooldown + tonumber(ARGV[5])))
return {opened, cooldown}
"""
)

CIRCUIT_SUCCESS = """
-- KEYS[1] the circuit, KEYS[2] the probe's lease; ARGV[1] token: closed, counts reset
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 0
"""

RELEASE = """
-- KEYS[1] the probe's lease; ARGV[1] token: given back without a verdict on the vendor
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""


class SharedStore:
    """Runs this module's scripts on the cache's Redis, through the cache's health: ``None``
    when Redis is skipped (its cooldown), fails or is too slow (``timeout``)."""

    def __init__(self, client: redis.asyncio.Redis, health: RedisHealth, timeout: float) -> None:
        self.client = client
        self.health = health
        self.timeout = timeout
        self.scripts: dict[str, AsyncScript] = {}
        self.failures = 0
        """Operations that failed or timed out (for tests and operators)."""
        self.skipped = 0
        """Operations not tried because Redis kept failing."""

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        found = self.scripts.get(script)
        if found is None:
            found = self.scripts[script] = self.client.register_script(script)
        return await self._guarded(lambda: found(keys=list(keys), args=list(args)))

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T | None:
        if not self.health.allows():
            self.skipped += 1
            return None
        try:
            async with asyncio.timeout(self.timeout):
                result = await operation()
        except Exception as exc:  # an outage costs the sharing, never the call
            self.failures += 1
            self.health.failure(exc)
            return None
        except BaseException:
            self.health.abandon()
            raise
        self.health.success()
        return result


def shared_store(cache: Cache) -> SharedStore | None:
    """The store shared with other gateway processes: the cache's Redis, if it has one."""
    if cache.redis is None or cache.health is None:
        return None
    return SharedStore(cache.redis, cache.health, cache.timeout)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedWindow(SharedOutbound):
    """One vendor credential's rate window and hold in Redis (see the module docstring)."""

    def __init__(
        self, store: SharedStore, credential: str, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store = store
        self.window = f"{KEY_VERSION}:pace:{credential}"
        self.hold_key = f"{KEY_VERSION}:hold:{credential}"
        self.clock = clock

    async def turn(self, calls: int, period: float, flight: float) -> Turn | None:
        ticket = uuid.uuid4().hex
        answer = await self.store.run(
            TURN,
            [self.window, self.hold_key],
            [calls, math.ceil(period * 1000), math.ceil(flight * 1000), ticket],
        )
        if answer is None:
            return None
        kind, ms = int(answer[0]), int(answer[1])
        if kind == 0:
            return Turn(ticket=ticket if calls > 0 else None)
        if kind == 1:
            return Turn(wait=ms / 1000)
        try:
            until = datetime.fromisoformat(_text(answer[2]))
        except (TypeError, ValueError, IndexError):
            until = self.clock() + timedelta(milliseconds=ms)
        return Turn(held_until=until)

    async def settle(self, ticket: str) -> None:
        await self.store.run(SETTLE, [self.window], [ticket])

    async def hold(self, until: datetime) -> None:
        ms = math.ceil((until - self.clock()).total_seconds() * 1000)
        if ms > 0:
            await self.store.run(HOLD, [self.hold_key], [ms, until.isoformat()])


@dataclass(frozen=True)
class Circuit:
    """What the shared circuit said: ``open`` (with its failures and end), or a ``probe`` this
    caller sends (``token``: its lease), or closed (neither; ``failures`` in a row so far)."""

    open: bool = False
    failures: int = 0
    retry_at: datetime | None = None
    probe: str | None = None


class SharedCircuits:
    """Accounts' circuits in Redis, keyed by the account's fingerprint (see the module
    docstring). Each method answers ``None`` when Redis cannot be used: the caller then uses
    its own :class:`~gateway.upstream.Breaker`."""

    def __init__(
        self,
        store: SharedStore,
        *,
        threshold: int,
        cooldown: float,
        max_cooldown: float,
        lease: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.lease = lease
        """Seconds a probe may take before another process may send one."""
        self.clock = clock

    @staticmethod
    def _keys(account: str) -> list[str]:
        return [f"{KEY_VERSION}:circuit:{account}", f"{KEY_VERSION}:probe:{account}"]

    async def check(self, account: str) -> Circuit | None:
        token = uuid.uuid4().hex
        lease = math.ceil(self.lease * 1000)
        answer = await self.store.run(CIRCUIT_CHECK, self._keys(account), [token, lease])
        if answer is None:
            return None
        kind = int(answer[0])
        if kind == 0:
            return Circuit(failures=int(answer[1]))
        if kind == 2:
            return Circuit(probe=token)
        retry_ms = int(_text(answer[2])) if len(answer) > 2 and answer[2] else None
        retry_at = (
            datetime.fromtimestamp(retry_ms / 1000, UTC) if retry_ms is not None else self.clock()
        )
        return Circuit(open=True, failures=int(answer[1]), retry_at=retry_at)

    async def failure(self, account: str, token: str | None) -> bool | None:
        """A failed call (vendor unwell); whether it opened the circuit (``None``: Redis
        could not be used)."""
        args = [
            token or "",
            self.threshold,
            math.ceil(self.cooldown * 1000),
            math.ceil(self.max_cooldown * 1000),
            math.ceil(self.max_cooldown * 1000),
            math.floor(self.clock().timestamp() * 1000),
        ]
        answer = await self.store.run(CIRCUIT_FAILURE, self._keys(account), args)
        return None if answer is None else bool(int(answer[0]))

    async def success(self, account: str, token: str | None) -> bool:
        """A call that succeeded closes the circuit for every process; whether Redis took it."""
        answer = await self.store.run(CIRCUIT_SUCCESS, self._keys(account), [token or ""])
        return answer is not None

    async def release(self, account: str, token: str) -> None:
        """The probe ended without a verdict on the vendor (a 4xx, a rate limit, cancelled)."""
        await self.store.run(RELEASE, self._keys(account)[1:], [token])
