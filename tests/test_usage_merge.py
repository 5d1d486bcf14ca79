"""Vendor silence never erases what we know: the live/history merge and range planning.

The pure rules (gateway/usage.py) first, then end to end: a VirusTotal that keeps fewer days than
configured, and ReversingLabs bytes per product merged from the store.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import httpx
from hypothesis import given
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.domain import (
    EndpointUsage,
    Granularity,
    SourceState,
    SourceStatus,
    UsagePoint,
    UsageReport,
    day_start,
)
from gateway.history import DayRecord
from gateway.servers import ServerThread
from gateway.usage import (
    add_endpoint,
    bucket_endpoints,
    build_usage,
    live_range,
    merge_history,
    sum_endpoints,
)
from providers.virustotal.emulator import VirusTotalEmulator
from tests.conftest import NOW, TLS, Gateway, account_entry, settings_for
from tests.providers.test_reversinglabs import ACME, bytes_of, queries_of, usage_report
from tests.test_history import GROUP, days, snapshot

TODAY = NOW.date()
D = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]  # 1..5 March
FRESH = SourceStatus(SourceState.FRESH)


# -- planning ----------------------------------------------------------------------------------


def test_live_range_skips_leading_stored_closed_days() -> None:
    today = D[4]
    assert live_range(D[0], D[4], today, None, set()) == (D[0], D[4])
    assert live_range(D[0], D[4], today, None, {D[0], D[1]}) == (D[2], D[4])
    assert live_range(D[0], D[4], today, None, {D[1]}) == (D[0], D[4])  # one contiguous call
    assert live_range(D[0], D[4], today, None, set(D)) == (D[4], D[4])  # today is always asked
    assert live_range(D[0], D[3], today, None, set(D)) is None  # all closed and stored
    assert live_range(D[0], D[4], today, D[2], set()) == (D[2], D[4])  # past retention: not asked
    assert live_range(D[0], D[1], today, D[2], set()) is None
    assert live_range(D[0], D[4], today, None, set(D), recheck=True) == (D[0], D[4])


# -- merging -----------------------------------------------------------------------------------


def report(points: dict[date, int], absent: set[date] = frozenset(), **kw) -> UsageReport:
    return UsageReport(
        points=tuple(UsagePoint(day_start(d), n, n) for d, n in sorted(points.items())),
        endpoints=kw.get("endpoints", ()),
        known_days=frozenset(points),
        absent_days=frozenset(absent),
    )


def test_a_listed_day_wins_and_a_left_out_day_yields_to_the_store() -> None:
    vendor = report({D[0]: 5, D[1]: 0, D[2]: 7}, absent={D[1]})
    stored = [DayRecord(D[0], 99, 99), DayRecord(D[1], 40, 30), DayRecord(D[3], 8, 8)]
    merged = merge_history(vendor, stored)
    assert merged is not None
    assert [(p.start.date(), p.requests) for p in merged.points] == [
        (D[0], 5),  # the vendor listed it: its figure wins
        (D[1], 40),  # left out of the answer: the stored day counts
        (D[2], 7),
        (D[3], 8),  # not asked of the vendor: from the store
    ]
    assert merged.known_days == {D[0], D[1], D[2], D[3]}
    usage = build_usage(merged, D[0], D[4], D[4], Granularity.DAY, FRESH)
    assert usage.requests == 60 and usage.missing_days == (D[4],)


def test_a_left_out_day_without_a_stored_one_stays_zero() -> None:
    vendor = report({D[0]: 5, D[1]: 0}, absent={D[1]})
    merged = merge_history(vendor, [])
    assert merged is vendor
    usage = build_usage(merged, D[0], D[1], D[1], Granularity.DAY, FRESH)
    assert usage.requests == 5 and usage.missing_days == ()


def test_merged_endpoints_keep_their_details() -> None:
    live = EndpointUsage("/a", 300, True, error_rate=0.1, average_latency_ms=20.0, bytes=3000)
    only_live = EndpointUsage("/b", 10, False, error_rate=0.5, average_latency_ms=5.0, bytes=7)
    vendor = report({D[2]: 310}, endpoints=(live, only_live))
    stored = [
        DayRecord(D[0], 100, 100, endpoints=(EndpointUsage("/a", 100, True, bytes=1000),)),
        DayRecord(D[1], 0, 0, endpoints=()),
        DayRecord(D[1], 50, 50, endpoints=(EndpointUsage("/c", 50, True, bytes=None),)),
    ]
    merged = merge_history(vendor, stored)
    assert merged is not None
    by_name = {e.endpoint: e for e in merged.endpoints}
    assert by_name["/b"] == only_live  # nothing from the store: untouched, every detail kept
    a = by_name["/a"]
    assert (a.requests, a.bytes) == (400, 4000)
    assert a.error_rate is None and a.average_latency_ms is None  # the store's part is unknown
    assert by_name["/c"] == EndpointUsage("/c", 50, True)


def test_add_endpoint_weights_rates_by_requests() -> None:
    a = EndpointUsage("/a", 300, True, error_rate=0.1, average_latency_ms=20.0, bytes=30)
    b = EndpointUsage("/a", 100, True, error_rate=0.5, average_latency_ms=60.0, bytes=10)
    total = add_endpoint(a, b)
    assert (total.requests, total.bytes) == (400, 40)
    assert total.error_rate is not None and abs(total.error_rate - 0.2) < 1e-12
    assert total.average_latency_ms is not None and abs(total.average_latency_ms - 30.0) < 1e-12
    assert add_endpoint(a, EndpointUsage("/a", 0, True)) == a  # nothing added: nothing lost


# -- each day's endpoint split, and each bucket's ---------------------------------------------


def ep(name: str, requests: int, quota: bool = True, size: int | None = None) -> EndpointUsage:
    return EndpointUsage(name, requests, quota, bytes=size)


def test_each_days_split_comes_from_the_side_that_answers_the_day() -> None:
    vendor = UsageReport(
        points=tuple(UsagePoint(day_start(d), n, n) for d, n in ((D[0], 5), (D[1], 0), (D[2], 7))),
        endpoints=(ep("/a", 12),),
        known_days=frozenset(D[:3]),
        absent_days=frozenset({D[1]}),
        day_endpoints={D[0]: (ep("/a", 5),), D[1]: (), D[2]: (ep("/a", 7),)},
    )
    stored = [
        DayRecord(D[0], 99, 99, endpoints=(ep("/old", 99),)),  # the vendor listed it: its wins
        DayRecord(D[1], 40, 40, endpoints=(ep("/b", 40),)),  # left out of the answer: stored
        DayRecord(D[3], 8, 8, endpoints=(ep("/c", 8),)),  # not asked of the vendor
        DayRecord(D[4], 3, 3, endpoints=None),  # stored without a split: none for the day
    ]
    merged = merge_history(vendor, stored)
    assert merged is not None and merged.day_endpoints == {
        D[0]: (ep("/a", 5),),
        D[1]: (ep("/b", 40),),
        D[2]: (ep("/a", 7),),
        D[3]: (ep("/c", 8),),
    }
    alone = merge_history(None, stored)  # the vendor failed: every stored split counts
    assert alone is not None and alone.day_endpoints == {
        D[0]: (ep("/old", 99),),
        D[1]: (ep("/b", 40),),
        D[3]: (ep("/c", 8),),
    }
    nowhere = merge_history(report({D[0]: 5}), [DayRecord(D[1], 4, 4)])
    assert nowhere is not None and nowhere.day_endpoints is None  # no split on either side


def test_a_buckets_endpoints_add_up_its_days() -> None:
    monday = date(2026, 3, 2)
    split = {
        monday: (ep("/a", 10, size=100), ep("/b", 4), ep("/b", 6, quota=False)),
        monday + timedelta(days=1): (ep("/a", 5, size=50), ep("/c", 15)),
        monday + timedelta(days=7): (ep("/b", 1),),  # the next week
    }
    weeks = bucket_endpoints(split, Granularity.WEEK)
    assert weeks == {
        day_start(monday): (
            ep("/a", 15, size=150),  # bytes add up too
            ep("/c", 15),  # as many requests as /a: by endpoint name
            ep("/b", 6, quota=False),  # one endpoint in two maps: two entries
            ep("/b", 4),
        ),
        day_start(monday + timedelta(days=7)): (ep("/b", 1),),
    }
    months = bucket_endpoints(split, Granularity.MONTH)
    assert months == {day_start(date(2026, 3, 1)): sum_endpoints(split.values())}
    assert months[day_start(date(2026, 3, 1))][2:] == (ep("/b", 6, quota=False), ep("/b", 5))
    tie = sum_endpoints([(ep("/x", 3),), (ep("/x", 3, quota=False),)])
    assert tie == (ep("/x", 3), ep("/x", 3, quota=False))  # the same count: consuming first
    days = bucket_endpoints(split, Granularity.DAY)
    assert days[day_start(monday)] == (
        ep("/a", 10, size=100),
        ep("/b", 6, quota=False),
        ep("/b", 4),
    )
    assert bucket_endpoints(split, Granularity.HOUR) == {}  # a day's split is not an hour's


def test_each_bucket_of_a_series_gets_its_endpoints_and_missing_days() -> None:
    """Weeks of 2026-03-02..22, known: the 2nd-3rd (split) and 9th-12th (split on two days only);
    the 4th-8th and 13th-15th are missing, the 16th-22nd too: that week is left out."""
    first, last = date(2026, 3, 2), date(2026, 3, 22)
    known = [first, first + timedelta(days=1), *(date(2026, 3, d) for d in range(9, 13))]
    split = {first: (ep("/a", 2),), known[1]: (ep("/a", 3),), known[2]: (ep("/b", 9),)}
    split[known[3]] = ()
    vendor = UsageReport(
        points=tuple(UsagePoint(day_start(d), d.day, d.day) for d in known),
        endpoints=(),
        known_days=frozenset(known),
        day_endpoints=split,
    )
    usage = build_usage(vendor, first, last, last, Granularity.WEEK, FRESH)
    assert [(p.start.date(), p.requests, p.missing_days, p.endpoints) for p in usage.series] == [
        (first, 5, 5, (ep("/a", 5),)),  # the 4th to the 8th missing
        (date(2026, 3, 9), 42, 3, (ep("/b", 9),)),  # a split for the 9th and 10th only
    ]
    assert len(usage.missing_days) == 5 + 3 + 7
    daily = build_usage(vendor, first, last, last, Granularity.DAY, FRESH)
    assert [p.endpoints for p in daily.series] == [
        (ep("/a", 2),),
        (ep("/a", 3),),
        (ep("/b", 9),),
        (),  # a split with nothing in it
        (),  # no split at all
        (),
    ]
    assert all(p.missing_days == 0 for p in daily.series)


# -- end to end --------------------------------------------------------------------------------


def vt_totals(vendor: VirusTotalEmulator, day: date) -> int:
    consuming, free, _ = vendor.data.day(GROUP, day, 1.0)
    return sum(consuming.values()) + sum(free.values())


USAGE = """query($from: Date!, $to: Date!, $recheck: Boolean!) { account(id: "vt-soc") {
  usage(from: $from, to: $to, recheck: $recheck) {
    requests missingDays series { start requests } source { state } } } }"""


async def test_days_a_vendor_no_longer_keeps_come_from_the_store(tmp_path) -> None:
    """VirusTotal keeps 30 days here while the config says 60: the days it leaves out of its
    answer are the stored ones, not zeros."""
    path = str(tmp_path / "history.sqlite")
    full = VirusTotalEmulator(seed=11, clock=lambda: NOW)  # keeps 60 days
    short = VirusTotalEmulator(seed=11, clock=lambda: NOW, retention_days=30)  # the same data
    first = TODAY - timedelta(days=59)
    with ServerThread(full, short) as servers:
        stored_from, live_from = servers.urls
        await snapshot(
            settings_for(account_entry("virustotal", stored_from), history_path=path), lambda: NOW
        )
        settings = settings_for(account_entry("virustotal", live_from), history_path=path)
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(settings, http_client=http, clock=lambda: NOW)
            gateway = Gateway(app)
            answers = {}
            for recheck in (True, False):
                short.reset()
                variables = {"from": first.isoformat(), "to": TODAY.isoformat()}
                answer = await gateway.data(USAGE, {**variables, "recheck": recheck})
                asked = sorted(
                    (r.param("start_date"), r.param("end_date"))
                    for r in short.served
                    if r.path.endswith("/api_usage")
                )
                answers[recheck] = (answer["account"]["usage"], asked)
            await gateway.client.aclose()
            await app.state.service.history.close()
    expected = {d: vt_totals(full, d) for d in days(first, TODAY)}
    older = [d for d in days(first, TODAY - timedelta(days=30)) if expected[d]]
    assert older, "the seed has use on the days the short vendor no longer keeps"
    for recheck, (usage, _) in answers.items():
        assert usage["missingDays"] == [], recheck
        assert usage["requests"] == sum(expected.values()), recheck
        assert {p["start"][:10]: p["requests"] for p in usage["series"]} == {
            d.isoformat(): n for d, n in expected.items()
        }
        assert usage["source"] == {"state": "FRESH"}
    # a revision check asked the vendor for every day it is said to keep; the default only today
    assert answers[True][1] == [("20260118", "20260216"), ("20260217", "20260318")]
    assert answers[False][1] == [("20260318", "20260318")]


async def test_bytes_per_product_survive_the_merge_with_history(emulators, tmp_path) -> None:
    """ReversingLabs meters bytes per product: an answer built from the store and today's read
    has the same endpoints, bytes included, as one read wholly from the vendor."""
    path = str(tmp_path / "history.sqlite")
    entry = account_entry("reversinglabs", emulators["reversinglabs"].url)
    settings = settings_for(entry, history_path=path)
    await snapshot(settings, lambda: NOW)
    query = """query($recheck: Boolean!) { account(id: "rl-acme") {
      usage(from: "2026-02-16", to: "2026-03-18", recheck: $recheck) {
        requests bytes endpoints { endpoint requests bytes } } } }"""
    async with httpx.AsyncClient(verify=TLS) as http:
        app = create_app(settings, http_client=http, clock=lambda: NOW)
        gateway = Gateway(app)
        merged = (await gateway.data(query, {"recheck": False}))["account"]["usage"]
        vendor = emulators["reversinglabs"].emulator
        asked = [r.param("from") for r in vendor.served if r.path.endswith("/daily")]
        live = (await gateway.data(query, {"recheck": True}))["account"]["usage"]
        await gateway.client.aclose()
        await app.state.service.history.close()
    assert asked[-1] == "2026-03-18"  # the stored days were not asked again
    expected = usage_report(vendor.data, ACME, date(2026, 2, 16), TODAY)
    by_product = {e["product"]: e for e in expected}
    for usage in (merged, live):
        assert usage["requests"] == queries_of(expected)
        assert usage["bytes"] == bytes_of(expected)
        assert {e["endpoint"]: (e["requests"], e["bytes"]) for e in usage["endpoints"]} == {
            name: (e["number_of_queries"], e.get("used_bytes")) for name, e in by_product.items()
        }


async def test_each_days_endpoint_split_survives_the_merge_with_history(tmp_path) -> None:
    """Weeks of VirusTotal usage over 59 days from a vendor that keeps 30: each week's endpoints
    are those of the data model, the older days' split read from the store."""
    path = str(tmp_path / "history.sqlite")
    full = VirusTotalEmulator(seed=11, clock=lambda: NOW)
    short = VirusTotalEmulator(seed=11, clock=lambda: NOW, retention_days=30)
    first = TODAY - timedelta(days=58)
    query = """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
      usage(from: $from, to: $to, granularity: WEEK) { missingDays
        series { start requests missingDays endpoints { endpoint requests consumesQuota } } } } }"""
    with ServerThread(full, short) as servers:
        stored_from, live_from = servers.urls
        await snapshot(
            settings_for(account_entry("virustotal", stored_from), history_path=path), lambda: NOW
        )
        settings = settings_for(account_entry("virustotal", live_from), history_path=path)
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(settings, http_client=http, clock=lambda: NOW)
            gateway = Gateway(app)
            variables = {"from": first.isoformat(), "to": TODAY.isoformat()}
            usage = (await gateway.data(query, variables))["account"]["usage"]
            await gateway.client.aclose()
            await app.state.service.history.close()
    weeks: dict[date, Counter[tuple[str, bool]]] = {}
    for day in days(first, TODAY):
        consuming, free, _ = full.data.day(GROUP, day, 1.0)
        week = weeks.setdefault(day - timedelta(days=day.weekday()), Counter())
        for counts, quota in ((consuming, True), (free, False)):
            week.update({(f"/api/v3/({name})", quota): n for name, n in counts.items()})
    assert usage["missingDays"] == []
    assert [p["start"][:10] for p in usage["series"]] == [w.isoformat() for w in sorted(weeks)]
    for point in usage["series"]:
        expected = weeks[date.fromisoformat(point["start"][:10])]
        got = {(e["endpoint"], e["consumesQuota"]): e["requests"] for e in point["endpoints"]}
        assert got == dict(expected) and len(point["endpoints"]) == len(expected)
        assert sum(got.values()) == point["requests"] > 0
        assert point["missingDays"] == 0
    assert len(usage["series"]) == 9 and len(usage["series"][0]["endpoints"]) > 10
    asked = [(r.param("start_date"), r.param("end_date")) for r in short.served]
    assert asked == [("20260318", "20260318")]  # the closed days' splits came from the store


