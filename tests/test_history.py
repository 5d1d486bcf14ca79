"""The history store and snapshots, in process: exact rows, revisions, a year beyond retention,
forecasts on constructed samples, and the graph's history fields."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.app import build_service, create_app
from gateway.domain import Quota, QuotaUnit, QuotaWindow, day_start
from gateway.forecast import forecast, previous_window, window_of
from gateway.history import HistoryStore
from gateway.servers import ServerThread
from gateway.service import SAMPLE_BATCH
from gateway.snapshot import run_snapshot
from providers.reversinglabs.emulator import ReversingLabsEmulator
from providers.virustotal.emulator import VirusTotalEmulator
from tests.conftest import NOW, TLS, Gateway, account_entry, settings_for

TODAY = NOW.date()
GROUP = "soc-team"


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def vt_day(emulator: VirusTotalEmulator, day: date) -> tuple[dict[str, int], dict[str, int]]:
    consuming, free, _ = emulator.data.day(GROUP, day, 1.0)
    return consuming, free


async def snapshot(settings, clock: Callable[[], datetime]) -> list:
    async with httpx.AsyncClient(verify=TLS) as http:
        service = build_service(settings, http, clock=clock)
        try:
            return await run_snapshot(service, service.history)
        finally:
            await service.upstream.close()
            await service.history.close()


def accounts(emulators) -> list[dict[str, str]]:
    return [
        account_entry("virustotal", emulators["virustotal"].url),
        account_entry("reputeapi", emulators["reputeapi"].url),
    ]


# -- snapshots ---------------------------------------------------------------------------------


async def test_snapshots_store_exact_rows_and_rerun_as_upserts(emulators, history) -> None:
    settings = settings_for(*accounts(emulators), **history.gateway)
    vt = emulators["virustotal"].emulator
    vt_days = days(TODAY - timedelta(days=59), TODAY - timedelta(days=1))  # retention, to yesterday
    repute_days = days(TODAY - timedelta(days=35), TODAY - timedelta(days=1))
    endpoint_rows = sum(len(c) + len(f) for c, f in (vt_day(vt, d) for d in vt_days))
    for run in (1, 2):
        outcomes = await snapshot(settings, lambda: NOW)
        assert [(o.account_id, o.ok, o.days, o.changed) for o in outcomes] == [
            ("vt-soc", True, 59, 0),
            ("repute-premium", True, 35, 0),
        ]
        assert history.rows("usage_days", "account_id = ?", "vt-soc") == len(vt_days)
        assert history.rows("usage_days", "account_id = ?", "repute-premium") == 35
        assert history.rows("usage_endpoints") == endpoint_rows  # ReputeAPI has no day split
        assert history.rows("quota_samples") == 9 + 1  # same moment: one sample each
        assert history.rows("rate_limit_samples") == 2
        assert history.rows("snapshot_runs", "outcome = 'ok'") == 2 * run
        assert history.rows("usage_changes") == 0
    stored = dict(history.fetch("SELECT day, requests FROM usage_days WHERE account_id = 'vt-soc'"))
    assert stored == {
        d.isoformat(): sum(vt_day(vt, d)[0].values()) + sum(vt_day(vt, d)[1].values())
        for d in vt_days
    }
    key = emulators["reputeapi"].emulator.data.keys["ra_live_premium_demo"]
    data = emulators["reputeapi"].emulator.data
    stored = dict(
        history.fetch("SELECT day, requests FROM usage_days WHERE account_id = 'repute-premium'")
    )
    assert stored == {d.isoformat(): data.day(key, d, NOW).requests for d in repute_days}


async def test_a_revised_day_is_updated_and_the_change_recorded(emulators, history) -> None:
    entry = account_entry("virustotal", emulators["virustotal"].url)
    await snapshot(settings_for(entry, **history.gateway), lambda: NOW)
    revised = VirusTotalEmulator(seed=8, clock=lambda: NOW)  # the vendor's figures changed
    with ServerThread(revised) as vendor:
        moved = {**entry, "base_url": vendor.urls[0]}
        (outcome,) = await snapshot(settings_for(moved, **history.gateway), lambda: NOW)
    before, after = emulators["virustotal"].emulator, revised
    expected = 0
    kept = 0
    for day in days(TODAY - timedelta(days=59), TODAY - timedelta(days=1)):
        old, new = vt_day(before, day), vt_day(after, day)
        if not any(after.data.day(GROUP, day, 1.0)):  # left out of the answer: vendor silence
            kept += sum(old[0].values()) + sum(old[1].values()) > 0
            continue  # never erases a stored day
        expected += sum(old[0].values()) + sum(old[1].values()) != sum(new[0].values()) + sum(
            new[1].values()
        )
        for index in (0, 1):
            expected += sum(
                1 for k, v in new[index].items() if k in old[index] and old[index][k] != v
            )
    assert outcome.ok and outcome.changed == expected > 0
    assert kept > 0  # the seeds leave days out that the first snapshot stored with use
    assert history.rows("usage_changes") == expected
    day = TODAY - timedelta(days=1)
    ((requests,),) = history.fetch(
        "SELECT requests FROM usage_days WHERE account_id = 'vt-soc' AND day = ?", day.isoformat()
    )
    assert requests == sum(vt_day(after, day)[0].values()) + sum(vt_day(after, day)[1].values())


async def test_a_failing_account_is_recorded_and_the_others_stored(emulators, history) -> None:
    bad = account_entry("reputeapi", emulators["reputeapi"].url, api_key="ra_live_wrong")
    good = account_entry("virustotal", emulators["virustotal"].url)
    outcomes = await snapshot(settings_for(bad, good, **history.gateway), lambda: NOW)
    assert [(o.account_id, o.ok) for o in outcomes] == [("repute-premium", False), ("vt-soc", True)]
    assert "HTTP 401" in (outcomes[0].error or "")
    assert history.rows("usage_days", "account_id = 'repute-premium'") == 0
    assert history.rows("snapshot_runs", "outcome = 'failed'") == 1


# -- a year beyond retention -------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_year_is_answered_from_history_and_live_for_recent_days(history) -> None:
    clock = Clock(NOW)
    vendor = VirusTotalEmulator(seed=11, clock=clock)  # keeps 60 days, as VirusTotal does
    with ServerThread(vendor) as server:
        settings = settings_for(account_entry("virustotal", server.urls[0]), **history.gateway)
        end = NOW
        skipped = end - timedelta(days=210)
        for back in range(360, -1, -50):  # a snapshot every 50 days over a year, one missed
            moment = end - timedelta(days=back)
            if moment == skipped:
                continue
            clock.now = moment
            (outcome,) = await snapshot(settings, clock)
            assert outcome.ok
        clock.now = end
        vendor.reset()
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(settings, http_client=http, clock=clock)
            gateway = Gateway(app)
            first = TODAY - timedelta(days=364)
            answer = await gateway.data(
                """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
                    usage(from: $from, to: $to) { requests quotaRequests missingDays
                      series { start requests }
                      endpoints { endpoint requests consumesQuota } } } }""",
                {"from": first.isoformat(), "to": TODAY.isoformat()},
            )
            asked = sorted(
                (r.param("start_date"), r.param("end_date"))
                for r in vendor.served
                if r.path.endswith("/api_usage")
            )
            vendor.reset()
            rechecked = await gateway.data(
                """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
                    usage(from: $from, to: $to, recheck: true) { requests missingDays } } }""",
                {"from": first.isoformat(), "to": TODAY.isoformat()},
            )
            await gateway.client.aclose()
            await app.state.service.history.close()
    usage = answer["account"]["usage"]
    # The missed snapshot would have kept the days after the previous one's, before the next's.
    gap = [
        d
        for d in days(first, TODAY)
        if (end - timedelta(days=260)).date() <= d < (end - timedelta(days=219)).date()
    ]
    assert usage["missingDays"] == [d.isoformat() for d in gap]
    known = [d for d in days(first, TODAY) if d not in gap]
    totals = {
        d: sum(vendor.data.day(GROUP, d, 1.0)[0].values())
        + sum(vendor.data.day(GROUP, d, 1.0)[1].values())
        for d in known
    }
    assert [(p["start"], p["requests"]) for p in usage["series"]] == [
        (day_start(d).isoformat().replace("+00:00", "Z"), totals[d]) for d in known
    ]
    assert usage["requests"] == sum(totals.values())
    per_endpoint: dict[tuple[str, bool], int] = {}
    for d in known:
        for index, consumes in ((0, True), (1, False)):
            for name, count in vendor.data.day(GROUP, d, 1.0)[index].items():
                key = (f"/api/v3/({name})", consumes)
                per_endpoint[key] = per_endpoint.get(key, 0) + count
    assert {(e["endpoint"], e["consumesQuota"]): e["requests"] for e in usage["endpoints"]} == (
        per_endpoint
    )
    # only the days the store does not hold: after the last snapshot (10 days ago) up to today
    assert asked == [("20260308", "20260318")]
    # a revision check asks for every day VirusTotal still keeps, in two 30-day calls
    usage_calls = [r for r in vendor.served if r.path.endswith("/api_usage")]
    served = sorted((r.param("start_date"), r.param("end_date")) for r in usage_calls)
    assert served == [("20260118", "20260216"), ("20260217", "20260318")]
    assert rechecked["account"]["usage"] == {
        "requests": usage["requests"],
        "missingDays": usage["missingDays"],
    }


# -- forecasts ---------------------------------------------------------------------------------


def monthly(used: int, limit: int = 1000) -> Quota:
    return Quota(
        "a:q",
        "a",
        "q",
        QuotaWindow.MONTH,
        QuotaUnit.REQUESTS,
        limit,
        used,
        resets_at=datetime(2026, 4, 1, tzinfo=UTC),
    )


def test_a_steady_pace_projects_exactly() -> None:
    now = datetime(2026, 3, 16, tzinfo=UTC)  # 15 days into a 31-day month, 20 a day
    samples = [(datetime(2026, 3, d, tzinfo=UTC), 20 * (d - 1)) for d in range(2, 16)]
    result = forecast(monthly(300), samples, now)
    assert result is not None
    assert result.used_at_reset_low == result.used_at_reset_high == 20 * 31
    assert result.runs_out_earliest is None  # 620 stays under 1000
    tight = forecast(monthly(300, limit=500), samples, now)
    assert tight is not None
    assert tight.runs_out_earliest == tight.runs_out_latest == datetime(2026, 3, 26, tzinfo=UTC)


def test_an_uneven_pace_gives_a_range() -> None:
    now = datetime(2026, 3, 16, tzinfo=UTC)
    samples = [
        (datetime(2026, 3, d, tzinfo=UTC), 20 * (d - 1) + (15 if d % 2 else -15))
        for d in range(2, 16)
    ]
    result = forecast(monthly(300, limit=600), samples, now)
    assert result is not None
    assert result.used_at_reset_low < 620 < result.used_at_reset_high
    assert result.runs_out_earliest is not None and result.runs_out_earliest < datetime(
        2026, 4, 1, tzinfo=UTC
    )


def test_no_forecast_early_in_a_window_or_for_a_thin_fixed_term() -> None:
    early = datetime(2026, 3, 3, tzinfo=UTC)  # 2 of 31 days: under 10%
    assert forecast(monthly(40), [(datetime(2026, 3, 2, tzinfo=UTC), 20)], early) is None
    term = Quota(
        "a:t",
        "a",
        "t",
        QuotaWindow.FIXED_TERM,
        QuotaUnit.REQUESTS,
        1000,
        400,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
    )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert forecast(term, [(datetime(2026, 5, 1, tzinfo=UTC), 330)], now) is None  # 2 points
    enough = [(datetime(2026, 4, 1, tzinfo=UTC), 260), (datetime(2026, 5, 1, tzinfo=UTC), 330)]
    result = forecast(term, enough, now)
    assert result is not None and result.samples == 3


def test_a_used_up_quota_has_run_out_now() -> None:
    now = datetime(2026, 3, 20, tzinfo=UTC)
    result = forecast(monthly(1200), [(datetime(2026, 3, 10, tzinfo=UTC), 600)], now)
    assert result is not None and result.runs_out_earliest == now


# -- the graph ---------------------------------------------------------------------------------


async def test_snapshots_quota_history_and_alerts_in_the_graph(emulators, history) -> None:
    settings = settings_for(*accounts(emulators), **history.gateway)
    await snapshot(settings, lambda: NOW - timedelta(days=2))
    await snapshot(settings, lambda: NOW - timedelta(days=1))
    async with httpx.AsyncClient(verify=TLS) as http:
        app = create_app(settings, http_client=http, clock=lambda: NOW)
        gateway = Gateway(app)
        data = await gateway.data(
            """{ snapshots(accountId: "vt-soc") { accountId outcome days changed startedAt }
                 alerts(threshold: 0.9) { kind message quota { id utilization } }
                 account(id: "vt-soc") { quotas { id history(from: "2026-03-01T00:00:00Z",
                   to: "2026-03-18T00:00:00Z") { at used limit } } } }"""
        )
        await gateway.client.aclose()
        await app.state.service.history.close()
    assert [(r["outcome"], r["days"]) for r in data["snapshots"]] == [("OK", 59), ("OK", 59)]
    assert data["snapshots"][0]["startedAt"] > data["snapshots"][1]["startedAt"]
    over = [a for a in data["alerts"] if a["kind"] == "OVER_THRESHOLD"]
    assert {a["quota"]["id"] for a in over} == {"vt-soc:intelligence_downloads_monthly"}
    assert over[0]["message"].startswith("vt-soc: intelligence_downloads_monthly is at ")
    history = {q["id"]: q["history"] for q in data["account"]["quotas"]}
    samples = history["vt-soc:api_requests_monthly"]
    assert [s["at"] for s in samples] == ["2026-03-16T14:25:00Z", "2026-03-17T14:25:00Z"]
    assert all(s["limit"] == 12_000 for s in samples)


async def test_a_quota_projected_to_run_out_before_its_reset_is_an_alert() -> None:
    morning = datetime(2026, 3, 18, 6, 0, tzinfo=UTC)  # a quarter into the daily window
    vendor = ReversingLabsEmulator(seed=7, clock=lambda: morning)
    limit = vendor.data.limit("acme-daily-reputation")
    used = vendor.data.limit_used(limit, morning)
    assert used < 0.9 * limit.limit  # not over the threshold yet...
    runs_out = morning + timedelta(seconds=(limit.limit - used) / (used / (6 * 3600)))
    assert runs_out < datetime(2026, 3, 19, tzinfo=UTC)  # ...but at this pace, gone by tonight
    with ServerThread(vendor) as server:
        settings = settings_for(account_entry("reversinglabs", server.urls[0]))
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(settings, http_client=http, clock=lambda: morning)
            gateway = Gateway(app)
            data = await gateway.data(
                "{ alerts(threshold: 0.9) { kind message quota { id used limit }"
                " forecast { runsOutEarliest runsOutLatest windowEnd samples } } }"
            )
            await gateway.client.aclose()
    (alert,) = [a for a in data["alerts"] if a["quota"]["id"].startswith("rl-acme:daily")]
    assert alert["kind"] == "RUNS_OUT_BEFORE_RESET"
    assert (alert["quota"]["used"], alert["quota"]["limit"]) == (used, limit.limit)
    projected = datetime.fromisoformat(alert["forecast"]["runsOutEarliest"])
    assert abs((projected - runs_out).total_seconds()) < 1
    assert alert["forecast"]["windowEnd"] == "2026-03-19T00:00:00Z"
    assert alert["message"].startswith(
        f"rl-acme: Daily queries: TCA-0101 File Reputation, TCA-0104 RLDATA may run out as early"
        f" as {runs_out:%Y-%m-%dT%H:%M}Z"
    )


async def test_stores_opened_while_others_close_wait_instead_of_failing(tmp_path) -> None:
    """Processes that start while another closes the file (the last connection to a WAL file
    checkpoints it and removes the log) wait their turn rather than fail: eight stores at a
    time, opening and closing at random moments, forty times over."""
    chance = random.Random(7)
    for round_ in range(40):
        path = tmp_path / f"history-{round_}.sqlite"

        async def one(pause: float, path: Path = path) -> int:
            await asyncio.sleep(pause)
            store = HistoryStore(path)
            try:
                return await store.start_run("acct", NOW)
            finally:
                await store.close()

        runs = await asyncio.gather(*(one(chance.random() * 0.02) for _ in range(8)))
        assert sorted(runs) == list(range(1, 9))


async def test_samples_of_several_quotas_read_together_equal_the_stored_rows(
    emulators, history
) -> None:
    """What forecasts read (``quota_samples_of``, several quotas in one job of the store's
    thread) is each quota's rows in its range, in order, as the database holds them."""
    settings = settings_for(*accounts(emulators), **history.gateway)
    for hours in (3, 2, 1, 0):
        await snapshot(settings, lambda hours=hours: NOW - timedelta(hours=hours))
    ids = [q for (q,) in history.fetch("SELECT DISTINCT quota_id FROM quota_samples ORDER BY 1")]
    assert len(ids) == 10
    wanted = [
        (ids[0], NOW - timedelta(hours=3), NOW),
        (ids[1], NOW - timedelta(hours=2, minutes=30), NOW - timedelta(hours=1)),
        ("vt-soc:no-such-quota", NOW - timedelta(days=1), NOW),
        (ids[2], NOW + timedelta(hours=1), NOW + timedelta(hours=2)),
        *((quota, NOW - timedelta(days=1), NOW) for quota in ids[3:]),
    ]
    store = history.store()
    try:
        found = await store.quota_samples_of(wanted)
    finally:
        await store.close()
    expected = [
        history.fetch(
            "SELECT sampled_at, used, quota_limit FROM quota_samples WHERE quota_id = ?"
            " AND sampled_at BETWEEN ? AND ? ORDER BY sampled_at",
            quota,
            start.isoformat(),
            end.isoformat(),
        )
        for quota, start, end in wanted
    ]
    as_rows = [[(s.at.isoformat(), s.used, s.limit) for s in samples] for samples in found]
    assert as_rows == expected
    assert [len(rows) for rows in as_rows[:4]] == [4, 2, 0, 0]


