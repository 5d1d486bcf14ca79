"""ReputeAPI emulator fidelity against the vendor document, and the client's mapping.

Every expected number is recomputed from the emulator's seeded data model (``ReputeData.hour`` and
``ReputeData.day``); the answers are read over real loopback HTTP. The vendor document is
``shared/upstream/seeds/003_451ba2d6625b3901.txt``, summarised in ``shared/upstream/reputeapi.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from providers.emulation import Fault
from providers.reputeapi.emulator import (
    ENDPOINTS,
    ERROR_CODES,
    KeyInfo,
    ReputeData,
    ReputeEmulator,
    Stats,
    total,
)
from tests.conftest import NOW, TLS, Gateway, Running, account_entry, settings_for

PREMIUM = "ra_live_premium_demo"
BASIC = "ra_live_basic_demo"
ENTERPRISE = "ra_live_enterprise_demo"
REVOKED = "ra_live_revoked_demo"
ACCOUNT_ID = "repute-premium"  # the first demo account of the spec: the premium key
TODAY = NOW.date()
NEXT_MINUTE = NOW.replace(second=0, microsecond=0) + timedelta(minutes=1)
SECONDS_TO_NEXT_MINUTE = math.ceil((NEXT_MINUTE - NOW).total_seconds())
RESET_DATE = "2026-04-01T00:00:00Z"
DOC_TIERS = {"free": (1_000, 10), "basic": (10_000, 60), "premium": (50_000, 120)}
"""(requests per month, per minute) of each tier, from the vendor's documentation."""
ONE_DAY = {"start_date": "2026-03-18", "end_date": "2026-03-18"}  # a cheap, valid request
RATE_LIMIT_BODY = {
    "error": "Rate limit exceeded",
    "message": "You have exceeded your rate limit of 30 requests per minute",
    "retry_after": SECONDS_TO_NEXT_MINUTE,
}

# The seed's answer: its top-level keys and each object's documented sub-keys.
SCHEMA = {
    "account": {"api_key_id", "tier", "created_at"},
    "period": {"start_date", "end_date", "granularity"},
    "quota": {"monthly_limit", "used", "remaining", "reset_date", "percentage_used"},
    "rate_limits": {"requests_per_minute", "current_minute_usage", "next_reset"},
    "summary": {
        "total_requests",
        "successful_requests",
        "failed_requests",
        "success_rate",
        "endpoints",
        "average_response_time_ms",
        "total_domains_validated",
    },
    "daily_breakdown": {
        "date",
        "requests",
        "successful",
        "failed",
        "unique_domains",
        "average_response_time_ms",
    },
    "errors": {"by_code", "total"},
    "top_domains": {"domain", "request_count", "last_checked"},
}


# -- helpers ----------------------------------------------------------------------------------


def z(moment: datetime) -> str:
    """A moment as the vendor writes it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def days(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last`` that is not after today (later days are not listed)."""
    return [first + timedelta(days=i) for i in range((min(last, TODAY) - first).days + 1)]


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def daily(data: ReputeData, key: KeyInfo, first: date, last: date) -> list[tuple[str, Stats]]:
    return [(d.isoformat(), data.day(key, d, NOW)) for d in days(first, last)]


def grouped(
    data: ReputeData, key: KeyInfo, first: date, last: date, label: Callable[[date], date]
) -> list[tuple[str, Stats]]:
    """The in-range days summed per bucket (``label`` gives a day's bucket), in order."""
    buckets: dict[str, list[Stats]] = {}
    for d in days(first, last):
        buckets.setdefault(label(d).isoformat(), []).append(data.day(key, d, NOW))
    return [(name, total(stats)) for name, stats in buckets.items()]


def hourly(data: ReputeData, key: KeyInfo, first: datetime, count: int) -> list[tuple[str, Stats]]:
    return [(z(h), data.hour(key, h)) for h in (first + timedelta(hours=i) for i in range(count))]


