"""Exports: usage as rows (gateway/export.py), the checked parameters (gateway/export_request.py)
and ``GET /export/usage`` served on loopback against the emulators.

Rows are checked exactly: first on usage built here, then over real HTTP against numbers summed
here from the emulators' seeded data models.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from gateway.app import create_app
from gateway.domain import (
    EndpointUsage,
    FailureCause,
    Granularity,
    SourceState,
    SourceStatus,
    Usage,
    UsagePoint,
    UsageReport,
    day_start,
)
from gateway.export import COLUMNS, ExportFormat, ExportRow, export_rows, render, to_csv, to_json
from gateway.export_request import (
    EXPORT_QUERY,
    GRANULARITIES,
    ExportRefused,
    export_cost,
    longest_export,
    parse_export,
)
from gateway.export_routes import export_route
from gateway.graphql.cost import HEAVY_COST
from gateway.servers import ServerThread
from gateway.settings import DEFAULT_MAX_QUERY_COST
from gateway.usage import build_usage
from providers.emulation import Fault
from providers.virustotal.emulator import VirusTotalData
from tests.conftest import NOW, TLS, Gateway, account_entry, clock, settings_for
from tests.providers.test_reversinglabs import ACME, usage_report
from tests.test_history import snapshot

TODAY = NOW.date()  # 2026-03-18, a Wednesday
FRESH = SourceStatus(SourceState.FRESH)
VT_RETAINED = TODAY - timedelta(days=59)  # 2026-01-18: VirusTotal keeps 60 days
PREMIUM = "ra_live_premium_demo"


def at(day: date) -> datetime:
    return day_start(day)


def ep(name: str, requests: int, quota: bool = True, size: int | None = None) -> EndpointUsage:
    return EndpointUsage(name, requests, quota, bytes=size)


def usage(
    series: tuple[UsagePoint, ...],
    missing: tuple[date, ...] = (),
    granularity: Granularity = Granularity.DAY,
    source: SourceStatus = FRESH,
) -> Usage:
    return Usage(
        date(2026, 3, 2),
        date(2026, 3, 15),
        granularity,
        sum(p.requests for p in series),
        sum(p.quota_requests for p in series),
        None,
        series,
        (),
        missing,
        source=source,
    )


# -- rows ----------------------------------------------------------------------------------------


def test_one_row_per_bucket_and_endpoint() -> None:
    point = UsagePoint(
        at(date(2026, 3, 2)),
        17,
        11,
        endpoints=(ep("/a", 11), ep("/b", 6, quota=False)),
    )
    assert export_rows(usage((point,))) == [
        ExportRow(at(date(2026, 3, 2)), "/a", 11, 11, True, None, False),
        ExportRow(at(date(2026, 3, 2)), "/b", 6, 0, False, None, False),  # spends no quota
    ]


def test_a_bucket_without_a_split_is_one_row_of_its_totals() -> None:
    points = (
        UsagePoint(at(date(2026, 3, 2)), 40, 39, bytes=7),
        UsagePoint(at(date(2026, 3, 3)), 0, 0),  # known, unused: a row of zeros, not a gap
    )
    assert export_rows(usage(points)) == [
        ExportRow(at(date(2026, 3, 2)), None, 40, 39, None, 7, False),
        ExportRow(at(date(2026, 3, 3)), None, 0, 0, None, None, False),
    ]


def test_a_split_of_some_days_gets_a_row_for_the_rest() -> None:
    """A week whose split covers some of its days: its rows still add up to its totals."""
    point = UsagePoint(at(date(2026, 3, 2)), 50, 45, bytes=900, endpoints=(ep("/a", 20, size=300),))
    rows = export_rows(usage((point,), granularity=Granularity.WEEK))
    assert rows == [
        ExportRow(at(date(2026, 3, 2)), "/a", 20, 20, True, 300, False),
        ExportRow(at(date(2026, 3, 2)), None, 30, 25, None, 600, False),
    ]
    assert sum(r.requests or 0 for r in rows) == point.requests
    whole = UsagePoint(at(date(2026, 3, 9)), 20, 20, endpoints=(ep("/a", 20),))
    assert [r.endpoint for r in export_rows(usage((whole,)))] == ["/a"]  # no empty remainder


def test_missing_days_are_rows_of_their_own_in_order() -> None:
    """Weeks of 2026-03-02..15: the 2nd and 4th missing in the first, all of the second but
    the 15th (a Sunday): every missing day is a row of its own, by date, after the rows of a
    bucket starting that day."""
    first = UsagePoint(at(date(2026, 3, 2)), 5, 5, endpoints=(ep("/a", 5),), missing_days=2)
    second = UsagePoint(at(date(2026, 3, 9)), 3, 3, missing_days=6)
    missing = (date(2026, 3, 2), date(2026, 3, 4), *(date(2026, 3, d) for d in range(9, 15)))
    rows = export_rows(usage((first, second), missing, Granularity.WEEK))
    assert rows[0] == ExportRow(at(date(2026, 3, 2)), "/a", 5, 5, True, None, False)
    assert rows[3] == ExportRow(at(date(2026, 3, 9)), None, 3, 3, None, None, False)
    assert [(r.start.date(), r.missing) for r in rows] == [
        (date(2026, 3, 2), False),
        (date(2026, 3, 2), True),
        (date(2026, 3, 4), True),
        (date(2026, 3, 9), False),
        *((date(2026, 3, d), True) for d in range(9, 15)),
    ]
    assert all(
        (r.requests, r.quota_requests, r.consumes_quota, r.bytes, r.endpoint)
        == (None, None, None, None, None)
        for r in rows
        if r.missing
    )


def test_week_and_month_rows_roll_each_days_split_up() -> None:
    """Days 2026-02-23..03-08 with a split (the 1st to 3rd unknown): WEEK and MONTH rows sum
    each endpoint over the bucket's known days; missing days are rows in both."""
    known = [date(2026, 2, 23) + timedelta(days=i) for i in range(14)]
    known = [d for d in known if d not in (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3))]
    report = UsageReport(
        points=tuple(UsagePoint(at(d), d.day + 1, d.day) for d in known),
        endpoints=(),
        known_days=frozenset(known),
        day_endpoints={d: (ep("/a", d.day), ep("/free", 1, quota=False)) for d in known},
    )
    start, end = date(2026, 2, 23), date(2026, 3, 8)

    def rows_of(granularity: Granularity) -> list[tuple[str, str | None, int | None, bool]]:
        built = build_usage(report, start, end, end, granularity, FRESH)
        return [
            (r.start.date().isoformat(), r.endpoint, r.requests, r.missing)
            for r in export_rows(built)
        ]

    feb = [d for d in known if d.month == 2]
    march = [d for d in known if d.month == 3]
    assert rows_of(Granularity.WEEK) == [
        ("2026-02-23", "/a", sum(d.day for d in feb), False),
        ("2026-02-23", "/free", 6, False),
        ("2026-03-01", None, None, True),
        ("2026-03-02", "/a", sum(d.day for d in march), False),  # the week of the 2nd
        ("2026-03-02", "/free", 5, False),
        ("2026-03-02", None, None, True),
        ("2026-03-03", None, None, True),
    ]
    assert rows_of(Granularity.MONTH) == [
        ("2026-02-01", "/a", sum(d.day for d in feb), False),  # the month starts before `from`
        ("2026-02-01", "/free", 6, False),
        ("2026-03-01", "/a", sum(d.day for d in march), False),
        ("2026-03-01", "/free", 5, False),
        ("2026-03-01", None, None, True),
        ("2026-03-02", None, None, True),
        ("2026-03-03", None, None, True),
    ]


