"""Usage in one sweep: the store is read only for the days the vendor is not asked for, while
the vendor call is under way, and each bucket's endpoint split is built only where it is shown.

A VirusTotal group (the vendor keeps 60 days) with snapshots 100, 50 and 10 days ago: the store
holds the days from 159 to 11 days back. Every figure is recomputed from the emulator's seed.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from gateway.app import create_app
from gateway.domain import EndpointUsage, Granularity, UsagePoint, UsageReport, day_start
from gateway.graphql.selected import wants_splits
from gateway.history import DayRecord, HistoryStore
from gateway.servers import ServerThread
from gateway.usage import merge_history
from providers.virustotal.emulator import VirusTotalEmulator
from tests.conftest import NO_CACHE, NOW, TLS, Gateway, account_entry, settings_for
from tests.history_backends import BACKENDS, Backend, new_database, sqlite_backend
from tests.test_history import GROUP, days, snapshot
from tests.test_metrics import pick, scrape

TODAY = NOW.date()
KEPT_SINCE = TODAY - timedelta(days=59)
"""The oldest day VirusTotal (60 days) still keeps."""
USAGE = """query($from: Date!, $to: Date!, $recheck: Boolean!) { account(id: "vt-soc") {
  usage(from: $from, to: $to, recheck: $recheck) { requests missingDays
    series { start requests } endpoints { endpoint requests consumesQuota } } } }"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Past:
    """The gateway over the stored past, its vendor and its store."""

    def __init__(self, gateway: Gateway, vendor: VirusTotalEmulator, store: HistoryStore) -> None:
        self.gateway, self.vendor, self.store = gateway, vendor, store
        self.scope = gateway.app.state.service.request

    def usage_calls(self) -> list[tuple[date, date]]:
        return sorted(
            (
                datetime.strptime(r.param("start_date") or "", "%Y%m%d").date(),
                datetime.strptime(r.param("end_date") or "", "%Y%m%d").date(),
            )
            for r in self.vendor.served
            if r.path.endswith("/api_usage")
        )

    async def days_read(self) -> float:
        [value] = pick(await scrape(self.gateway), "usage_gateway_history_days_read_total").values()
        assert value == self.store.days_read
        return value

    def query(self, first: date, last: date, *, recheck: bool = False) -> object:
        variables = {"from": first.isoformat(), "to": last.isoformat(), "recheck": recheck}
        return self.gateway.data(USAGE, variables)


@asynccontextmanager
async def stored_past(history: Backend) -> AsyncIterator[Past]:
    clock = Clock(NOW)
    vendor = VirusTotalEmulator(seed=11, clock=clock)
    with ServerThread(vendor) as server:
        entry = account_entry("virustotal", server.urls[0])
        settings_ = settings_for(entry, **history.gateway, cache=NO_CACHE)
        for back in (100, 50, 10):
            clock.now = NOW - timedelta(days=back)
            (outcome,) = await snapshot(settings_, clock)
            assert outcome.ok
        clock.now = NOW
        vendor.reset()
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(settings_, http_client=http, clock=clock)
            gateway = Gateway(app)
            try:
                yield Past(gateway, vendor, app.state.service.history)
            finally:
                await gateway.client.aclose()
                await app.state.service.history.close()


def expected(vendor: VirusTotalEmulator, first: date, last: date) -> dict[str, object]:
    """The usage answer the seed implies for ``first``..``last``."""
    series, endpoints = [], dict[tuple[str, bool], int]()
    for day in days(first, last):
        consuming, free, _ = vendor.data.day(GROUP, day, 1.0)
        series.append(
            {
                "start": day_start(day).isoformat().replace("+00:00", "Z"),
                "requests": sum(consuming.values()) + sum(free.values()),
            }
        )
        for counts, consumes in ((consuming, True), (free, False)):
            for name, n in counts.items():
                key = (f"/api/v3/({name})", consumes)
                endpoints[key] = endpoints.get(key, 0) + n
    return {
        "requests": sum(int(p["requests"]) for p in series),  # type: ignore[call-overload]
        "missingDays": [],
        "series": series,
        "endpoints": endpoints,
    }


