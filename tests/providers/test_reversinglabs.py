"""ReversingLabs emulator fidelity against the vendor document, and the client's mapping.

Every expected number is recomputed from the emulator's seeded data model
(``ReversingLabsData.user_day`` summed here per user and day, ``limit_exceeded`` and
``yara_rulesets``); the answers are read over real loopback HTTP. The vendor document is
``shared/upstream/seeds/001_1b4edf4e2aa94206.txt``, summarised in
``shared/upstream/reversinglabs.md``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.servers import ServerThread
from gateway.settings import Settings
from providers.base import RETRIES
from providers.reversinglabs.emulator import (
    ALLOCATIONS,
    DEFAULT_LIMITS,
    DEFAULT_USERS,
    PRODUCTS,
    Limit,
    ReversingLabsData,
    ReversingLabsEmulator,
    Size,
)
from tests.conftest import NOW, SEED, TLS, Gateway, Running, account_entry, settings_for
from tests.taps import Refusing, Rendezvous

PREFIX = "/api/customer_usage/v1"
ALICE = ("acme_alice", "rl_demo_alice")  # listed in every ACME limit
BOB = ("acme_bob", "rl_demo_bob")
CAROL = ("acme_carol", "rl_demo_carol")
NOENT = ("acme_noent", "rl_demo_noent")  # no TCA-9999 entitlement: 403
DAN = ("initech_dan", "rl_demo_dan")  # the other company
ENTITLED = (ALICE, BOB, CAROL, DAN)
ACME = tuple(u.name for u in DEFAULT_USERS if u.company == "acme")
COMPANY_ACCOUNT = "rl-acme"  # the demo account of the spec: acme_alice, scope company
USER_ACCOUNT = "rl-bob"
TODAY = NOW.date()
THIS_MONTH = TODAY.replace(day=1)
REALM = 'Basic realm="Spectra Intelligence"'
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
REPUTATION = "TCA-0101 File Reputation"
SUBMISSIONS = "TCAI-0011 Sample Submission Counter"
YARA = "TCA-0303 Yara Hunting"
PRODUCT_ORDER = [p.name for p in PRODUCTS]
BYTE_METERED = {p.name for p in PRODUCTS if p.bytes_per_query is not None}
DECIMAL = {"byte": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
"""The vendor's units: its own allocation example splits 5 GB as 3e9 + 2e9 bytes."""
WINDOWS = {"daily": "DAY", "monthly": "MONTH", "date_range": "FIXED_TERM"}
RESETS = {"DAY": "2026-03-19T00:00:00Z", "MONTH": "2026-04-01T00:00:00Z", "FIXED_TERM": None}
"""The next reset at NOW of each quota window."""
BUCKETS: dict[str, Callable[[date], date]] = {
    "DAY": lambda d: d,
    "WEEK": lambda d: d - timedelta(days=d.weekday()),
    "MONTH": lambda d: d.replace(day=1),
}


# -- helpers ----------------------------------------------------------------------------------


