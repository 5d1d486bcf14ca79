"""The lease protocol of :class:`gateway.shared_flights.SharedFlights` on a real redis-server.

Each "gateway" here is a :class:`~gateway.cache.Cache` and a ``SharedFlights`` of its own (its
own memory and connections) on one Redis; what a lease holder does is the ``lead`` it is given
(count the call, store an answer), so each test says exactly how long a call takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from hashlib import sha1
from typing import Any

import pytest
import redis

from gateway.app import create_app
from gateway.cache import Cache, Cached, cache_key
from gateway.domain import FailureCause, Limits, SourceState, SourceStatus, utc_now
from gateway.errors import SharedFailure, UpstreamError, VendorFailed
from gateway.servers import ServerThread
from gateway.shared_flights import (
    CHANNEL,
    CLAIM,
    LEASE_MARGIN,
    RELEASE,
    RENEW,
    SharedFlights,
    decode_failure,
    done_key,
    encode_failure,
    lease_key,
)
from tests.conftest import account_entry, settings_for

KEY = cache_key("f" * 20, "limits", "")


def describe(exc: UpstreamError) -> SourceStatus:
    return SourceStatus(exc.state, None, exc.message, exc.retry_at, cause=exc.cause)


@pytest.fixture
async def gateways(redis_url: str) -> AsyncIterator[Callable[..., SharedFlights]]:
    """Build gateways (a cache and its shared flights) on the test's Redis; closed after."""
    built: list[SharedFlights] = []

    def build(call_timeout: float = 1.0, **options: Any) -> SharedFlights:
        flights = SharedFlights(Cache(redis_url), call_timeout, **options)
        built.append(flights)
        return flights

    yield build
    for flights in built:
        await flights.close()
        await flights.cache.close()


def leader(
    flights: SharedFlights, plan: str, seconds: float, calls: list[str]
) -> Callable[[], Awaitable[Cached[Any]]]:
    """A lead that takes ``seconds``, then stores ``Limits(plan=plan)`` in the shared cache."""

    async def lead() -> Cached[Any]:
        calls.append(plan)
        await asyncio.sleep(seconds)
        entry = Cached(Limits(plan=plan), utc_now())
        await flights.cache.set(KEY, entry, 60)
        return entry

    return lead


async def test_a_call_outliving_its_lease_keeps_it(gateways, redis_url) -> None:
    """The holder's call takes longer than a lease (renewed while it runs): the other gateway
    waits for its answer instead of taking the lease over and calling."""
    first, second = gateways(1.0), gateways(1.0)
    assert first.lease == 1.0 + LEASE_MARGIN
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)
    holder = asyncio.ensure_future(
        first.run(KEY, since, leader(first, "first", first.lease * 1.3, calls), describe, "V")
    )
    await until(lambda: calls == ["first"])
    joined = await second.run(KEY, since, leader(second, "second", 0, calls), describe, "V")
    assert joined.value == Limits(plan="first")
    assert (await holder).value == Limits(plan="first")
    assert calls == ["first"]
    assert (first.stats.called, second.stats.joined, second.stats.took_over) == (1, 1, 0)
    assert not redis.Redis.from_url(redis_url).exists(lease_key(KEY))  # given back


async def test_a_holder_that_fails_shares_its_failure(gateways) -> None:
    """The holder's call fails: the waiting gateway raises that failure, without a call."""
    first, second = gateways(), gateways()
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)

    async def failing() -> Cached[Any]:
        calls.append("first")
        await asyncio.sleep(0.3)
        raise VendorFailed("Vendor", status=503)

    holder = asyncio.ensure_future(first.run(KEY, since, failing, describe, "Vendor"))
    await until(lambda: calls == ["first"])
    with pytest.raises(SharedFailure) as shared:
        await second.run(KEY, since, leader(second, "second", 0, calls), describe, "Vendor")
    with pytest.raises(VendorFailed):
        await holder
    assert shared.value.shared.cause is FailureCause.VENDOR_ERROR
    assert shared.value.shared.http_status is None  # as ``describe`` told it
    assert shared.value.message == "Vendor failed (HTTP 503)"
    assert calls == ["first"]
    assert second.stats.joined_failure == 1


async def test_a_wait_ends_at_its_bound(gateways, redis_url) -> None:
    """A lease another gateway keeps renewing (here: one with a long expiry) is waited for
    ``max_wait`` seconds at most, then the read fails as a timeout, without a call."""
    flights = gateways(0.2)
    redis.Redis.from_url(redis_url).set(lease_key(KEY), b"someone-else", px=60_000)
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)
    with pytest.raises(SharedFailure) as ended:
        await flights.run(KEY, since, leader(flights, "mine", 0, calls), describe, "Vendor")
    assert ended.value.shared.state is SourceState.UNAVAILABLE
    assert ended.value.shared.cause is FailureCause.TIMEOUT
    assert f"within {flights.max_wait:g} s" in ended.value.message
    assert calls == []
    assert flights.stats.timed_out == 1