def shown(answer: object) -> dict[str, object]:
    usage = dict(answer["account"]["usage"])  # type: ignore[index]
    usage["endpoints"] = {
        (e["endpoint"], e["consumesQuota"]): e["requests"] for e in usage["endpoints"]
    }
    return usage


# -- which side answers which days -------------------------------------------------------------


async def test_a_range_the_vendor_keeps_asked_again_reads_no_stored_day(history) -> None:
    """(Its answer lists every one of these days: none is left for the store to fill in.)"""
    first = TODAY - timedelta(days=29)
    async with stored_past(history) as past:
        assert all(
            seeded_split(past.vendor, d) or past.vendor.data.day(GROUP, d, 1.0)[2]
            for d in days(first, TODAY)
        )
        answer = await past.query(first, TODAY, recheck=True)
        assert await past.days_read() == 0  # the store holds 19 of these days: none was read
        assert past.usage_calls() == [(first, TODAY)]
        past.vendor.reset()
        recent = await past.query(TODAY - timedelta(days=5), TODAY)  # none of them stored
        assert await past.days_read() == 0
        assert past.usage_calls() == [(TODAY - timedelta(days=5), TODAY)]
        past.vendor.reset()
        # By default closed days the store holds are its to answer (``recheck``): read, not asked.
        default = await past.query(first, TODAY)
        assert await past.days_read() == 19
        assert past.usage_calls() == [(TODAY - timedelta(days=10), TODAY)]
    assert shown(answer) == shown(default) == expected(past.vendor, first, TODAY)
    assert shown(recent) == expected(past.vendor, TODAY - timedelta(days=5), TODAY)


async def test_a_range_the_vendor_no_longer_keeps_makes_no_vendor_call(history) -> None:
    first, last = TODAY - timedelta(days=150), TODAY - timedelta(days=90)
    async with stored_past(history) as past:
        answer = await past.query(first, last)
        again = await past.query(first, last, recheck=True)  # nothing the vendor could recheck
        assert past.usage_calls() == []
        assert await past.days_read() == 2 * 61
    assert shown(answer) == shown(again) == expected(past.vendor, first, last)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_the_vendor_is_asked_while_the_store_is_still_busy(history) -> None:
    """The store's thread is kept busy (a read of the test's own, waiting for a signal) while
    a range across the retention edge is asked: the vendor is asked all the same, and the
    stored days are read once the thread is free. Read first, as before, the vendor call
    would wait for the store."""
    first = TODAY - timedelta(days=120)
    async with stored_past(history) as past:
        free = threading.Event()
        busy = asyncio.ensure_future(past.store.read(lambda db: free.wait(30), False))
        asked = asyncio.ensure_future(past.query(first, TODAY, recheck=True))
        try:
            await until(lambda: len(past.usage_calls()) == 2, "the vendor asked")
            assert past.store.days_read == 0 and not asked.done()
        finally:
            free.set()
        assert await busy is True
        answer = await asked
        # The days beyond retention, and the stored days among those the vendor's answer left
        # out (no use, and not listed as {}), which may be days it no longer keeps.
        left_out = [
            d
            for d in days(KEPT_SINCE, TODAY)
            if not seeded_split(past.vendor, d) and not past.vendor.data.day(GROUP, d, 1.0)[2]
        ]
        assert left_out, "the seed has a day without use in the vendor's window"
        stored_since = min(left_out[-1], TODAY - timedelta(days=11))
        follow_up = len(days(left_out[0], stored_since))
        assert past.store.days_read == 61 + follow_up
        assert past.usage_calls() == [
            (KEPT_SINCE, KEPT_SINCE + timedelta(days=29)),
            (KEPT_SINCE + timedelta(days=30), TODAY),
        ]
    assert shown(answer) == expected(past.vendor, first, TODAY)


# -- endpoint splits only where shown ------------------------------------------------------------


def seeded_split(vendor: VirusTotalEmulator, day: date) -> dict[tuple[str, bool], int]:
    consuming, free, _ = vendor.data.day(GROUP, day, 1.0)
    split = {(f"/api/v3/({n})", True): c for n, c in consuming.items()}
    split |= {(f"/api/v3/({n})", False): c for n, c in free.items()}
    return {key: n for key, n in split.items() if n}


