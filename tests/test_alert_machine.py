"""The alert state machine as stored in the history store, driven by a controllable clock:
through a month of ReputeAPI snapshots (fire once per window, resolve at the reset), with quotas
whose use falls (resolve on clear, never twice in a window, the cooldown), and an account that
cannot be read (unreadable fires once per outage and resolves when it is read again)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.alerts.engine import Alerting
from gateway.app import build_service, history_store
from gateway.domain import Quota, QuotaUnit, QuotaWindow
from gateway.forecast import forecast
from gateway.servers import ServerThread
from gateway.settings import Settings, parse_settings
from gateway.snapshot import AccountOutcome, run_snapshot
from providers.emulation import Fault
from providers.reputeapi.emulator import DEFAULT_KEYS, ReputeData, ReputeEmulator
from tests.conftest import SEED, TLS
from tests.history_backends import Backend, backend_of
from tests.receiver import Receiver, serving

BASIC = next(k for k in DEFAULT_KEYS if k.key == "ra_live_basic_demo")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, 12, tzinfo=UTC))


@pytest.fixture
def repute(clock: Clock) -> Iterator[tuple[ReputeEmulator, str]]:
    """A ReputeAPI emulator of this test's own, on the test's clock."""
    emulator = ReputeEmulator(seed=SEED, clock=clock)
    with ServerThread(emulator) as server:
        yield emulator, server.urls[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as running:
        yield running


def config(history: Backend, url: str, hook: str, **alerts: Any) -> Settings:
    account = {"id": "repute", "provider": "reputeapi", "base_url": url, "api_key": BASIC.key}
    alerts.setdefault("webhooks", [{"url": f"{hook}/hook", "name": "hook"}])
    return parse_settings(
        {
            "gateway": dict(history.gateway),
            "accounts": [account],
            "alerts": alerts,
        },
        env={},
    )


async def snapshot_and_alert(settings: Settings, clock: Clock) -> None:
    """One ``snapshot`` as the CLI runs it: its own service, store and clients."""
    async with httpx.AsyncClient(verify=TLS) as http, httpx.AsyncClient() as hooks:
        service = build_service(settings, http, clock=clock)
        try:
            assert service.history is not None and settings.alerts is not None
            outcomes = await run_snapshot(service, service.history)
            alerting = Alerting(
                settings.alerts, settings.accounts, service.history, hooks, clock=clock
            )
            await alerting.after_snapshot(outcomes)
        finally:
            await service.upstream.close()
            await service.history.close()


def utilization_on(moment: datetime) -> tuple[int, float]:
    """What the emulator's data says the basic key has used this month by ``moment``."""
    used = ReputeData(SEED).month_to_date(BASIC, moment).requests
    return used, used / BASIC.monthly_limit


async def test_a_month_of_snapshots_fires_each_step_once_and_the_reset_resolves_them(
    history, repute, receiver, clock
) -> None:
    _, url = repute
    settings = config(history, url, receiver.url, thresholds=[0.5, 0.8], predictive=False)
    moments = [datetime(2026, 3, day, 12, tzinfo=UTC) for day in range(1, 32)]
    moments += [datetime(2026, 4, 1, 12, tzinfo=UTC), datetime(2026, 4, 2, 12, tzinfo=UTC)]
    for moment in moments:
        clock.now = moment
        await snapshot_and_alert(settings, clock)
    # Independently: the first moment each step is reached, from the emulator's seeded data.
    expected = []
    for step in (0.5, 0.8):
        crossed = next(m for m in moments[:31] if utilization_on(m)[1] >= step)
        used, share = utilization_on(crossed)
        expected.append(("firing", step, crossed, used, share))
    april = moments[31]
    for step in (0.5, 0.8):
        used, share = utilization_on(april)
        expected.append(("resolved", step, april, used, share))
    bodies = [r.json() for r in receiver.accepted()]
    got = [
        (b["event"], b["threshold"], datetime.fromisoformat(b["at"]), b["used"], b["utilization"])
        for b in bodies
    ]
    assert sorted(got, key=lambda e: (e[2], e[1])) == expected
    assert [b["reason"] for b in bodies if b["event"] == "resolved"] == ["window_reset"] * 2
    assert {b["windowStart"] for b in bodies} == {"2026-03-01T00:00:00Z"}
    assert {b["limit"] for b in bodies} == {BASIC.monthly_limit}
    assert len(receiver.all()) == 4  # each delivered once, on the first try


