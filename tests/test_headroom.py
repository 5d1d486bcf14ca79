"""Headroom: the pure rules (gateway/headroom.py) on hand-made limits, and the ``headroom`` field
through the graph against the emulators, with numbers recomputed from their seeded data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from graphql import parse

from gateway.domain import Limits, Quota, QuotaUnit, QuotaWindow, RateLimit
from gateway.graphql.cost import QUOTAS_PER_ACCOUNT, RATE_LIMITS_PER_ACCOUNT, Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.headroom import MAX_REQUESTS, ConstraintKind, Headroom, headroom
from providers.reversinglabs.emulator import ReversingLabsData
from providers.virustotal.emulator import QUOTAS, VirusTotalData, quota_used
from providers.zkscore.emulator import ZkScoreData
from tests.conftest import NOW, SEED, account_entry, settings_for
from tests.providers.test_reversinglabs import expected_quota

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
HOUR_END = datetime(2026, 3, 18, 15, tzinfo=UTC)
DAY_END = datetime(2026, 3, 19, tzinfo=UTC)
MONTH_END = datetime(2026, 4, 1, tzinfo=UTC)
NEXT_MINUTE = datetime(2026, 3, 18, 14, 26, tzinfo=UTC)


def quota(
    name: str,
    window: QuotaWindow,
    limit: int | None,
    used: int | None,
    resets_at: datetime | None,
    unit: QuotaUnit = QuotaUnit.REQUESTS,
) -> Quota:
    return Quota(f"acct:{name}", "acct", name, window, unit, limit, used, resets_at)


HOURLY = quota("hourly", QuotaWindow.HOUR, 200, 190, HOUR_END)  # 10 left
MONTHLY = quota("monthly", QuotaWindow.MONTH, 12_000, 11_980, MONTH_END)  # 20 left
ROOMY_MONTH = quota("monthly", QuotaWindow.MONTH, 12_000, 1_000, MONTH_END)  # 11,000 left
TERM = quota("term", QuotaWindow.FIXED_TERM, 450, 400, None)  # 50 left, never resets


def answer(*items: Quota | RateLimit, requests: int, now: datetime = NOW) -> Headroom:
    quotas = tuple(i for i in items if isinstance(i, Quota))
    rates = tuple(i for i in items if isinstance(i, RateLimit))
    return headroom("acct", Limits(quotas=quotas, rate_limits=rates), requests, now)


# -- the rules ---------------------------------------------------------------------------------


def test_requests_that_fit_everything_fit_now_and_the_scarcest_limit_binds() -> None:
    found = answer(HOURLY, ROOMY_MONTH, requests=10)
    assert found.fits and found.earliest_fit == NOW
    assert found.available == 10
    assert found.binding is not None and found.binding.name == "hourly"  # runs out first
    assert [c.name for c in found.constraints] == ["hourly", "monthly"]
    assert all(c.fits and c.fits_at == NOW for c in found.constraints)
    assert [c.available for c in found.constraints] == [10, 11_000]


def test_an_hourly_window_binds_until_its_reset() -> None:
    found = answer(HOURLY, ROOMY_MONTH, requests=11)
    assert not found.fits
    assert found.binding is not None and found.binding.name == "hourly"
    assert found.binding.fits_at == HOUR_END == found.earliest_fit
    monthly = found.constraints[1]
    assert monthly.fits and monthly.fits_at == NOW


def test_a_monthly_quota_with_too_little_left_binds_past_the_hourly_reset() -> None:
    """The hour resets first, but the month has 20 left: 50 fit only from the 1st."""
    found = answer(HOURLY, MONTHLY, requests=50)
    assert not found.fits
    assert found.binding is not None and found.binding.window is QuotaWindow.MONTH
    assert found.earliest_fit == MONTH_END
    assert {c.name: c.fits_at for c in found.constraints} == {
        "monthly": MONTH_END,
        "hourly": HOUR_END,
    }
    assert found.available == 10


def test_a_fixed_term_without_room_never_fits() -> None:
    found = answer(ROOMY_MONTH, TERM, requests=60)
    assert not found.fits and found.earliest_fit is None
    assert found.binding is not None and found.binding.name == "term"
    assert found.binding.fits_at is None and found.binding.available == 50
    assert answer(ROOMY_MONTH, TERM, requests=50).fits


def test_more_than_a_whole_limit_never_fits_it() -> None:
    found = answer(HOURLY, ROOMY_MONTH, requests=201)
    assert found.earliest_fit is None
    assert found.binding is not None and found.binding.name == "hourly"
    assert found.constraints[1].fits  # the month alone would take them now


def test_among_limits_that_never_fit_the_scarcest_binds() -> None:
    found = answer(TERM, quota("small", QuotaWindow.FIXED_TERM, 30, 25, None), requests=500)
    assert found.binding is not None and found.binding.name == "small"
    assert [c.name for c in found.constraints] == ["small", "term"]


def test_a_rate_limit_is_a_window_like_a_quota() -> None:
    minute = RateLimit("per minute", QuotaWindow.MINUTE, 1_000, 157, NEXT_MINUTE)
    hour = RateLimit("per hour", QuotaWindow.HOUR, 60_000, 59_500, HOUR_END)
    found = answer(ROOMY_MONTH, minute, hour, requests=900)
    assert found.binding is not None and found.binding.kind is ConstraintKind.RATE_LIMIT
    assert found.binding.name == "per hour" and found.earliest_fit == HOUR_END
    by_name = {c.name: c for c in found.constraints}
    assert by_name["per minute"].fits_at == NEXT_MINUTE
    assert by_name["per minute"].quota_id is None and by_name["monthly"].quota_id == "acct:monthly"


def test_unknown_use_is_not_known_to_fit_until_its_reset() -> None:
    unknown = quota("daily", QuotaWindow.DAY, 800, None, DAY_END)
    found = answer(unknown, requests=5)
    assert not found.fits and found.available is None
    assert found.binding is not None and found.binding.available is None
    assert found.earliest_fit == DAY_END
    term = quota("term", QuotaWindow.FIXED_TERM, 800, None, None)
    assert answer(term, requests=5).earliest_fit is None


def test_a_reset_that_passed_since_the_vendor_was_read_gives_the_whole_limit() -> None:
    later = HOUR_END + timedelta(minutes=5)  # stale data: the hour it describes is over
    found = answer(HOURLY, requests=150, now=later)
    assert found.fits and found.available == 200 and found.earliest_fit == later
    assert found.constraints[0].resets_at == HOUR_END


def test_bytes_quotas_quotas_without_a_limit_and_single_endpoint_limits_do_not_count() -> None:
    storage = quota("storage", QuotaWindow.FIXED_TERM, 10**12, 10**12, None, QuotaUnit.BYTES)
    unlimited = quota("unlimited", QuotaWindow.DAY, None, 5, DAY_END)
    usage_path = RateLimit(
        "/v1/usage per minute", QuotaWindow.MINUTE, 30, 30, NEXT_MINUTE, ("/v1/usage",)
    )
    found = answer(storage, unlimited, usage_path, ROOMY_MONTH, requests=100)
    assert [c.name for c in found.constraints] == ["monthly"]
    assert found.fits


def test_no_limits_read_means_nothing_is_known_to_fit() -> None:
    assert headroom("acct", None, 1, NOW) == Headroom("acct", 1, False, None, None, None, ())
    assert headroom("acct", Limits(), 1, NOW) == Headroom("acct", 1, True, NOW, None, None, ())


# -- through the graph -------------------------------------------------------------------------

FIELDS = """accountId requests fits earliestFit available source { state }
  binding { kind name window available fitsAt }
  constraints { kind quotaId name window limit used available resetsAt fits fitsAt }"""


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_zkscore_rate_limits_per_minute_and_hour(emulators, make_gateway) -> None:
    """zks-prod is ZKScore's acct_acme (professional: 1,000 a minute, 60,000 an hour, 1,000,000 a
    day); its use comes from the emulator's data model."""
    minute, hour, day = ZkScoreData(SEED).rate_usage("acct_acme", NOW)
    gateway = make_gateway(settings_for(account_entry("zkscore", emulators["zkscore"].url)))
    query = f"""query($n: BigInt!) {{ headroom(requests: $n, provider: ZKSCORE) {{ {FIELDS} }} }}"""

    fitting = 1_000 - minute
    [now_fits] = (await gateway.data(query, {"n": fitting}))["headroom"]
    assert now_fits["fits"] and now_fits["earliestFit"] == z(NOW)
    assert now_fits["available"] == fitting
    assert now_fits["binding"] == {
        "kind": "RATE_LIMIT",
        "name": "Requests per minute",
        "window": "MINUTE",
        "available": fitting,
        "fitsAt": z(NOW),
    }
    assert now_fits["constraints"] == [
        {
            "kind": "RATE_LIMIT",
            "quotaId": None,
            "name": "Requests per minute",
            "window": "MINUTE",
            "limit": 1_000,
            "used": minute,
            "available": fitting,
            "resetsAt": z(NEXT_MINUTE),
            "fits": True,
            "fitsAt": z(NOW),
        },
        {
            "kind": "RATE_LIMIT",
            "quotaId": None,
            "name": "Requests per hour",
            "window": "HOUR",
            "limit": 60_000,
            "used": hour,
            "available": 60_000 - hour,
            "resetsAt": z(HOUR_END),
            "fits": True,
            "fitsAt": z(NOW),
        },
        {
            "kind": "QUOTA",
            "quotaId": "zks-prod:daily-requests",
            "name": "Daily requests",
            "window": "DAY",
            "limit": 1_000_000,
            "used": day,
            "available": 1_000_000 - day,
            "resetsAt": z(DAY_END),
            "fits": True,
            "fitsAt": z(NOW),
        },
    ]
    [next_minute] = (await gateway.data(query, {"n": fitting + 1}))["headroom"]
    assert not next_minute["fits"] and next_minute["earliestFit"] == z(NEXT_MINUTE)
    assert next_minute["binding"]["name"] == "Requests per minute"
    [too_many] = (await gateway.data(query, {"n": 1_001}))["headroom"]
    assert too_many["earliestFit"] is None  # over the per-minute limit: never in one minute
    assert too_many["binding"]["fitsAt"] is None
    assert [c["fits"] for c in too_many["constraints"]] == [False, True, True]


