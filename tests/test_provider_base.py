"""The provider base against hostile vendor answers, through httpx's MockTransport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gateway.domain import (
    AccountConfig,
    EndpointUsage,
    FailureCause,
    Granularity,
    ProviderId,
    Secret,
)
from gateway.errors import (
    AuthFailed,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    Unavailable,
    VendorFailed,
)
from providers.base import as_int
from providers.reputeapi.client import ReputeApiProvider
from providers.virustotal.client import VirusTotalProvider
from tests.conftest import NOW, clock

KEY = "ra_live_hostile_test_key"


def provider(handler) -> tuple[ReputeApiProvider, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    config = AccountConfig(
        "hostile",
        ProviderId("reputeapi"),
        "Hostile",
        "http://vendor.test",
        {},
        {"api_key": Secret(KEY)},
    )
    return ReputeApiProvider(config, http, clock=clock, deadline=2), http


async def failure(handler) -> Exception:
    client, http = provider(handler)
    async with http:
        with pytest.raises(Exception) as caught:
            await client.limits()
    return caught.value


async def test_a_vendor_echoing_the_key_does_not_leak_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == KEY
        return httpx.Response(401, json={"error": "Unauthorized", "message": f"bad key {KEY}"})

    error = await failure(handler)
    assert isinstance(error, AuthFailed)
    assert (error.vendor, error.status, error.cause) == (
        "ReputeAPI",
        401,
        FailureCause.CREDENTIALS_REJECTED,
    )
    assert error.detail == "bad key ********"
    assert KEY not in error.message


async def test_a_secret_at_the_length_limit_is_blanked_before_the_text_is_cut() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "x" * 190 + KEY})

    error = await failure(handler)
    assert isinstance(error, AuthFailed)
    assert error.detail is not None and KEY[:6] not in error.detail


async def test_vendor_text_is_shortened_and_made_printable() -> None:
    message = "line one\nline two\x1b[31m" + "x" * 500

    error = await failure(lambda r: httpx.Response(503, json={"message": message}))
    assert isinstance(error, VendorFailed) and isinstance(error, Unavailable)
    assert (error.status, error.cause) == (503, FailureCause.VENDOR_ERROR)
    assert error.detail is not None
    assert error.detail.startswith("line one line two [31mxxx")
    assert len(error.detail) <= 200
    assert "\n" not in error.message and "\x1b" not in error.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        ("Wed, 18 Mar 2026 15:00:00 GMT", datetime(2026, 3, 18, 15, tzinfo=UTC)),
        ("soon", None),
    ],
)
async def test_retry_after_in_seconds_or_as_a_date(header, expected) -> None:
    error = await failure(lambda r: httpx.Response(429, headers={"Retry-After": header}))
    assert isinstance(error, RateLimited)
    assert (error.status, error.cause, error.retry_at) == (429, FailureCause.RATE_LIMITED, expected)


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_4xx_is_a_rejected_request_not_an_unwell_vendor(status) -> None:
    error = await failure(lambda r: httpx.Response(status, json={"message": "Invalid group"}))
    assert isinstance(error, RequestRejected)
    assert not isinstance(error, Unavailable)  # what the circuit breaker counts
    assert (error.vendor, error.status, error.detail, error.cause) == (
        "ReputeAPI",
        status,
        "Invalid group",
        FailureCause.REQUEST_REJECTED,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[1, 2, 3]",
        b'{"quota": {"monthly_limit": -5, "used": 1}, "rate_limits": {"requests_per_minute": 1}}',
        b'{"quota": {"monthly_limit": true, "used": 1}, "rate_limits": {}}',
        b'{"quota": {"monthly_limit": "lots", "used": 1}, "rate_limits": {}}',
        b'{"quota": {"monthly_limit": 10, "used": 1, "reset_date": "tomorrow"}, "rate_limits":'
        b' {"requests_per_minute": 1}}',
    ],
)
async def test_bodies_of_the_wrong_shape_are_malformed(body: bytes) -> None:
    error = await failure(lambda r: httpx.Response(200, content=body))
    assert isinstance(error, MalformedResponse)
    assert not isinstance(error, Unavailable)
    assert (error.vendor, error.cause) == ("ReputeAPI", FailureCause.MALFORMED)


async def test_counts_as_strings_and_big_numbers_are_exact() -> None:
    big = 2**53 + 1  # beyond float precision too
    body = {
        "account": {"tier": "enterprise"},
        "quota": {"monthly_limit": str(big), "used": big - 2, "reset_date": "2026-04-01T00:00:00Z"},
        "rate_limits": {"requests_per_minute": 1000.0, "next_reset": "2026-03-18T14:26:00Z"},
        "unknown_extra": {"ignored": True},
    }
    client, http = provider(lambda r: httpx.Response(200, json=body))
    async with http:
        limits = await client.limits()
    (quota,) = limits.quotas
    assert (quota.limit, quota.used, quota.remaining) == (big, big - 2, 2)
    assert limits.plan == "enterprise"
    assert limits.rate_limits[0].limit == 1000


def test_as_int_refuses_what_is_not_a_count() -> None:
    assert as_int("12", "n") == 12 and as_int(3.0, "n") == 3
    for bad in (True, 1.5, "1e3", None, [1]):
        with pytest.raises(ValueError):
            as_int(bad, "n")


async def test_virustotal_totals_without_days_leave_the_days_unknown() -> None:
    body = {"data": {"total": {"files": 5}, "total_endpoints_not_consuming_quota": {"search": 2}}}
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    )
    config = AccountConfig(
        "vt",
        ProviderId("virustotal"),
        "VT",
        "http://vendor.test",
        {"group": "g"},
        {"api_key": Secret(KEY)},
    )
    async with http:
        report = await VirusTotalProvider(config, http, clock=clock).usage(
            NOW.date() - timedelta(days=2), NOW.date(), Granularity.DAY
        )
    assert report.known_days == frozenset()
    assert report.points == ()
    assert set(report.endpoints) == {
        EndpointUsage("/api/v3/(files)", 5, True),
        EndpointUsage("/api/v3/(search)", 2, False),
    }