async def test_waits_per_process_are_bounded(gateways, redis_url) -> None:
    """A gateway already waiting for ``max_waiting`` keys reads the next one alone."""
    flights = gateways(max_waiting=1)
    other = cache_key("f" * 20, "limits", "other")
    client = redis.Redis.from_url(redis_url)
    for key in (KEY, other):
        client.set(lease_key(key), b"someone-else", px=60_000)
    since = utc_now() - timedelta(seconds=60)
    calls: list[str] = []
    waiting = asyncio.ensure_future(
        flights.run(KEY, since, leader(flights, "first", 0, calls), describe, "V")
    )
    await asyncio.sleep(0.1)
    assert not waiting.done()
    entry = await flights.run(other, since, leader(flights, "alone", 0, calls), describe, "V")
    assert entry.value == Limits(plan="alone")
    assert calls == ["alone"]
    assert flights.stats.alone == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_a_redis_that_is_not_there_means_calling_alone(closed_port_url) -> None:
    """No Redis answers: the read is made here at once, as without Redis."""
    cache = Cache(closed_port_url.replace("http://", "redis://"))
    flights = SharedFlights(cache, 1.0)
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)
    try:
        entry = await flights.run(KEY, since, leader(flights, "alone", 0, calls), describe, "V")
    finally:
        await flights.close()
        await cache.close()
    assert entry.value == Limits(plan="alone") and calls == ["alone"]
    assert flights.stats.alone == 1 and cache.stats.redis_failures >= 1
    assert cache.health is not None and not cache.health.up


async def test_a_stored_failure_that_is_not_ours_is_ignored(gateways, redis_url) -> None:
    """Whatever else sits under ``done:<key>`` is no failure: the gateway calls."""
    flights = gateways()
    redis.Redis.from_url(redis_url).set(done_key(KEY), b'{"v": 1, "status": "nope"}', px=60_000)
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)
    entry = await flights.run(KEY, since, leader(flights, "mine", 0, calls), describe, "V")
    assert entry.value == Limits(plan="mine") and calls == ["mine"]


def test_a_shared_failure_reads_back_as_written() -> None:
    status = SourceStatus(
        SourceState.RATE_LIMITED,
        None,
        "Vendor is rate limiting (HTTP 429)",
        utc_now().replace(microsecond=0),
        cause=FailureCause.RATE_LIMITED,
        vendor="Vendor",
        http_status=429,
    )
    assert decode_failure(encode_failure(status)) == status


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_only_a_read_someone_waited_for_is_published(gateways, redis_url) -> None:
    """A read nobody waited for publishes nothing (the subscribers are not woken); one that
    another gateway waited for is published once."""
    first, second = gateways(), gateways()
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(CHANNEL)
    calls: list[str] = []
    since = utc_now() - timedelta(seconds=60)
    await first.run(KEY, since, leader(first, "alone", 0, calls), describe, "V")
    other = cache_key("f" * 20, "limits", "other")

    async def slow() -> Cached[Any]:
        calls.append("slow")
        await asyncio.sleep(0.3)
        entry = Cached(Limits(plan="slow"), utc_now())
        await first.cache.set(other, entry, 60)
        return entry

    holder = asyncio.ensure_future(first.run(other, since, slow, describe, "V"))
    await until(lambda: "slow" in calls)
    joined = await second.run(other, since, leader(second, "no", 0, calls), describe, "V")
    await holder
    assert joined.value == Limits(plan="slow") and calls == ["alone", "slow"]
    published = []
    for _ in range(5):  # the subscription's confirmation reads as None: read a few times
        message = listener.get_message(timeout=0.1)
        if message is not None:
            published.append(message["data"])
    assert published == [other.encode()]
    listener.close()


def test_a_gateway_on_redis_is_ready_to_share_before_its_first_request(
    redis_url, emulators
) -> None:
    """Once started, a gateway on Redis has its scripts loaded and its one subscription open,
    before any request (a first burst of cold reads pays neither)."""
    settings = settings_for(
        account_entry("reputeapi", emulators["reputeapi"].url), cache_url=redis_url
    )
    watch = redis.Redis.from_url(redis_url)
    with ServerThread(create_app(settings)):
        flights = [CLAIM, RENEW, RELEASE]
        assert watch.script_exists(*(sha1(s.encode()).hexdigest() for s in flights)) == [True] * 3
        deadline = time.monotonic() + 10
        while watch.pubsub_numsub(CHANNEL) != [(CHANNEL.encode(), 1)]:
            assert time.monotonic() < deadline, "no subscription"
            time.sleep(0.02)
    assert emulators["reputeapi"].emulator.total_calls() == 0
    watch.close()
