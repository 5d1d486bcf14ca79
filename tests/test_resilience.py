"""Caching, coalescing, stale answers, retries, the circuit breaker and outbound pacing.

Each gateway here runs on its own movable clock; the emulators keep the suite's fixed clock, so
their data stays put while the gateway's time moves past TTLs, cooldowns and retry times.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import httpx
import pytest

from gateway.app import create_app
from gateway.cache import Cache
from gateway.domain import AccountConfig, FailureCause, ProviderId, Secret, SourceStatus
from gateway.errors import RateLimited, RequestRejected
from gateway.response_cache import ResponseCache
from gateway.upstream import BREAKER_COOLDOWN, BREAKER_THRESHOLD, LAST_ERRORS, Upstream
from providers.base import MAX_PACING_WAIT, RETRIES, OutboundLimiter
from providers.emulation import Fault
from providers.reputeapi.client import ReputeApiProvider
from tests.conftest import NO_CACHE, NOW, TLS, Gateway, account_entry, settings_for

QUERY = """{ accounts { source { state fetchedAt message retryAt cause vendor httpStatus }
                        quotas { used } } }"""


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def gateway_at() -> AsyncIterator[Callable[..., tuple[Gateway, Clock]]]:
    """Gateways on their own movable clocks (starting at the suite's NOW)."""
    clients: list[httpx.AsyncClient] = []
    apps = []

    def build(*accounts, cache=None, client_timeout=None, **gateway) -> tuple[Gateway, Clock]:
        clock = Clock(NOW)
        timeout = {} if client_timeout is None else {"timeout": client_timeout}
        http = httpx.AsyncClient(verify=TLS, **timeout)
        cache = {"response_ttl": 0, **(cache or {})}  # these tests look below whole answers
        settings = settings_for(*accounts, cache=cache, **gateway)
        app = create_app(settings, http_client=http, clock=clock)
        built = Gateway(app)
        clients.extend([http, built.client])
        apps.append(app)
        return built, clock

    yield build
    for app in apps:
        await app.state.service.upstream.close()
    for client in clients:
        await client.aclose()


def upstream_of(gateway: Gateway) -> Upstream:
    upstream: Upstream = gateway.app.state.service.upstream
    return upstream


async def source_of(gateway: Gateway) -> dict:
    (account,) = (await gateway.data(QUERY))["accounts"]
    return account


@pytest.fixture
def repute(emulators):
    return emulators["reputeapi"]


def calls(emulator) -> int:
    return emulator.total_calls()


# -- caching ---------------------------------------------------------------------------------


async def test_answers_are_cached_for_their_ttl(repute, gateway_at) -> None:
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache={"limits_ttl": 60})
    first = await source_of(gateway)
    assert first["source"] == {
        "state": "FRESH",
        "fetchedAt": z(NOW),
        "message": None,
        "retryAt": None,
        "cause": None,
        "vendor": None,
        "httpStatus": None,
    }
    clock.advance(59)
    again = await source_of(gateway)
    assert again == first  # same data, and it says how old it is
    assert calls(repute.emulator) == 1


async def test_past_its_ttl_an_answer_is_served_stale_and_refreshed(repute, gateway_at) -> None:
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache={"limits_ttl": 60})
    first = await source_of(gateway)
    clock.advance(61)
    stale = await source_of(gateway)
    assert stale["source"]["state"] == "STALE"
    assert stale["source"]["fetchedAt"] == z(NOW)
    assert stale["quotas"] == first["quotas"]
    await upstream_of(gateway).settle()  # the background refresh
    assert calls(repute.emulator) == 2
    fresh = await source_of(gateway)
    assert fresh["source"]["state"] == "FRESH"
    assert fresh["source"]["fetchedAt"] == z(NOW + timedelta(seconds=61))
    assert calls(repute.emulator) == 2