@given(
    st.lists(
        st.tuples(
            st.integers(0, 60),
            st.integers(0, 2**63),
            st.lists(st.tuples(st.sampled_from(["/a", "/b", "/c"]), st.booleans()), max_size=3),
        ),
        max_size=40,
        unique_by=lambda t: t[0],
    ),
    st.sets(st.integers(0, 60)),
)
def test_the_daily_rollup_equals_the_general_one(days_, gap_offsets) -> None:
    """Points one per day at 00:00 UTC take a shortcut (keyed by date); the answer is the one
    the general roll-up gives for the same points written in another zero-offset zone."""
    from datetime import UTC, datetime, timezone

    from gateway.domain import EndpointUsage, Granularity, UsagePoint
    from gateway.usage import rollup

    first = date(2026, 1, 1)
    zero = timezone(timedelta(0), "Z")  # not the UTC singleton: the general path
    splits = {
        first + timedelta(days=n): tuple(
            EndpointUsage(name, requests // 3, quota) for name, quota in dict(items).items()
        )
        for n, requests, items in days_
    }
    missing = [first + timedelta(days=n) for n in gap_offsets]

    def points(zone) -> list[UsagePoint]:
        return [
            UsagePoint(datetime(2026, 1, 1, tzinfo=zone) + timedelta(days=n), r, r // 2, None, 1)
            for n, r, _ in days_
        ]

    fast = rollup(points(UTC), Granularity.DAY, splits, missing)
    general = rollup(points(zero), Granularity.DAY, splits, missing)
    assert fast == general
    assert all(p.start.tzinfo is UTC for p in fast)