@dataclass
class Quotas:
    """An account's snapshot outcome made of chosen quotas (the vendor's part is not under
    test here: the stored state machine is)."""

    settings: Settings
    clock: Clock
    receiver: Receiver

    async def run(self, *quotas: Quota, ok: bool = True) -> list[tuple[str, float | None, str]]:
        """Evaluate and deliver with a fresh store object (as a new process would), and say
        what was delivered: (event, threshold, reason)."""
        store = history_store(self.settings)
        before = len(self.receiver.accepted())
        try:
            async with httpx.AsyncClient() as hooks:
                assert self.settings.alerts is not None
                alerting = Alerting(
                    self.settings.alerts, self.settings.accounts, store, hooks, clock=self.clock
                )
                outcome = AccountOutcome("repute", ok, quotas=tuple(quotas))
                await alerting.after_snapshot([outcome])
        finally:
            await store.close()
        return [
            (r.json()["event"], r.json()["threshold"], r.json()["reason"])
            for r in self.receiver.accepted()[before:]
        ]


@pytest.fixture
async def quotas(history, receiver, clock) -> AsyncIterator[Quotas]:
    settings = config(
        history,
        "http://127.0.0.1:9",
        receiver.url,
        thresholds=[0.8],
        predictive=False,
        cooldown="1h",
        unreadable_after="off",
    )
    yield Quotas(settings, clock, receiver)


def monthly(used: int, resets: datetime = datetime(2026, 4, 1, tzinfo=UTC)) -> Quota:
    return Quota(
        "repute:monthly", "repute", "Monthly requests", QuotaWindow.MONTH, QuotaUnit.REQUESTS,
        1000, used, resets_at=resets,
    )  # fmt: skip


def states(settings: Settings) -> list[tuple[str, str, str]]:
    return backend_of(settings).fetch(
        "SELECT window_key, level, state FROM alert_states ORDER BY id"
    )


async def test_resolves_when_use_falls_and_never_fires_twice_in_a_window(quotas, clock) -> None:
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    assert await quotas.run(monthly(850)) == [("firing", 0.8, None)]
    clock.now += timedelta(hours=1)
    assert await quotas.run(monthly(900)) == []  # still firing: said once
    clock.now += timedelta(minutes=30)
    assert await quotas.run(ok=False) == []  # a failed read: nothing known, nothing resolves
    assert states(quotas.settings) == [("2026-03-01T00:00:00+00:00", "0.8", "firing")]
    clock.now += timedelta(minutes=30)
    assert await quotas.run(monthly(700)) == [("resolved", 0.8, "cleared")]  # limit raised, say
    for hours in (2, 12, 200):
        clock.now = datetime(2026, 3, 10, tzinfo=UTC) + timedelta(hours=hours)
        assert await quotas.run(monthly(950)) == []  # the same window: never again
    clock.now = datetime(2026, 4, 1, 1, tzinfo=UTC)
    assert await quotas.run(monthly(10, datetime(2026, 5, 1, tzinfo=UTC))) == []  # was resolved
    clock.now = datetime(2026, 4, 20, tzinfo=UTC)
    assert await quotas.run(monthly(810, datetime(2026, 5, 1, tzinfo=UTC))) == [
        ("firing", 0.8, None)
    ]
    assert states(quotas.settings) == [
        ("2026-03-01T00:00:00+00:00", "0.8", "resolved"),
        ("2026-04-01T00:00:00+00:00", "0.8", "firing"),
    ]


async def test_a_window_reset_resolves_a_firing_alert(quotas, clock) -> None:
    clock.now = datetime(2026, 3, 30, tzinfo=UTC)
    assert await quotas.run(monthly(990)) == [("firing", 0.8, None)]
    clock.now = datetime(2026, 4, 1, 0, 15, tzinfo=UTC)
    assert await quotas.run(monthly(3, datetime(2026, 5, 1, tzinfo=UTC))) == [
        ("resolved", 0.8, "window_reset")
    ]