# -- text ----------------------------------------------------------------------------------------


BIG = 2**53 + 1
"""Above 2^31, and above what a double holds exactly."""


def sample() -> Usage:
    point = UsagePoint(
        at(date(2026, 3, 2)),
        BIG + 3,
        BIG,
        bytes=10**12,
        endpoints=(ep("TCA-0101 File Reputation", BIG, size=10**12), ep('/x,"y"', 3, False)),
    )
    return usage((point,), (date(2026, 3, 3),))


def test_csv_is_exactly_the_columns_and_rows() -> None:
    assert COLUMNS == (
        "start",
        "endpoint",
        "requests",
        "quota_requests",
        "consumes_quota",
        "bytes",
        "missing",
    )
    assert to_csv(export_rows(sample())) == (
        "start,endpoint,requests,quota_requests,consumes_quota,bytes,missing\n"
        "2026-03-02T00:00:00Z,TCA-0101 File Reputation,9007199254740993,9007199254740993,true,"
        "1000000000000,false\n"
        '2026-03-02T00:00:00Z,"/x,""y""",3,0,false,,false\n'
        "2026-03-03T00:00:00Z,,,,,,true\n"
    )
    assert to_csv([]) == ",".join(COLUMNS) + "\n"


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_an_endpoint_that_reads_as_a_formula_is_written_as_text(name) -> None:
    """Vendors name the endpoints: CSV opened in a spreadsheet must not run one as a formula."""
    point = UsagePoint(at(date(2026, 3, 2)), 3, 3, endpoints=(ep(name, 3),))
    [_, line] = to_csv(export_rows(usage((point,), ()))).splitlines()
    [row] = csv.reader([line])
    assert row[1] == "'" + name
    json_rows = json.loads(to_json("a", usage((point,), ()), export_rows(usage((point,), ()))))
    assert json_rows["rows"][0]["endpoint"] == name  # JSON is for scripts: the name as it is


