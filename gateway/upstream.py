"""Reading vendors carefully: cache, coalescing, stale data, and a circuit breaker per account.

:meth:`Upstream.fetch` is the one way the service reads a vendor. For a key (account, resource,
parameters) it answers, in this order:

1. a cached answer younger than its TTL: served as FRESH (with the time it was fetched);
2. a cached answer past its TTL but within ``max_stale``: served at once as STALE (or as
   RATE_LIMITED / AUTH_FAILED when the last refresh was refused that way), while one refresh
   runs in the background (stale-while-revalidate, stale-if-error);
3. otherwise a call to the vendor, shared by every concurrent caller of the same key
   (singleflight), unless the account's circuit is open; with Redis, shared by every gateway
   process too (:class:`gateway.shared_flights.SharedFlights`: the process holding the key's
   lease calls, the others wait for its answer or its failure).

Only successful answers are cached. Expected failures come back as a status, never raised,
built from the error's fields (state, cause, vendor, HTTP status, retry time). Only a vendor that
is unwell (``Unavailable``: connection failure, timeout, 5xx) counts toward the breaker; a 4xx
that says the config is wrong, a rate limit or an unreadable answer never opens it. With a
shared Redis the breakers are shared too (:class:`gateway.coordination.SharedCircuits`): every
process sees a circuit another opened, and one of them sends the probe; while Redis cannot be
used, each process falls back to its own :class:`Breaker`.

Every fetch made for a GraphQL answer is reported to it (:mod:`gateway.answer_reads`): the key,
the version the key had (:meth:`Upstream.version_of`: it changes whenever a new vendor answer is
stored or the failure shown for the key changes) and the moment what the fetch showed stops
being what a new fetch would show:

- FRESH: its TTL, or an earlier quota or rate-limit reset in it;
- STALE while a refresh is under way: until the payload may no longer be served at all (the
  refresh landing, or failing, changes the key's version first);
- a failure, or STALE data whose last refresh failed: its retry time when it has one
  (RATE_LIMITED, CIRCUIT_OPEN: nothing is asked before then); without one, only the moment it
  was read, as failures are never cached: the next answer asks again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gateway import answer_reads
from gateway.cache import Cache, Cached, Singleflight, cache_key
from gateway.coordination import Circuit, SharedCircuits
from gateway.domain import FailureCause, SourceState, SourceStatus
from gateway.errors import CircuitOpen, SharedFailure, Unavailable, UpstreamError
from gateway.lru import BoundedLRU
from gateway.shared_flights import SharedFlights

log = logging.getLogger(__name__)

BREAKER_THRESHOLD = 5
"""Consecutive failed calls (vendor down, too slow, 5xx) that open an account's circuit."""
BREAKER_COOLDOWN = 30.0
"""Seconds the circuit stays open the first time; doubled on each failed probe."""
BREAKER_MAX_COOLDOWN = 300.0
LAST_ERRORS = 1024
"""How many keys' last failures are remembered (least recently used forgotten first)."""
VERSIONS = 20_000
"""How many keys' versions are remembered (twice the data cache's default entries); a key
forgotten counts as changed (see :class:`Versions`)."""


@dataclass
class Breaker:
    """One account's circuit: closed, open until a moment, then one probe (half-open)."""

    failures: int = 0
    open_until: datetime | None = None
    cooldown: float = BREAKER_COOLDOWN
    probing: bool = False

    def check(self, now: datetime, vendor: str) -> None:
        """Raise ``CircuitOpen`` while open; let one probe through once the cooldown is over."""
        if self.open_until is None:
            return
        if now < self.open_until or self.probing:
            raise CircuitOpen(vendor, failures=self.failures, retry_at=self.open_until)
        self.probing = True

    def success(self) -> None:
        self.failures, self.open_until, self.cooldown, self.probing = (
            0,
            None,
            BREAKER_COOLDOWN,
            False,
        )

    def failure(self, now: datetime) -> None:
        self.failures += 1
        if self.probing:  # the probe failed: open again, for longer
            self.cooldown = min(self.cooldown * 2, BREAKER_MAX_COOLDOWN)
        if self.probing or self.failures >= BREAKER_THRESHOLD:
            self.open_until = now + timedelta(seconds=self.cooldown)
        self.probing = False


