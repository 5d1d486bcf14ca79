"""The graph against the ReputeAPI emulator: numbers computed from the emulator's seeded data."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from gateway.app import RedactSecrets
from gateway.domain import (
    AccountConfig,
    AccountScope,
    Granularity,
    ProviderId,
    Secret,
    bucket_start,
)
from gateway.graphql.schema import schema
from gateway.graphql.types import GatewayContext
from gateway.service import ConfiguredAccount, GatewayService
from providers.base import BaseProvider
from providers.emulation import Fault
from providers.reputeapi.emulator import ERROR_CODES, total
from tests.conftest import NO_CACHE, NOW, account_entry, clock, settings_for

PREMIUM = "ra_live_premium_demo"
BASIC = "ra_live_basic_demo"
ENTERPRISE = "ra_live_enterprise_demo"


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def repute(emulators):
    return emulators["reputeapi"]


@pytest.fixture
def data(repute):
    return repute.emulator.data


def three_accounts(url: str) -> list[dict[str, str]]:
    return [
        account_entry("reputeapi", url, 0, id="premium"),
        account_entry("reputeapi", url, 1, id="basic"),
        {"id": "enterprise", "provider": "reputeapi", "base_url": url, "api_key": ENTERPRISE},
    ]


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


async def test_accounts_and_filters(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    data = await gateway.data(
        """{ all: accounts { id name provider scope }
             repute: accounts(provider: REPUTEAPI) { id }
             vt: accounts(provider: VIRUSTOTAL) { id }
             one: account(id: "basic") { id name }
             none: account(id: "nope") { id } }"""
    )
    assert data["all"] == [
        {"id": "premium", "name": "ReputeAPI premium", "provider": "REPUTEAPI", "scope": "API_KEY"},
        {"id": "basic", "name": "ReputeAPI basic", "provider": "REPUTEAPI", "scope": "API_KEY"},
        {"id": "enterprise", "name": "enterprise", "provider": "REPUTEAPI", "scope": "API_KEY"},
    ]
    assert [a["id"] for a in data["repute"]] == ["premium", "basic", "enterprise"]
    assert data["vt"] == []
    assert data["one"] == {"id": "basic", "name": "ReputeAPI basic"}
    assert data["none"] is None
    assert repute.emulator.total_calls() == 0  # listing accounts calls no vendor


async def test_one_vendor_call_per_account_per_request(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    await gateway.data(
        "{ accounts { plan source { state } quotas { used } rateLimits { limit } } }"
    )
    assert repute.emulator.calls == {"/v1/usage": 3}


async def test_accounts_are_fetched_concurrently(repute, make_gateway) -> None:
    repute.emulator.set_fault(Fault(delay_ms=300))
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    data = await gateway.data("{ accounts { source { state } } }")
    assert [a["source"]["state"] for a in data["accounts"]] == ["FRESH"] * 3
    assert repute.emulator.max_in_flight == 3  # all three calls were open at once


async def test_quotas_ranked_and_exact_past_2_to_the_31(repute, data, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    answer = await gateway.data(
        """{ quotas { id accountId name window unit limit used remaining utilization exceeded
                      resetsAt startsOn endsOn products }
             busy: quotas(minUtilization: 0.5) { accountId } }"""
    )
    expected = []
    for account, key_name in (("premium", PREMIUM), ("basic", BASIC), ("enterprise", ENTERPRISE)):
        key = data.keys[key_name]
        used = data.month_to_date(key, NOW).requests
        expected.append(
            {
                "id": f"{account}:monthly-requests",
                "accountId": account,
                "name": "Monthly requests",
                "window": "MONTH",
                "unit": "REQUESTS",
                "limit": key.monthly_limit,
                "used": used,
                "remaining": key.monthly_limit - used,
                "utilization": used / key.monthly_limit,
                "exceeded": False,
                "resetsAt": "2026-04-01T00:00:00Z",
                "startsOn": None,
                "endsOn": None,
                "products": [],
            }
        )
    expected.sort(key=lambda q: -q["utilization"])
    assert answer["quotas"] == expected
    enterprise = next(q for q in answer["quotas"] if q["accountId"] == "enterprise")
    assert enterprise["used"] > 2**31 and enterprise["limit"] == 6_000_000_000
    assert answer["busy"] == [
        {"accountId": q["accountId"]} for q in expected if q["utilization"] >= 0.5
    ]


USAGE = """
query($from: Date!, $to: Date!, $g: Granularity!) {
  account(id: "premium") {
    usage(from: $from, to: $to, granularity: $g) {
      from to granularity requests quotaRequests bytes
      series { start requests quotaRequests bytes }
      endpoints { endpoint requests consumesQuota }
      missingDays
    }
  }
}
"""


async def usage(gateway, start: str, end: str, granularity: str = "DAY") -> dict:
    answer = await gateway.data(USAGE, {"from": start, "to": end, "g": granularity})
    return answer["account"]["usage"]


@pytest.mark.parametrize(
    ("granularity", "unit"),
    [("DAY", Granularity.DAY), ("WEEK", Granularity.WEEK), ("MONTH", Granularity.MONTH)],
)
async def test_usage_rolls_up_days(repute, data, make_gateway, granularity, unit) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    start, end = date(2026, 1, 7), date(2026, 3, 4)
    result = await usage(gateway, start.isoformat(), end.isoformat(), granularity)
    key = data.keys[PREMIUM]
    buckets: dict[datetime, int] = {}
    for day in days(start, end):
        moment = bucket_start(datetime(day.year, day.month, day.day, tzinfo=UTC), unit)
        buckets[moment] = buckets.get(moment, 0) + data.day(key, day, NOW).requests
    total = sum(buckets.values())
    assert result["series"] == [
        {"start": z(m), "requests": n, "quotaRequests": n, "bytes": None}
        for m, n in sorted(buckets.items())
    ]
    assert (result["from"], result["to"], result["granularity"]) == (
        "2026-01-07",
        "2026-03-04",
        granularity,
    )
    assert result["requests"] == result["quotaRequests"] == total
    assert result["bytes"] is None
    assert result["missingDays"] == []
    assert sum(e["requests"] for e in result["endpoints"]) == total
    assert [e["requests"] for e in result["endpoints"]] == sorted(
        (e["requests"] for e in result["endpoints"]), reverse=True
    )
    flags = {e["endpoint"]: e["consumesQuota"] for e in result["endpoints"]}
    assert flags.pop("/v1/usage") is False
    assert set(flags.values()) == {True}
    if granularity == "WEEK":
        assert result["series"][0]["start"] == "2026-01-05T00:00:00Z"  # the Monday


async def test_usage_by_hour(repute, data, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    result = await usage(gateway, "2026-03-17", "2026-03-18", "HOUR")
    key = data.keys[PREMIUM]
    first = datetime(2026, 3, 17, tzinfo=UTC)
    last_complete = datetime(2026, 3, 18, 13, tzinfo=UTC)  # NOW is 14:25
    hours = [first + timedelta(hours=i) for i in range(24 + 14)]
    assert hours[-1] == last_complete
    assert [(p["start"], p["requests"]) for p in result["series"]] == [
        (z(h), data.hour(key, h).requests) for h in hours
    ]
    assert result["requests"] == sum(data.hour(key, h).requests for h in hours)


async def test_future_days_are_neither_counted_nor_missing(repute, data, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    result = await usage(gateway, "2026-03-16", "2026-03-25")
    key = data.keys[PREMIUM]
    known = days(date(2026, 3, 16), date(2026, 3, 18))
    assert [p["start"][:10] for p in result["series"]] == [d.isoformat() for d in known]
    assert result["requests"] == sum(data.day(key, d, NOW).requests for d in known)
    assert result["missingDays"] == []
    later = await usage(gateway, "2026-04-01", "2026-04-30")
    assert (later["requests"], later["series"], later["missingDays"]) == (0, [], [])
    assert repute.emulator.calls == {"/v1/usage": 1}  # nothing asked for the future


BAD_ARGUMENTS = [
    # from, to, granularity, the argument to blame, the message
    ("2026-03-10", "2026-03-01", "DAY", "from", "`from` (2026-03-10) is after `to` (2026-03-01)"),
    ("1999-12-31", "2026-03-01", "DAY", "from", "`from` (1999-12-31) is before 2000-01-01"),
    (
        "2026-03-01",
        "2027-04-01",
        "DAY",
        "to",
        "`to` (2027-04-01) is more than 366 days in the future",
    ),
    (
        "2026-01-01",
        "2026-03-18",
        "HOUR",
        "granularity",
        "granularity HOUR allows at most 62 days; this range has 77",
    ),
    (
        "2026-03-18",
        "2026-03-18",
        "MINUTE",
        "granularity",
        "ReputeAPI reports usage per hour, not per minute; ask for HOUR or coarser",
    ),
]


@pytest.mark.parametrize(("start", "end", "granularity", "argument", "message"), BAD_ARGUMENTS)
async def test_bad_usage_arguments_name_the_problem(
    repute, make_gateway, start, end, granularity, argument, message
) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    answer = await gateway.query(USAGE, {"from": start, "to": end, "g": granularity})
    assert answer["data"] == {"account": None}
    assert [(e["message"], e["path"]) for e in answer["errors"]] == [
        (message, ["account", "usage"])
    ]
    assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
    assert repute.emulator.total_calls() == 0


async def test_bad_scalar_values_are_refused_before_execution(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    answer = await gateway.query(USAGE, {"from": "2026-02-30", "to": "2026-03-01", "g": "DAY"})
    assert answer["data"] is None
    assert answer["errors"][0]["message"] == (
        "Variable '$from' has invalid value: \"2026-02-30\" is not a Date: February 2026 has "
        "28 days, not 30 (expected YYYY-MM-DD, e.g. 2026-01-31)"
    )
    assert repute.emulator.total_calls() == 0
    inline = await gateway.query(
        '{ accounts { usage(from: "2026-13-01", to: "2026-03-01") { requests } } }'
    )
    assert inline["data"] is None
    assert inline["errors"][0]["message"] == (
        "Argument 'from' of field 'usage': \"2026-13-01\" is not a Date: there is no month 13 "
        "(expected YYYY-MM-DD, e.g. 2026-01-31)"
    )


async def test_negative_min_utilization(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    answer = await gateway.query("{ quotas(minUtilization: -1) { id } }")
    assert answer["errors"][0]["message"] == (
        "minUtilization must be a fraction such as 0.8, not -1.0"
    )


# -- hostile and malformed queries ---------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ accounts { id }", "Syntax Error: Expected Name, found <EOF>."),
        ("{ accounts { secretField } }", "Cannot query field 'secretField' on type 'Account'."),
        (
            "{ accounts { a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } } }",
            "'anonymous' exceeds maximum operation depth of 10",
        ),
        (
            "{ " + " ".join(f"a{i}: accounts {{ id }}" for i in range(31)) + " }",
            "31 aliases found. Allowed: 30",
        ),
        (
            "{ accounts { " + " ".join(["id"] * 2100) + " } }",
            "Syntax Error: Document contains more than 2000 tokens. Parsing aborted.",
        ),
    ],
)
async def test_hostile_queries_are_refused_early(repute, make_gateway, query, message) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    response = await gateway.post(query)
    assert response.status_code in (200, 400)
    messages = [e["message"] for e in response.json()["errors"]]
    assert message in messages
    assert repute.emulator.total_calls() == 0


async def test_graphiql_in_a_browser(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    response = await gateway.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


# -- unexpected errors: masked in answers, logged without secrets ---------------------------

SECRET = "ra_live_very_secret_value"


class ExplodingProvider(BaseProvider):
    """A stand-in provider (not ours) whose failures are not the expected kind."""

    id = ProviderId("reputeapi")
    display_name = "Exploding vendor"
    default_base_url = "http://127.0.0.1:9"
    explode_in_scope = False

    @property
    def scope(self) -> AccountScope:
        if self.explode_in_scope:
            raise RuntimeError(f"scope broke with key {SECRET}")
        return AccountScope.API_KEY

    async def limits(self):
        raise RuntimeError(f"limits broke with key {SECRET}")

    async def usage(self, start, end, granularity):
        raise RuntimeError("not used")


async def execute(query: str, *, explode_in_scope: bool) -> tuple[dict, list[str]]:
    config = AccountConfig(
        "boom", ProviderId("reputeapi"), "Boom", secrets={"api_key": Secret(SECRET)}
    )
    async with httpx.AsyncClient() as http:
        provider = ExplodingProvider(config, http, clock=clock)
        provider.explode_in_scope = explode_in_scope
        service = GatewayService([ConfiguredAccount(config, provider)], clock=clock)
        result = await schema.execute(query, context_value=GatewayContext(scope=service.request()))
    errors = [e.message for e in result.errors or []]
    return result.data or {}, errors


async def test_an_unexpected_provider_error_is_a_source_state(caplog) -> None:
    redactor = RedactSecrets([SECRET])
    caplog.handler.addFilter(redactor)
    with caplog.at_level(logging.ERROR):
        data, errors = await execute(
            "{ accounts { id source { state message } quotas { id } } }", explode_in_scope=False
        )
    assert errors == []
    assert data["accounts"] == [
        {
            "id": "boom",
            "source": {
                "state": "UNAVAILABLE",
                "message": "internal error while reading Exploding vendor; see the gateway log",
            },
            "quotas": [],
        }
    ]
    logged = caplog.text
    assert "limits broke with key ********" in logged
    assert SECRET not in logged


async def test_an_unexpected_resolver_error_is_masked_and_logged(caplog) -> None:
    caplog.handler.addFilter(RedactSecrets([SECRET]))
    with caplog.at_level(logging.ERROR):
        _data, errors = await execute("{ accounts { id } }", explode_in_scope=True)
    assert errors == ["Internal error; see the gateway log."]
    assert "scope broke with key ********" in caplog.text
    assert SECRET not in caplog.text


async def test_failures_and_latency_of_a_range(repute, data, make_gateway) -> None:
    gateway = make_gateway(settings_for(*three_accounts(repute.url)))
    answer = await gateway.data(
        """{ account(id: "premium") { usage(from: "2026-02-20", to: "2026-03-05") {
             requests failedRequests errorRate averageLatencyMs peakLatencyMs
             breakdownPeriod { start } errorTypes { type requests } series { failedRequests }
             keys { keyId } } } }"""
    )
    result = answer["account"]["usage"]
    key = data.keys[PREMIUM]
    stats = [data.day(key, d, NOW) for d in days(date(2026, 2, 20), date(2026, 3, 5))]
    period = total(stats)
    assert result["requests"] == period.requests
    assert result["failedRequests"] == period.failed == sum(s.failed for s in stats)
    assert result["errorRate"] == period.failed / period.requests
    assert [p["failedRequests"] for p in result["series"]] == [s.failed for s in stats]
    assert result["averageLatencyMs"] == period.average_ms
    assert result["peakLatencyMs"] is None and result["keys"] == []
    assert result["breakdownPeriod"] is None  # ReputeAPI breaks down exactly the range
    expected = sorted(
        ((code, n) for code, n in zip(ERROR_CODES, period.failed_by_code, strict=True) if n),
        key=lambda item: (-item[1], item[0]),
    )
    assert [(e["type"], e["requests"]) for e in result["errorTypes"]] == expected


async def test_the_gateway_stops_calling_when_the_vendor_window_is_spent(
    repute, make_gateway
) -> None:
    entry = account_entry("reputeapi", repute.url)
    gateway = make_gateway(settings_for(entry, cache=NO_CACHE))
    query = "{ accounts { source { state retryAt } quotas { used } } }"
    for _ in range(30):  # ReputeAPI allows 30 calls of /v1/usage per minute
        (account,) = (await gateway.data(query))["accounts"]
        assert account["source"]["state"] == "FRESH"
    (account,) = (await gateway.data(query))["accounts"]
    assert account["source"] == {"state": "RATE_LIMITED", "retryAt": "2026-03-18T14:26:00Z"}
    assert account["quotas"] == []
    assert repute.emulator.calls == {"/v1/usage": 30}  # the 31st was never sent