def test_json_has_the_source_and_one_object_per_row_with_exact_numbers() -> None:
    failed = SourceStatus(
        SourceState.UNAVAILABLE,
        datetime(2026, 3, 18, 9, 30, 5, 123456, tzinfo=UTC),
        "VirusTotal failed (HTTP 503)",
        cause=FailureCause.VENDOR_ERROR,
    )
    text = render("rl-acme", replace(sample(), source=failed), ExportFormat.JSON)
    assert text.endswith("}\n") and "\n" not in text[:-1]
    assert '"requests":9007199254740993,' in text  # an integer literal, every digit
    assert json.loads(text) == {
        "account": "rl-acme",
        "from": "2026-03-02",
        "to": "2026-03-15",
        "granularity": "DAY",
        "source": {
            "state": "UNAVAILABLE",
            "fetchedAt": "2026-03-18T09:30:05Z",
            "message": "VirusTotal failed (HTTP 503)",
            "cause": "VENDOR_ERROR",
            "retryAt": None,
        },
        "rows": [
            {
                "start": "2026-03-02T00:00:00Z",
                "endpoint": "TCA-0101 File Reputation",
                "requests": BIG,
                "quotaRequests": BIG,
                "consumesQuota": True,
                "bytes": 10**12,
                "missing": False,
            },
            {
                "start": "2026-03-02T00:00:00Z",
                "endpoint": '/x,"y"',
                "requests": 3,
                "quotaRequests": 0,
                "consumesQuota": False,
                "bytes": None,
                "missing": False,
            },
            {
                "start": "2026-03-03T00:00:00Z",
                "endpoint": None,
                "requests": None,
                "quotaRequests": None,
                "consumesQuota": None,
                "bytes": None,
                "missing": True,
            },
        ],
    }
    assert render("rl-acme", sample(), ExportFormat.CSV) == to_csv(export_rows(sample()))


# -- parameters ----------------------------------------------------------------------------------


def parse(**values: str | None) -> Any:
    given = {"account": "vt-soc", "from": "2026-03-01", "to": "2026-03-18", **values}
    return parse_export(given, ["vt-soc", "repute"], TODAY, DEFAULT_MAX_QUERY_COST)


