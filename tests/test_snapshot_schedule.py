"""``serve --snapshot-every`` with a shared Redis, in process: the schedule of each replica (its
own :class:`~gateway.election.Election`, its own memory) over a real Redis; real gateways with
their snapshot runs against the emulators when Redis dies and comes back.

The separate-process proof (three ``serve`` processes, one killed mid-run) is
``tests/e2e/test_snapshot_election.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

from gateway.app import create_app
from gateway.election import Election
from gateway.scheduler import Outcome, SnapshotSchedule
from gateway.servers import ServerThread
from tests.conftest import account_entry, clock, settings_for


def election(url: str, every: float) -> Election:
    return Election.from_url(url, "schedule-test", every, timeout=0.5, cooldown=0.2)


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def test_a_runner_that_lost_its_lease_leaves_the_period_to_the_one_that_took_it(
    redis_server,
) -> None:
    every = 2.0
    client = redis_server.client()
    first_ends, first_started = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    async def slow() -> list:
        runs.append("first")
        first_started.set()
        await first_ends.wait()
        return []

    async def quick() -> list:
        runs.append("second")
        return []

    one, two = election(redis_server.url, every), election(redis_server.url, every)
    first, second = SnapshotSchedule(every, slow, one), SnapshotSchedule(every, quick, two)
    tasks: list[asyncio.Task[None]] = []
    try:
        now = await one.now()  # start at the beginning of a period, so it all happens inside it
        await asyncio.sleep(one.periods.end(one.periods.number(now)) - now + 0.05)
        period = one.periods.number(await one.now())
        run_key = one.key("run", period)
        tasks.append(asyncio.create_task(first.run_forever()))
        await first_started.wait()
        assert client.get(run_key) == one.token.encode()
        tasks.append(asyncio.create_task(second.run_forever()))
        await until(lambda: second.counts.counts[Outcome.SKIPPED] == 0 and client.exists(run_key))
        client.delete(run_key)  # as if the first runner had been paused past its lease
        await until(lambda: second.counts.counts[Outcome.TAKEN_OVER] == 1)
        assert client.get(one.key("done", period)) == two.token.encode()
        first_ends.set()  # the first runner resumes and ends its run
        await until(lambda: first.counts.counts[Outcome.LOST] == 1)
        assert client.get(one.key("done", period)) == two.token.encode()  # still the taker's
        assert one.periods.number(await one.now()) == period  # all of it within the period
        assert runs == ["first", "second"]
        assert first.counts.counts[Outcome.RAN] == 0
    finally:
        await stop(tasks, client, one, two)


async def stop(tasks: list[asyncio.Task[None]], client: Any, *elections: Election) -> None:
    """Cancel the schedules' tasks, then close the test's Redis client and the elections."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    client.close()
    for election_ in elections:
        await election_.close()


async def first_then_second(
    one: Election, first: SnapshotSchedule, second: SnapshotSchedule, runs: list, tasks: list
) -> int:
    """At the start of a period (by ``one``'s Redis clock), ``first``'s schedule, and once it
    runs (``runs`` not empty) ``second``'s: the period (their tasks are added to ``tasks``)."""
    now = await one.now()
    await asyncio.sleep(one.periods.end(one.periods.number(now)) - now + 0.02)
    period = one.periods.number(await one.now())
    tasks.append(asyncio.create_task(first.run_forever()))
    await until(lambda: bool(runs))
    tasks.append(asyncio.create_task(second.run_forever()))
    return period


async def test_a_run_longer_than_its_lease_keeps_it(redis_server) -> None:
    """The runner renews its lease while it runs: a replica watching the period never takes it
    over, however many leases the run lasts."""
    every = 2.0  # a lease of 0.67 s; the first run lasts 2.4 of them
    client = redis_server.client()
    runs: list[str] = []

    async def slow() -> list:
        runs.append("first")
        if len(runs) == 1:
            await asyncio.sleep(1.6)
        return []

    async def other() -> list:
        runs.append("second")
        return []

    one, two = election(redis_server.url, every), election(redis_server.url, every)
    first, second = SnapshotSchedule(every, slow, one), SnapshotSchedule(every, other, two)
    tasks: list[asyncio.Task[None]] = []
    try:
        period = await first_then_second(one, first, second, runs, tasks)
        await until(lambda: first.counts.counts[Outcome.RAN] == 1)
        assert client.get(one.key("done", period)) == one.token.encode()
        await until(lambda: second.counts.counts[Outcome.SKIPPED] == 1)
        assert runs == ["first"]
        assert second.counts.counts[Outcome.TAKEN_OVER] == 0
    finally:
        await stop(tasks, client, one, two)


