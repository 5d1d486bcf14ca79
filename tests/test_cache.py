"""The data cache: plain versioned JSON in Redis (never pickles), a memory tier bounded by entries
and bytes, and a Redis that is down or hung costing a few timeouts and one warning, not answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import pickle
import shlex
import types
import typing
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.cache import (
    FORMAT,
    REDIS_FAILURES,
    Cache,
    Cached,
    Unreadable,
    cache_key,
    decode_entry,
    encode_entry,
)
from gateway.domain import (
    EndpointUsage,
    Limits,
    Quota,
    QuotaUnit,
    QuotaWindow,
    UsageDetails,
    UsagePoint,
    UsageReport,
)
from gateway.errors import ConfigError
from gateway.settings import CacheStore
from tests.conftest import NOW, account_entry, field_names, settings_for

# -- the stored format: every cached type round-trips exactly ----------------------------------

AWARE = st.datetimes(timezones=st.just(UTC))
LEAVES = {
    datetime: AWARE,
    float: st.floats(allow_nan=False, allow_infinity=False),
    int: st.integers(-(2**80), 2**80) | st.sampled_from([2**31, 2**53 + 1, 2**64]),
}
"""Aware UTC datetimes, finite floats and integers far past 64 bits."""


def strategy(tp: object) -> st.SearchStrategy[object]:
    """Values of the type ``tp`` (a domain dataclass, with every field drawn, defaults too)."""
    if tp in LEAVES:
        return LEAVES[tp]  # type: ignore[index]
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, msgspec.Struct)):
        hints = typing.get_type_hints(tp)
        fields = {name: strategy(hints[name]) for name in field_names(tp)}
        return st.builds(tp, **fields)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy(a) for a in args))
    if origin is tuple:
        return st.lists(strategy(args[0]), max_size=3).map(tuple)
    if origin is frozenset:
        return st.frozensets(strategy(args[0]), max_size=4)
    if origin is Mapping:
        return st.dictionaries(strategy(args[0]), strategy(args[1]), max_size=3)
    return st.from_type(tp)  # type: ignore[arg-type]


def same(a: object, b: object) -> bool:
    """Equal, and of the very same types all the way down (a set is not a frozenset, a naive
    datetime not an aware one, an enum member not its value)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a) or isinstance(a, msgspec.Struct):
        return all(same(getattr(a, n), getattr(b, n)) for n in field_names(type(a)))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(map(same, a, b))  # type: ignore[arg-type]
    if isinstance(a, frozenset):
        return a == b
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()  # type: ignore[attr-defined]
    return a == b


@pytest.mark.parametrize(("kind", "cls"), [("limits", Limits), ("usage", UsageReport)])
def test_every_cached_type_round_trips_exactly(kind, cls) -> None:
    @hypothesis_settings(max_examples=150, deadline=None, database=None)
    @given(value=strategy(cls), fetched_at=AWARE)
    def round_trip(value, fetched_at) -> None:
        entry = Cached(value, fetched_at)
        assert same(decode_entry(kind, encode_entry(kind, entry)), entry)

    round_trip()


