"""The demo's past (gateway/demo.py): which snapshot runs it plans, and what a filled store
holds, checked against numbers recomputed from the emulators' own seeded data.

The store is filled once for the module, at the suite's clock (``NOW``, seed ``SEED``), and read
through a gateway served in-process against the suite's emulators (the same seed and clock).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.demo import (
    MAX_PAST_DAYS,
    SAMPLES_PER_WINDOW,
    Filled,
    PastClock,
    PastRun,
    demo_settings,
    fill_history,
    horizon,
    past_runs,
)
from gateway.domain import days_between
from providers import registry
from providers.reputeapi.emulator import ReputeData
from providers.reversinglabs.emulator import ReversingLabsData
from providers.virustotal.emulator import VirusTotalData
from tests.conftest import NO_HISTORY, NOW, SEED, TLS, Gateway

ROOT = Path(__file__).parent.parent
TODAY = NOW.date()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day(text: str) -> date:
    return date.fromisoformat(text)


# -- the plan (pure) ---------------------------------------------------------------------------


def covered(runs: list[PastRun], live_since) -> list[date]:
    """Every day the coverage runs store, in run order (a run stores ``days`` days before its
    own day, not past what the vendor kept at that moment, up to its yesterday)."""
    stored: list[date] = []
    for run in runs:
        if run.days is None:
            continue
        today = run.at.date()
        first = today - timedelta(days=run.days)
        kept = live_since(today)
        if kept is not None:
            first = max(first, kept)
        stored.extend(days_between(first, today - timedelta(days=1)))
    return stored


def test_a_vendor_that_keeps_everything_is_covered_by_one_run_at_the_start() -> None:
    oldest = date(2024, 1, 1)
    runs = past_runs(NOW, oldest, [], lambda today: None)
    assert runs == [PastRun(NOW, (TODAY - oldest).days)]
    assert covered(runs, lambda today: None) == list(days_between(oldest, TODAY - timedelta(1)))


def test_a_vendor_that_forgets_is_covered_by_runs_each_within_its_retention() -> None:
    def live_since(today: date) -> date:
        return today - timedelta(days=59)  # keeps 60 days, today included

    oldest = TODAY - timedelta(days=MAX_PAST_DAYS)
    runs = past_runs(NOW, oldest, [], live_since)
    stored = covered(runs, live_since)
    # Every day from the oldest to yesterday exactly once: no gap, no overlap.
    assert sorted(stored) == list(days_between(oldest, TODAY - timedelta(1)))
    assert len(stored) == len(set(stored)) == MAX_PAST_DAYS
    assert runs == sorted(runs) and runs[-1].at == NOW
    assert len(runs) == -(-MAX_PAST_DAYS // 59)  # 59 closed days per run
    assert all(run.at.time() == NOW.time() for run in runs)


def test_each_window_gets_its_samples_evenly_from_its_start() -> None:
    day_window = (datetime(2026, 3, 18, tzinfo=UTC), datetime(2026, 3, 19, tzinfo=UTC))
    month = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    oldest = date(2026, 1, 1)
    runs = past_runs(NOW, oldest, [day_window, month], lambda today: None)
    samples = [r.at for r in runs if r.days is None]
    assert [r for r in runs if r.days is not None] == [PastRun(NOW, (TODAY - oldest).days)]
    assert runs == sorted(runs) and runs[-1].at == NOW
    for start, _ in (day_window, month):
        step = (NOW - start) / SAMPLES_PER_WINDOW
        assert {start + step * i for i in range(SAMPLES_PER_WINDOW)} <= set(samples)
    assert len(samples) == 2 * SAMPLES_PER_WINDOW  # the two windows share no moment


def test_windows_are_clipped_to_the_oldest_day_and_to_their_end() -> None:
    oldest = date(2026, 2, 1)
    term = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    runs = past_runs(NOW, oldest, [term], lambda today: None)
    samples = [r.at for r in runs if r.days is None]
    start, stop = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    step = (stop - start) / SAMPLES_PER_WINDOW
    assert samples == [start + step * i for i in range(SAMPLES_PER_WINDOW)]
    future = (NOW + timedelta(hours=1), NOW + timedelta(days=2))
    assert [r for r in past_runs(NOW, TODAY, [future], lambda today: None)] == []


def test_the_horizon_is_the_first_seeded_day_at_most_max_past_days_back() -> None:
    assert horizon(TODAY, None) == TODAY - timedelta(days=MAX_PAST_DAYS)
    assert horizon(TODAY, date(2025, 1, 15)) == date(2025, 1, 15)
    assert horizon(TODAY, date(2000, 1, 1)) == TODAY - timedelta(days=MAX_PAST_DAYS)


def test_the_pacing_clock_never_goes_back_when_the_clock_does() -> None:
    clock = PastClock(NOW)
    readings = [clock.monotonic()]
    for moment in (NOW - timedelta(days=400), NOW - timedelta(days=3), NOW - timedelta(days=9)):
        clock.set(moment)
        assert clock() == moment
        readings.append(clock.monotonic())
    assert readings == sorted(readings)
    # Each jump, either way, passes at least its own length on the pacing clock.
    assert readings[-1] - readings[-2] >= 6 * 86400


def test_gateway_demo_names_no_vendor() -> None:
    text = (ROOT / "gateway" / "demo.py").read_text(encoding="utf-8").lower()
    for pid, entry in registry().items():
        assert pid not in text
        assert entry.client.display_name.lower() not in text


# -- a filled store, read through the graph ----------------------------------------------------


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Filled]]:
    path = str(tmp_path_factory.mktemp("past") / "history.sqlite")
    filled = asyncio.run(fill_history(path, seed=SEED, now=NOW))
    yield path, filled


async def ask(emulators, history_path: str, query: str) -> dict:
    urls = {provider: running.url for provider, running in emulators.items()}
    async with httpx.AsyncClient(verify=TLS) as http:
        app = create_app(demo_settings(urls, history_path), http_client=http, clock=lambda: NOW)
        gateway = Gateway(app)
        try:
            return await gateway.data(query)
        finally:
            await gateway.client.aclose()
            await app.state.service.history.close()


async def test_every_run_is_stored_and_listed(emulators, past) -> None:
    path, filled = past
    assert filled.failed == 0
    assert filled.oldest == TODAY - timedelta(days=MAX_PAST_DAYS)
    data = await ask(
        emulators, path, "{ snapshots(limit: 1000) { accountId startedAt outcome days } }"
    )
    runs = data["snapshots"]
    assert len(runs) == filled.runs
    assert {r["outcome"] for r in runs} == {"OK"}
    newest = {}
    for run in runs:  # newest first
        newest.setdefault(run["accountId"], run)
    assert set(newest) == {
        a.id for a in demo_settings(dict.fromkeys(registry(), "http://x")).accounts
    }
    assert {at(r["startedAt"]) for r in newest.values()} == {NOW}
    # The run at the start covers each vendor that keeps everything back to its first day.
    for entry in registry().values():
        first = entry.emulator.first_day
        for account in entry.emulator.accounts:
            if first is not None:
                assert newest[account["id"]]["days"] == (TODAY - first).days


async def test_usage_past_vendor_retention_comes_from_the_store(emulators, past) -> None:
    path, _ = past
    oldest = TODAY - timedelta(days=MAX_PAST_DAYS)
    start, end = oldest - timedelta(days=3), TODAY - timedelta(days=61)  # all past retention
    query = f"""{{ account(id: "vt-soc") {{ usage(from: "{start}", to: "{end}") {{
        requests quotaRequests missingDays series {{ start requests quotaRequests }} }} }} }}"""
    usage = (await ask(emulators, path, query))["account"]["usage"]
    bare = (await ask(emulators, NO_HISTORY, query))["account"]["usage"]

    assert [day(d) for d in bare["missingDays"]] == list(days_between(start, end))
    assert [day(d) for d in usage["missingDays"]] == list(
        days_between(start, oldest - timedelta(1))
    )
    data = VirusTotalData(SEED)
    expected = {}
    for when in days_between(oldest, end):
        consuming, free, _ = data.day("soc-team", when, 1.0)
        expected[when] = (sum(consuming.values()) + sum(free.values()), sum(consuming.values()))
    got = {
        at(p["start"]).date(): (p["requests"], p["quotaRequests"])
        for p in usage["series"]
        if at(p["start"]).date() >= oldest
    }
    assert got == expected
    assert usage["requests"] == sum(r for r, _ in expected.values())
    assert usage["quotaRequests"] == sum(q for _, q in expected.values())


QUOTAS = """{ quotas { id window unit limit used utilization resetsAt startsOn endsOn
    history(from: "2026-03-01T00:00:00Z", to: "2026-03-18T14:25:00Z") { at used limit }
    forecast { windowStart windowEnd samples runsOutEarliest } }
  alerts(threshold: 0.8) { kind quota { id } } }"""
TERM = """{ account(id: "rl-acme") { quotas { id
    history(from: "2026-01-01T00:00:00Z", to: "2026-03-18T14:25:00Z") { at used limit } } } }"""


async def quotas_of(emulators, path: str) -> tuple[dict[str, dict], dict]:
    """Every quota by id, its history reaching back to the 2026 term where it has one."""
    data = await ask(emulators, path, QUOTAS)
    quotas = {q["id"]: q for q in data["quotas"]}
    for quota in (await ask(emulators, path, TERM))["account"]["quotas"]:
        if quotas[quota["id"]]["window"] == "FIXED_TERM":
            quotas[quota["id"]]["history"] = quota["history"]
    return quotas, data


async def test_quota_samples_are_what_the_vendor_answered_at_each_moment(emulators, past) -> None:
    path, _ = past
    quotas, _ = await quotas_of(emulators, path)

    repute = ReputeData(SEED)
    for account, key in (
        ("repute-premium", "ra_live_premium_demo"),
        ("repute-basic", "ra_live_basic_demo"),
    ):
        samples = quotas[f"{account}:monthly-requests"]["history"]
        assert len(samples) >= SAMPLES_PER_WINDOW
        for sample in samples:
            moment = at(sample["at"])
            assert sample["used"] == repute.month_to_date(repute.keys[key], moment).requests

    virustotal = VirusTotalData(SEED)
    samples = quotas["vt-soc:api_requests_monthly"]["history"]
    assert len(samples) >= SAMPLES_PER_WINDOW
    for sample in samples:
        moment = at(sample["at"])
        month = days_between(moment.date().replace(day=1), moment.date())
        assert sample["used"] == virustotal.consuming_sum("soc-team", month, 1.0)

    reversinglabs = ReversingLabsData(SEED)
    for quota_id, limit_id in (
        ("rl-acme:daily:queries:TCA-0101+TCA-0104", "acme-daily-reputation"),
        ("rl-acme:date_range:queries:TCA-0303", "acme-fixed-yara"),
    ):
        limit = reversinglabs.limit(limit_id)
        samples = quotas[quota_id]["history"]
        assert len(samples) >= SAMPLES_PER_WINDOW
        for sample in samples:
            assert sample["used"] == reversinglabs.limit_used(limit, at(sample["at"]))
            assert sample["limit"] == limit.limit


def window(quota: dict) -> tuple[datetime, datetime] | None:
    """A quota's current window at NOW, from its own fields (fixed ones without a term have
    none)."""
    if quota["window"] == "FIXED_TERM":
        if quota["startsOn"] is None:
            return None
        start, last = day(quota["startsOn"]), day(quota["endsOn"])
        return midnight(start), midnight(last + timedelta(days=1))
    end = at(quota["resetsAt"])
    if quota["window"] == "HOUR":
        return end - timedelta(hours=1), end
    if quota["window"] == "DAY":
        return end - timedelta(days=1), end
    assert quota["window"] == "MONTH"
    return midnight((end - timedelta(days=1)).date().replace(day=1)), end


def midnight(when: date) -> datetime:
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


async def test_every_window_has_samples_and_a_forecast(emulators, past) -> None:
    path, _ = past
    quotas = list((await quotas_of(emulators, path))[0].values())
    with_window = [q for q in quotas if window(q) is not None]
    # At NOW (mid-month, mid-day, 25 minutes into the hour, a quarter into the 2026 term) every
    # quota with a window is past the 10 % a forecast waits for.
    assert {q["id"] for q in quotas if q["forecast"] is not None} == {q["id"] for q in with_window}
    assert {q["id"] for q in quotas} - {q["id"] for q in with_window} == {
        "vt-soc:intelligence_hunting_rules",  # fixed, without a term
        "vt-soc:monitor_storage_bytes",
    }
    for quota in with_window:
        start, end = window(quota)
        inside = [s for s in quota["history"] if start <= at(s["at"]) < NOW]
        assert len(inside) >= SAMPLES_PER_WINDOW, quota["id"]
        forecast = quota["forecast"]
        assert (at(forecast["windowStart"]), at(forecast["windowEnd"])) == (start, end)


async def test_alerts_follow_from_the_seeded_use(emulators, past) -> None:
    path, _ = past
    quotas, data = await quotas_of(emulators, path)
    over = {a["quota"]["id"] for a in data["alerts"] if a["kind"] == "OVER_THRESHOLD"}
    # Recomputed from the seeds: ACME's daily reputation queries are past their limit by the
    # afternoon, and the SOC group downloaded more than its monthly allowance by the 18th.
    reversinglabs = ReversingLabsData(SEED)
    daily = reversinglabs.limit("acme-daily-reputation")
    assert reversinglabs.limit_used(daily, NOW) / daily.limit >= 0.8
    month = days_between(TODAY.replace(day=1), TODAY)
    downloads = VirusTotalData(SEED).endpoint_sum("soc-team", "file_download", month, 1.0)
    assert downloads / 250 >= 0.8
    assert {
        "rl-acme:daily:queries:TCA-0101+TCA-0104",
        "vt-soc:intelligence_downloads_monthly",
    } <= over
    assert over == {
        q["id"] for q in quotas.values() if q["utilization"] is not None and q["utilization"] >= 0.8
    }
    runs_out = {a["quota"]["id"] for a in data["alerts"] if a["kind"] == "RUNS_OUT_BEFORE_RESET"}
    assert runs_out == {
        q["id"]
        for q in quotas.values()
        if q["id"] not in over and q["forecast"] and q["forecast"]["runsOutEarliest"]
    }


def test_no_sample_moment_is_later_than_the_start(past) -> None:
    path, _ = past
    with sqlite3.connect(path) as db:
        latest = db.execute("SELECT max(sampled_at) FROM quota_samples").fetchone()[0]
        days = db.execute("SELECT max(day) FROM usage_days").fetchone()[0]
    assert at(latest) == NOW
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", days) and day(days) == TODAY - timedelta(days=1)
