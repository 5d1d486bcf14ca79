"""One snapshot runner per period among the replicas that share Redis and a history store.

Time is cut into periods of ``every`` seconds numbered from the Unix epoch by Redis's clock
(``TIME``), so every replica agrees on them: period ``n`` is ``[n * every, (n + 1) * every)``.
For each period, three keys (under ``snapshot:<group>:``, the group naming the history store,
the accounts and ``every``; never a credential):

- ``run:<n>``: the lease, held by the replica that runs the period. Its value is the runner's
  token (``host:pid:random``); it is taken with ``SET NX PX`` and lasts :func:`lease_for`
  seconds (a third of the period, at most 30 s) unless the runner renews it (compare-and-renew);
- ``done:<n>``: written, with the runner's token, by the lease holder when its run has ended,
  in the same step that deletes the lease (compare-and-delete). It lasts :data:`DONE_PERIODS`
  periods; a replica that finds it does not run the period;
- ``tries:<n>``: how many times the lease was taken, so a runner knows when it took the period
  over from one whose lease expired.

Every step is one Lua script, so it is atomic: a period is taken by one replica at a time, and
a replica whose lease expired (it died, or was paused longer than the lease) can neither renew
it, nor mark the period done, nor delete the lease another replica took since.

Redis operations are bounded by a timeout; a Redis that fails raises :class:`RedisUnreachable`
and feeds a :class:`~gateway.cache.RedisHealth`, which says so once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.cache import RedisHealth, fingerprint
from gateway.history_pg import redact

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_MAX = 30.0
"""The longest lease, in seconds, whatever the period."""
DONE_PERIODS = 3
"""How many periods a ``done:<n>`` marker (and a ``tries:<n>`` count) is kept."""
CONNECTIONS = 4
"""Connections to Redis the election keeps, at most (it makes one or two calls at a time)."""


def lease_for(every: float) -> float:
    """The lease of a period of ``every`` seconds: a third of it, at most :data:`LEASE_MAX`.

    A runner renews it every third of the lease; a runner that dies is taken over once its
    lease has run out, so a replica that dies early in its period is taken over within it.
    """
    return min(every / 3, LEASE_MAX)


@dataclass(frozen=True)
class Periods:
    """Periods of ``every`` seconds, numbered from the Unix epoch."""

    every: float

    def number(self, moment: float) -> int:
        """The period holding ``moment`` (seconds since the epoch)."""
        return math.floor(moment / self.every)

    def start(self, period: int) -> float:
        return period * self.every

    def end(self, period: int) -> float:
        return (period + 1) * self.every


def store_identity(history_path: str, history_url: str | None = None) -> str:
    """The history store as replicas that share it name it: a PostgreSQL database by its URL
    without the password (replicas must spell it alike); a SQLite file is shared only by
    processes of one host, so its identity is the host's name and the file's absolute path."""
    if history_url is not None:
        return f"postgresql:{redact(history_url)}"
    return f"sqlite:{socket.gethostname()}:{os.path.abspath(history_path)}"


def group_of(store: str, accounts: Sequence[str], every: float) -> str:
    """The election group of replicas with this history store, these account ids and this
    period: only they elect one runner between them (others with another store or period never
    share its keys)."""
    return fingerprint(store, *sorted(accounts), repr(float(every)))


def new_token() -> str:
    """A runner's name for its leases: host, process and a random part (unique per replica)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def pid_of(token: str) -> int | None:
    """The process id in a runner's token (for operators and tests)."""
    parts = token.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


class RedisUnreachable(Exception):
    """Redis failed, timed out, or is skipped during its cooldown (the health says so once)."""


@dataclass(frozen=True)
class Lease:
    """This replica holds period ``period``'s lease; ``attempt`` 1 is the period's first."""

    period: int
    token: str
    attempt: int

    @property
    def taken_over(self) -> bool:
        """An earlier holder's lease ran out before it marked the period done."""
        return self.attempt > 1


@dataclass(frozen=True)
class Held:
    """Another replica holds the period's lease (it is running the period)."""

    holder: str


@dataclass(frozen=True)
class Done:
    """The period was run; ``runner`` is the token of the replica that ran it."""

    runner: str


TAKE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'done', redis.call('GET', KEYS[2])}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local attempt = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return {'taken', tostring(attempt)}
end
return {'held', redis.call('GET', KEYS[1])}
"""
"""KEYS run, done, tries; ARGV token, lease ms, keep ms: the period's state, taking its lease
when it is neither done nor held."""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""KEYS run; ARGV token, lease ms: 1 when the lease was still the token's and now lasts again."""

COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
"""KEYS run, done; ARGV token, keep ms: the period marked done by its lease holder, and the
lease released; 0 (nothing written) when the lease is not the token's."""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS run; ARGV token: the lease given up, if still the token's (the period is not done)."""


def _cancelling() -> bool:
    """Whether this task was asked to stop. redis-py (8.1) can lose a cancellation that comes
    while it waits for Redis, ending the call normally (or with another error) instead: the
    election raises it again, so a stopping replica stops rather than going on forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(url: str, timeout: float) -> redis.asyncio.Redis:
    """A small client of its own for the election (its calls never wait behind the cache's)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # a failed call is an outage for this period
    )
    return redis.asyncio.Redis(connection_pool=pool)


def redis_where(url: str) -> str:
    """``host:port`` of a Redis URL, for log lines (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class Election:
    """The Redis side of electing one snapshot runner per period (see the module docstring)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        group: str,
        every: float,
        health: RedisHealth,
        *,
        timeout: float,
        token: str | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self.periods = Periods(every)
        self.lease = lease_for(every)
        self.health = health
        self.timeout = timeout
        self.token = token or new_token()
        self._take = client.register_script(TAKE)
        self._renew = client.register_script(RENEW)
        self._complete = client.register_script(COMPLETE)
        self._release = client.register_script(RELEASE)

    @classmethod
    def from_url(
        cls,
        url: str,
        group: str,
        every: float,
        *,
        timeout: float,
        cooldown: float,
        token: str | None = None,
    ) -> Election:
        health = RedisHealth(
            redis_where(url),
            timeout,
            cooldown,
            threshold=1,  # each period asks Redis a few times: one failure is an outage
            role="snapshots",
            degraded="every replica takes its own snapshots (idempotent upserts)",
            restored="one replica per period takes the snapshots again",
            logger=log,
        )
        return cls(redis_client(url, timeout), group, every, health, timeout=timeout, token=token)

    def key(self, kind: str, period: int) -> str:
        """``snapshot:<group>:<kind>:<period>``."""
        return f"snapshot:{self.group}:{kind}:{period}"

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        if not self.health.allows():
            raise RedisUnreachable("skipped during the cooldown")
        try:
            async with asyncio.timeout(self.timeout):
                result = await call()
        except Exception as exc:
            if _cancelling():
                self.health.abandon()
                raise asyncio.CancelledError from exc
            self.health.failure(exc)
            raise RedisUnreachable(str(exc) or type(exc).__name__) from None
        except BaseException:
            self.health.abandon()
            raise
        self.health.success()
        if _cancelling():
            raise asyncio.CancelledError
        return result

    async def now(self) -> float:
        """Redis's clock, in seconds since the epoch."""
        seconds, micros = await self._call(self.client.time)
        return int(seconds) + int(micros) / 1_000_000

    async def take(self, period: int) -> Lease | Held | Done:
        """Period ``period``'s state: :class:`Done`, :class:`Held` by another replica, or a
        :class:`Lease` this replica has just taken."""
        keys = [self.key("run", period), self.key("done", period), self.key("tries", period)]
        keep = _ms(self.periods.every * DONE_PERIODS)
        args: list[Any] = [self.token, _ms(self.lease), keep]
        state, value = await self._call(lambda: self._take(keys=keys, args=args))
        state, value = _text(state), _text(value)
        if state == "done":
            return Done(value)
        if state == "held":
            return Held(value)
        return Lease(period, self.token, int(value))

    async def renew(self, lease: Lease) -> bool:
        """Whether ``lease`` was still this replica's (it lasts a full lease again)."""
        keys = [self.key("run", lease.period)]
        args: list[Any] = [lease.token, _ms(self.lease)]
        return bool(await self._call(lambda: self._renew(keys=keys, args=args)))

    async def complete(self, lease: Lease) -> bool:
        """Mark the period done and release ``lease``, if it is still this replica's; ``False``
        (nothing written) when it is not."""
        keys = [self.key("run", lease.period), self.key("done", lease.period)]
        args: list[Any] = [lease.token, _ms(self.periods.every * DONE_PERIODS)]
        return bool(await self._call(lambda: self._complete(keys=keys, args=args)))

    async def release(self, lease: Lease) -> bool:
        """Give ``lease`` up without marking the period done (another replica may take it)."""
        keys = [self.key("run", lease.period)]
        args: list[Any] = [lease.token]
        return bool(await self._call(lambda: self._release(keys=keys, args=args)))

    async def close(self) -> None:
        try:
            await self.client.aclose(close_connection_pool=True)
        except Exception as exc:
            log.debug("snapshots: closing Redis failed (%s)", type(exc).__name__)