def entry(label: str, stats: Stats) -> dict[str, Any]:
    """A ``daily_breakdown`` entry as the vendor document shows it."""
    return {
        "date": label,
        "requests": stats.requests,
        "successful": stats.successful,
        "failed": stats.failed,
        "unique_domains": stats.unique_domains,
        "average_response_time_ms": stats.average_ms,
    }


def per_name(names: Iterable[str], counts: Iterable[int]) -> dict[str, int]:
    return dict(zip(names, counts, strict=True))


def with_zeros(names: Iterable[str], answer: Mapping[str, int]) -> dict[str, int]:
    """``answer`` over every known name (a name the vendor leaves out counts zero)."""
    names = tuple(names)
    assert set(answer) <= set(names), answer
    return {name: answer.get(name, 0) for name in names}


def percent(part: int, whole: int) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def assert_breakdown(body: dict[str, Any], expected: list[tuple[str, Stats]]) -> None:
    """The breakdown lists exactly the expected buckets, and the summary is their sum."""
    assert body["daily_breakdown"] == [entry(label, stats) for label, stats in expected]
    period = total(stats for _, stats in expected)
    summary = body["summary"]
    assert summary["total_requests"] == period.requests
    assert summary["successful_requests"] == period.successful
    assert summary["failed_requests"] == period.failed
    assert summary["average_response_time_ms"] == period.average_ms
    assert summary["total_domains_validated"] == period.unique_domains
    assert with_zeros(ENDPOINTS, summary["endpoints"]) == per_name(ENDPOINTS, period.endpoints)
    by_code = with_zeros(ERROR_CODES, body["errors"]["by_code"])
    assert by_code == per_name(ERROR_CODES, period.failed_by_code)


def assert_flat_error(response: httpx.Response, status: int, message: str | None = None) -> str:
    """The endpoint's flat error form; returns the message."""
    reasons = {400: "Bad Request", 401: "Unauthorized"}
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "status"}
    assert body["error"] == reasons[status]
    assert body["status"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    if message is not None:
        assert body["message"] == message
    return str(body["message"])


async def get_usage(
    client: httpx.AsyncClient, params: Mapping[str, str] | None = None, key: str | None = PREMIUM
) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": key}
    return await client.get("/v1/usage", params=dict(params or {}), headers=headers)


async def usage_body(
    client: httpx.AsyncClient, params: Mapping[str, str] | None = None, key: str = PREMIUM
) -> dict[str, Any]:
    response = await get_usage(client, params, key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def repute(emulators: dict[str, Running]) -> Running:
    return emulators["reputeapi"]


@pytest.fixture
def data(repute: Running) -> ReputeData:
    assert isinstance(repute.emulator, ReputeEmulator)
    return repute.emulator.data


@pytest.fixture
def premium(data: ReputeData) -> KeyInfo:
    return data.keys[PREMIUM]


@pytest.fixture
async def client(repute: Running) -> AsyncIterator[httpx.AsyncClient]:
    # The shared TLS context spares each client loading the CA bundle (~0.1 s).
    async with httpx.AsyncClient(base_url=repute.url, verify=TLS) as http:
        yield http


# -- 1. auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "API key required"),
        ("", "API key required"),
        ("ra_live_not_a_key", "Invalid API key"),
        (REVOKED, "API key revoked"),
    ],
    ids=["missing", "blank", "unknown", "revoked"],
)
async def test_unauthorized_answers_in_the_flat_form(
    client: httpx.AsyncClient, data: ReputeData, key: str | None, message: str
) -> None:
    assert REVOKED in data.keys and data.keys[REVOKED].revoked
    response = await get_usage(client, key=key)
    assert response.json() == {"error": "Unauthorized", "message": message, "status": 401}


# -- 2. bad requests --------------------------------------------------------------------------

DATE_ERROR = "Invalid date format. Use ISO 8601 format (YYYY-MM-DD)"