async def test_the_cooldown_holds_a_new_window_pending_then_it_fires(quotas, clock) -> None:
    def hourly(used: int, hour: int) -> Quota:
        resets = datetime(2026, 3, 18, hour + 1, tzinfo=UTC)
        return Quota(
            "repute:hourly", "repute", "Hourly", QuotaWindow.HOUR, QuotaUnit.REQUESTS, 100, used,
            resets_at=resets,
        )  # fmt: skip

    clock.now = datetime(2026, 3, 18, 10, 50, tzinfo=UTC)
    assert await quotas.run(hourly(85, 10)) == [("firing", 0.8, None)]
    clock.now = datetime(2026, 3, 18, 11, 5, tzinfo=UTC)  # the next hour, used up fast again
    assert await quotas.run(hourly(90, 11)) == [("resolved", 0.8, "window_reset")]
    assert states(quotas.settings)[-1][2] == "pending"
    clock.now = datetime(2026, 3, 18, 11, 55, tzinfo=UTC)
    assert await quotas.run(hourly(95, 11)) == []  # 50 minutes: still cooling down
    clock.now = datetime(2026, 3, 18, 12, 10, tzinfo=UTC)  # a new hour, an hour and 5 min on
    assert await quotas.run(hourly(96, 12)) == [("firing", 0.8, None)]
    assert [s[2] for s in states(quotas.settings)] == ["resolved", "firing"]


async def test_unreadable_fires_once_per_outage_and_resolves_when_read_again(
    history, repute, receiver, clock
) -> None:
    emulator, url = repute
    settings = config(
        history, url, receiver.url, thresholds=[], predictive=False, unreadable_after="2h"
    )
    start = datetime(2026, 3, 18, 8, tzinfo=UTC)

    async def at(minutes: int, *, failing: bool) -> list[dict]:
        clock.now = start + timedelta(minutes=minutes)
        emulator.set_fault(Fault(status=401) if failing else None)
        before = len(receiver.accepted())
        await snapshot_and_alert(settings, clock)
        return [r.json() for r in receiver.accepted()[before:]]

    assert await at(0, failing=False) == []
    assert await at(60, failing=True) == []
    assert await at(120, failing=True) == []  # exactly 2 h: not longer than that yet
    (fired,) = await at(121, failing=True)
    assert (fired["event"], fired["rule"], fired["accountId"]) == ("firing", "unreadable", "repute")
    assert fired["lastReadAt"] == "2026-03-18T08:00:00Z" == fired["windowStart"]
    assert fired["message"] == (
        "repute (ReputeAPI) has not been read successfully since 2026-03-18T08:00Z"
    )
    assert (fired["quotaId"], fired["used"], fired["threshold"]) == (None, None, None)
    assert await at(240, failing=True) == []  # the same outage: said once
    (resolved,) = await at(300, failing=False)
    assert (resolved["event"], resolved["reason"]) == ("resolved", "cleared")
    assert resolved["message"] == "repute (ReputeAPI) was read again"
    assert await at(360, failing=True) == []
    (again,) = await at(300 + 121, failing=True)  # a new outage fires again
    assert again["lastReadAt"] == "2026-03-18T13:00:00Z"


async def test_predictive_fires_with_the_projected_range_and_resolves_when_it_clears(
    quotas, clock
) -> None:
    settings = quotas.settings
    assert settings.alerts is not None
    predictive = parse_settings(
        {
            "gateway": dict(backend_of(settings).gateway),
            "accounts": [
                {"id": "repute", "provider": "reputeapi", "api_key": "k", "base_url": "http://h"}
            ],
            "alerts": {
                "thresholds": [],
                "webhooks": [{"url": f"{quotas.receiver.url}/hook"}],
                "unreadable_after": "off",
            },
        },
        env={},
    )
    quotas.settings = predictive
    store = history_store(settings)
    samples = [(datetime(2026, 3, day, tzinfo=UTC), 40 * (day - 1)) for day in (4, 7, 10)]
    try:
        for at, used in samples:  # stored as snapshots store them
            run = await store.start_run("repute", at)
            await store.store(run, "repute", [], [monthly(used)], [], at)
    finally:
        await store.close()
    clock.now = datetime(2026, 3, 12, tzinfo=UTC)
    assert await quotas.run(monthly(440)) == [("firing", None, None)]
    body = quotas.receiver.accepted()[-1].json()
    projection = forecast(monthly(440), samples, clock.now)
    assert projection is not None and projection.runs_out_earliest is not None
    assert body["rule"] == "predictive"
    assert body["runsOutEarliest"] == projection.runs_out_earliest.isoformat().replace(
        "+00:00", "Z"
    )
    assert datetime(2026, 3, 12, tzinfo=UTC) < projection.runs_out_earliest < APRIL
    assert body["message"].startswith("repute: Monthly requests may run out as early as 2026-03-")
    clock.now = datetime(2026, 3, 13, tzinfo=UTC)  # the limit was raised: no run-out in sight
    raised = Quota(**{**monthly(480).__dict__, "limit": 100_000})
    assert await quotas.run(raised) == [("resolved", None, "cleared")]


APRIL = datetime(2026, 4, 1, tzinfo=UTC)