async def test_each_days_split_is_built_only_where_asked_and_then_exact(history) -> None:
    first = TODAY - timedelta(days=120)
    async with stored_past(history) as past:
        scope = past.scope()
        bare = await scope.usage("vt-soc", first, TODAY, Granularity.DAY, splits=False)
        split = await scope.usage("vt-soc", first, TODAY, Granularity.DAY, splits=True)
        graph = await past.gateway.data(
            """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
              source { state }
              usage(from: $from, to: $to) { series { start endpoints {
                endpoint requests consumesQuota } } } } }""",
            {"from": first.isoformat(), "to": TODAY.isoformat()},
        )
        read = past.store.days_read
    assert all(point.endpoints == () for point in bare.series)
    assert bare.endpoints == split.endpoints
    assert [(p.start, p.requests) for p in bare.series] == [
        (p.start, p.requests) for p in split.series
    ]
    for point in split.series:
        split_of = {(e.endpoint, e.consumes_quota): e.requests for e in point.endpoints}
        assert {k: n for k, n in split_of.items() if n} == seeded_split(
            past.vendor, point.start.date()
        )
    series = graph["account"]["usage"]["series"]
    assert len(series) == len(days(first, TODAY))
    for point in series:
        split_of = {(e["endpoint"], e["consumesQuota"]): e["requests"] for e in point["endpoints"]}
        day = date.fromisoformat(point["start"][:10])
        assert {k: n for k, n in split_of.items() if n} == seeded_split(past.vendor, day)
    # Two service reads and one query (its source and its usage await the same read).
    assert read == 3 * len(days(first, TODAY - timedelta(days=11)))  # stored: not asked


def field(name: str, *selections: object, **directives: dict[str, object]) -> SelectedField:
    return SelectedField(name, directives, {}, list(selections))  # type: ignore[arg-type]


def test_a_split_is_wanted_where_series_endpoints_is_selected_and_kept() -> None:
    endpoints = field("endpoints", field("endpoint"))
    assert wants_splits(field("usage", field("series", field("start"), endpoints)))
    assert not wants_splits(field("usage", field("series", field("start")), field("endpoints")))
    assert not wants_splits(field("usage", field("series", field("endpoints", skip={"if": True}))))
    assert not wants_splits(
        field("usage", field("series", field("endpoints", include={"if": False})))
    )
    through = InlineFragment(type_condition="UsagePoint", selections=[endpoints], directives={})
    spread = FragmentSpread(
        name="f", type_condition="Usage", directives={}, selections=[field("series", through)]
    )
    assert wants_splits(field("usage", spread))


# -- the store's sums are the day-by-day sums --------------------------------------------------

ITEMS = st.lists(
    st.tuples(
        st.sampled_from(["/a", "/b", "/c"]),
        st.booleans(),
        st.integers(0, 2**40),
        st.one_of(st.none(), st.integers(0, 2**40)),
    ),
    max_size=6,
    unique_by=lambda item: (item[0], item[1]),
)


@pytest.fixture(scope="module")
def make_store(request) -> Callable[[], HistoryStore]:
    """New stores of one engine for every example of a property test: a fresh SQLite file
    each time, or new store objects over one PostgreSQL database (each example on an account
    of its own)."""
    if request.param == "sqlite":
        return lambda: HistoryStore(f"{tempfile.mkdtemp()}/history.sqlite")
    url = new_database(request.getfixturevalue("postgres_server"))
    return Backend("postgresql", {"history_url": url}).store


_examples = iter(range(1, 1 << 30))