async def test_a_run_longer_than_its_period_is_left_to_end_and_the_next_runs_elsewhere(
    redis_server,
) -> None:
    """A replica watching a period still held at its end does not take it afterwards; it runs
    the next period while the first runner, busy with one run at a time, finishes its own."""
    every = 2.0
    client = redis_server.client()
    runs: list[tuple[str, int]] = []
    first_ends = asyncio.Event()

    def now_period() -> int:
        seconds, micros = client.time()
        return one.periods.number(seconds + micros / 1e6)

    async def slow() -> list:
        runs.append(("first", now_period()))
        if len(runs) == 1:
            await first_ends.wait()
        return []

    async def other() -> list:
        runs.append(("second", now_period()))
        return []

    one, two = election(redis_server.url, every), election(redis_server.url, every)
    first, second = SnapshotSchedule(every, slow, one), SnapshotSchedule(every, other, two)
    tasks: list[asyncio.Task[None]] = []
    try:
        period = await first_then_second(one, first, second, runs, tasks)
        await until(lambda: second.counts.counts[Outcome.RAN] == 1)  # the next period
        assert second.counts.counts[Outcome.SKIPPED] == 1  # the first period, still held
        assert runs == [("first", period), ("second", period + 1)]
        assert client.get(one.key("run", period)) == one.token.encode()  # still running
        first_ends.set()
        await until(lambda: first.counts.counts[Outcome.RAN] == 1)
        assert client.get(one.key("done", period)) == one.token.encode()
        assert second.counts.counts[Outcome.TAKEN_OVER] == 0
    finally:
        await stop(tasks, client, one, two)


def counts(app) -> dict[Outcome, int]:
    return dict(app.state.snapshots.counts.counts)


def total(apps, *outcomes: Outcome) -> int:
    return sum(counts(app)[o] for app in apps for o in outcomes)


async def test_replicas_run_locally_while_redis_is_down_and_elect_again_after(
    emulators, redis_server, tmp_path, caplog
) -> None:
    """Two gateways (apps with their own memory, served over loopback) snapshot every second:
    one runs each period while Redis is up; while it is down each runs every period itself and
    says so once; when it is back, one runs each period again. Every run they count is in the
    history store."""
    caplog.set_level(logging.INFO)
    settings = settings_for(
        account_entry("reputeapi", emulators["reputeapi"].url),
        account_entry("zkscore", emulators["zkscore"].url),
        cache={"redis_timeout": 0.2, "redis_cooldown": 0.3},
        cache_url=redis_server.url,
        history_path=str(tmp_path / "history.sqlite"),
    )
    apps = [create_app(settings, clock=clock, snapshot_every=1.0) for _ in range(2)]
    elected = (Outcome.RAN, Outcome.TAKEN_OVER)
    with ServerThread(*apps) as server:
        await until(lambda: total(apps, *elected) >= 3 and total(apps, Outcome.SKIPPED) >= 2)
        assert total(apps, Outcome.LOCAL, Outcome.LOST) == 0
        async with httpx.AsyncClient() as client:
            scrape = (await client.get(f"{server.urls[0]}/metrics", timeout=10)).text
        assert 'usage_gateway_snapshot_periods_total{outcome="skipped"}' in scrape
        assert "# TYPE usage_gateway_snapshot_periods_total counter" in scrape

        redis_server.kill()
        await until(lambda: all(counts(app)[Outcome.LOCAL] >= 2 for app in apps))
        before = total(apps, *elected, Outcome.SKIPPED)
        redis_server.start()  # empty, on the same port
        await until(lambda: total(apps, *elected, Outcome.SKIPPED) >= before + 4)
    elections = [r for r in caplog.records if r.name == "gateway.election"]
    down = [r.getMessage() for r in elections if r.levelno == logging.WARNING]
    assert len(down) == 2, down  # one line per replica for the outage
    assert all(f"Redis at 127.0.0.1:{redis_server.port} failed" in line for line in down)
    back = [r for r in elections if "answers again" in r.getMessage()]
    assert len(back) == 2
    ran = [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler"]
    assert any(" local, by this replica without an election" in line for line in ran)
    assert any(": ran by this replica (" in line for line in ran)

    runs = total(apps, *elected, Outcome.LOCAL, Outcome.LOST)
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        stored = dict(db.execute("SELECT outcome, count(*) FROM snapshot_runs GROUP BY 1"))
    # Every counted run stored both accounts; a run the shutdown stopped may be there too.
    assert 2 * runs <= stored.pop("ok") <= 2 * (runs + len(apps)), (runs, stored)
    assert set(stored) <= {"running"}


async def test_without_redis_every_process_runs_its_own_schedule(emulators, tmp_path) -> None:
    """``cache_url = "memory://"``: no election; each gateway runs every ``every`` seconds on
    its own (counted as ``local``), as one process did before there were replicas."""
    settings = settings_for(
        account_entry("zkscore", emulators["zkscore"].url),
        history_path=str(tmp_path / "history.sqlite"),
    )
    apps = [create_app(settings, clock=clock, snapshot_every=0.5) for _ in range(2)]
    assert all(app.state.snapshots.election is None for app in apps)
    with ServerThread(*apps):
        await until(lambda: all(counts(app)[Outcome.LOCAL] >= 3 for app in apps))
    assert all(counts(app)[Outcome.LOCAL] == sum(counts(app).values()) for app in apps)
    runs = total(apps, Outcome.LOCAL)
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        stored = dict(db.execute("SELECT outcome, count(*) FROM snapshot_runs GROUP BY 1"))
    assert runs <= stored.pop("ok") <= runs + len(apps), (runs, stored)
    assert set(stored) <= {"running"}