async def test_virustotal_every_request_quota_counts_and_the_month_binds(
    emulators, make_gateway
) -> None:
    """vt-soc is the soc-team group: intelligence_downloads_monthly is spent (297 of 250), so
    even one request waits for the 1st; the storage quota (bytes) is left out."""
    data = VirusTotalData(SEED)
    used = {
        name: quota_used(data, "soc-team", 1.0, rule, NOW.date())
        for name, (_, _, rule) in QUOTAS.items()
    }
    gateway = make_gateway(settings_for(account_entry("virustotal", emulators["virustotal"].url)))
    query = f"""{{ headroom(requests: 1, accountId: "vt-soc") {{ {FIELDS} }} }}"""
    [found] = (await gateway.data(query))["headroom"]
    names = {c["name"] for c in found["constraints"]}
    assert names == {n for n in QUOTAS if not n.endswith("_bytes")}
    assert found["fits"] is False and found["earliestFit"] == z(MONTH_END)
    assert found["available"] == 0
    assert used["intelligence_downloads_monthly"] > QUOTAS["intelligence_downloads_monthly"][0]
    assert found["binding"] == {
        "kind": "QUOTA",
        "name": "intelligence_downloads_monthly",
        "window": "MONTH",
        "available": 0,
        "fitsAt": z(MONTH_END),
    }
    for item in found["constraints"]:
        limit = QUOTAS[item["name"]][0]
        assert (item["limit"], item["used"]) == (limit, used[item["name"]])
        assert item["available"] == max(limit - used[item["name"]], 0)
    hunting = next(c for c in found["constraints"] if c["name"] == "intelligence_hunting_rules")
    assert hunting["window"] == "FIXED_TERM" and hunting["resetsAt"] is None
    [fixed] = (
        await gateway.data(
            f"""{{ headroom(requests: {hunting["available"] + 1}, accountId: "vt-soc")
              {{ earliestFit constraints {{ name fitsAt }} }} }}"""
        )
    )["headroom"]
    assert fixed["earliestFit"] is None  # the fixed term has no room and never resets
    assert {c["name"]: c["fitsAt"] for c in fixed["constraints"]}[
        "intelligence_hunting_rules"
    ] is None