@pytest.mark.parametrize("make_store", BACKENDS, indirect=True)
@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.none(), ITEMS), min_size=1, max_size=6))
def test_endpoint_totals_summed_by_the_store_equal_the_day_by_day_sums(make_store, splits) -> None:
    """Bytes are unknown when a day with requests does not know them, and requests and bytes
    past 2^31 add up exactly, as :func:`gateway.usage.add_endpoint` adds them day by day, on
    both engines."""
    first = date(2026, 1, 1)
    records = [
        DayRecord(
            first + timedelta(days=n),
            sum(i[2] for i in items or ()),
            0,
            endpoints=None
            if items is None
            else tuple(EndpointUsage(e, r, q, bytes=b) for e, q, r, b in items),
        )
        for n, items in enumerate(splits)
    ]
    last = records[-1].day

    account = f"acct-{next(_examples)}"

    async def run() -> tuple[object, object]:
        store = make_store()
        try:
            run_id = await store.start_run(account, NOW)
            await store.store(run_id, account, records, [], [], NOW)
            sweep = store.sweep(account, first, last, None, lambda held: None, splits=False)
            summed = await sweep.stored
            by_day = await store.days(account, first, last)
        finally:
            await store.close()
        return summed, by_day

    summed, by_day = asyncio.run(run())
    merged = merge_history(None, by_day)
    assert merged is not None
    assert summed.days == tuple(  # type: ignore[attr-defined]
        DayRecord(r.day, r.requests, r.quota_requests, r.bytes, r.failed_requests) for r in by_day
    )
    key = lambda e: (e.endpoint, e.consumes_quota)  # noqa: E731
    assert sorted(summed.totals, key=key) == sorted(merged.endpoints, key=key)  # type: ignore[attr-defined]


def test_summed_stored_days_never_stand_in_for_days_the_vendor_answered() -> None:
    """Endpoint totals summed over stored days cannot be taken apart day by day: given for a
    day the vendor lists, the merge refuses rather than count that day twice."""
    day = date(2026, 3, 1)
    vendor = UsageReport((UsagePoint(day_start(day), 5, 5),), (), frozenset({day}))
    stored = [DayRecord(day, 9, 9), DayRecord(day + timedelta(days=1), 4, 4)]
    with pytest.raises(ValueError, match="the vendor answered for"):
        merge_history(vendor, stored, (EndpointUsage("/a", 13, True),))
    merged = merge_history(vendor, stored[1:], (EndpointUsage("/a", 4, True),))
    assert merged is not None
    assert [(p.start.date(), p.requests) for p in merged.points] == [(day, 5), (stored[1].day, 4)]
    assert merged.endpoints == (EndpointUsage("/a", 4, True),)


# -- start-up ----------------------------------------------------------------------------------


def exists(path: Path) -> bool:
    return path.exists()


async def test_start_up_opens_the_store_a_snapshot_made_and_creates_none(tmp_path) -> None:
    """The first answer after start-up finds the store open: SQLite's shared-memory file of a
    store in WAL mode exists only while a connection has it open (the snapshot's, closed,
    removed it). Without a store, start-up makes no file."""
    async with stored_past(sqlite_backend(tmp_path / "history.sqlite")):
        pass
    path = tmp_path / "history.sqlite"
    shared = Path(f"{path}-shm")
    assert exists(path) and not exists(shared)
    app = create_app(settings_for(history_path=str(path)))
    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert exists(shared)
    assert not exists(shared)
    nowhere = tmp_path / "none" / "history.sqlite"
    async with AsyncTestClient(create_app(settings_for(history_path=str(nowhere)))) as client:
        assert (await client.get("/healthz")).status_code == 200
    assert not exists(nowhere.parent)


async def test_a_store_that_cannot_be_used_is_said_once_at_start_up(tmp_path, caplog) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"not a database, only garbage \x00\xff" * 200)
    entry = account_entry("virustotal", "http://127.0.0.1:9")  # never asked here
    app = create_app(settings_for(entry, history_path=str(path)))

    def said() -> list[str]:
        """Warnings and worse about the store (the GraphQL error is also logged, at INFO)."""
        return [
            r.levelname
            for r in caplog.records
            if "not a SQLite database" in r.getMessage() and r.levelno >= logging.WARNING
        ]

    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert said() == ["WARNING"]  # before any request needed the store
        answer = await client.post("/graphql", json={"query": "{ snapshots(limit: 1) { id } }"})
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "HISTORY_UNAVAILABLE"
    assert said() == ["WARNING"]