def days(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def month_end(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def months(first: date, count: int) -> list[tuple[date, date]]:
    """(first day, last day) of ``count`` calendar months from ``first``'s."""
    result = [(first.replace(day=1), month_end(first))]
    while len(result) < count:
        start = result[-1][1] + timedelta(days=1)
        result.append((start, month_end(start)))
    return result


def usage_report(
    data: ReversingLabsData,
    users: Iterable[str],
    first: date,
    last: date,
    now: datetime = NOW,
) -> list[dict[str, Any]]:
    """The documented ``usage_report`` of ``users`` over ``first``..``last``, summed here.

    Days after ``now`` count nothing; products without usage are left out; ``used_bytes`` only
    for byte-metered products; ``allocation`` (Portal, then API) where usage is split.
    """
    sums: dict[str, dict[str, Any]] = {}
    for user in users:
        for day in days(first, min(last, now.date())):
            for name, usage in data.user_day(user, day, now).items():
                entry = sums.setdefault(name, {"product": name, "number_of_queries": 0})
                entry["number_of_queries"] += usage.queries
                if usage.bytes is not None:
                    entry["used_bytes"] = entry.get("used_bytes", 0) + usage.bytes
                for part in usage.allocation:
                    queries, size = entry.setdefault("allocation", {}).get(part.name, (0, 0))
                    entry["allocation"][part.name] = (queries + part.queries, size + part.bytes)
    for entry in sums.values():
        if "allocation" in entry:
            parts = entry["allocation"]
            entry["allocation"] = [
                {"name": n, "number_of_queries": parts[n][0], "used_bytes": parts[n][1]}
                for n in sorted(parts, key=ALLOCATIONS.index)
            ]
    return [
        sums[name] for name in PRODUCT_ORDER if name in sums and sums[name]["number_of_queries"]
    ]


def queries_of(report: list[dict[str, Any]], products: Iterable[str] | None = None) -> int:
    wanted = set(PRODUCT_ORDER if products is None else products)
    return sum(e["number_of_queries"] for e in report if e["product"] in wanted)


def bytes_of(report: list[dict[str, Any]], products: Iterable[str] | None = None) -> int:
    wanted = set(PRODUCT_ORDER if products is None else products)
    return sum(e.get("used_bytes", 0) for e in report if e["product"] in wanted)


def to_bytes(size: Size) -> int:
    return size.value * DECIMAL[size.unit]


def next_reset(limit: Limit, today: date) -> str | None:
    """00:00 UTC after the current day or month; a fixed term does not reset."""
    after = {"daily": today, "monthly": month_end(today)}.get(limit.limit_type)
    return None if after is None else f"{after + timedelta(days=1)}T00:00:00Z"


def current_period(limit: Limit, today: date) -> tuple[date, date]:
    """The days whose usage counts against ``limit`` today, as the vendor document says."""
    if limit.limit_type == "daily":
        return today, today
    if limit.limit_type == "monthly":
        return today.replace(day=1), today
    assert limit.start is not None and limit.end is not None
    return limit.start, min(limit.end, today)


def vendor_limit(limit: Limit, exceeded: bool) -> dict[str, Any]:
    """A ``/limits`` object as the vendor document shows it, from the license table."""

    def size(value: Size) -> dict[str, Any]:
        return {"value": value.value, "unit": value.unit}

    out: dict[str, Any] = {}
    if limit.limit is not None:
        out["limit"] = limit.limit
    if limit.limit_size is not None:
        out["limit_size"] = size(limit.limit_size)
    out |= {
        "limit_type": limit.limit_type,
        "limit_exceeded": exceeded,
        "products": list(limit.products),
        "users": list(limit.users),
    }
    if limit.start is not None and limit.end is not None:
        out |= {"start_date": limit.start.isoformat(), "end_date": limit.end.isoformat()}
    if limit.free_flex is not None:
        flex = limit.free_flex
        out["free_flex"] = {
            "limit_size": size(flex.size),
            "start_date": flex.start.isoformat(),
            "end_date": flex.end.isoformat(),
        }
    if limit.limit_size_per_file is not None:
        out["limit_size_per_file"] = size(limit.limit_size_per_file)
    if limit.entitlements:
        out["entitlements"] = dict(limit.entitlements)
    if limit.allocation:
        out["allocation"] = [{"name": n, "size": size(s)} for n, s in limit.allocation]
    return out


def from_xml(element: ET.Element) -> Any:
    """An XML answer read back generically: ``<item>`` children make a list, others an object."""
    children = list(element)
    if not children:
        return element.text
    tags = [child.tag for child in children]
    if set(tags) == {"item"}:
        return [from_xml(child) for child in children]
    assert len(set(tags)) == len(tags), f"repeated tags in <{element.tag}>: {tags}"
    return {child.tag: from_xml(child) for child in children}


def as_text(value: Any) -> Any:
    """A JSON value as XML writes it: scalars as text, booleans ``true``/``false``, empty: none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()} or None
    if isinstance(value, list):
        return [as_text(v) for v in value] or None
    return str(value)


async def get(
    client: httpx.AsyncClient,
    path: str,
    params: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = ALICE,
) -> httpx.Response:
    return await client.get(f"{PREFIX}/{path}", params=dict(params or {}), auth=auth)


async def rl(
    client: httpx.AsyncClient,
    path: str,
    params: Mapping[str, str] | None = None,
    auth: tuple[str, str] = ALICE,
) -> dict[str, Any]:
    """The ``rl`` object of a JSON answer (asserted 200 and ``application/json``)."""
    response = await get(client, path, {**(params or {}), "format": "json"}, auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"rl"}
    result: dict[str, Any] = body["rl"]
    return result


def assert_plain_400(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.strip()
    for word in words:
        assert word in response.text, response.text


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def revlabs(emulators: dict[str, Running]) -> Running:
    return emulators["reversinglabs"]


@pytest.fixture
def emulator(revlabs: Running) -> ReversingLabsEmulator:
    assert isinstance(revlabs.emulator, ReversingLabsEmulator)
    return revlabs.emulator


@pytest.fixture
def data(emulator: ReversingLabsEmulator) -> ReversingLabsData:
    return emulator.data


@pytest.fixture
async def client(revlabs: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=revlabs.url, verify=TLS) as http:
        yield http


# -- 1. auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "Authentication required"),
        (("acme_alice", "wrong-password"), "Invalid credentials"),
        (("acme_nobody", "rl_demo_alice"), "Invalid credentials"),
        (("acme_noent", "wrong-password"), "Invalid credentials"),  # 401 comes before 403
    ],
    ids=["none", "wrong-password", "unknown-user", "unentitled-wrong-password"],
)
async def test_missing_or_wrong_credentials_are_401_with_the_realm(
    client: httpx.AsyncClient, auth: tuple[str, str] | None, message: str
) -> None:
    response = await get(client, "usage/daily", {"format": "json"}, auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == REALM
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == message


@pytest.mark.parametrize("path", ["usage/daily", "usage/company/monthly", "limits", "usage/yara"])
async def test_user_without_the_entitlement_is_403_with_an_empty_body(
    client: httpx.AsyncClient, data: ReversingLabsData, path: str
) -> None:
    assert not data.users["acme_noent"].entitled
    response = await get(client, path, {"format": "json"}, NOENT)
    assert response.status_code == 403
    assert response.content == b""
    assert "WWW-Authenticate" not in response.headers


# -- 2. XML, the default form -----------------------------------------------------------------

XML_CASES = [
    pytest.param("usage/daily", {"date": "2026-03-10"}, ALICE, id="daily-single"),
    pytest.param(
        "usage/company/daily", {"from": "2026-03-14", "to": "2026-03-20"}, ALICE, id="daily-range"
    ),
    pytest.param("usage/company/monthly", {"month": "2026-02"}, ALICE, id="monthly"),
    pytest.param("usage/monthly", {"from": "2025-12", "to": "2026-03"}, BOB, id="monthly-range"),
    pytest.param("limits", {}, BOB, id="limits"),
    pytest.param("limits/company", {}, CAROL, id="limits-company"),
    pytest.param("usage/yara", {}, CAROL, id="yara"),
    pytest.param("usage/company/date_range", {}, ALICE, id="date-range"),
    pytest.param("usage/date_range", {}, DAN, id="date-range-none"),
]


@pytest.mark.parametrize(("path", "params", "auth"), XML_CASES)
async def test_xml_is_the_default_and_carries_the_json_numbers(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    auth: tuple[str, str],
) -> None:
    default = await get(client, path, params, auth)
    assert default.status_code == 200, default.text
    assert default.headers["content-type"] == "application/xml"
    assert default.text.startswith(XML_DECLARATION)
    explicit = await get(client, path, {**params, "format": "XML"}, auth)  # any case
    assert explicit.content == default.content

    root = ET.fromstring(default.content)
    assert root.tag == "rl"
    assert from_xml(root) == as_text(await rl(client, path, params, auth))


async def test_xml_arrays_are_items_and_booleans_are_words(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    limits = ET.fromstring((await get(client, "limits/company")).content)
    items = limits.findall("limits/item")
    expected = data.company_limits("acme")
    assert len(items) == len(expected) == 4
    for item, limit in zip(items, expected, strict=True):
        assert [p.text for p in item.findall("products/item")] == list(limit.products)
        assert [u.text for u in item.findall("users/item")] == list(limit.users)
        verdict = item.findtext("limit_exceeded")
        assert verdict == ("true" if data.limit_exceeded(limit, NOW) else "false")
    submissions = items[2]
    assert submissions.findtext("entitlements/hardening") == "true"
    assert submissions.findtext("entitlements/secrets") == "false"
    assert [a.findtext("name") for a in submissions.findall("allocation/item")] == ["Portal", "API"]

    month = ET.fromstring(
        (await get(client, "usage/company/monthly", {"month": "2026-02"})).content
    )
    expected_report = usage_report(data, ACME, date(2026, 2, 1), date(2026, 2, 28))
    assert [e.findtext("product") for e in month.findall("usage_report/item")] == [
        e["product"] for e in expected_report
    ]
    (split,) = month.findall("usage_report/item/allocation")
    (metered,) = (e for e in expected_report if e["product"] == SUBMISSIONS)
    assert [int(a.findtext("used_bytes") or "") for a in split.findall("item")] == [
        a["used_bytes"] for a in metered["allocation"]
    ]


@pytest.mark.parametrize("value", ["yaml", "", "jsonp"])
async def test_unknown_format_is_a_400(client: httpx.AsyncClient, value: str) -> None:
    assert_plain_400(await get(client, "limits", {"format": value}), "format")


# -- 3. parameters ----------------------------------------------------------------------------

FULLWIDTH_YEAR = "\uff12\uff10\uff12\uff16"  # "2026" in full-width digits

BAD_PARAMETERS = [
    pytest.param("usage/daily", {"date": "2026-3-18"}, "date", id="date-short"),
    pytest.param("usage/daily", {"date": "2026-02-30"}, "date", id="date-impossible"),
    pytest.param("usage/company/daily", {"date": "18.03.2026"}, "date", id="date-german"),
    pytest.param("usage/daily", {"date": ""}, "date", id="date-empty"),
    pytest.param("usage/daily", {"from": "2026-03-01", "to": "2026-3-02"}, "to", id="to-short"),
    pytest.param("usage/monthly", {"month": "2026-13"}, "month", id="month-13"),
    pytest.param("usage/monthly", {"month": "2026-3"}, "month", id="month-short"),
    pytest.param("usage/company/monthly", {"month": "2026-03-01"}, "month", id="month-a-day"),
    pytest.param("usage/monthly", {"from": "2026-00", "to": "2026-03"}, "from", id="from-00"),
    pytest.param(
        "usage/monthly",
        {"month": f"{FULLWIDTH_YEAR}-03"},
        "month",
        id="month-fullwidth-digits",
    ),
    pytest.param(
        "usage/daily",
        {"date": "2026-03-01", "from": "2026-03-01", "to": "2026-03-02"},
        "date",
        id="date-with-range",
    ),
    pytest.param(
        "usage/company/monthly", {"month": "2026-03", "to": "2026-03"}, "month", id="month-with-to"
    ),
    pytest.param("usage/daily", {"from": "2026-03-01"}, "from", id="only-from"),
    pytest.param("usage/company/monthly", {"to": "2026-03"}, "to", id="only-to"),
    pytest.param(
        "usage/daily", {"from": "2026-03-02", "to": "2026-03-01"}, "from", id="daily-backwards"
    ),
    pytest.param(
        "usage/monthly", {"from": "2026-03", "to": "2026-02"}, "from", id="monthly-backwards"
    ),
    pytest.param(
        "usage/company/daily", {"from": "2025-03-18", "to": "2026-03-18"}, "365", id="366-days"
    ),
    pytest.param("usage/monthly", {"from": "2023-03", "to": "2026-03"}, "36", id="37-months"),
]


@pytest.mark.parametrize(("path", "params", "word"), BAD_PARAMETERS)
async def test_bad_parameters_are_400_in_plain_text(
    client: httpx.AsyncClient, path: str, params: dict[str, str], word: str
) -> None:
    assert_plain_400(await get(client, path, {**params, "format": "json"}), word)


@pytest.mark.parametrize(
    ("path", "params", "key", "periods"),
    [
        (
            "usage/company/daily",
            {"from": "2025-03-19", "to": "2026-03-18"},
            "date",
            [(d, d) for d in days(date(2025, 3, 19), TODAY)],
        ),
        (
            "usage/company/monthly",
            {"from": "2023-04", "to": "2026-03"},
            "month",
            months(date(2023, 4, 1), 36),
        ),
    ],
    ids=["365-days", "36-months"],
)
async def test_longest_ranges_are_answered_in_full(
    client: httpx.AsyncClient,
    data: ReversingLabsData,
    path: str,
    params: dict[str, str],
    key: str,
    periods: list[tuple[date, date]],
) -> None:
    reports = (await rl(client, path, params))["usage_reports"]
    assert len(reports) == len(periods) in (365, 36)
    label = (lambda d: d.isoformat()) if key == "date" else (lambda d: f"{d:%Y-%m}")
    assert [r[key] for r in reports] == [label(first) for first, _ in periods]
    totals = [queries_of(r["usage_report"]) for r in reports]
    assert totals == [queries_of(usage_report(data, ACME, a, b)) for a, b in periods]


@pytest.mark.parametrize("scope", ["", "company/"])
async def test_no_parameters_mean_today_and_this_month(
    client: httpx.AsyncClient, data: ReversingLabsData, scope: str
) -> None:
    users = ACME if scope else ("acme_alice",)
    assert await rl(client, f"usage/{scope}daily") == {
        "date": TODAY.isoformat(),
        "usage_report": usage_report(data, users, TODAY, TODAY),
    }
    assert await rl(client, f"usage/{scope}monthly") == {
        "month": "2026-03",
        "usage_report": usage_report(data, users, THIS_MONTH, TODAY),
    }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("usage/daily", {"date": "2026-03-10"}),
        ("usage/company/monthly", {"from": "2026-01", "to": "2026-02"}),
        ("limits", {}),
    ],
)
async def test_unknown_parameters_are_ignored(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    extra = {"limit": "1", "page": "2", "user": "acme_bob", "Date": "2020-01-01"}
    assert await rl(client, path, {**params, **extra}) == await rl(client, path, params)


# -- 4. answer shapes -------------------------------------------------------------------------


async def test_single_and_range_answer_shapes(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    day = date(2026, 3, 10)
    single = await rl(client, "usage/daily", {"date": day.isoformat()}, BOB)
    assert single == {
        "date": "2026-03-10",
        "usage_report": usage_report(data, ["acme_bob"], day, day),
    }

    ranged = await rl(client, "usage/daily", {"from": "2026-03-16", "to": "2026-03-19"}, BOB)
    assert list(ranged) == ["usage_reports"]
    assert ranged["usage_reports"] == [
        {"date": d.isoformat(), "usage_report": usage_report(data, ["acme_bob"], d, d)}
        for d in days(date(2026, 3, 16), date(2026, 3, 19))
    ]
    assert ranged["usage_reports"][-1]["usage_report"] == []  # tomorrow

    one = await rl(client, "usage/monthly", {"from": "2026-02", "to": "2026-02"}, BOB)
    february = usage_report(data, ["acme_bob"], date(2026, 2, 1), date(2026, 2, 28))
    assert one == {"usage_reports": [{"month": "2026-02", "usage_report": february}]}
    assert await rl(client, "usage/monthly", {"month": "2026-02"}, BOB) == {
        "month": "2026-02",
        "usage_report": february,
    }


async def test_products_without_usage_are_left_out(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    def first_day(user: str, missing: Callable[[dict[str, Any]], bool]) -> date:
        return next(
            d for d in days(date(2026, 1, 1), TODAY) if missing(data.user_day(user, d, NOW))
        )

    no_rha = first_day("acme_alice", lambda r: "TCA-0301 RHA Functional Similarity" not in r)
    report = (await rl(client, "usage/daily", {"date": no_rha.isoformat()}))["usage_report"]
    assert report == usage_report(data, ["acme_alice"], no_rha, no_rha)
    assert "TCA-0301 RHA Functional Similarity" not in {e["product"] for e in report}
    assert {e["product"] for e in report} < set(data.users["acme_alice"].shares)

    away = first_day("acme_carol", lambda r: not r)  # a day carol did not work
    assert await rl(client, "usage/daily", {"date": away.isoformat()}, CAROL) == {
        "date": away.isoformat(),
        "usage_report": [],
    }
    before = await rl(client, "usage/daily", {"from": "2025-05-31", "to": "2025-06-02"}, DAN)
    assert [r["usage_report"] == [] for r in before["usage_reports"]] == [True, True, False]
    future = await rl(client, "usage/company/monthly", {"month": "2026-04"})
    assert future == {"month": "2026-04", "usage_report": []}


@pytest.mark.parametrize(
    ("path", "params", "users", "first", "last"),
    [
        ("usage/company/daily", {"date": "2026-03-18"}, ACME, TODAY, TODAY),
        ("usage/company/daily", {"date": "2026-03-02"}, ACME, date(2026, 3, 2), date(2026, 3, 2)),
        (
            "usage/monthly",
            {"month": "2026-01"},
            ["acme_alice"],
            date(2026, 1, 1),
            date(2026, 1, 31),
        ),
        ("usage/company/monthly", {"month": "2026-03"}, ACME, THIS_MONTH, TODAY),
    ],
    ids=["today-so-far", "past-day", "past-month", "this-month"],
)
async def test_bytes_only_where_metered_and_allocations_add_up(
    client: httpx.AsyncClient,
    data: ReversingLabsData,
    path: str,
    params: dict[str, str],
    users: tuple[str, ...],
    first: date,
    last: date,
) -> None:
    report = (await rl(client, path, params))["usage_report"]
    assert report == usage_report(data, users, first, last)
    assert {e["product"] for e in report if "used_bytes" in e} == BYTE_METERED
    for entry in report:
        parts = entry.get("allocation", [])
        assert bool(parts) == (entry["product"] in BYTE_METERED)
        if parts:
            assert [a["name"] for a in parts] == ["Portal", "API"]
            assert sum(a["number_of_queries"] for a in parts) == entry["number_of_queries"]
            assert sum(a["used_bytes"] for a in parts) == entry["used_bytes"]


# -- 5. company and user views ----------------------------------------------------------------

YARA_ID = "acme-fixed-yara"


async def test_company_paths_sum_every_user_and_user_paths_only_the_callers(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    day = date(2026, 3, 12)
    company = await rl(client, "usage/company/daily", {"date": day.isoformat()}, BOB)
    assert company["usage_report"] == usage_report(data, ACME, day, day)
    entitled = [u for u in ACME if data.users[u].entitled]
    noent_share = queries_of(company["usage_report"], [REPUTATION]) - queries_of(
        usage_report(data, entitled, day, day), [REPUTATION]
    )
    assert noent_share == data.user_day("acme_noent", day, NOW)[REPUTATION].queries > 0

    for user, password in ENTITLED:
        own = await rl(client, "usage/monthly", {"month": "2026-02"}, (user, password))
        assert own["usage_report"] == usage_report(
            data, [user], date(2026, 2, 1), date(2026, 2, 28)
        )
    initech = await rl(client, "usage/company/monthly", {"month": "2026-02"}, DAN)
    assert initech["usage_report"] == usage_report(
        data, ["initech_dan"], date(2026, 2, 1), date(2026, 2, 28)
    )


@pytest.mark.parametrize(
    ("auth", "listed"),
    [
        (ALICE, ["acme-daily-reputation", "acme-monthly-rha", "acme-monthly-submissions", YARA_ID]),
        (BOB, ["acme-daily-reputation", "acme-monthly-submissions", YARA_ID]),
        (CAROL, ["acme-daily-reputation", YARA_ID]),
        (DAN, ["initech-daily-reputation"]),
    ],
    ids=[a[0] for a in ENTITLED],
)
async def test_limits_list_the_callers_and_the_company_lists_all(
    client: httpx.AsyncClient, data: ReversingLabsData, auth: tuple[str, str], listed: list[str]
) -> None:
    user = auth[0]
    company = data.users[user].company
    everything = [lim for lim in DEFAULT_LIMITS if lim.company == company]
    mine = [lim for lim in everything if user in lim.users]
    assert [lim.id for lim in mine] == listed
    assert (await rl(client, "limits", auth=auth))["limits"] == [
        vendor_limit(lim, data.limit_exceeded(lim, NOW)) for lim in mine
    ]
    assert (await rl(client, "limits/company", auth=auth))["limits"] == [
        vendor_limit(lim, data.limit_exceeded(lim, NOW)) for lim in everything
    ]


async def test_limit_exceeded_is_used_against_capacity_now(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    verdicts = {}
    for limit in DEFAULT_LIMITS:
        first, last = current_period(limit, TODAY)
        report = usage_report(data, limit.users, first, last)
        if limit.limit_size is None:
            used, capacity = queries_of(report, limit.products), limit.limit
        else:
            used, capacity = bytes_of(report, limit.products), to_bytes(limit.limit_size)
            flex = limit.free_flex  # its term (autumn 2025) is over at NOW
            assert flex is not None and flex.end < TODAY
        assert capacity is not None
        verdicts[limit.id] = used >= capacity
        assert verdicts[limit.id] == data.limit_exceeded(limit, NOW)
    assert verdicts == {
        "acme-daily-reputation": True,
        "acme-monthly-rha": False,
        "acme-monthly-submissions": False,
        "acme-fixed-yara": False,
        "initech-daily-reputation": False,
    }
    answered = (await rl(client, "limits/company"))["limits"]
    assert [item["limit_exceeded"] for item in answered] == [True, False, False, False]


# -- 6. date range, YARA and big numbers ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "auth", "users"),
    [
        ("usage/company/date_range", BOB, ("acme_alice", "acme_bob", "acme_carol")),
        ("usage/date_range", BOB, ("acme_bob",)),
        ("usage/date_range", CAROL, ("acme_carol",)),
        ("usage/company/date_range", DAN, None),
    ],
    ids=["company", "bob", "carol", "initech-none"],
)
async def test_date_range_totals_match_the_data_model(
    client: httpx.AsyncClient,
    data: ReversingLabsData,
    path: str,
    auth: tuple[str, str],
    users: tuple[str, ...] | None,
) -> None:
    reports = (await rl(client, path, auth=auth))["usage_reports"]
    if users is None:
        assert reports == []
        return
    (yara,) = (lim for lim in DEFAULT_LIMITS if lim.limit_type == "date_range")
    report = usage_report(data, users, date(2026, 1, 1), TODAY)
    assert reports == [
        {
            "start_date": "2026-01-01",
            "end_date": "2026-12-31",
            "products": [YARA],
            "count": queries_of(report, [YARA]),
        }
    ]
    assert set(yara.users) >= set(users)


@pytest.mark.parametrize("auth", ENTITLED, ids=[a[0] for a in ENTITLED])
async def test_active_yara_rulesets(
    client: httpx.AsyncClient, data: ReversingLabsData, auth: tuple[str, str]
) -> None:
    answer = await rl(client, "usage/yara", auth=auth)
    assert answer == {"product": YARA, "number_of_active_rulesets": data.yara_rulesets(auth[0])}
    assert (answer["number_of_active_rulesets"] > 0) == (YARA in data.users[auth[0]].shares)
    assert (await get(client, "usage/company/yara", auth=auth)).status_code == 404


async def test_monthly_counts_above_2_31_arrive_exactly(
    client: httpx.AsyncClient, data: ReversingLabsData
) -> None:
    report = usage_report(data, ACME, date(2026, 2, 1), date(2026, 2, 28))
    count = queries_of(report, [REPUTATION])
    assert count > 2**31
    params = {"month": "2026-02"}
    raw = (await get(client, "usage/company/monthly", {**params, "format": "json"})).text
    assert f'"number_of_queries": {count}}}' in raw  # an integer literal, exactly
    assert json.loads(raw)["rl"]["usage_report"][0] == {
        "product": REPUTATION,
        "number_of_queries": count,
    }
    xml = ET.fromstring((await get(client, "usage/company/monthly", params)).content)
    assert xml.findtext("usage_report/item/number_of_queries") == str(count)


# -- 7. the client: JSON, scopes and config ---------------------------------------------------

QUOTAS_QUERY = """
query ($id: ID!) {
  account(id: $id) {
    scope
    activeRulesets
    source { state }
    quotas {
      id accountId window unit limit used remaining utilization exceeded resetsAt startsOn endsOn
      products
      freeFlex { limit unit startsOn endsOn }
      perFileLimit
      entitlements { name enabled amount }
      allocations { name limit used }
    }
  }
}
"""

USAGE_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      granularity requests quotaRequests bytes missingDays
      series { start requests quotaRequests bytes }
      endpoints { endpoint requests }
    }
  }
}
"""


def user_entry(url: str, **fields: str) -> dict[str, str]:
    """A user-scope account for acme_bob."""
    entry = {
        "id": USER_ACCOUNT,
        "provider": "reversinglabs",
        "base_url": url,
        "username": "acme_bob",
        "password": "rl_demo_bob",
        "scope": "user",
    }
    return {**entry, **fields}


@dataclass(frozen=True)
class Case:
    """A gateway account and whose usage it reads."""

    account: str
    user: str
    users: tuple[str, ...]
    """Whose usage the account's numbers sum."""
    company: bool
    windows: tuple[str, ...]
    """The windows of its quotas, in the vendor's order."""


COMPANY = Case(COMPANY_ACCOUNT, "acme_alice", ACME, True, ("DAY", "MONTH", "MONTH", "FIXED_TERM"))
USER = Case(USER_ACCOUNT, "acme_bob", ("acme_bob",), False, ("DAY", "MONTH", "FIXED_TERM"))
CASES = [pytest.param(COMPANY, id="company"), pytest.param(USER, id="user")]


@pytest.fixture
def gateway(make_gateway: Callable[[Settings], Gateway], revlabs: Running) -> Gateway:
    """One gateway with both accounts: rl-acme (company, acme_alice) and rl-bob (user)."""
    return make_gateway(
        settings_for(account_entry("reversinglabs", revlabs.url), user_entry(revlabs.url))
    )


def served_paths(emulator: ReversingLabsEmulator) -> list[str]:
    return [request.path[len(PREFIX) :] for request in emulator.served]


async def usage_of(gateway: Gateway, case: Case, first: str, last: str, granularity: str) -> Any:
    variables = {"id": case.account, "from": first, "to": last, "granularity": granularity}
    return (await gateway.data(USAGE_QUERY, variables))["account"]["usage"]


async def test_client_always_asks_for_json(
    gateway: Gateway, emulator: ReversingLabsEmulator
) -> None:
    for case in (COMPANY, USER):
        await gateway.data(QUOTAS_QUERY, {"id": case.account})
        await usage_of(gateway, case, "2025-11-15", "2026-03-18", "MONTH")
        await usage_of(gateway, case, "2026-03-01", "2026-03-18", "DAY")
    assert len(emulator.served) >= 16
    assert {request.param("format") for request in emulator.served} == {"json"}
    assert all(len(request.query) == len(dict(request.query)) for request in emulator.served)


@pytest.mark.parametrize(
    ("fields", "scope", "limits_path"),
    [
        ({}, "USER", "/limits"),
        ({"scope": "company"}, "COMPANY", "/limits/company"),
        ({"scope": None}, "USER", "/limits"),
    ],
    ids=["user", "company", "absent"],
)
async def test_scope_picks_the_user_or_company_paths(
    make_gateway: Callable[[Settings], Gateway],
    revlabs: Running,
    emulator: ReversingLabsEmulator,
    fields: dict[str, str | None],
    scope: str,
    limits_path: str,
) -> None:
    entry = {k: v for k, v in {**user_entry(revlabs.url), **fields}.items() if v is not None}
    gateway = make_gateway(settings_for(entry))
    account = (await gateway.data(QUOTAS_QUERY, {"id": USER_ACCOUNT}))["account"]
    await usage_of(gateway, USER, "2025-12-20", "2026-02-10", "MONTH")
    assert account["scope"] == scope
    company = "/company" if scope == "COMPANY" else ""
    assert sorted(set(served_paths(emulator))) == sorted(
        {
            limits_path,
            f"/usage{company}/daily",
            f"/usage{company}/monthly",
            f"/usage{company}/date_range",
            "/usage/yara",  # the vendor has no company variant
        }
    )


def test_an_unknown_scope_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(user_entry("http://127.0.0.1:9", scope="team"))
    assert (caught.value.account, caught.value.field) == (USER_ACCOUNT, "scope")
    assert "'team'" in str(caught.value)


# -- 8. quotas through the graph --------------------------------------------------------------


def expected_quota(
    data: ReversingLabsData,
    account: str,
    limit: Limit,
    users: Iterable[str],
    now: datetime = NOW,
) -> dict[str, Any]:
    """The graph's Quota for ``limit`` when the account reads ``users``' usage, at ``now``."""
    today = now.date()
    first, last = current_period(limit, today)
    report = usage_report(data, users, first, last, now)
    sized = limit.limit is None
    if sized:
        assert limit.limit_size is not None
        capacity, used = to_bytes(limit.limit_size), bytes_of(report, limit.products)
    else:
        assert limit.limit is not None
        capacity, used = limit.limit, queries_of(report, limit.products)
    flex = limit.free_flex
    split = {
        a["name"]: a["used_bytes"]
        for e in report
        if e["product"] in limit.products
        for a in e.get("allocation", [])
    }
    return {
        "accountId": account,
        "window": WINDOWS[limit.limit_type],
        "unit": "BYTES" if sized else "REQUESTS",
        "limit": capacity,
        "used": used,
        "remaining": max(capacity - used, 0),
        "utilization": used / capacity,
        "exceeded": data.limit_exceeded(limit, now),
        "resetsAt": next_reset(limit, today),
        "startsOn": limit.start.isoformat() if limit.start else None,
        "endsOn": limit.end.isoformat() if limit.end else None,
        "products": list(limit.products),
        "freeFlex": None
        if flex is None
        else {
            "limit": to_bytes(flex.size),
            "unit": "BYTES",
            "startsOn": flex.start.isoformat(),
            "endsOn": flex.end.isoformat(),
        },
        "perFileLimit": to_bytes(limit.limit_size_per_file) if limit.limit_size_per_file else None,
        "entitlements": [
            {
                "name": name,
                "enabled": value if isinstance(value, bool) else None,
                "amount": None if isinstance(value, bool) else value,
            }
            for name, value in limit.entitlements
        ],
        "allocations": [
            {"name": name, "limit": to_bytes(size), "used": split.get(name)}
            for name, size in limit.allocation
        ],
    }


def without_ids(quotas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in q.items() if k != "id"} for q in quotas]


@pytest.mark.parametrize("case", CASES)
async def test_quotas_follow_the_limits_with_used_from_the_matching_period(
    gateway: Gateway, data: ReversingLabsData, case: Case
) -> None:
    account = (await gateway.data(QUOTAS_QUERY, {"id": case.account}))["account"]
    assert account["source"] == {"state": "FRESH"}
    assert account["scope"] == ("COMPANY" if case.company else "USER")
    assert account["activeRulesets"] == data.yara_rulesets(case.user) > 0
    limits = data.company_limits("acme") if case.company else data.user_limits(case.user)
    expected = [expected_quota(data, case.account, lim, case.users) for lim in limits]
    quotas = account["quotas"]
    assert without_ids(quotas) == expected
    assert len({q["id"] for q in quotas}) == len(quotas)
    assert [(q["window"], q["resetsAt"]) for q in quotas] == [
        (window, RESETS[window]) for window in case.windows
    ]
    daily = quotas[0]
    assert daily["exceeded"] is True  # the vendor's verdict on the whole limit ...
    if not case.company:
        assert daily["used"] < daily["limit"]  # ... even where the user's own share is below it


async def test_quota_limits_in_bytes_use_decimal_units(
    gateway: Gateway, data: ReversingLabsData
) -> None:
    quotas = (await gateway.data(QUOTAS_QUERY, {"id": COMPANY_ACCOUNT}))["account"]["quotas"]
    (submissions,) = (q for q in quotas if q["unit"] == "BYTES")
    assert submissions["limit"] == 10**12  # 1000 GB
    assert submissions["perFileLimit"] == 10**9  # 1 GB
    assert submissions["freeFlex"]["limit"] == 200 * 10**9
    assert [a["limit"] for a in submissions["allocations"]] == [400 * 10**9, 600 * 10**9]
    assert sum(a["used"] for a in submissions["allocations"]) == submissions["used"] > 2**31
    assert {"name": "max_package_size", "enabled": None, "amount": 10_737_418_240} in (
        submissions["entitlements"]
    )


# -- 9. usage through the graph ---------------------------------------------------------------


def expected_usage(
    data: ReversingLabsData, users: Iterable[str], first: date, last: date, granularity: str
) -> dict[str, Any]:
    """The graph's Usage (without ``missingDays``), summed here from the data model's days."""
    users = tuple(users)
    buckets: dict[date, list[dict[str, Any]]] = {}
    for day in days(first, min(last, TODAY)):
        buckets.setdefault(BUCKETS[granularity](day), []).extend(
            usage_report(data, users, day, day)
        )
    series = [
        {
            "start": f"{start.isoformat()}T00:00:00Z",
            "requests": queries_of(entries),
            "quotaRequests": queries_of(entries),
            "bytes": bytes_of(entries),
        }
        for start, entries in buckets.items()
    ]
    whole = usage_report(data, users, first, last)
    endpoints = sorted(
        ({"endpoint": e["product"], "requests": e["number_of_queries"]} for e in whole),
        key=lambda e: (-e["requests"], e["endpoint"]),
    )
    return {
        "granularity": granularity,
        "requests": queries_of(whole),
        "quotaRequests": queries_of(whole),
        "bytes": bytes_of(whole),
        "series": series,
        "endpoints": endpoints,
    }


def assert_usage(
    usage: dict[str, Any], data: ReversingLabsData, case: Case, first: str, last: str, unit: str
) -> None:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    assert usage.pop("missingDays") == []
    assert usage == expected_usage(data, case.users, start, end, unit)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("first", "last", "granularity"),
    [
        ("2026-03-01", "2026-03-31", "DAY"),
        ("2026-02-04", "2026-03-25", "WEEK"),
    ],
    ids=["day", "week"],
)
async def test_day_and_week_usage_from_the_daily_paths(
    gateway: Gateway,
    emulator: ReversingLabsEmulator,
    data: ReversingLabsData,
    case: Case,
    first: str,
    last: str,
    granularity: str,
) -> None:
    usage = await usage_of(gateway, case, first, last, granularity)
    assert_usage(usage, data, case, first, last, granularity)
    daily = "/usage/company/daily" if case.company else "/usage/daily"
    assert [(r.path[len(PREFIX) :], r.param("from"), r.param("to")) for r in emulator.served] == [
        (daily, first, min(last, TODAY.isoformat()))
    ]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("first", "last", "calls"),
    [
        (
            "2025-11-15",
            "2026-03-31",
            {("monthly", "2025-12", "2026-03"), ("daily", "2025-11-15", "2025-11-30")},
        ),
        (
            "2025-11-15",
            "2026-02-10",
            {
                ("monthly", "2025-12", "2026-01"),
                ("daily", "2025-11-15", "2025-11-30"),
                ("daily", "2026-02-01", "2026-02-10"),
            },
        ),
        ("2026-01-01", "2026-02-28", {("monthly", "2026-01", "2026-02")}),
        (
            "2024-01-01",
            "2026-03-18",
            {
                ("monthly", "2024-01", "2024-12"),
                ("monthly", "2025-01", "2025-12"),
                ("monthly", "2026-01", "2026-03"),
            },
        ),
    ],
    ids=["to-this-month", "partial-both-ends", "whole-months", "27-months"],
)
async def test_month_usage_reads_whole_months_from_the_monthly_paths(
    gateway: Gateway,
    emulator: ReversingLabsEmulator,
    data: ReversingLabsData,
    case: Case,
    first: str,
    last: str,
    calls: set[tuple[str, str, str]],
) -> None:
    usage = await usage_of(gateway, case, first, last, "MONTH")
    assert_usage(usage, data, case, first, last, "MONTH")
    assert all(point["requests"] > 0 for point in usage["series"])
    scope = "/company" if case.company else ""
    asked = [(r.path, r.param("from"), r.param("to")) for r in emulator.served]
    assert sorted(asked) == sorted((f"{PREFIX}/usage{scope}/{k}", a, b) for k, a, b in calls)


