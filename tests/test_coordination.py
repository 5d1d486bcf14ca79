"""Rate windows, holds and circuits shared through a real Redis (gateway/coordination.py).

A "replica" here is a provider client or an ``Upstream`` with a cache (and Redis connections)
of its own, as a gateway process has; the claims about separate processes are proven with
processes in tests/e2e/test_replicas_budget.py. Vendor calls go over loopback to the emulators,
which note when each request arrived.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest

from gateway.app import credential_of
from gateway.cache import Cache
from gateway.coordination import SharedCircuits, SharedWindow, shared_store
from gateway.domain import AccountConfig, ProviderId, Secret, utc_now
from gateway.errors import RateLimited
from gateway.upstream import BREAKER_THRESHOLD, Upstream
from providers.base import RETRIES
from providers.emulation import Fault
from providers.reputeapi.client import ReputeApiProvider
from tests.conftest import TLS
from tests.e2e.test_replicas_budget import most_in_a_window

CALLS, PERIOD = 4, 0.5
"""The rate of :class:`FastRepute`: short, so that a test sees many windows."""


class FastRepute(ReputeApiProvider):
    """ReputeAPI with a rate of its own (4 calls per 0.5 s) and no rate headers followed."""

    outbound_rate = (CALLS, PERIOD)
    rate_header_period = None


def account(url: str, key: str = "ra_live_premium_demo", id: str = "repute") -> AccountConfig:
    return AccountConfig(id, ProviderId("reputeapi"), id, url, {}, {"api_key": Secret(key)})


def arrivals(emulator: Any, since: float = 0.0) -> list[float]:
    return [t for t, path, _ in list(emulator.arrivals) if path == "/v1/usage" and t >= since]


@pytest.fixture
async def replicas(redis_url):
    """Make caches of their own (each its own Redis connections), closed after the test."""
    caches: list[Cache] = []

    def make(**options: float) -> Cache:
        options.setdefault("redis_timeout", 2)  # no replica left alone by a slow moment
        cache = Cache(redis_url, **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()


# -- the rate window ---------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "alone"])
async def test_three_replicas_never_exceed_the_rate_in_any_window_the_vendor_sees(
    emulators, replicas, shared
) -> None:
    """Rounds of callers on three replicas arriving at random, against 4 calls per 0.5 s: the
    vendor's own arrival times never hold more than 4 in any 0.5 s with the shared window;
    replicas pacing alone send three times that."""
    repute = emulators["reputeapi"]
    config = account(repute.url)
    rng = random.Random(5)
    refused = 0
    async with httpx.AsyncClient(verify=TLS) as http:
        providers = []
        for _ in range(3):
            store = shared_store(replicas())
            window = SharedWindow(store, credential_of(config)) if shared else None
            providers.append(FastRepute(config, http, shared=window))

        async def caller(provider: FastRepute, delay: float) -> None:
            nonlocal refused
            await asyncio.sleep(delay)
            try:
                await provider.limits()
            except RateLimited as exc:
                assert exc.status is None and exc.pacing == (CALLS, PERIOD)  # held back here
                refused += 1

        for _ in range(2):
            await asyncio.gather(
                *(caller(p, rng.uniform(0, PERIOD)) for p in providers for _ in range(4))
            )
    sent = arrivals(repute.emulator)
    assert len(sent) + refused == 24
    if shared:
        assert most_in_a_window(sent, PERIOD) <= CALLS
        assert len(sent) > 2 * CALLS  # slots freed as earlier calls left the window, and were used
    else:
        assert most_in_a_window(sent, PERIOD) > CALLS


async def test_alone_the_vendor_sees_no_more_than_the_rate_though_first_calls_connect(
    emulators,
) -> None:
    """One replica alone, 16 calls at once on cold connections: the first calls reach the
    vendor later than their send (a connection to open first) while later ones on kept-alive
    connections do not; counted until their answers are in, no 0.5 s of the vendor's clock
    sees more than 4. (Counting send moments alone, the vendor saw 5 to 7.)"""
    repute = emulators["reputeapi"]
    async with httpx.AsyncClient(verify=TLS) as http:
        provider = FastRepute(account(repute.url), http)
        burst = await asyncio.gather(
            *(provider.limits() for _ in range(4 * CALLS)), return_exceptions=True
        )
    assert sum(1 for r in burst if isinstance(r, RateLimited)) == CALLS
    sent = arrivals(repute.emulator)
    assert len(sent) == 3 * CALLS and most_in_a_window(sent, PERIOD) <= CALLS


async def test_a_call_keeps_its_slot_until_its_answer_is_in_and_a_period_after(replicas) -> None:
    """A call admitted but not settled may still reach the vendor: it stays in the window
    (however long ago it was admitted) until it settles, and leaves one period after that."""
    window = SharedWindow(shared_store(replicas()), "credential")
    first = await window.turn(calls=1, period=0.2, flight=30)
    assert first is not None and first.ticket is not None
    await asyncio.sleep(0.3)  # more than a period since it was admitted: still in flight
    full = await window.turn(calls=1, period=0.2, flight=30)
    assert full is not None and full.ticket is None and full.wait == pytest.approx(0.2)
    await window.settle(first.ticket)
    settled = await window.turn(calls=1, period=0.2, flight=30)
    assert settled is not None and settled.ticket is None and 0 < settled.wait <= 0.2
    await asyncio.sleep(settled.wait)
    later = await window.turn(calls=1, period=0.2, flight=30)
    assert later is not None and later.ticket is not None


async def test_the_window_and_the_hold_are_keyed_by_a_fingerprint_never_the_credential(
    emulators, replicas, redis_server
) -> None:
    repute = emulators["reputeapi"]
    config = account(repute.url)
    async with httpx.AsyncClient(verify=TLS) as http:
        window = SharedWindow(shared_store(replicas()), credential_of(config))
        await FastRepute(config, http, shared=window).limits()
        await window.hold(utc_now() + timedelta(seconds=30))
    client = redis_server.client()
    try:
        stored = {key: client.dump(key) for key in client.keys("*")}
    finally:
        client.close()
    assert len(stored) == 2
    assert all(b"ra_live_premium_demo" not in key + value for key, value in stored.items())


# -- holds ---------------------------------------------------------------------------------------


async def test_a_hold_heard_by_one_replica_holds_the_others_until_that_moment(
    emulators, replicas
) -> None:
    repute = emulators["reputeapi"]
    config = account(repute.url)
    async with httpx.AsyncClient(verify=TLS) as http:
        heard, other = (
            ReputeApiProvider(
                config, http, shared=SharedWindow(shared_store(replicas()), credential_of(config))
            )
            for _ in range(2)
        )
        repute.emulator.set_fault(Fault(status=429, retry_after=1, times=1))
        with pytest.raises(RateLimited) as limited:
            await heard.limits()
        with pytest.raises(RateLimited) as held:
            await other.limits()
        assert held.value.status is None  # held back by the gateway: the vendor was not asked
        assert held.value.retry_at == limited.value.retry_at
        assert repute.emulator.total_calls() == 1
        assert limited.value.retry_at is not None
        await asyncio.sleep((limited.value.retry_at - utc_now()).total_seconds() + 0.05)
        await other.limits()  # the moment has passed: called again
    assert repute.emulator.total_calls() == 2


# -- circuits ------------------------------------------------------------------------------------


COOLDOWN = 1.0


def upstreams(replicas, count: int = 3, cooldown: float = COOLDOWN) -> list[Upstream]:
    made = []
    for _ in range(count):
        cache = replicas()
        circuits = SharedCircuits(
            shared_store(cache),
            threshold=BREAKER_THRESHOLD,
            cooldown=cooldown,
            max_cooldown=8 * cooldown,
            lease=10,
        )
        made.append(Upstream(cache, utc_now, circuits=circuits))
    return made


class Reader:
    """Reads of one account through an ``Upstream``, each of a resource of its own."""

    def __init__(self, provider: ReputeApiProvider) -> None:
        self.provider = provider
        self.reads = 0

    async def __call__(self, upstream: Upstream) -> Any:
        self.reads += 1
        fetched = await upstream.fetch(
            "repute", "fp-repute", "ReputeAPI", "limits", (self.reads,),
            self.provider.limits, ttl=0, max_stale=0,
        )  # fmt: skip
        return fetched.status


async def test_failures_count_across_replicas_and_the_open_circuit_holds_them_all(
    emulators, replicas
) -> None:
    """Failures are shared: two on one replica, two on another and one on the third are five
    in a row, and open the circuit for all three until one moment; nothing is sent meanwhile."""
    repute = emulators["reputeapi"]
    a, b, c = upstreams(replicas)
    async with httpx.AsyncClient(verify=TLS) as http:
        read = Reader(ReputeApiProvider(account(repute.url), http))
        repute.emulator.set_fault(Fault(status=503))
        for upstream in (a, a, b, b, c):
            assert (await read(upstream)).cause.name == "VENDOR_ERROR"
        sent = repute.emulator.total_calls()
        assert sent == BREAKER_THRESHOLD * (1 + RETRIES)
        paused = [await read(upstream) for upstream in (a, b, c)]
    assert {(s.cause.name, s.retry_at) for s in paused} == {("CIRCUIT_OPEN", paused[0].retry_at)}
    assert paused[0].retry_at > utc_now()
    assert repute.emulator.total_calls() == sent


async def test_one_replica_alone_sends_the_probe_and_a_failed_probe_opens_it_for_longer(
    emulators, replicas
) -> None:
    repute = emulators["reputeapi"]
    a, b, c = upstreams(replicas)
    async with httpx.AsyncClient(verify=TLS) as http:
        read = Reader(ReputeApiProvider(account(repute.url), http))
        repute.emulator.set_fault(Fault(status=503))
        for _ in range(BREAKER_THRESHOLD):
            await read(a)
        opened = await read(b)
        assert opened.cause.name == "CIRCUIT_OPEN"
        await asyncio.sleep((opened.retry_at - utc_now()).total_seconds() + 0.05)

        repute.emulator.set_fault(Fault(status=503, delay_ms=300))  # a slow, failing probe
        sent = repute.emulator.total_calls()
        statuses = await asyncio.gather(*(read(u) for u in (a, b, c) for _ in range(3)))
        causes = sorted(s.cause.name for s in statuses)
        assert causes == ["CIRCUIT_OPEN"] * 8 + ["VENDOR_ERROR"]
        assert repute.emulator.total_calls() == sent + 1 + RETRIES  # one probe, tried 3 times
        reopened = await read(c)
        assert reopened.cause.name == "CIRCUIT_OPEN"
        assert reopened.retry_at - utc_now() > timedelta(seconds=COOLDOWN)  # twice as long

        repute.emulator.set_fault(Fault(delay_ms=300))  # healthy again: the next probe closes it
        await asyncio.sleep((reopened.retry_at - utc_now()).total_seconds() + 0.05)
        sent = repute.emulator.total_calls()
        statuses = await asyncio.gather(*(read(u) for u in (a, b, c) for _ in range(3)))
        assert sorted(s.state.name for s in statuses) == ["FRESH"] + ["UNAVAILABLE"] * 8
        assert repute.emulator.total_calls() == sent + 1
        repute.emulator.set_fault(None)
        closed = await asyncio.gather(*(read(u) for u in (a, b, c)))
    assert [s.state.name for s in closed] == ["FRESH"] * 3


@pytest.mark.parametrize(
    ("key", "cause"),
    [("ra_live_not_a_key", "CREDENTIALS_REJECTED"), ("ra_live_premium_demo", "REQUEST_REJECTED")],
)
async def test_rejected_keys_and_config_errors_never_open_the_shared_circuit(
    emulators, replicas, key, cause
) -> None:
    repute = emulators["reputeapi"]
    if cause == "REQUEST_REJECTED":
        repute.emulator.set_fault(Fault(status=400))
    a, b, c = upstreams(replicas)
    async with httpx.AsyncClient(verify=TLS) as http:
        read = Reader(ReputeApiProvider(account(repute.url, key=key), http))
        for n in range(1, 2 * BREAKER_THRESHOLD + 2):
            assert (await read((a, b, c)[n % 3])).cause.name == cause
            assert repute.emulator.total_calls() == n  # every read reaches the vendor


# -- Redis down ----------------------------------------------------------------------------------


async def test_with_redis_down_each_replica_paces_holds_and_breaks_alone_then_rejoins(
    emulators, replicas, redis_server, caplog
) -> None:
    """Redis killed: reads go on, paced by the replica's own window (4 per 0.5 s: of 16 at
    once, the 4 whose slots are more than a second away are refused), held by its own hold
    and broken by its own breaker; one warning for the outage. Redis back (empty): the shared
    window is used again (its key reappears) once the cooldown has passed."""
    repute = emulators["reputeapi"]
    config = account(repute.url)
    cache = replicas(redis_cooldown=0.2)
    store = shared_store(cache)
    async with httpx.AsyncClient(verify=TLS) as http:
        paced = FastRepute(config, http, shared=SharedWindow(store, credential_of(config)))
        provider = ReputeApiProvider(config, http, shared=SharedWindow(store, "other"))
        upstream = Upstream(
            cache,
            utc_now,
            circuits=SharedCircuits(
                store, threshold=BREAKER_THRESHOLD, cooldown=30, max_cooldown=60, lease=10
            ),
        )
        read = Reader(provider)
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="gateway.cache"):
            burst = await asyncio.gather(
                *(paced.limits() for _ in range(4 * CALLS)), return_exceptions=True
            )
            refused = [r for r in burst if isinstance(r, RateLimited)]
            assert [r.pacing for r in refused] == [(CALLS, PERIOD)] * CALLS  # slots > 1 s away
            assert repute.emulator.total_calls() == 3 * CALLS
            assert most_in_a_window(arrivals(repute.emulator), PERIOD) <= CALLS
            repute.emulator.reset()
            repute.emulator.set_fault(Fault(status=429, retry_after=30, times=1))
            lone = ReputeApiProvider(config, http, shared=SharedWindow(store, "lone"))
            with pytest.raises(RateLimited) as limited:
                await lone.limits()
            with pytest.raises(RateLimited) as held:
                await lone.limits()
            assert (limited.value.status, held.value.status) == (429, None)  # its own hold
            repute.emulator.reset()
            repute.emulator.set_fault(Fault(status=503))
            statuses = [await read(upstream) for _ in range(BREAKER_THRESHOLD + 1)]
        assert statuses[-1].cause.name == "CIRCUIT_OPEN"  # this replica's own breaker
        assert repute.emulator.total_calls() == BREAKER_THRESHOLD * (1 + RETRIES)
        outage = [r for r in caplog.records if r.name == "gateway.cache"]
        assert len(outage) == 1 and store.failures + store.skipped > 20

        redis_server.start()
        await asyncio.sleep(0.25)  # the cooldown: the next operation probes Redis
        repute.emulator.reset()
        await paced.limits()
    client = redis_server.client()
    try:
        assert client.keys("ug2:pace:*") != []  # the shared window is used again
    finally:
        client.close()
    assert cache.health is not None and cache.health.down_since is None