async def test_when_the_vendor_fails_the_last_good_answer_is_served(repute, gateway_at) -> None:
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache={"limits_ttl": 60})
    first = await source_of(gateway)
    repute.emulator.set_fault(Fault(status=503))
    clock.advance(120)
    await source_of(gateway)  # stale, and starts a refresh that fails
    await upstream_of(gateway).settle()
    assert calls(repute.emulator) == 1 + 1 + RETRIES
    later = await source_of(gateway)
    assert later["quotas"] == first["quotas"]
    source = later["source"]
    assert (source["state"], source["fetchedAt"]) == ("STALE", z(NOW))
    assert (source["cause"], source["vendor"], source["httpStatus"]) == (
        "VENDOR_ERROR",
        "ReputeAPI",
        503,
    )
    assert "the last refresh failed" in source["message"]


async def test_past_max_stale_nothing_is_served(repute, gateway_at) -> None:
    cache = {"limits_ttl": 60, "max_stale": 600}
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache=cache)
    await source_of(gateway)
    repute.emulator.set_fault(Fault(status=503))
    clock.advance(661)
    gone = await source_of(gateway)
    assert gone["source"]["state"] == "UNAVAILABLE" and gone["quotas"] == []


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault(status=503, times=1 + RETRIES), "UNAVAILABLE"),
        (Fault(status=429, times=1), "RATE_LIMITED"),
        (Fault(status=401, times=1), "AUTH_FAILED"),
    ],
)
async def test_failures_are_never_cached_as_data(repute, gateway_at, fault, state) -> None:
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url))
    repute.emulator.set_fault(fault)
    failed = await source_of(gateway)
    assert failed["source"]["state"] == state and failed["quotas"] == []
    clock.advance(31)  # past the 429's Retry-After (30 s)
    ok = await source_of(gateway)
    assert ok["source"]["state"] == "FRESH" and ok["quotas"]


async def test_usage_of_past_days_keeps_longer_than_today(repute, gateway_at) -> None:
    cache = {"usage_ttl": 60, "history_ttl": 3600}
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache=cache)
    query = """{ accounts { a: usage(from: "2026-03-01", to: "2026-03-10") { requests }
                             b: usage(from: "2026-03-11", to: "2026-03-18") { requests } } }"""
    await gateway.data(query)
    clock.advance(600)
    await gateway.data(query)
    await upstream_of(gateway).settle()
    served = [r.param("end_date") for r in repute.emulator.served]
    assert sorted(served) == ["2026-03-10", "2026-03-18", "2026-03-18"]  # only today's again


# -- coalescing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "upstream"),
    [(None, 1), (Fault(delay_ms=300), 1), (Fault(status=503), 1 + RETRIES)],
    ids=["healthy", "slow", "failing"],
)
async def test_100_identical_cold_queries_make_one_upstream_call(
    repute, gateway_at, fault, upstream
) -> None:
    repute.emulator.set_fault(fault)
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url))
    query = (
        '{ accounts { quotas { used } usage(from: "2026-03-01", to: "2026-03-18") { requests } } }'
    )
    answers = await asyncio.gather(*(gateway.data(query) for _ in range(100)))
    assert all(answer == answers[0] for answer in answers)
    # two distinct vendor resources (limits, usage); a failing call is one call with retries
    assert calls(repute.emulator) == 2 * upstream


# -- rate limits, retries, breaker ---------------------------------------------------------------


async def test_no_call_before_the_vendors_retry_time(repute, gateway_at) -> None:
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache=NO_CACHE)
    repute.emulator.set_fault(Fault(status=429, retry_after=45))
    limited = await source_of(gateway)
    retry_at = z(NOW + timedelta(seconds=45))
    assert limited["source"]["state"] == "RATE_LIMITED"
    assert limited["source"]["retryAt"] == retry_at
    repute.emulator.set_fault(None)
    clock.advance(44)
    held = await source_of(gateway)
    assert held["source"]["state"] == "RATE_LIMITED" and held["source"]["retryAt"] == retry_at
    assert calls(repute.emulator) == 1
    clock.advance(2)
    assert (await source_of(gateway))["source"]["state"] == "FRESH"
    assert calls(repute.emulator) == 2