BUCKETS_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      series { start requests bytes missingDays
               endpoints { endpoint requests consumesQuota bytes } }
    }
  }
}
"""


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("first", "last", "granularity"),
    [("2025-11-15", "2026-03-31", "MONTH"), ("2026-02-04", "2026-03-25", "WEEK")],
    ids=["month", "week"],
)
async def test_each_bucket_lists_its_products(
    gateway: Gateway, data: ReversingLabsData, case: Case, first: str, last: str, granularity: str
) -> None:
    """Each bucket's products, summed here from the data model's days of the bucket in the
    range: from the daily paths, and for whole months from the monthly totals (above 2^31)."""
    variables = {"id": case.account, "from": first, "to": last, "granularity": granularity}
    series = (await gateway.data(BUCKETS_QUERY, variables))["account"]["usage"]["series"]
    in_range: dict[date, list[date]] = {}
    for day in days(date.fromisoformat(first), min(date.fromisoformat(last), TODAY)):
        in_range.setdefault(BUCKETS[granularity](day), []).append(day)
    expected = []
    for bucket, bucket_days in sorted(in_range.items()):
        report = usage_report(data, case.users, bucket_days[0], bucket_days[-1])
        endpoints = [
            {
                "endpoint": e["product"],
                "requests": e["number_of_queries"],
                "consumesQuota": True,
                "bytes": e.get("used_bytes"),
            }
            for e in report
        ]
        endpoints.sort(key=lambda e: (-e["requests"], e["endpoint"]))
        expected.append(
            {
                "start": f"{bucket.isoformat()}T00:00:00Z",
                "requests": queries_of(report),
                "bytes": bytes_of(report),
                "missingDays": 0,
                "endpoints": endpoints,
            }
        )
    assert series == expected
    if case is COMPANY and granularity == "MONTH":
        whole = [p for p in series if p["start"] < "2026-03"][1:]  # December to February
        assert all(p["endpoints"][0]["requests"] > 2**31 for p in whole)


async def test_day_ranges_over_365_days_are_split_and_merged_exactly(
    gateway: Gateway, emulator: ReversingLabsEmulator, data: ReversingLabsData
) -> None:
    first, last = "2025-01-01", "2026-03-18"
    usage = await usage_of(gateway, COMPANY, first, last, "DAY")
    assert len(usage["series"]) == 442
    assert_usage(usage, data, COMPANY, first, last, "DAY")
    runs = sorted(
        (date.fromisoformat(r.param("from") or ""), date.fromisoformat(r.param("to") or ""))
        for r in emulator.served
    )
    assert runs == [(date(2025, 1, 1), date(2025, 12, 31)), (date(2026, 1, 1), TODAY)]
    assert all((end - start).days + 1 <= 365 for start, end in runs)


@pytest.mark.parametrize("granularity", ["HOUR", "MINUTE"])
async def test_hour_and_minute_usage_are_refused(
    gateway: Gateway, emulator: ReversingLabsEmulator, granularity: str
) -> None:
    variables = {
        "id": COMPANY_ACCOUNT,
        "from": "2026-03-18",
        "to": "2026-03-18",
        "granularity": granularity,
    }
    result = await gateway.query(USAGE_QUERY, variables)
    assert result["data"] is None or result["data"]["account"] is None
    (error,) = result["errors"]
    assert "ReversingLabs reports usage per day" in error["message"]
    assert granularity.lower() in error["message"]
    assert emulator.total_calls() == 0


# -- 10. numbers above 2^31 end to end --------------------------------------------------------

MONTH_END = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
BIG_COUNT = Limit(
    "acme-monthly-reputation-5g", "acme", "monthly", (REPUTATION,), ACME, limit=5_000_000_000
)
BIG_SIZE = Limit(
    "acme-monthly-submissions-1000gb",
    "acme",
    "monthly",
    (SUBMISSIONS,),
    ("acme_alice", "acme_bob"),
    limit_size=Size(1000, "GB"),
)


def month_end_clock() -> datetime:
    return MONTH_END


@pytest.fixture
async def late_march() -> AsyncIterator[tuple[ReversingLabsEmulator, Gateway]]:
    """An emulator and a gateway at 2026-03-31T23:30Z with a 5e9 count and a 1000 GB limit."""
    emulator = ReversingLabsEmulator(
        seed=SEED, clock=month_end_clock, limits=(*DEFAULT_LIMITS, BIG_COUNT, BIG_SIZE)
    )
    with ServerThread(emulator) as server:
        settings = settings_for(account_entry("reversinglabs", server.urls[0]))
        async with httpx.AsyncClient(verify=TLS) as http:
            gateway = Gateway(create_app(settings, http_client=http, clock=month_end_clock))
            async with gateway.client:
                yield emulator, gateway


async def test_numbers_above_2_31_arrive_exactly_end_to_end(
    late_march: tuple[ReversingLabsEmulator, Gateway],
) -> None:
    emulator, gateway = late_march
    data = emulator.data
    response = await gateway.post(QUOTAS_QUERY, {"id": COMPANY_ACCOUNT})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    quotas = without_ids(response.json()["data"]["account"]["quotas"])
    (count,) = (q for q in quotas if q["limit"] == 5_000_000_000)
    assert count == expected_quota(data, COMPANY_ACCOUNT, BIG_COUNT, ACME, MONTH_END)
    assert count["used"] > 2**31
    assert (count["exceeded"], count["resetsAt"]) == (False, "2026-04-01T00:00:00Z")
    assert f'"limit":5000000000,"used":{count["used"]},' in response.text.replace(" ", "")

    (size,) = (q for q in quotas if q["unit"] == "BYTES" and q["startsOn"] is None)
    assert size == expected_quota(data, COMPANY_ACCOUNT, BIG_SIZE, ACME, MONTH_END)
    assert size["limit"] == 1_000_000_000_000
    assert size["used"] > 2**31

    usage = (
        await gateway.data(
            USAGE_QUERY,
            {
                "id": COMPANY_ACCOUNT,
                "from": "2026-02-01",
                "to": "2026-03-31",
                "granularity": "MONTH",
            },
        )
    )["account"]["usage"]
    totals = [
        queries_of(usage_report(data, ACME, a, b, MONTH_END))
        for a, b in months(date(2026, 2, 1), 2)
    ]
    assert [p["requests"] for p in usage["series"]] == totals
    assert min(totals) > 2**31
    ranges = [(r.path, r.param("from"), r.param("to")) for r in emulator.served if r.param("from")]
    assert ranges == [(f"{PREFIX}/usage/company/monthly", "2026-02", "2026-03")]


async def test_quota_ids_stay_unique_when_the_vendor_repeats_products(
    late_march: tuple[ReversingLabsEmulator, Gateway],
) -> None:
    _, gateway = late_march
    quotas = (await gateway.data(QUOTAS_QUERY, {"id": COMPANY_ACCOUNT}))["account"]["quotas"]
    assert len(quotas) == len(DEFAULT_LIMITS) - 1 + 2  # initech's limit is not ACME's
    ids = [q["id"] for q in quotas]
    assert len(set(ids)) == len(ids), ids


async def test_a_user_without_the_entitlement_is_a_config_refusal(revlabs, make_gateway) -> None:
    """acme_noent's credentials work but it lacks TCA-9999: the emulator answers 403 with an
    empty body. That is the account's config (REQUEST_REJECTED, said in words), not AUTH_FAILED."""
    entry = user_entry(revlabs.url, username=NOENT[0], password=NOENT[1])
    gateway = make_gateway(settings_for(entry))
    data = await gateway.data(
        "{ accounts { source { state cause httpStatus vendor message } quotas { id } } }"
    )
    (account,) = data["accounts"]
    assert account["quotas"] == []
    source = account["source"]
    assert (source["state"], source["cause"], source["httpStatus"], source["vendor"]) == (
        "UNAVAILABLE",
        "REQUEST_REJECTED",
        403,
        "ReversingLabs",
    )
    assert "not entitled to the Customer Usage API (TCA-9999)" in source["message"]