async def test_a_vendor_that_cannot_be_read_fits_nothing(
    emulators, make_gateway, closed_port_url
) -> None:
    gateway = make_gateway(
        settings_for(
            account_entry("reputeapi", closed_port_url, 0),
            account_entry("reputeapi", emulators["reputeapi"].url, 1),
        )
    )
    answers = (
        await gateway.data(f"{{ headroom(requests: 5, provider: REPUTEAPI) {{ {FIELDS} }} }}")
    )["headroom"]
    down, up = answers
    assert down["accountId"] == "repute-premium" and down["source"]["state"] == "UNAVAILABLE"
    assert (down["fits"], down["earliestFit"], down["binding"], down["constraints"]) == (
        False,
        None,
        None,
        [],
    )
    assert up["source"]["state"] == "FRESH" and up["fits"] is True
    # The /v1/usage limit (30 a minute, spent by the gateway's own reads) is left out.
    assert [c["name"] for c in up["constraints"]] == ["Requests per minute", "Monthly requests"]
    limits = await gateway.data('{ account(id: "repute-basic") { rateLimits { name endpoints } } }')
    assert limits["account"]["rateLimits"] == [
        {"name": "Requests per minute", "endpoints": []},
        {"name": "/v1/usage requests per minute", "endpoints": ["/v1/usage"]},
    ]