@pytest.mark.parametrize("fault", [Fault(status=502, times=1), Fault(drop=True, times=2)])
async def test_connection_failures_and_5xx_are_retried(repute, gateway_at, fault) -> None:
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url))
    repute.emulator.set_fault(fault)
    answer = await source_of(gateway)
    assert answer["source"]["state"] == "FRESH"
    assert calls(repute.emulator) == 1 + (fault.times or 0)


@pytest.mark.parametrize("fault", [Fault(status=400), Fault(status=401), Fault(delay_ms=1500)])
async def test_other_failures_are_not_retried(repute, gateway_at, fault) -> None:
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url), upstream_timeout=0.5)
    repute.emulator.set_fault(fault)
    answer = await source_of(gateway)
    assert answer["source"]["state"] != "FRESH"
    assert calls(repute.emulator) == 1


async def test_the_circuit_opens_after_repeated_failures_and_probes_later(repute, gateway_at):
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url), cache=NO_CACHE)
    repute.emulator.set_fault(Fault(status=503))
    for _ in range(BREAKER_THRESHOLD):
        assert (await source_of(gateway))["source"]["state"] == "UNAVAILABLE"
    sent = calls(repute.emulator)
    assert sent == BREAKER_THRESHOLD * (1 + RETRIES)
    paused = (await source_of(gateway))["source"]
    reopen = NOW + timedelta(seconds=BREAKER_COOLDOWN)
    assert (paused["state"], paused["cause"], paused["vendor"]) == (
        "UNAVAILABLE",
        "CIRCUIT_OPEN",
        "ReputeAPI",
    )
    assert paused["retryAt"] == z(reopen)
    assert calls(repute.emulator) == sent  # nothing was sent while open

    clock.advance(BREAKER_COOLDOWN)  # one probe, which fails: open again, twice as long
    assert (await source_of(gateway))["source"]["state"] == "UNAVAILABLE"
    assert calls(repute.emulator) == sent + 1 + RETRIES
    again = (await source_of(gateway))["source"]
    assert again["cause"] == "CIRCUIT_OPEN"
    assert again["retryAt"] == z(clock.now + timedelta(seconds=2 * BREAKER_COOLDOWN))

    repute.emulator.set_fault(None)
    clock.advance(2 * BREAKER_COOLDOWN)  # the next probe succeeds and closes the circuit
    assert (await source_of(gateway))["source"]["state"] == "FRESH"
    assert (await source_of(gateway))["source"]["state"] == "FRESH"


async def test_callers_turned_away_during_a_probe_let_no_second_probe_through(repute) -> None:
    """While the one probe is under way, other reads of the account (other resources, so no
    coalescing) are answered CIRCUIT_OPEN, and being turned away frees no probe for the next."""
    clock = Clock(NOW)
    upstream = Upstream(Cache(), clock)
    async with httpx.AsyncClient(verify=TLS) as http:
        provider = ReputeApiProvider(
            AccountConfig(
                "r", ProviderId("reputeapi"), "R", repute.url, {},
                {"api_key": Secret("ra_live_premium_demo")},
            ),
            http,
            clock=clock,
        )  # fmt: skip
        reads = iter(range(100))

        async def read() -> SourceStatus:
            fetched = await upstream.fetch(
                "r", "fp", "ReputeAPI", "limits", (next(reads),), provider.limits, 0, 0
            )
            return fetched.status

        repute.emulator.set_fault(Fault(status=503))
        for _ in range(BREAKER_THRESHOLD):
            await read()
        clock.advance(BREAKER_COOLDOWN)
        sent = calls(repute.emulator)
        repute.emulator.set_fault(Fault(delay_ms=300))  # a slow probe that will succeed
        probe = asyncio.ensure_future(read())
        await asyncio.sleep(0.1)  # the probe is under way
        turned_away = [await read() for _ in range(3)]
        assert [s.cause for s in turned_away] == [FailureCause.CIRCUIT_OPEN] * 3
        assert (await probe).state.name == "FRESH"
    assert calls(repute.emulator) == sent + 1
    await upstream.close()