# -- 9. limits in one round ---------------------------------------------------------------------

LIMIT_READS = 5
"""What a cold limits read asks: the limits, the active rulesets, and the usage of today, this
month and the fixed terms (read ahead: the vendor document says "This API is not rate limited",
and the Customer Usage product is under no quota, so reading ahead spends nothing)."""


@pytest.mark.parametrize("case", CASES)
async def test_a_cold_limits_read_asks_everything_in_one_round(
    make_gateway: Callable[[Settings], Gateway], case: Case
) -> None:
    """Every request of a cold read reaches the vendor before any of them is answered: each
    is held until all five wait together (a second round would never meet the first)."""
    emulator = ReversingLabsEmulator(seed=SEED, clock=lambda: NOW)
    door = Rendezvous(emulator, LIMIT_READS)
    with ServerThread(door) as server:
        url = server.urls[0]
        gateway = make_gateway(settings_for(account_entry("reversinglabs", url), user_entry(url)))
        account = (await gateway.data(QUOTAS_QUERY, {"id": case.account}))["account"]
    assert (door.arrived, door.together) == (LIMIT_READS, LIMIT_READS)
    company = "/company" if case.company else ""
    limits = "/limits/company" if case.company else "/limits"
    assert sorted(served_paths(emulator)) == sorted(
        [
            limits,
            "/usage/yara",
            f"/usage{company}/daily",
            f"/usage{company}/monthly",
            f"/usage{company}/date_range",
        ]
    )
    assert account["source"] == {"state": "FRESH"}
    data = emulator.data
    limit_table = data.company_limits("acme") if case.company else data.user_limits(case.user)
    expected = [expected_quota(data, case.account, lim, case.users) for lim in limit_table]
    assert without_ids(account["quotas"]) == expected