def usage_report(requests: int) -> UsageReport:
    day = date(2026, 3, 1)
    point = UsagePoint(datetime(2026, 3, 1, tzinfo=UTC), requests, requests - 1, requests * 3)
    endpoint = EndpointUsage("/files", requests, True, 0.25, 12.5, 2**63 + 1)
    return UsageReport(
        points=(point,),
        endpoints=(endpoint,),
        known_days=frozenset({day, day + timedelta(days=1)}),
        details=UsageDetails(failed_requests=requests // 2),
        day_endpoints={day: (endpoint,)},
        absent_days=frozenset({day + timedelta(days=1)}),
    )


@pytest.mark.parametrize("big", [2**31 + 1, 2**53 + 1, 2**63 - 1, 2**64 + 7, 10**30])
def test_big_counts_dates_and_times_come_back_as_they_were(big) -> None:
    quota = Quota(
        "q", "a", "Monthly", QuotaWindow.MONTH, QuotaUnit.BYTES, big, big - 1, NOW, date(2026, 3, 1)
    )
    limits = Cached(Limits(quotas=(quota,), plan="premium"), NOW)
    usage = Cached(usage_report(big), NOW)
    for kind, entry in (("limits", limits), ("usage", usage)):
        back = decode_entry(kind, encode_entry(kind, entry))
        assert same(back, entry)
    back_usage = decode_entry("usage", encode_entry("usage", usage)).value
    assert back_usage.points[0].requests == big and type(back_usage.points[0].requests) is int
    assert type(back_usage.known_days) is frozenset
    assert back_usage.points[0].start.tzinfo is UTC
    assert list(back_usage.day_endpoints) == [date(2026, 3, 1)]
    back_limits = decode_entry("limits", encode_entry("limits", limits)).value
    assert back_limits.quotas[0].window is QuotaWindow.MONTH
    assert isinstance(back_limits.quotas[0].unit, enum.Enum)


def entries() -> dict[str, bytes]:
    """Stored entries that are not this gateway's, each a miss."""
    good = encode_entry("limits", Cached(Limits(plan="premium"), NOW))
    return {
        "garbage": b"\x00\x01 not json",
        "pickle": pickle.dumps(Cached(Limits(plan="premium"), NOW)),
        "older format": good.replace(b'"v":%d' % FORMAT, b'"v":%d' % (FORMAT - 1)),
        "newer format": good.replace(b'"v":%d' % FORMAT, b'"v":%d' % (FORMAT + 1)),
        "other kind": encode_entry("usage", Cached(usage_report(5), NOW)),
        "other fields": good.replace(b'"shape":"', b'"shape":"0'),
        "wrong value type": good.replace(b'"plan":"premium"', b'"plan":7'),
        "naive time": good.replace(b'Z"', b'"'),
        "json null": b"null",
    }


@pytest.mark.parametrize("name", list(entries()))
def test_an_entry_this_gateway_did_not_write_does_not_decode(name) -> None:
    with pytest.raises(Unreadable):
        decode_entry("limits", entries()[name])


@pytest.mark.parametrize("name", list(entries()))
async def test_an_unreadable_redis_entry_is_a_quiet_miss(redis_server, caplog, name) -> None:
    key = cache_key("fp", "limits")
    with redis_server.client() as client:
        client.set(key, entries()[name])
    cache = Cache(redis_server.url)
    try:
        with caplog.at_level(logging.DEBUG, logger="gateway.cache"):
            assert await cache.get(key) is None
    finally:
        await cache.close()
    assert cache.stats.unreadable == 1
    lines = [r for r in caplog.records if r.name == "gateway.cache"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO, lines
    assert lines[0].exc_info is None


# -- no code runs from the cache ---------------------------------------------------------------


class RunsCode:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


QUOTAS = "{ accounts { id source { state } quotas { name used limit } } }"


async def test_a_pickle_in_redis_runs_no_code(
    emulators, make_gateway, redis_server, tmp_path
) -> None:
    repute = emulators["reputeapi"]
    settings = settings_for(
        account_entry("reputeapi", repute.url, id="repute"),
        cache={"response_ttl": 0},
        cache_url=redis_server.url,
    )
    gateway = make_gateway(settings)
    key = cache_key(gateway.app.state.service.configured("repute").fingerprint, "limits")
    marker = tmp_path / "code-ran"
    try:
        with redis_server.client() as client:
            client.set(key, pickle.dumps(RunsCode(f"touch {shlex.quote(str(marker))}")))

            data = await gateway.data(QUOTAS)

            assert not marker.exists()
            account = data["accounts"][0]
            assert account["source"]["state"] == "FRESH" and account["quotas"], account
            assert repute.emulator.total_calls() == 1  # the poisoned entry was a miss
            stored = client.get(key)  # the key the gateway read is the one it then wrote
        assert decode_entry("limits", stored).value.quotas
    finally:
        await gateway.app.state.service.upstream.close()  # no lifespan in-process


# -- the memory tier is bounded ----------------------------------------------------------------


def limits_entry(plan: str = "p") -> Cached[Limits]:
    return Cached(Limits(plan=plan), NOW)


async def test_memory_keeps_at_most_max_entries_least_recently_used_first() -> None:
    cache = Cache(max_entries=3)
    keys = [cache_key("fp", "limits", n) for n in range(4)]
    for key in keys[:3]:
        await cache.set(key, limits_entry(), 60)
    assert await cache.get(keys[0]) is not None  # now the most recently used
    await cache.set(keys[3], limits_entry(), 60)
    assert cache.memory.keys() == [keys[2], keys[0], keys[3]]  # keys[1] was least recent
    assert await cache.get(keys[1]) is None


async def test_memory_keeps_at_most_max_bytes_of_encoded_entries() -> None:
    size = len(encode_entry("limits", limits_entry("x" * 100)))
    cache = Cache(max_bytes=size * 3 + size // 2)
    keys = [cache_key("fp", "limits", n) for n in range(5)]
    for key in keys:
        await cache.set(key, limits_entry("x" * 100), 60)
    assert cache.memory.keys() == keys[2:]
    assert cache.memory.bytes == 3 * size <= cache.memory.max_bytes
    await cache.set(keys[0], limits_entry("y" * size * 4), 60)  # larger than the whole tier
    assert cache.memory.keys() == keys[2:] and await cache.get(keys[0]) is None


async def test_distinct_ranges_do_not_grow_the_gateway_past_its_bound(
    emulators, make_gateway
) -> None:
    vt = emulators["virustotal"]
    settings = settings_for(
        account_entry("virustotal", vt.url, id="vt"),
        cache={"response_ttl": 0, "max_entries": 5},
    )
    gateway = make_gateway(settings)
    query = 'query($d: Date!) { account(id: "vt") { usage(from: $d, to: $d) { requests } } }'
    for day in range(1, 16):
        await gateway.data(query, {"d": f"2026-03-{day:02d}"})
    memory = gateway.app.state.service.upstream.cache.memory
    assert len(memory) == 5
    assert vt.emulator.total_calls() == 15


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"max_entries": 0}, "[cache] field 'max_entries' must be a whole number from 1 to"),
        ({"max_entries": 2.5}, "[cache] field 'max_entries' must be a whole number"),
        ({"max_bytes": "64MB"}, "[cache] field 'max_bytes' must be a whole number from 1,024"),
        ({"redis_timeout": 0}, "[cache] field 'redis_timeout' must be a number of seconds"),
        ({"redis_cooldown": True}, "[cache] field 'redis_cooldown' must be a number of seconds"),
        (
            {"reputeapi": {"max_entries": 5}},
            "[cache.reputeapi] field 'max_entries' is not per provider: one cache holds every "
            "provider's answers, so it only applies in [cache]",
        ),
    ],
)
def test_cache_bounds_are_checked(table, words) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(cache=table)
    assert words in str(caught.value)