def test_parameters_default_to_day_and_csv() -> None:
    wanted = parse()
    assert (wanted.granularity, wanted.form, wanted.filename) == (
        Granularity.DAY,
        ExportFormat.CSV,
        "usage-vt-soc-2026-03-01-2026-03-18.csv",
    )
    assert parse(granularity="week", format="JSON").granularity is Granularity.WEEK


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=lambda g: g.name)
def test_the_longest_range_is_the_one_the_query_cost_limit_allows(granularity) -> None:
    """At each granularity, the longest range up to today passes and a day more is refused;
    a lower max_query_cost gives a shorter one. With the default a DAY export spans a year."""
    longest = longest_export(granularity, TODAY, DEFAULT_MAX_QUERY_COST)
    first = TODAY - timedelta(days=longest - 1)
    accepted = parse(**{"from": first.isoformat(), "granularity": granularity.name})
    assert accepted.cost <= DEFAULT_MAX_QUERY_COST
    with pytest.raises(ExportRefused) as refused:
        parse(**{"from": (first - timedelta(days=1)).isoformat(), "granularity": granularity.name})
    assert refused.value.parameter == "from"
    assert f"a {granularity.name} export spans at most {longest:,}" in refused.value.reason
    assert longest_export(granularity, TODAY, 20_000) < longest / 4
    assert {"DAY": 366, "WEEK": 7 * 366, "MONTH": 20 * 366}[granularity.name] <= longest


# -- the route, served on loopback ---------------------------------------------------------------


@pytest.fixture
def accounts(emulators) -> list[dict[str, str]]:
    return [
        account_entry(provider, emulators[provider].url)
        for provider in ("virustotal", "reversinglabs", "reputeapi", "zkscore")
    ]


@pytest.fixture
def served(accounts) -> Iterator[str]:
    """A gateway on loopback (no history store) over every vendor's first demo account."""
    with ServerThread(create_app(settings_for(*accounts), clock=clock)) as server:
        yield server.urls[0]


def get(url: str, query: str) -> httpx.Response:
    return httpx.get(f"{url}/export/usage?{query}", timeout=60)


def csv_rows(response: httpx.Response) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(COLUMNS)
    return rows[1:]


def vt_rows(
    data: VirusTotalData, first: date, last: date, week: bool, retained: date = VT_RETAINED
) -> list[list[str]]:
    """The CSV rows of soc-team's usage, summed here from the data model (days before
    ``retained`` missing)."""
    buckets: dict[date, Counter[tuple[str, bool]]] = {}
    missing = []
    for day in (first + timedelta(days=i) for i in range((last - first).days + 1)):
        if day < retained:
            missing.append([f"{day}T00:00:00Z", "", "", "", "", "", "true"])
            continue
        consuming, free, _ = data.day("soc-team", day, 1.0)
        bucket = day - timedelta(days=day.weekday()) if week else day
        counts = buckets.setdefault(bucket, Counter())
        for per_endpoint, quota in ((consuming, True), (free, False)):
            counts.update({(f"/api/v3/({n})", quota): c for n, c in per_endpoint.items()})
    rows = []
    for bucket, counts in buckets.items():
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], not item[0][1]))
        start = f"{bucket}T00:00:00Z"
        rows += [
            [start, name, str(n), str(n if quota else 0), str(quota).lower(), "", "false"]
            for (name, quota), n in ordered
        ] or [[start, "", "0", "0", "", "", "false"]]
    return sorted(rows + missing, key=lambda row: (row[0], row[6]))


@pytest.mark.parametrize("granularity", ["DAY", "WEEK"])
def test_csv_download_is_the_seeded_data(served, emulators, granularity) -> None:
    """VirusTotal from 2026-01-01: days before its 60-day retention are missing rows, the rest
    one row per bucket and endpoint (a week known in part: its missing days as rows too)."""
    first = date(2026, 1, 1)
    response = get(served, f"account=vt-soc&from={first}&to=2026-03-31&granularity={granularity}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="usage-vt-soc-2026-01-01-2026-03-31.csv"'
    )
    assert response.headers["x-usage-gateway-source"] == "FRESH"
    rows = csv_rows(response)
    emulator = emulators["virustotal"].emulator
    assert rows == vt_rows(emulator.data, first, TODAY, granularity == "WEEK")  # nothing past today
    assert sum(row[6] == "true" for row in rows) == 17  # 1 to 17 January
    if granularity == "WEEK":
        assert ["2026-01-12T00:00:00Z", "true"] in [[r[0], r[6]] for r in rows]
        assert any(r[0] == "2026-01-12T00:00:00Z" and r[6] == "false" for r in rows)