@pytest.mark.parametrize("status", [404, 500])
async def test_a_failed_read_ahead_that_no_limit_needs_does_not_fail_the_account(
    make_gateway: Callable[[Settings], Gateway], status: int
) -> None:
    """initech_dan has only a daily limit: his fixed-term usage is read ahead for nothing, and
    its failure is dropped. ACME's fixed-term license needs it: there the failure shows."""
    emulator = ReversingLabsEmulator(seed=SEED, clock=lambda: NOW)
    door = Refusing(emulator, "/date_range", status)
    with ServerThread(door) as server:
        url = server.urls[0]
        dan = user_entry(url, id="rl-dan", username=DAN[0], password=DAN[1])
        gateway = make_gateway(settings_for(dan, account_entry("reversinglabs", url)))
        answer = await gateway.data(
            "{ accounts { id source { state httpStatus } quotas { limit used } } }"
        )
    assert door.refused == 2 * (1 + (RETRIES if status >= 500 else 0))  # 5xx are retried
    by_id = {a["id"]: a for a in answer["accounts"]}
    assert by_id["rl-dan"]["source"] == {"state": "FRESH", "httpStatus": None}
    (daily,) = emulator.data.user_limits(DAN[0])
    assert by_id["rl-dan"]["quotas"] == [
        {"limit": daily.limit, "used": emulator.data.limit_used(daily, NOW, (DAN[0],))}
    ]
    assert by_id[COMPANY_ACCOUNT]["source"] == {"state": "UNAVAILABLE", "httpStatus": status}
    assert by_id[COMPANY_ACCOUNT]["quotas"] == []