async def test_the_limits_are_read_through_the_same_cache(emulators, make_gateway) -> None:
    gateway = make_gateway(settings_for(account_entry("zkscore", emulators["zkscore"].url)))
    await gateway.data("{ quotas { used } }")
    calls = emulators["zkscore"].emulator.total_calls()
    [found] = (await gateway.data("{ headroom(requests: 1, provider: ZKSCORE) { fits } }"))[
        "headroom"
    ]
    assert found == {"fits": True}
    assert emulators["zkscore"].emulator.total_calls() == calls == 1


@pytest.mark.parametrize(
    ("arguments", "argument", "message"),
    [
        ('requests: 0, accountId: "vt-soc"', "requests", "requests must be from 1 to"),
        ('requests: -3, accountId: "vt-soc"', "requests", "not -3"),
        (f'requests: {MAX_REQUESTS + 1}, accountId: "vt-soc"', "requests", "from 1 to"),
        ("requests: 5", "accountId", "exactly one of accountId"),
        ('requests: 5, accountId: "vt-soc", provider: VIRUSTOTAL', "accountId", "exactly one"),
        ('requests: 5, accountId: "nope"', "accountId", 'there is no account "nope"'),
    ],
)
async def test_arguments_it_cannot_answer_are_refused_before_any_vendor_call(
    emulators, make_gateway, arguments: str, argument: str, message: str
) -> None:
    gateway = make_gateway(settings_for(account_entry("virustotal", emulators["virustotal"].url)))
    result = await gateway.query(f"{{ headroom({arguments}) {{ fits }} }}")
    assert result["data"] == {"headroom": None}
    [error] = result["errors"]
    assert message in error["message"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
    assert emulators["virustotal"].emulator.total_calls() == 0


@pytest.mark.parametrize("value", ['"many"', "1.5", "true"])
async def test_requests_that_are_no_integer_are_refused(emulators, make_gateway, value) -> None:
    gateway = make_gateway(settings_for(account_entry("virustotal", emulators["virustotal"].url)))
    result = await gateway.query(
        f'{{ headroom(requests: {value}, accountId: "vt-soc") {{ fits }} }}'
    )
    [error] = result["errors"]
    assert "BigInt" in error["message"] and "Traceback" not in error["message"]
    assert emulators["virustotal"].emulator.total_calls() == 0


def test_the_cost_counts_accounts_and_their_constraints() -> None:
    query = "{ headroom(requests: 5, provider: REPUTEAPI) { fits constraints { name } } }"
    sizes = Sizes((("reputeapi", 3), ("virustotal", 1)), NOW.date())
    per_account = 1 + 1 + (QUOTAS_PER_ACCOUNT + RATE_LIMITS_PER_ACCOUNT) * 2
    cost = operation_cost(schema._schema, parse(query), None, None, sizes)
    assert cost is not None and cost.total == 3 * per_account
    one = operation_cost(
        schema._schema,
        parse(query.replace("provider: REPUTEAPI", 'accountId: "x"')),
        None,
        None,
        sizes,
    )
    assert one is not None and one.total == per_account


# -- the README's example ----------------------------------------------------------------------


def readme_headroom() -> str:
    [query] = [q for q in re.findall(r"```graphql\n(.*?)```", README, re.S) if "headroom(" in q]
    return query


async def test_the_readme_example_answers_as_the_readme_says(emulators, make_gateway) -> None:
    """rl-acme (ReversingLabs, company acme): 20,000 queries. Its quotas as the emulator's data
    model gives them: the daily limit is spent until tomorrow, the monthly TCA-0301 limit
    (25,000) has too little left until the 1st, the license term's TCA-0303 limit has room, and
    the bytes limit does not count: the month binds."""
    data = ReversingLabsData(SEED)
    users = data.company_users("acme")
    expected = [
        expected_quota(data, "rl-acme", limit, users) for limit in data.company_limits("acme")
    ]
    requests = 20_000
    rows = []
    for item in expected:
        if item["unit"] != "REQUESTS":
            continue
        fits = item["remaining"] >= requests
        reset = item["resetsAt"]
        fits_at = z(NOW) if fits else reset if reset and requests <= item["limit"] else None
        rows.append((item["window"], item["limit"], item["used"], item["remaining"], fits, fits_at))
    assert [r[0] for r in rows] == ["DAY", "MONTH", "FIXED_TERM"]
    assert [r[5] for r in rows] == [z(DAY_END), z(MONTH_END), z(NOW)]  # the case described

    gateway = make_gateway(
        settings_for(account_entry("reversinglabs", emulators["reversinglabs"].url))
    )
    [found] = (await gateway.data(readme_headroom()))["headroom"]
    assert found["accountId"] == "rl-acme" and found["requests"] == requests
    assert found["fits"] is False and found["earliestFit"] == z(MONTH_END)
    assert found["available"] == min(r[3] for r in rows) == 0
    got = {
        (c["window"], c["limit"], c["used"], c["available"], c["fits"], c["fitsAt"])
        for c in found["constraints"]
    }
    assert got == set(rows)
    assert [c["window"] for c in found["constraints"]] == ["MONTH", "DAY", "FIXED_TERM"]
    assert found["binding"]["name"] == "Monthly queries: TCA-0301 RHA Functional Similarity"
    assert found["binding"]["window"] == "MONTH" and found["binding"]["fitsAt"] == z(MONTH_END)