async def test_one_accounts_open_circuit_leaves_the_others_alone(repute, twins, gateway_at):
    broken = account_entry("reputeapi", repute.url, id="broken")
    healthy = account_entry("reputeapi", twins["reputeapi"].url, id="healthy")
    gateway, _ = gateway_at(broken, healthy, cache=NO_CACHE)
    repute.emulator.set_fault(Fault(status=503))
    for _ in range(BREAKER_THRESHOLD + 1):
        data = await gateway.data("{ accounts { id source { state } } }")
    states = {a["id"]: a["source"]["state"] for a in data["accounts"]}
    assert states == {"broken": "UNAVAILABLE", "healthy": "FRESH"}


@pytest.mark.parametrize(
    ("options", "status", "words"),
    [
        ({"group": "no-such-group"}, 404, 'Group "no-such-group" not found'),
        (  # a key that is no administrator of the group: config, not credentials
            {"api_key": "vt_demo_analyst_key"},
            403,
            "You are not authorized to perform the requested operation",
        ),
    ],
    ids=["unknown-group", "not-an-administrator"],
)
async def test_a_config_the_vendor_refuses_never_opens_the_circuit(
    emulators, gateway_at, options, status, words
):
    vt = emulators["virustotal"]
    gateway, _ = gateway_at(account_entry("virustotal", vt.url, **options), cache=NO_CACHE)
    per_query = 0
    for n in range(1, 2 * BREAKER_THRESHOLD + 2):
        source = (await source_of(gateway))["source"]
        per_query = per_query or calls(vt.emulator)
        assert calls(vt.emulator) == n * per_query  # every call reaches the vendor
        assert (source["state"], source["cause"], source["vendor"], source["httpStatus"]) == (
            "UNAVAILABLE",
            "REQUEST_REJECTED",
            "VirusTotal",
            status,
        )
        assert words in source["message"]  # the vendor's own words, every time


@pytest.mark.parametrize("malformed", ["json", "shape"])
async def test_unreadable_answers_never_open_the_circuit(repute, gateway_at, malformed):
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url), cache=NO_CACHE)
    repute.emulator.set_fault(Fault(malformed=malformed))
    for n in range(1, 2 * BREAKER_THRESHOLD + 2):
        source = (await source_of(gateway))["source"]
        assert (source["cause"], source["vendor"]) == ("MALFORMED", "ReputeAPI")
        assert calls(repute.emulator) == n


@pytest.mark.parametrize(
    ("fault", "deadline", "cause"),
    [
        (Fault(status=500), 10, "VENDOR_ERROR"),
        (Fault(drop=True), 10, "CONNECTION"),
        (Fault(delay_ms=600), 0.2, "TIMEOUT"),
    ],
    ids=["5xx", "dropped", "slow"],
)
async def test_an_unwell_vendor_opens_the_circuit(repute, gateway_at, fault, deadline, cause):
    gateway, _ = gateway_at(
        account_entry("reputeapi", repute.url), cache=NO_CACHE, upstream_timeout=deadline
    )
    repute.emulator.set_fault(fault)
    for _ in range(BREAKER_THRESHOLD):
        assert (await source_of(gateway))["source"]["cause"] == cause
    sent = calls(repute.emulator)
    paused = (await source_of(gateway))["source"]
    assert (paused["state"], paused["cause"]) == ("UNAVAILABLE", "CIRCUIT_OPEN")
    assert calls(repute.emulator) == sent


async def test_the_last_failures_remembered_are_bounded() -> None:
    upstream = Upstream(Cache(), clock=lambda: NOW)

    async def refused() -> None:  # a vendor refusing every range (no breaker: every call runs)
        raise RequestRejected("Vendor", status=404, detail="no such range")

    async def read(day: int) -> SourceStatus:
        fetched = await upstream.fetch("a", "fp", "Vendor", "usage", (day,), refused, 60, 600)
        return fetched.status

    try:
        for day in range(LAST_ERRORS + 100):  # each a distinct key, as distinct date ranges are
            assert (await read(day)).cause is FailureCause.REQUEST_REJECTED
        assert len(upstream.last_error) == LAST_ERRORS
    finally:
        await upstream.close()