@pytest.mark.parametrize("value", ["2025-13-01", "yesterday", "20250101"])
@pytest.mark.parametrize("name", ["start_date", "end_date"])
async def test_bad_date_is_a_400_with_the_documented_message(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    assert_flat_error(await get_usage(client, {name: value}), 400, DATE_ERROR)


@pytest.mark.parametrize("granularity", ["daily", "minute", "year"])
async def test_bad_granularity_is_a_400_that_says_so(
    client: httpx.AsyncClient, granularity: str
) -> None:
    message = assert_flat_error(await get_usage(client, {"granularity": granularity}), 400)
    assert "granularity" in message.lower()


@pytest.mark.parametrize(
    ("start", "end"),
    [("2026-03-10", "2026-03-09"), ("2026-03-10T12:00:00", "2026-03-10T11:59:59")],
)
async def test_start_after_end_is_a_400(client: httpx.AsyncClient, start: str, end: str) -> None:
    response = await get_usage(client, {"start_date": start, "end_date": end})
    message = assert_flat_error(response, 400)
    assert "start_date" in message
    assert message != DATE_ERROR


# -- 3. dates ---------------------------------------------------------------------------------

PLUS_TWO = timezone(timedelta(hours=2))
PLUS_FIVE = timezone(timedelta(hours=5))


@pytest.mark.parametrize(
    ("start", "end", "period"),
    [
        pytest.param(
            "2026-03-10",
            "2026-03-12",
            (utc(2026, 3, 10), utc(2026, 3, 12, 23, 59, 59)),
            id="bare-dates",
        ),
        pytest.param(
            # The vendor's own Python example: datetime.now() - 7 days .. now, naive isoformat().
            (NOW.replace(tzinfo=None) - timedelta(days=7)).isoformat(),
            NOW.replace(tzinfo=None).isoformat(),
            (NOW - timedelta(days=7), NOW),
            id="naive-isoformat",
        ),
        pytest.param(
            datetime(2026, 3, 10, 12, 0, 0, 123456).isoformat(),
            datetime(2026, 3, 12, 8, 30).isoformat(),
            (utc(2026, 3, 10, 12), utc(2026, 3, 12, 8, 30)),
            id="microseconds",
        ),
        pytest.param(
            datetime(2026, 3, 11, 1, 0, tzinfo=PLUS_FIVE).isoformat(),  # the 10th in UTC
            datetime(2026, 3, 12, 8, 0, tzinfo=PLUS_TWO).isoformat(),
            (utc(2026, 3, 10, 20), utc(2026, 3, 12, 6)),
            id="offsets",
        ),
        pytest.param(
            "2026-03-10T00:00:00Z",
            "2026-03-12",
            (utc(2026, 3, 10), utc(2026, 3, 12, 23, 59, 59)),
            id="z-and-bare-end",
        ),
    ],
)
async def test_dates_and_date_times_are_accepted_and_echoed_in_utc(
    client: httpx.AsyncClient,
    data: ReputeData,
    premium: KeyInfo,
    start: str,
    end: str,
    period: tuple[datetime, datetime],
) -> None:
    body = await usage_body(client, {"start_date": start, "end_date": end})
    assert body["period"] == {
        "start_date": z(period[0]),
        "end_date": z(period[1]),
        "granularity": "day",
    }
    assert_breakdown(body, daily(data, premium, period[0].date(), period[1].date()))


# -- 4. defaults ------------------------------------------------------------------------------


def default_expectation(
    data: ReputeData, key: KeyInfo, granularity: str
) -> tuple[tuple[datetime, datetime], list[tuple[str, Stats]]]:
    """The documented default period of ``granularity`` and its buckets, from the data model."""
    if granularity == "hour":  # the last 24 complete hours
        last_complete = NOW.replace(minute=0, second=0) - timedelta(hours=1)
        first = last_complete - timedelta(hours=23)
        return (first, NOW), hourly(data, key, first, 24)
    if granularity == "week":  # the last 12 weeks, Monday to Monday
        first_day = monday(TODAY) - timedelta(weeks=11)
        buckets = grouped(data, key, first_day, TODAY, monday)
        return (utc(2025, 12, 29), NOW), buckets
    if granularity == "month":  # the last 12 calendar months
        buckets = grouped(data, key, date(2025, 4, 1), TODAY, first_of_month)
        return (utc(2025, 4, 1), NOW), buckets
    month = (utc(2026, 3, 1), utc(2026, 3, 31, 23, 59, 59))  # the current calendar month
    return month, daily(data, key, date(2026, 3, 1), date(2026, 3, 31))


@pytest.mark.parametrize(
    ("params", "granularity", "count"),
    [
        ({}, "day", 18),
        ({"granularity": "day"}, "day", 18),
        ({"granularity": "hour"}, "hour", 24),
        ({"granularity": "week"}, "week", 12),
        ({"granularity": "month"}, "month", 12),
    ],
    ids=["none", "day", "hour", "week", "month"],
)
async def test_default_periods(
    client: httpx.AsyncClient,
    data: ReputeData,
    premium: KeyInfo,
    params: dict[str, str],
    granularity: str,
    count: int,
) -> None:
    body = await usage_body(client, params)
    (start, end), expected = default_expectation(data, premium, granularity)
    assert len(expected) == count
    assert body["period"] == {
        "start_date": z(start),
        "end_date": z(end),
        "granularity": granularity,
    }
    labels = [item["date"] for item in body["daily_breakdown"]]
    if granularity == "week":
        assert all(date.fromisoformat(label).weekday() == 0 for label in labels)
    if granularity == "month":
        assert all(label.endswith("-01") for label in labels)
    assert_breakdown(body, expected)


# -- 5. consistency ---------------------------------------------------------------------------

CONSISTENCY_CASES = [
    pytest.param(PREMIUM, {}, id="premium-default"),
    pytest.param(PREMIUM, {"start_date": "2026-01-01", "end_date": "2026-01-31"}, id="january"),
    pytest.param(PREMIUM, {"granularity": "week"}, id="premium-weeks"),
    pytest.param(BASIC, {"granularity": "hour"}, id="basic-hours"),
    pytest.param("ra_live_free_demo", {"start_date": "2025-05-20"}, id="free-since-before-key"),
]


@pytest.mark.parametrize(("key_name", "params"), CONSISTENCY_CASES)
async def test_documented_consistency_rules(
    client: httpx.AsyncClient, data: ReputeData, key_name: str, params: dict[str, str]
) -> None:
    key = data.keys[key_name]
    body = await usage_body(client, params, key_name)
    documented = DOC_TIERS[body["account"]["tier"]]
    assert (
        body["quota"]["monthly_limit"],
        body["rate_limits"]["requests_per_minute"],
    ) == documented

    assert set(body) == set(SCHEMA)
    for name, fields in SCHEMA.items():
        items = body[name] if isinstance(body[name], list) else [body[name]]
        assert all(set(item) == fields for item in items), name

    month = data.month_to_date(key, NOW)
    quota = body["quota"]
    assert quota == {
        "monthly_limit": key.monthly_limit,
        "used": month.requests,
        "remaining": key.monthly_limit - month.requests,
        "reset_date": RESET_DATE,
        "percentage_used": percent(month.requests, key.monthly_limit),
    }
    assert body["account"] == {
        "api_key_id": key.api_key_id,
        "tier": key.tier,
        "created_at": z(key.created_at),
    }
    assert body["rate_limits"] == {
        "requests_per_minute": key.per_minute,
        "current_minute_usage": data.minute_usage(key, NOW),
        "next_reset": z(NEXT_MINUTE),
    }

    summary, errors = body["summary"], body["errors"]
    requests = summary["total_requests"]
    assert requests > 0
    assert summary["successful_requests"] + summary["failed_requests"] == requests
    assert summary["success_rate"] == percent(summary["successful_requests"], requests)
    assert summary["failed_requests"] == errors["total"] == sum(errors["by_code"].values())
    assert sum(item["requests"] for item in body["daily_breakdown"]) == requests
    assert sum(summary["endpoints"].values()) == requests

    top = body["top_domains"]
    assert 0 < len(top) <= 10
    counts = [item["request_count"] for item in top]
    assert counts == sorted(counts, reverse=True)
    assert len({item["domain"] for item in top}) == len(top)


# -- 6. hour, week and month with explicit dates ----------------------------------------------

EXPLICIT_CASES = [
    pytest.param(
        {
            "start_date": "2026-03-16T22:00:00",
            "end_date": "2026-03-17T03:30:00",
            "granularity": "hour",
        },
        lambda data, key: hourly(data, key, utc(2026, 3, 16, 22), 6),
        id="hours-across-midnight",
    ),
    pytest.param(
        {"start_date": "2026-03-18", "end_date": "2026-03-18", "granularity": "hour"},
        lambda data, key: hourly(data, key, utc(2026, 3, 18), 14),  # 00:00 .. 13:00, complete
        id="hours-of-today",
    ),
    pytest.param(
        {"start_date": "2026-02-04", "end_date": "2026-03-25", "granularity": "week"},
        lambda data, key: grouped(data, key, date(2026, 2, 4), date(2026, 3, 25), monday),
        id="weeks",
    ),
    pytest.param(
        {"start_date": "2025-11-15", "end_date": "2026-02-10", "granularity": "month"},
        lambda data, key: grouped(data, key, date(2025, 11, 15), date(2026, 2, 10), first_of_month),
        id="months",
    ),
]


@pytest.mark.parametrize(("params", "expected"), EXPLICIT_CASES)
async def test_explicit_periods_at_every_granularity(
    client: httpx.AsyncClient,
    data: ReputeData,
    premium: KeyInfo,
    params: dict[str, str],
    expected: Callable[[ReputeData, KeyInfo], list[tuple[str, Stats]]],
) -> None:
    body = await usage_body(client, params)
    assert body["period"]["granularity"] == params["granularity"]
    assert_breakdown(body, expected(data, premium))


async def test_hour_granularity_with_only_end_date_lists_24_hours(
    client: httpx.AsyncClient, data: ReputeData, premium: KeyInfo
) -> None:
    body = await usage_body(client, {"end_date": "2026-03-10", "granularity": "hour"})
    assert_breakdown(body, hourly(data, premium, utc(2026, 3, 10), 24))


# -- 7. the endpoint's own rate limit ---------------------------------------------------------


def assert_limit_headers(response: httpx.Response, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert response.headers["X-RateLimit-Reset"] == str(int(NEXT_MINUTE.timestamp()))


async def test_usage_endpoint_allows_30_calls_per_minute_per_key(
    client: httpx.AsyncClient,
) -> None:
    for remaining in range(29, -1, -1):
        params = ONE_DAY if remaining % 2 else {"start_date": "not-a-date"}  # a 400 counts too
        response = await get_usage(client, params)
        assert response.status_code in (200, 400)
        assert_limit_headers(response, remaining)

    for _ in range(2):  # a 429 does not count, and the window stays closed
        limited = await get_usage(client, ONE_DAY)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == str(SECONDS_TO_NEXT_MINUTE) == "60"
        assert limited.json() == RATE_LIMIT_BODY

    other = await get_usage(client, ONE_DAY, key=BASIC)  # another key: its own window
    assert other.status_code == 200
    assert_limit_headers(other, 29)


# -- 8. determinism ---------------------------------------------------------------------------

DETERMINISM_REQUESTS = [
    {},
    {"granularity": "hour"},
    {"start_date": "2026-02-01", "granularity": "week"},
]


async def answers_of(emulator: ReputeEmulator) -> list[tuple[dict[str, str], Any]]:
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://repute") as http:
        result = []
        for params in DETERMINISM_REQUESTS:
            response = await get_usage(http, params)
            assert response.status_code == 200
            limit_headers = {k: v for k, v in response.headers.items() if k.startswith("x-rate")}
            result.append((limit_headers, response.json()))
        return result


async def test_same_seed_same_answers_other_seed_other_answers(
    client: httpx.AsyncClient,
) -> None:
    def build(seed: int) -> ReputeEmulator:
        return ReputeEmulator(seed=seed, clock=lambda: NOW)

    first, second, other = [await answers_of(build(seed)) for seed in (7, 7, 8)]
    assert first == second
    served = [await usage_body(client, params) for params in DETERMINISM_REQUESTS]
    assert served == [body for _, body in first]  # the suite's emulator is seeded 7 as well
    for (_, seven), (_, eight) in zip(first, other, strict=True):
        assert seven["summary"] != eight["summary"]
        assert seven["daily_breakdown"] != eight["daily_breakdown"]


# -- 9. big numbers ---------------------------------------------------------------------------


async def test_enterprise_counts_beyond_32_bits_arrive_exactly(
    client: httpx.AsyncClient, data: ReputeData
) -> None:
    key = data.keys[ENTERPRISE]
    raw = (await get_usage(client, key=ENTERPRISE)).text
    body = json.loads(raw)
    month = data.month_to_date(key, NOW)
    assert month.requests > 2**31
    assert body["quota"]["monthly_limit"] == key.monthly_limit > 2**32
    assert body["quota"]["used"] == body["summary"]["total_requests"] == month.requests
    assert body["quota"]["remaining"] == key.monthly_limit - month.requests
    assert f'"used": {month.requests},' in raw  # an integer literal, not a float or a string
    assert_breakdown(body, daily(data, key, date(2026, 3, 1), TODAY))


# -- 10. fault modes and control endpoints ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "body", "retry_after"),
    [
        (
            Fault(status=503),
            503,
            {"error": "Service Unavailable", "message": "Emulated failure", "status": 503},
            "30",
        ),
        (
            Fault(status=500),
            500,
            {"error": "Internal Server Error", "message": "Emulated failure", "status": 500},
            None,
        ),
        (
            Fault(status=429, retry_after=12),
            429,
            {**RATE_LIMIT_BODY, "retry_after": 12},
            "12",
        ),
    ],
    ids=["503", "500", "429"],
)
async def test_status_faults_use_the_vendor_error_form(
    client: httpx.AsyncClient,
    repute: Running,
    fault: Fault,
    status: int,
    body: dict[str, Any],
    retry_after: str | None,
) -> None:
    repute.emulator.set_fault(fault)
    response = await get_usage(client)
    assert response.status_code == status
    assert response.json() == body
    assert response.headers.get("Retry-After") == retry_after


async def test_malformed_fault_and_call_counting(
    client: httpx.AsyncClient, repute: Running, data: ReputeData, premium: KeyInfo
) -> None:
    repute.emulator.set_fault(Fault(malformed="json", times=1))
    broken = await get_usage(client, ONE_DAY)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()

    body = await usage_body(client, ONE_DAY)  # the fault was for one call only
    assert body["summary"]["total_requests"] == data.day(premium, TODAY, NOW).requests
    assert (await get_usage(client, key=None)).status_code == 401  # counted as well

    calls = (await client.get("/_emulator/calls")).json()
    assert calls["calls"] == {"/v1/usage": 3}


# -- 11. the client's mapping through the gateway ---------------------------------------------


@pytest.fixture
def gateway(make_gateway: Callable[[Settings], Gateway], repute: Running) -> Gateway:
    return make_gateway(settings_for(account_entry("reputeapi", repute.url)))


LIMITS_QUERY = """
query ($id: ID!) {
  account(id: $id) {
    scope
    plan
    source { state }
    quotas { name window unit limit used remaining utilization exceeded resetsAt }
    rateLimits { name window limit used resetsAt }
  }
}
"""

USAGE_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      granularity requests quotaRequests missingDays
      series { start requests quotaRequests }
      endpoints { endpoint requests consumesQuota }
    }
  }
}
"""


async def test_client_maps_quota_and_rate_limits(
    gateway: Gateway, data: ReputeData, premium: KeyInfo
) -> None:
    account = (await gateway.data(LIMITS_QUERY, {"id": ACCOUNT_ID}))["account"]
    used = data.month_to_date(premium, NOW).requests
    assert account["scope"] == "API_KEY"
    assert account["plan"] == "premium"
    assert account["source"] == {"state": "FRESH"}
    assert account["quotas"] == [
        {
            "name": "Monthly requests",
            "window": "MONTH",
            "unit": "REQUESTS",
            "limit": 50_000,
            "used": used,
            "remaining": 50_000 - used,
            "utilization": used / 50_000,
            "exceeded": False,
            "resetsAt": RESET_DATE,
        }
    ]
    assert account["rateLimits"] == [
        {
            "name": "Requests per minute",
            "window": "MINUTE",
            "limit": 120,
            "used": data.minute_usage(premium, NOW),
            "resetsAt": z(NEXT_MINUTE),
        },
        {
            "name": "/v1/usage requests per minute",
            "window": "MINUTE",
            "limit": 30,
            "used": 1,  # this very call, read from X-RateLimit-Remaining
            "resetsAt": z(NEXT_MINUTE),
        },
    ]


@pytest.mark.parametrize(
    ("granularity", "first", "last", "series"),
    [
        (
            "DAY",
            "2026-03-02",
            "2026-03-31",
            lambda data, key: [
                (f"{day}T00:00:00Z", stats)  # up to today only
                for day, stats in daily(data, key, date(2026, 3, 2), date(2026, 3, 31))
            ],
        ),
        (
            "HOUR",
            "2026-03-17",
            "2026-03-18",
            lambda data, key: hourly(data, key, utc(2026, 3, 17), 24 + 14),
        ),
    ],
    ids=["day", "hour"],
)
async def test_client_maps_usage(
    gateway: Gateway,
    data: ReputeData,
    premium: KeyInfo,
    granularity: str,
    first: str,
    last: str,
    series: Callable[[ReputeData, KeyInfo], list[tuple[str, Stats]]],
) -> None:
    variables = {"id": ACCOUNT_ID, "from": first, "to": last, "granularity": granularity}
    usage = (await gateway.data(USAGE_QUERY, variables))["account"]["usage"]
    expected = series(data, premium)
    period = total(stats for _, stats in expected)
    assert usage["granularity"] == granularity
    assert usage["requests"] == usage["quotaRequests"] == period.requests
    assert usage["missingDays"] == []
    assert usage["series"] == [
        {"start": start, "requests": s.requests, "quotaRequests": s.requests}
        for start, s in expected
    ]
    endpoints = {e["endpoint"]: e["requests"] for e in usage["endpoints"]}
    assert with_zeros(ENDPOINTS, endpoints) == per_name(ENDPOINTS, period.endpoints)
    assert [e["requests"] for e in usage["endpoints"]] == sorted(endpoints.values(), reverse=True)
    assert {e["endpoint"]: e["consumesQuota"] for e in usage["endpoints"]} == {
        path: path != "/v1/usage" for path in endpoints
    }
    assert "/v1/usage" in endpoints


async def test_minute_usage_is_refused_because_the_vendor_reports_hours(
    gateway: Gateway, repute: Running
) -> None:
    variables = {
        "id": ACCOUNT_ID,
        "from": "2026-03-18",
        "to": "2026-03-18",
        "granularity": "MINUTE",
    }
    result = await gateway.query(USAGE_QUERY, variables)
    assert result["data"] is None or result["data"]["account"] is None
    (error,) = result["errors"]
    assert "ReputeAPI reports usage per hour" in error["message"]
    assert repute.emulator.total_calls() == 0