def test_cache_bounds_have_defaults_and_can_be_set() -> None:
    assert settings_for().cache_store == CacheStore(10_000, 64 * 1024 * 1024, 0.25, 5.0)
    assert REDIS_FAILURES == 3  # as the README says
    table = {"max_entries": 50, "max_bytes": 4096, "redis_timeout": 1, "redis_cooldown": 0.5}
    assert settings_for(cache=table).cache_store == CacheStore(50, 4096, 1.0, 0.5)


async def test_memory_answers_first_and_redis_when_memory_is_not_fresh_enough(
    redis_server,
) -> None:
    """Another gateway may have refreshed an entry: a memory copy too old for the caller's
    freshness is checked against Redis, and the more recently fetched one wins."""
    ours, theirs = Cache(redis_server.url), Cache(redis_server.url)
    key = cache_key("fp", "limits")
    older, newer = Cached(Limits(plan="old"), NOW), Cached(Limits(plan="new"), NOW + timedelta(1))
    try:
        await ours.set(key, older, 60)
        await theirs.set(key, newer, 60)
        assert await ours.get(key, fresh_since=NOW - timedelta(seconds=1)) == older
        assert (ours.stats.memory_hits, ours.stats.redis_hits) == (1, 0)
        assert await ours.get(key, fresh_since=NOW) == newer  # ours is not fetched after NOW
        assert await ours.get(key, fresh_since=NOW) == newer  # now from memory
        assert (ours.stats.memory_hits, ours.stats.redis_hits) == (2, 1)
        await theirs.set(key, older, 60)  # an older answer in Redis never replaces a newer one
        assert await ours.get(key, fresh_since=NOW + timedelta(2)) == newer
    finally:
        await ours.close()
        await theirs.close()


async def test_concurrent_reads_of_a_key_share_one_redis_read(redis_server) -> None:
    """A burst of 100 reads of one key that memory cannot answer asks Redis once, and every
    reader gets its entry (a burst of cold requests neither empties the connection pool nor
    times out into a Redis "outage")."""
    ours, theirs = Cache(redis_server.url), Cache(redis_server.url)
    key = cache_key("fp", "limits")
    entry = Cached(Limits(plan="shared"), NOW)
    watch = redis_server.client()
    try:
        await theirs.set(key, entry, 60)
        watch.config_resetstat()
        found = await asyncio.gather(*(ours.get(key) for _ in range(100)))
        assert found == [entry] * 100
        assert watch.info("commandstats")["cmdstat_get"]["calls"] == 1
        assert ours.stats.redis_failures == 0
    finally:
        watch.close()
        await ours.close()
        await theirs.close()


# -- a sick Redis ------------------------------------------------------------------------------