class Versions:
    """Each key's version: the number of the change that last touched it (changes are numbered
    in order), for at most ``max_keys`` keys.

    The least recently changed key is forgotten first; a key not remembered has the version of
    the newest change forgotten (``floor``), so a key that was forgotten after it was read (its
    version then was at most that) or read when it was not remembered, and forgotten keys
    changed since, all compare as changed: never as unchanged when they were not.
    """

    def __init__(self, max_keys: int = VERSIONS) -> None:
        self.max_keys = max_keys
        self.changes = 0
        self.floor = 0
        self._changed: dict[str, int] = {}

    def of(self, key: str) -> int:
        return self._changed.get(key, self.floor)

    def bump(self, key: str) -> int:
        """Record a change of ``key``; its new version."""
        self.changes += 1
        self._changed.pop(key, None)
        self._changed[key] = self.changes
        while len(self._changed) > self.max_keys:
            oldest = next(iter(self._changed))
            self.floor = self._changed.pop(oldest)
        return self.changes


@dataclass(frozen=True)
class Fetched:
    """A fetch's outcome: the value (``None`` when there is none) and its status."""

    value: Any
    status: SourceStatus


class Upstream:
    """Long-lived: the cache, in-flight calls, breakers and the last failure per key."""

    def __init__(
        self,
        cache: Cache,
        clock: Callable[[], datetime],
        *,
        last_errors: int = LAST_ERRORS,
        versions: int = VERSIONS,
        shared: SharedFlights | None = None,
        circuits: SharedCircuits | None = None,
    ) -> None:
        self.cache = cache
        self.circuits = circuits
        """The accounts' circuits shared with other gateway processes (Redis); ``None``:
        this process's own breakers only (which also stand in while Redis cannot be used)."""
        self.clock = clock
        self.flights = Singleflight()
        self.shared = shared
        """With Redis: the leases that make one call per key across gateway processes."""
        self.breakers: dict[str, Breaker] = {}
        self.last_error: BoundedLRU[SourceStatus] = BoundedLRU(last_errors, last_errors)
        """The last failure per key, for at most ``last_errors`` keys (each counts as 1)."""
        self.background: set[asyncio.Task[Any]] = set()
        self.versions = Versions(versions)

    def version_of(self, key: str) -> int:
        """The version of ``key``: it changes when a new vendor answer is stored under it, or
        when the failure remembered for it changes."""
        return self.versions.of(key)

    async def fetch(
        self,
        account: str,
        fingerprint: str,
        vendor: str,
        resource: str,
        params: tuple[object, ...],
        call: Callable[[], Awaitable[Any]],
        ttl: float,
        max_stale: float,
    ) -> Fetched:
        found = self.fresh(fingerprint, resource, params, ttl)
        if found is not None:
            return found
        key = cache_key(fingerprint, resource, *params)
        now = self.clock()
        entry = await self.cache.get(key, fresh_since=now - timedelta(seconds=ttl))
        if entry is not None:
            age = (now - entry.fetched_at).total_seconds()
            if age < ttl:
                self._report(key, self.version_of(key), entry.fetched_at + timedelta(seconds=ttl))
                answer_reads.until(answer_reads.resets_after(entry.value, now))
                return Fetched(entry.value, SourceStatus(SourceState.FRESH, entry.fetched_at))
            if age < ttl + max_stale:
                self._refresh(key, account, fingerprint, vendor, call, ttl, max_stale)
                servable = entry.fetched_at + timedelta(seconds=ttl + max_stale)
                failed = self.last_error.get(key)
                if failed is not None:  # shown until the next refresh may land, at the latest
                    servable = min(servable, failed.retry_at or now)
                self._report(key, self.version_of(key), servable)
                status = self._stale(key, entry)
                return Fetched(entry.value, status)
        try:
            fresh, version = await self.flights.run(
                key, lambda: self._call(key, account, fingerprint, vendor, call, ttl, max_stale)
            )
        except UpstreamError as exc:
            status = self.last_error.get(key) or _status_of(exc)
            self._report(key, self.version_of(key), status.retry_at or self.clock())
            return Fetched(None, status)
        except Exception:
            log.exception("account %s: unexpected error while reading %s", account, vendor)
            message = f"internal error while reading {vendor}; see the gateway log"
            status = SourceStatus(
                SourceState.UNAVAILABLE, None, message, cause=FailureCause.INTERNAL, vendor=vendor
            )
            answer_reads.until(self.clock())
            return Fetched(None, status)
        self._report(key, version, fresh.fetched_at + timedelta(seconds=ttl))
        answer_reads.until(answer_reads.resets_after(fresh.value, self.clock()))
        return Fetched(fresh.value, SourceStatus(SourceState.FRESH, fresh.fetched_at))

    def _report(self, key: str, version: int, holds_until: datetime) -> None:
        """Tell the answer being built what it read (see the module docstring)."""
        answer_reads.datum(self.versions.of, key, version)
        answer_reads.until(holds_until)

    def fresh(
        self, fingerprint: str, resource: str, params: tuple[object, ...], ttl: float
    ) -> Fetched | None:
        """The answer :meth:`fetch` gives at once when this process holds one younger than
        ``ttl`` (FRESH, with the time it was fetched); ``None`` otherwise, when only ``fetch``
        can tell (Redis, a stale answer, the vendor)."""
        now = self.clock()
        key = cache_key(fingerprint, resource, *params)
        entry = self.cache.peek(key, fresh_since=now - timedelta(seconds=ttl))
        if entry is None or (now - entry.fetched_at).total_seconds() >= ttl:
            return None
        self._report(key, self.version_of(key), entry.fetched_at + timedelta(seconds=ttl))
        answer_reads.until(answer_reads.resets_after(entry.value, now))
        return Fetched(entry.value, SourceStatus(SourceState.FRESH, entry.fetched_at))

    async def _call(
        self,
        key: str,
        account: str,
        fingerprint: str,
        vendor: str,
        call: Callable[[], Awaitable[Any]],
        ttl: float,
        max_stale: float,
    ) -> tuple[Cached[Any], int]:
        """Call the vendor; the new entry and the key's version once it is stored."""
        breaker = self.breakers.setdefault(account, Breaker())
        shared: Circuit | None = None
        try:
            shared = await self._check(breaker, fingerprint, vendor)
            entry = await self._read(key, vendor, call, ttl, max_stale)
        except CircuitOpen as exc:  # nothing was asked of the vendor: no verdict on it
            self._failed(key, account, exc)
            raise
        except UpstreamError as exc:
            if isinstance(exc, Unavailable):  # connection, timeout, 5xx: the vendor is unwell
                await self._unwell(breaker, fingerprint, shared)
            elif shared is None:
                breaker.probing = False  # not the vendor's health speaking (4xx, 429, malformed)
            elif shared.probe is not None and self.circuits is not None:
                await self.circuits.release(fingerprint, shared.probe)
            self._failed(key, account, exc)
            raise
        except BaseException:
            if shared is None:
                breaker.probing = False  # a shared probe's lease runs out by itself
            raise
        await self._well(breaker, fingerprint, shared)
        self.last_error.pop(key)
        return entry, self.versions.bump(key)  # after the entry is there to be read

    async def _read(
        self,
        key: str,
        vendor: str,
        call: Callable[[], Awaitable[Any]],
        ttl: float,
        max_stale: float,
    ) -> Cached[Any]:
        """The vendor's answer, stored in the cache: called here, or, with Redis, by whichever
        gateway holds the key's lease (another's failure raises :class:`SharedFailure`)."""

        async def lead() -> Cached[Any]:
            entry = Cached(await call(), self.clock())
            await self.cache.set(key, entry, ttl + max_stale)
            return entry

        if self.shared is None or ttl + max_stale <= 0:  # nothing stored: nothing to share
            return await lead()
        fresh_since = self.clock() - timedelta(seconds=ttl)
        return await self.shared.run(key, fresh_since, lead, _status_of, vendor)

    async def _check(self, breaker: Breaker, fingerprint: str, vendor: str) -> Circuit | None:
        """Raise ``CircuitOpen`` while the account's circuit is open. With shared circuits,
        Redis decides (the circuit it answered); without them, or while Redis cannot be used,
        this process's own breaker does (``None``)."""
        if self.circuits is not None:
            circuit = await self.circuits.check(fingerprint)
            if circuit is not None:
                if circuit.open:
                    assert circuit.retry_at is not None
                    raise CircuitOpen(vendor, failures=circuit.failures, retry_at=circuit.retry_at)
                return circuit
        breaker.check(self.clock(), vendor)
        return None

    async def _unwell(self, breaker: Breaker, fingerprint: str, shared: Circuit | None) -> None:
        """Count a failure of an unwell vendor where the check was decided: in Redis (or this
        process's breaker when Redis cannot be used now), or in this process's breaker."""
        circuits = self.circuits
        counted = None
        if shared is not None and circuits is not None:
            counted = await circuits.failure(fingerprint, shared.probe)
        if counted is None:
            breaker.failure(self.clock())

    async def _well(self, breaker: Breaker, fingerprint: str, shared: Circuit | None) -> None:
        """A call succeeded: close the circuit (and reset its count) where it was decided."""
        circuits = self.circuits
        if shared is not None and circuits is not None:
            if shared.probe is None and shared.failures == 0:
                return  # closed, with no failure counted: nothing to reset
            if await circuits.success(fingerprint, shared.probe):
                return
        breaker.success()

    def _failed(self, key: str, account: str, exc: UpstreamError) -> None:
        status = _status_of(exc)
        if self.last_error.get(key) != status:
            self.versions.bump(key)  # answers that showed the key now show another status
        self.last_error.set(key, status, 1)
        log.warning("account %s: %s", account, exc.message)

    def _refresh(
        self,
        key: str,
        account: str,
        fingerprint: str,
        vendor: str,
        call: Callable[[], Awaitable[Any]],
        ttl: float,
        max_stale: float,
    ) -> None:
        """One background refresh per key at a time; its failure is remembered, not raised."""
        if self.flights.in_flight(key):
            return

        async def refresh() -> None:
            try:
                await self.flights.run(
                    key,
                    lambda: self._call(key, account, fingerprint, vendor, call, ttl, max_stale),
                )
            except UpstreamError:
                pass  # remembered in last_error, shown on the stale answers
            except Exception:
                log.exception("account %s: unexpected error refreshing %s", account, vendor)

        task = asyncio.ensure_future(refresh())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _stale(self, key: str, entry: Cached[Any]) -> SourceStatus:
        error = self.last_error.get(key)
        if error is None:
            message = "past its freshness; a refresh is under way"
            return SourceStatus(SourceState.STALE, entry.fetched_at, message)
        if error.state in (SourceState.RATE_LIMITED, SourceState.AUTH_FAILED):
            return replace(error, fetched_at=entry.fetched_at)
        message = f"showing the last good answer; the last refresh failed: {error.message}"
        return replace(error, state=SourceState.STALE, fetched_at=entry.fetched_at, message=message)

    async def settle(self) -> None:
        """Wait until every background refresh under way (and any they start) has ended."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.shared is not None:
            await self.shared.close()
        await self.cache.close()


def _status_of(exc: UpstreamError) -> SourceStatus:
    if isinstance(exc, SharedFailure):
        return exc.shared
    return SourceStatus(
        exc.state,
        None,
        exc.message,
        exc.retry_at,
        cause=exc.cause,
        vendor=exc.vendor,
        http_status=exc.status,
    )