# -- no store file: reads settle at once ----------------------------------------------------------


async def test_with_no_store_file_reads_settle_without_the_stores_thread(tmp_path) -> None:
    """No file (and none open, nothing queued): a usage sweep is settled when it is made, and
    a read ends without suspending, its work never run; the file a snapshot then makes is
    read through the store's thread again, its stored day found."""
    store = HistoryStore(tmp_path / "history.sqlite")
    asked: list[frozenset[date]] = []

    def plan(held: frozenset[date]) -> tuple[date, date]:
        asked.append(held)
        return (TODAY, TODAY)

    first = TODAY - timedelta(days=3)
    sweep = store.sweep("a", first, TODAY, (first, TODAY - timedelta(days=1)), plan, splits=False)
    assert sweep.planned.done() and sweep.stored.done()
    assert sweep.planned.result() == (TODAY, TODAY) and asked == [frozenset()]
    assert sweep.stored.result().days == () and sweep.stored.result().totals is None
    ran: list[object] = []
    read = store.read(lambda db: ran.append(db), "nothing")
    with pytest.raises(StopIteration) as ended:
        read.send(None)  # ends at the first step: nothing awaited
    assert ended.value.value == "nothing" and ran == []

    await store.start_run("a", NOW)
    later = store.sweep("a", first, TODAY, (first, TODAY - timedelta(days=1)), plan, splits=False)
    assert not later.stored.done()  # the store's thread reads the file now
    await later.stored
    assert [r.account_id for r in await store.runs()] == ["a"]
    await store.close()