def test_json_download_of_months_keeps_counts_above_2_31(served, emulators) -> None:
    """ReversingLabs' company usage by month (read from its monthly totals), per product."""
    response = get(
        served, "account=rl-acme&from=2025-12-01&to=2026-02-28&granularity=MONTH&format=json"
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "content-disposition" not in response.headers
    answer = response.json()
    data = emulators["reversinglabs"].emulator.data
    expected = []
    for first, last in (
        (date(2025, 12, 1), date(2025, 12, 31)),
        (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
    ):
        report = sorted(
            usage_report(data, ACME, first, last),
            key=lambda e: (-e["number_of_queries"], e["product"]),
        )
        expected += [
            {
                "start": f"{first}T00:00:00Z",
                "endpoint": e["product"],
                "requests": e["number_of_queries"],
                "quotaRequests": e["number_of_queries"],
                "consumesQuota": True,
                "bytes": e.get("used_bytes"),
                "missing": False,
            }
            for e in report
        ]
    assert answer["rows"] == expected
    assert {k: answer[k] for k in ("account", "from", "to", "granularity")} == {
        "account": "rl-acme",
        "from": "2025-12-01",
        "to": "2026-02-28",
        "granularity": "MONTH",
    }
    assert answer["source"]["state"] == "FRESH" and answer["source"]["cause"] is None
    big = [row["requests"] for row in answer["rows"] if row["requests"] > 2**31]
    assert len(big) == 3  # File Reputation, every month
    assert all(re.search(rf'"requests":{n},', response.text) for n in big)


def test_vendors_without_a_daily_split_give_one_row_per_bucket(served, emulators) -> None:
    """ReputeAPI splits only whole ranges by endpoint: a day is one row of its totals; the
    graph's buckets list no endpoints for it, nor for ZKScore, while the range's do."""
    response = get(served, "account=repute-premium&from=2026-03-10&to=2026-03-18")
    assert response.status_code == 200, response.text
    emulator = emulators["reputeapi"].emulator
    key = emulator.data.keys[PREMIUM]
    expected = []
    for day in (date(2026, 3, 10) + timedelta(days=i) for i in range(9)):
        n = str(emulator.data.day(key, day, NOW).requests)
        expected.append([f"{day}T00:00:00Z", "", n, n, "", "", "false"])
    assert csv_rows(response) == expected
    query = """{ accounts { id usage(from: "2026-03-11", to: "2026-03-18", granularity: WEEK) {
      endpoints { endpoint } series { requests endpoints { endpoint } } } } }"""
    answer = httpx.post(f"{served}/graphql", json={"query": query}, timeout=60).json()
    by_id = {a["id"]: a["usage"] for a in answer["data"]["accounts"]}
    for account in ("repute-premium", "zks-prod"):
        assert by_id[account]["endpoints"], account
        assert by_id[account]["series"] and all(
            p["endpoints"] == [] and p["requests"] > 0 for p in by_id[account]["series"]
        ), account
    assert all(p["endpoints"] for p in by_id["vt-soc"]["series"])


def error(message: str, parameter: str, code: str = "BAD_USER_INPUT") -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, "parameter": parameter}}]}