async def test_an_idle_connection_to_a_restarted_redis_is_not_used(redis_server) -> None:
    """Redis restarts while the cache's connection sits idle in its pool: the next operation
    opens a new one instead of failing on the dead one (no outage, no warning)."""
    cache = Cache(redis_server.url)
    key = cache_key("fp", "limits")
    try:
        await cache.set(key, limits_entry("before"), 60)
        redis_server.kill()
        redis_server.start()  # empty, on the same port
        await asyncio.sleep(0.2)  # the event loop sees the old connection closed, as when idle
        await cache.set(key, limits_entry("after"), 60)
        assert cache.stats.redis_failures == 0
    finally:
        await cache.close()
    assert redis_server.client().get(key) is not None  # it reached the new server


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "gateway.cache" and r.levelno == level
    ]


@pytest.mark.parametrize("outage", ["hung", "killed"])
async def test_a_sick_redis_costs_a_few_failures_one_warning_and_no_entries(
    redis_server, caplog, outage
) -> None:
    clock = Clock()
    cache = Cache(redis_server.url, redis_timeout=0.1, redis_cooldown=30, clock=clock)
    other = Cache(redis_server.url)  # another gateway sharing the Redis
    kept = cache_key("fp", "limits", "kept")
    try:
        caplog.set_level(logging.INFO, logger="gateway.cache")
        await cache.set(kept, limits_entry("kept"), 60)
        if outage == "hung":
            redis_server.pause()
        else:
            redis_server.kill()

        fresh_since = NOW + timedelta(seconds=1)  # the memory copy is too old: Redis is asked
        for n in range(40):
            assert await cache.get(cache_key("fp", "limits", n)) is None
            assert (await cache.get(kept, fresh_since=fresh_since)) == limits_entry("kept")
        await cache.set(cache_key("fp", "limits", "new"), limits_entry("new"), 60)
        assert await cache.get(cache_key("fp", "limits", "new")) == limits_entry("new")

        assert cache.stats.redis_failures == REDIS_FAILURES  # then Redis is skipped
        assert cache.stats.redis_skipped == 40 * 2 + 1 - REDIS_FAILURES
        warnings = cache_lines(caplog, logging.WARNING)
        assert len(warnings) == 1, warnings
        assert "memory" in warnings[0] and f"127.0.0.1:{redis_server.port}" in warnings[0]
        cause = "no answer within 0.1 s" if outage == "hung" else "ConnectionError"
        assert cause in warnings[0], warnings  # hung: it holds the port but answers nothing

        if outage == "hung":
            redis_server.resume()
        else:
            redis_server.start()
        clock.now += 29  # still cooling down: not tried
        await cache.set(cache_key("fp", "limits", "later"), limits_entry("later"), 60)
        assert await other.get(cache_key("fp", "limits", "later")) is None
        clock.now += 1  # one probe, which succeeds
        await cache.set(cache_key("fp", "limits", "back"), limits_entry("back"), 60)
        assert await other.get(cache_key("fp", "limits", "back")) == limits_entry("back")
        assert cache.stats.redis_failures == REDIS_FAILURES
        assert len(cache_lines(caplog, logging.WARNING)) == 1
        recovered = cache_lines(caplog, logging.INFO)
        assert len(recovered) == 1 and "answers again" in recovered[0], recovered
    finally:
        await cache.close()
        await other.close()


async def test_a_failed_probe_waits_another_cooldown(redis_server, caplog) -> None:
    clock = Clock()
    cache = Cache(redis_server.url, redis_timeout=0.1, redis_cooldown=30, clock=clock)
    try:
        caplog.set_level(logging.INFO, logger="gateway.cache")
        redis_server.kill()
        for n in range(REDIS_FAILURES):
            await cache.get(cache_key("fp", "limits", n))
        clock.now += 30
        await cache.get(cache_key("fp", "limits", "probe"))  # the probe fails
        await cache.get(cache_key("fp", "limits", "skipped"))
        assert (cache.stats.redis_failures, cache.stats.redis_skipped) == (REDIS_FAILURES + 1, 1)
        assert len(cache_lines(caplog, logging.WARNING)) == 1
        assert cache_lines(caplog, logging.INFO) == []
    finally:
        await cache.close()


def test_the_bulky_cached_values_are_not_tracked_by_the_garbage_collector() -> None:
    """A year of points per account sits in the memory tier; a full collection walks through
    every tracked object, so points and endpoint totals are kept untracked."""
    import gc

    report = usage_report(2**40)
    assert not any(gc.is_tracked(p) for p in report.points + report.endpoints)
    entry = decode_entry("usage", encode_entry("usage", Cached(report, NOW)))
    assert same(entry.value, report)
    assert not any(gc.is_tracked(p) for p in entry.value.points + entry.value.endpoints)