async def test_a_read_after_a_queued_write_waits_for_it_though_no_file_exists_yet(tmp_path) -> None:
    """The store's thread is held while a snapshot's first write waits behind it and no file
    exists yet: a read asked then still runs after that write, and finds its run."""

    store = HistoryStore(tmp_path / "history.sqlite")
    free = threading.Event()
    held = store._pool.submit(free.wait, 30)  # the store's one thread, busy
    try:
        writing = asyncio.ensure_future(store.start_run("a", NOW))
        await asyncio.sleep(0)  # the write is handed to the store's thread, behind the job
        assert not (tmp_path / "history.sqlite").exists()
        reading = asyncio.ensure_future(store.runs())
        await asyncio.sleep(0)
    finally:
        free.set()
    held.result(timeout=30)
    await writing
    assert [r.account_id for r in await reading] == ["a"]
    await store.close()


async def test_the_dashboards_forecasts_worked_out_together_equal_each_quotas_own(
    emulators, history
) -> None:
    """The Overview works out every quota's forecast in one batch (one moment, the samples
    read together, one pass): each equals :func:`gateway.forecast.forecast` over that quota's
    own stored samples, read here straight from SQLite; the alerts' forecasts are the same."""
    settings = settings_for(*accounts(emulators), **history.gateway)
    for hours in (50, 30, 20, 6, 3, 1):
        await snapshot(settings, lambda hours=hours: NOW - timedelta(hours=hours))
    document = (Path(__file__).parents[1] / "gateway/static/dashboard/queries.graphql").read_text()
    async with httpx.AsyncClient(verify=TLS) as http:
        app = create_app(settings, http_client=http, clock=lambda: NOW)
        gateway = Gateway(app)
        answer = await gateway.client.post(
            "/graphql", json={"query": document, "operationName": "Overview"}
        )
        await gateway.client.aclose()
        quotas = await app.state.service.request().quotas()
        await app.state.service.history.close()
    body = answer.json()
    assert "errors" not in body, body
    data = body["data"]
    expected = {}
    for quota in quotas:
        window = window_of(quota, NOW)
        if window is None:
            expected[quota.id] = None
            continue
        before = previous_window(quota.window, window[0])
        rows = history.fetch(
            "SELECT sampled_at, used FROM quota_samples WHERE quota_id = ?"
            " AND sampled_at BETWEEN ? AND ? ORDER BY sampled_at",
            quota.id,
            (before[0] if before else window[0]).isoformat(),
            NOW.isoformat(),
        )
        points = [(datetime.fromisoformat(t), u) for t, u in rows if u is not None]
        expected[quota.id] = forecast(quota, points, NOW)

    def shown(item) -> dict[str, object] | None:
        if item is None:
            return None
        moment = lambda at: None if at is None else at.isoformat().replace("+00:00", "Z")  # noqa: E731
        return {
            "usedAtResetLow": item.used_at_reset_low,
            "usedAtResetHigh": item.used_at_reset_high,
            "runsOutEarliest": moment(item.runs_out_earliest),
            "runsOutLatest": moment(item.runs_out_latest),
        }

    answered = {q["id"]: q["forecast"] for a in data["accounts"] for q in a["quotas"]}
    assert answered == {quota_id: shown(item) for quota_id, item in expected.items()}
    assert sum(item is not None for item in expected.values()) >= 5  # real forecasts, not nulls
    for alert in data["alerts"]:
        item = expected[alert["quota"]["id"]]
        wanted = shown(item)
        assert alert["forecast"] == (
            None if wanted is None else {k: wanted[k] for k in ("runsOutEarliest", "runsOutLatest")}
        )
    assert data["alerts"]