OK = "account=vt-soc&from=2026-03-01&to=2026-03-18"
HOSTILE = [
    (
        "account=vt-soc&from=2026-02-30&to=2026-03-01",
        "from",
        '"2026-02-30" is not a date: February 2026 has 28 days, not 30 '
        "(expected YYYY-MM-DD, e.g. 2026-01-31)",
    ),
    (
        "account=vt-soc&from=2026-03-01&to=2026-13-01",
        "to",
        '"2026-13-01" is not a date: there is no month 13 (expected YYYY-MM-DD, e.g. 2026-01-31)',
    ),
    (
        "account=vt-soc&from=20260301&to=2026-03-18",
        "from",
        '"20260301" is not a date of the form YYYY-MM-DD, e.g. 2026-01-31',
    ),
    (
        f"account=vt-soc&from={'9' * 500}&to=2026-03-18",
        "from",
        f'"{"9" * 39}…" is not a date of the form YYYY-MM-DD, e.g. 2026-01-31',
    ),
    (
        "account=vt-soc&from=2026-03-10&to=2026-03-01",
        "from",
        "2026-03-10 is after `to` (2026-03-01)",
    ),
    (
        "account=vt-soc&from=1999-12-31&to=2000-01-02",
        "from",
        "1999-12-31 is before 2000-01-01, the first day answered",
    ),
    (
        "account=vt-soc&from=2026-03-01&to=2027-03-20",
        "to",
        "2027-03-20 is more than 366 days in the future",
    ),
    (
        "account=vt-soc&from=2000-01-01&to=2026-03-18",
        "from",
        "the range 2000-01-01..2026-03-18 has 9,574 days up to today, and a DAY export spans at "
        "most 387 (what max_query_cost = 100,000 allows the GraphQL query for the same rows); ask "
        "for fewer days or a coarser granularity (at most: WEEK 2,582, MONTH 8,932)",
    ),
    ("from=2026-03-01&to=2026-03-18", "account", "missing; expected an account id"),
    ("", "account", "missing; expected an account id"),
    ("account=vt-soc&to=2026-03-18", "from", "missing; expected YYYY-MM-DD, e.g. 2026-01-31"),
    ("account=vt-soc&from=2026-03-01&to=", "to", "missing; expected YYYY-MM-DD, e.g. 2026-01-31"),
    (f"{OK}&format=xml", "format", '"xml" is not one of csv, json'),
    (f"{OK}&granularity=HOUR", "granularity", '"HOUR" is not one of DAY, WEEK, MONTH'),
    (f"{OK}&account=repute-premium", "account", "given more than once"),
    (
        f"{OK}&token=x",
        "token",
        "unknown parameter; the parameters are account, from, to, granularity, format",
    ),
    (f"{OK}&from=%ff", "query", "the query string is not UTF-8 once percent-decoded"),
    (
        "&".join(["format=csv"] * 21),
        "query",
        "more than 20 parameters; the parameters are account, from, to, granularity, format",
    ),
]