# -- outbound pacing ---------------------------------------------------------------------------


class Monotonic:
    """Seconds that flow with real time and that a test can also move ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


REPUTE = AccountConfig(
    "r", ProviderId("reputeapi"), "R", "http://vendor.test", {}, {"api_key": Secret("k")}
)


def counting_vendor(sent: list[float], clock: Callable[[], float]) -> httpx.MockTransport:
    """A vendor that sends no rate headers and notes when each call arrives."""

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(clock())
        body = {
            "quota": {"monthly_limit": 10, "used": 1},
            "rate_limits": {"requests_per_minute": 60},
        }
        return httpx.Response(200, json=body)

    return httpx.MockTransport(vendor)


def most_in_a_window(times: list[float], period: float) -> int:
    """The most calls in any window of ``period`` seconds (a window is half-open: (t-p, t])."""
    ordered = sorted(times)
    return max(
        (sum(1 for u in ordered[: i + 1] if u > t - period) for i, t in enumerate(ordered)),
        default=0,
    )


def test_the_outbound_limiter_hands_out_slots_of_a_sliding_window() -> None:
    now = [100.0]
    limiter = OutboundLimiter(3, 60, clock=lambda: now[0])
    assert [limiter.reserve(max_wait=120) for _ in range(7)] == [0, 0, 0, 60, 60, 60, 120]
    assert limiter.reserve(max_wait=119) is None  # the next slot is 120 s away: refused...
    assert limiter.next_slot() == 120  # ...and not reserved
    now[0] += 61  # the first three slots have left the window; slots are handed out in order
    assert limiter.next_slot() == 220 - 161


def test_the_outbound_limiter_follows_the_limit_the_vendor_announces() -> None:
    limiter = OutboundLimiter(3, 60, clock=lambda: 100.0)
    assert [limiter.reserve(max_wait=1) for _ in range(4)] == [0, 0, 0, None]
    limiter.resize(4)
    assert limiter.reserve(max_wait=1) == 0


async def test_the_gateway_keeps_under_reputeapis_30_calls_a_minute() -> None:
    sent: list[float] = []
    async with httpx.AsyncClient(transport=counting_vendor(sent, time.monotonic)) as http:
        provider = ReputeApiProvider(REPUTE, http, clock=lambda: NOW)
        for _ in range(30):
            await provider.limits()
        with pytest.raises(RateLimited) as caught:
            await provider.limits()
    assert len(sent) == 30
    error = caught.value
    assert (error.vendor, error.pacing, error.status) == ("ReputeAPI", (30, 60), None)
    assert error.retry_at is not None
    assert NOW + timedelta(seconds=59) < error.retry_at <= NOW + timedelta(seconds=60)


async def test_callers_waiting_for_one_free_slot_share_it() -> None:
    """30 calls fill ReputeAPI's minute; the oldest leaves the window 0.4 s from now. Ten
    concurrent callers: one takes that slot, nine are refused with the next slot's time."""
    monotonic = Monotonic()
    sent: list[float] = []
    async with httpx.AsyncClient(transport=counting_vendor(sent, monotonic)) as http:
        provider = ReputeApiProvider(REPUTE, http, clock=lambda: NOW, monotonic=monotonic)
        await provider.limits()
        monotonic.advance(1)
        for _ in range(29):
            await provider.limits()
        monotonic.advance(58.6)
        results = await asyncio.gather(
            *(provider.limits() for _ in range(10)), return_exceptions=True
        )
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 9 and len(sent) == 31
    assert most_in_a_window(sent, 60) == 30
    for error in refused:  # the next slot: when the 29 calls of second 1 leave the window
        assert error.retry_at is not None
        assert NOW + timedelta(seconds=1.3) < error.retry_at <= NOW + timedelta(seconds=1.4)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_callers_never_exceed_the_rate_in_any_window(seed) -> None:
    """Rounds of 30 callers arriving at random within one window, against 4 calls per 0.3 s,
    through the limiter's ``acquire`` as every provider call takes it. The moments it lets
    calls go never hold more than 4 in any window; a late wake-up only delays the next."""
    calls, period = 4, 0.3
    limiter = OutboundLimiter(calls, period)
    rng = random.Random(seed)
    sent: list[float] = []
    refused = 0

    async def caller(delay: float) -> None:
        nonlocal refused
        await asyncio.sleep(delay)
        moment = await limiter.acquire(MAX_PACING_WAIT)
        if moment is None:
            refused += 1
        else:
            sent.append(moment)

    for _ in range(3):
        await asyncio.gather(*(caller(rng.uniform(0, period)) for _ in range(30)))
    assert most_in_a_window(sent, period) <= calls
    assert len(sent) + refused == 90
    assert refused > 0 and len(sent) > 3 * calls  # the limit was reached, and honoured