async def test_forecasts_asked_together_are_read_in_jobs_of_at_most_sample_batch_quotas(
    emulators, history
) -> None:
    """The samples of quotas whose forecasts are asked for in one turn of the loop are read
    together, SAMPLE_BATCH quotas per job of the store's thread at most: 2 x SAMPLE_BATCH + 1
    quotas are 3 jobs, and a quota asked for again is not read again."""
    settings = settings_for(*accounts(emulators), **history.gateway)
    await snapshot(settings, lambda: NOW - timedelta(hours=1))  # the file exists
    quotas = [
        Quota(
            f"q{n}",
            "a",
            "requests",
            QuotaWindow.DAY,
            QuotaUnit.REQUESTS,
            100,
            n % 100,
            resets_at=day_start(NOW.date() + timedelta(days=1)),
        )
        for n in range(2 * SAMPLE_BATCH + 1)
    ]
    async with httpx.AsyncClient(verify=TLS) as http:
        service = build_service(settings, http, clock=lambda: NOW)
        try:
            scope = service.request()
            before = service.history.read_jobs
            pending = scope.forecasts_soon(quotas)
            assert pending is not None
            await pending
            assert service.history.read_jobs - before == 3
            assert scope.forecasts_soon(quotas[:10]) is None  # known: nothing read again
        finally:
            await service.upstream.close()
            await service.history.close()