@pytest.mark.parametrize(("query", "parameter", "reason"), HOSTILE)
def test_hostile_parameters_are_400s_naming_the_parameter(
    served, emulators, caplog, query, parameter, reason
) -> None:
    caplog.set_level(logging.INFO)
    response = get(served, query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == error(f"Parameter '{parameter}': {reason}", parameter)
    assert "Traceback" not in response.text and "Error" not in response.text
    assert all(e.emulator.total_calls() == 0 for e in emulators.values())  # refused before work
    assert [r.levelname for r in caplog.records if r.name == "gateway.export_routes"] == ["INFO"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unknown_account_is_a_404(served, emulators) -> None:
    response = get(served, "account=nope&from=2026-03-01&to=2026-03-18")
    assert response.status_code == 404
    assert response.json() == error(
        "Parameter 'account': no account \"nope\"", "account", "NOT_FOUND"
    )
    assert all(e.emulator.total_calls() == 0 for e in emulators.values())


def test_only_get_is_allowed(served) -> None:
    response = httpx.post(f"{served}/export/usage?{OK}", timeout=10)
    assert response.status_code == 405
    assert response.json()["errors"][0]["message"].startswith("Method Not Allowed")


def test_the_range_limit_is_the_graphqls(accounts, emulators) -> None:
    """With max_query_cost lowered, the export refuses the range exactly where the GraphQL
    query for the same rows is refused as too costly."""
    limit = 20_000
    longest = longest_export(Granularity.DAY, TODAY, limit)
    settings = settings_for(*accounts, max_query_cost=limit)
    with ServerThread(create_app(settings, clock=clock)) as server:
        url = server.urls[0]
        for days, allowed in ((longest, True), (longest + 1, False)):
            first = (TODAY - timedelta(days=days - 1)).isoformat()
            export = get(url, f"account=repute-premium&from={first}&to={TODAY}")
            variables = {
                "id": "repute-premium",
                "from": first,
                "to": str(TODAY),
                "granularity": "DAY",
            }
            graph = httpx.post(
                f"{url}/graphql", json={"query": EXPORT_QUERY, "variables": variables}, timeout=60
            ).json()
            assert (export.status_code == 200) is allowed, export.text
            assert ("errors" not in graph) is allowed
            if not allowed:
                assert graph["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
                assert f"spans at most {longest:,} (what max_query_cost = 20,000" in export.text


def test_a_failing_vendor_exports_what_the_history_store_knows(
    accounts, emulators, tmp_path
) -> None:
    """VirusTotal answers 503: the stored days come with their endpoints, today is missing,
    and the source says why (an answer, not an error)."""
    path = str(tmp_path / "history.sqlite")
    settings = settings_for(accounts[0], history_path=path)
    asyncio.run(snapshot(settings, clock))
    vt = emulators["virustotal"].emulator
    vt.set_fault(Fault(status=503))
    with ServerThread(create_app(settings, clock=clock)) as server:
        response = get(server.urls[0], "account=vt-soc&from=2026-03-16&to=2026-03-18&format=json")
    assert response.status_code == 200, response.text
    assert response.headers["x-usage-gateway-source"] == "UNAVAILABLE"
    answer = response.json()
    assert answer["source"]["state"] == "UNAVAILABLE"
    assert answer["source"]["cause"] == "VENDOR_ERROR"
    assert "503" in answer["source"]["message"]
    rows = answer["rows"]
    assert rows[-1] == {
        "start": "2026-03-18T00:00:00Z",
        "endpoint": None,
        "requests": None,
        "quotaRequests": None,
        "consumesQuota": None,
        "bytes": None,
        "missing": True,
    }
    for day in (date(2026, 3, 16), date(2026, 3, 17)):
        consuming, free, _ = vt.data.day("soc-team", day, 1.0)
        expected = {(f"/api/v3/({n})", True): c for n, c in consuming.items()}
        expected |= {(f"/api/v3/({n})", False): c for n, c in free.items()}
        got = {
            (r["endpoint"], r["consumesQuota"]): r["requests"]
            for r in rows
            if r["start"] == f"{day}T00:00:00Z"
        }
        assert got == expected and expected


@pytest.mark.parametrize(("days", "in_flight"), [(60, 1), (20, 2)])
async def test_heavy_exports_take_turns_as_heavy_queries_do(
    emulators, make_gateway, days, in_flight
) -> None:
    """Two exports at once over a slow vendor: costing more than HEAVY_COST (60 days), they
    reach it one after the other; two light ones (20 days) together."""
    repute = emulators["reputeapi"]
    repute.emulator.set_fault(Fault(delay_ms=300))
    entries = [
        account_entry("reputeapi", repute.url, id="one"),
        account_entry("reputeapi", repute.url, index=1, id="two"),
    ]
    gateway = make_gateway(settings_for(*entries))
    first = TODAY - timedelta(days=days - 1)
    heavy = export_cost(first, TODAY, Granularity.DAY, TODAY) > HEAVY_COST
    assert heavy is (in_flight == 1)
    answers = await asyncio.gather(
        *(
            gateway.client.get(f"/export/usage?account={name}&from={first}&to={TODAY}")
            for name in ("one", "two")
        )
    )
    assert [a.status_code for a in answers] == [200, 200]
    assert repute.emulator.total_calls() == 2
    assert repute.emulator.max_in_flight == in_flight


async def test_which_accounts_a_request_may_export_comes_from_one_place(accounts) -> None:
    """The route built with a request scope that reads one account: an account outside it is
    answered exactly as one that does not exist."""
    async with httpx.AsyncClient(verify=TLS) as http:
        service = create_app(settings_for(*accounts), http_client=http, clock=clock).state.service
        narrow = Litestar(
            [export_route(service, lambda scope: service.request(["repute-premium"]))]
        )
        gateway = Gateway(narrow)
        hidden = await gateway.client.get(f"/export/usage?{OK}")
        absent = await gateway.client.get(f"/export/usage?{OK.replace('vt-soc', 'vt-socx')}")
        shown = await gateway.client.get(
            "/export/usage?account=repute-premium&from=2026-03-18&to=2026-03-18"
        )
        await gateway.client.aclose()
        await service.upstream.close()
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json() == error(
        "Parameter 'account': no account \"vt-soc\"", "account", "NOT_FOUND"
    )
    assert absent.json() == error(
        "Parameter 'account': no account \"vt-socx\"", "account", "NOT_FOUND"
    )
    assert shown.status_code == 200