# -- the deadline --------------------------------------------------------------------------------


async def test_the_configured_deadline_overrides_the_clients_own_timeout(repute, gateway_at):
    gateway, _ = gateway_at(
        account_entry("reputeapi", repute.url), client_timeout=0.2, upstream_timeout=1.5
    )
    repute.emulator.set_fault(Fault(delay_ms=600))
    source = (await source_of(gateway))["source"]
    assert (source["state"], source["cause"]) == ("FRESH", None)


async def test_a_vendor_slower_than_the_deadline_timed_out(repute, gateway_at):
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url), upstream_timeout=0.3)
    repute.emulator.set_fault(Fault(delay_ms=600))
    source = (await source_of(gateway))["source"]
    assert (source["state"], source["cause"], source["vendor"], source["httpStatus"]) == (
        "UNAVAILABLE",
        "TIMEOUT",
        "ReputeAPI",
        None,
    )
    assert calls(repute.emulator) == 1


# -- whole answers -------------------------------------------------------------------------------


async def test_a_repeated_document_is_answered_from_the_answer_cache_for_response_ttl_at_most(
    repute, gateway_at
):
    """The data hold for a minute; ``response_ttl`` caps a kept answer at 2 seconds: past
    that it is executed again (from the data cache), however long its data hold."""
    gateway, clock = gateway_at(
        account_entry("reputeapi", repute.url),
        cache={"response_ttl": 2, "limits_ttl": 60, "max_stale": 0},
    )
    stats = gateway.app.state.answers.stats
    first = await gateway.post(QUERY)
    repute.emulator.set_fault(Fault(status=503))  # would show if the vendor were asked
    clock.advance(1.9)
    again = await gateway.post(QUERY)
    assert again.content == first.content
    assert (stats.hits, stats.executions, calls(repute.emulator)) == (1, 1, 1)
    other = await gateway.post(QUERY + " ")  # another document is executed (from the data)
    assert other.json() == first.json()
    assert (stats.hits, stats.executions) == (1, 2)
    clock.advance(0.1)  # 2 s after it was kept: executed again
    later = await gateway.post(QUERY)
    assert later.content == first.content
    assert (stats.hits, stats.executions, calls(repute.emulator)) == (1, 3, 1)


async def test_only_200_answers_are_reused() -> None:
    answers = [(500, b"first"), (200, b"second"), (200, b"third")]
    served: list[bytes] = []

    async def app(scope, receive, send) -> None:  # an app that answers differently each time
        await receive()
        status, body = answers[len(served)]
        served.append(body)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    cache = ResponseCache(app, ttl=5, clock=lambda: NOW)

    async def post(body: bytes) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": []}
        await cache(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]

    assert await post(b"{}") == (500, b"first")
    assert await post(b"{}") == (200, b"second")  # the 500 was not kept
    assert await post(b"{}") == (200, b"second")  # the 200 was
    assert await post(b"{ }") == (200, b"third")  # another body is another answer
    assert served == [b"first", b"second", b"third"]
