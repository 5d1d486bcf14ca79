"""The snapshot runner election over a real Redis: one lease per period, done markers, a runner
whose lease expired, groups apart, and a Redis that is down."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.election import (
    DONE_PERIODS,
    Done,
    Election,
    Held,
    Lease,
    Periods,
    RedisUnreachable,
    group_of,
    lease_for,
    pid_of,
    store_identity,
)

EVERY = 2.0


def election(url: str, every: float = EVERY, group: str = "g1", **kwargs) -> Election:
    return Election.from_url(url, group, every, timeout=0.5, cooldown=0.2, **kwargs)


async def wait_gone(client, key: str) -> None:
    """Until Redis itself has expired ``key`` (nothing deletes it but its expiry)."""
    deadline = time.monotonic() + 10
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} never expired"
        await asyncio.sleep(0.02)


def test_periods_and_leases() -> None:
    periods = Periods(2.0)
    assert [periods.number(t) for t in (0.0, 1.999, 2.0, 1_764_000_001.5)] == [0, 0, 1, 882_000_000]
    assert (periods.start(7), periods.end(7)) == (14.0, 16.0)
    assert lease_for(2.0) == pytest.approx(2 / 3)
    assert lease_for(900.0) == 30.0  # 15 minutes: 30 s, not 5 minutes
    assert pid_of("host-a:4242:9f0c1d2e") == 4242
    assert pid_of("no token") is None


def test_groups_name_the_store_the_accounts_and_the_period(tmp_path, monkeypatch) -> None:
    store = store_identity(str(tmp_path / "history.sqlite"))
    monkeypatch.chdir(tmp_path)
    assert store_identity("history.sqlite") == store  # a relative path is the same file
    group = group_of(store, ["b", "a"], 60)
    assert group == group_of(store, ["a", "b"], 60.0)
    assert group != group_of(store, ["a", "b"], 120)
    assert group != group_of(store, ["a"], 60)
    assert group != group_of(store_identity(str(tmp_path / "other.sqlite")), ["a", "b"], 60)


def test_replicas_on_one_postgresql_database_vote_together_whatever_their_files() -> None:
    """With ``history_url``, the database is the store (``history_path`` is not used), and its
    password is in no key: replicas with another password spelling still vote together."""
    url = "postgresql://gw:s3cret@db.internal:5432/usage"
    store = store_identity("a.sqlite", url)
    assert store == store_identity("/elsewhere/b.sqlite", url)
    assert "s3cret" not in store
    assert store == store_identity("a.sqlite", "postgresql://gw:other@db.internal:5432/usage")
    assert store != store_identity("a.sqlite", "postgresql://gw:s3cret@db.internal:5432/other")
    assert store != store_identity("a.sqlite")


async def test_one_lease_per_period_then_done(redis_server) -> None:
    a, b = election(redis_server.url), election(redis_server.url)
    client = redis_server.client()
    try:
        period = a.periods.number(await a.now())
        lease = await a.take(period)
        assert lease == Lease(period, a.token, 1)
        assert not lease.taken_over
        assert await b.take(period) == Held(a.token)
        assert await a.take(period) == Held(a.token)  # not even its holder takes it twice
        assert await b.take(period + 1) == Lease(period + 1, b.token, 1)  # periods apart

        assert await a.renew(lease)
        assert 0 < client.pttl(a.key("run", period)) <= round(a.lease * 1000)
        assert await a.complete(lease)
        assert client.get(a.key("run", period)) is None  # released
        assert client.get(a.key("done", period)) == a.token.encode()
        keep = client.pttl(a.key("done", period))
        assert EVERY * 1000 * (DONE_PERIODS - 1) < keep <= EVERY * 1000 * DONE_PERIODS
        assert await b.take(period) == Done(a.token)  # done: never taken again
        assert await a.take(period) == Done(a.token)
    finally:
        client.close()
        await a.close()
        await b.close()


async def test_a_runner_whose_lease_expired_does_not_mark_the_period_done(redis_server) -> None:
    every = 0.3  # a lease of 0.1 s, so it runs out in the test
    first, second = election(redis_server.url, every), election(redis_server.url, every)
    client = redis_server.client()
    try:
        period = first.periods.number(await first.now()) + 100  # a period nobody else touches
        lease = await first.take(period)
        assert isinstance(lease, Lease)
        await wait_gone(client, first.key("run", period))  # it was paused past its lease

        taken = await second.take(period)
        assert taken == Lease(period, second.token, 2)
        assert taken.taken_over
        assert not await first.renew(lease)
        assert not await first.complete(lease)  # its run ended: it may not mark the period done
        assert client.get(first.key("done", period)) is None
        assert not await first.release(lease)  # nor release the lease the other one holds
        assert client.get(first.key("run", period)) == second.token.encode()
        assert await first.take(period) == Held(second.token)

        assert await second.complete(taken)
        assert client.get(first.key("done", period)) == second.token.encode()
    finally:
        client.close()
        await first.close()
        await second.close()


async def test_other_groups_elect_apart(redis_server) -> None:
    mine, theirs = election(redis_server.url), election(redis_server.url, group="g2")
    try:
        period = mine.periods.number(await mine.now())
        assert isinstance(await mine.take(period), Lease)
        assert isinstance(await theirs.take(period), Lease)
    finally:
        await mine.close()
        await theirs.close()


async def test_a_released_lease_is_taken_at_once(redis_server) -> None:
    a, b = election(redis_server.url), election(redis_server.url)
    try:
        period = a.periods.number(await a.now())
        lease = await a.take(period)
        assert isinstance(lease, Lease)
        assert await a.release(lease)
        assert await b.take(period) == Lease(period, b.token, 2)
    finally:
        await a.close()
        await b.close()


async def test_a_redis_that_is_down_is_said_once(redis_server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.election")
    vote = election(redis_server.url)
    try:
        period = vote.periods.number(await vote.now())
        redis_server.kill()
        for _ in range(5):
            with pytest.raises(RedisUnreachable):
                await vote.take(period)
            with pytest.raises(RedisUnreachable):
                await vote.now()
            await asyncio.sleep(0.05)
        redis_server.start()
        deadline = time.monotonic() + 10
        while True:  # the cooldown (0.2 s) over, the next call probes Redis and gets through
            try:
                assert isinstance(await vote.take(period), Lease)
                break
            except RedisUnreachable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        await vote.close()
    lines = [r for r in caplog.records if r.name == "gateway.election"]
    down = [r for r in lines if r.levelno == logging.WARNING]
    assert len(down) == 1, [r.getMessage() for r in lines]
    assert (
        down[0].getMessage().startswith(f"snapshots: Redis at 127.0.0.1:{redis_server.port} failed")
    )
    assert "every replica takes its own snapshots" in down[0].getMessage()
    back = [r for r in lines if "answers again" in r.getMessage()]
    assert len(back) == 1 and back[0].levelno == logging.INFO
