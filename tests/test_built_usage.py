"""A usage answer built from a vendor's answer alone is kept for the next request that reads
the very same answer with the same status (``gateway.service.BuiltUsage``), and only then:
a new vendor answer, a new status or another range builds it again; the memo is bounded."""

from __future__ import annotations

from datetime import date, timedelta

from gateway.domain import Granularity, SourceState, SourceStatus, Usage
from gateway.service import MAX_BUILT, MAX_BUILT_DAYS, BuiltUsage, UsageArgs
from gateway.usage import empty_usage
from tests.conftest import NO_CACHE, NOW, account_entry, settings_for

QUERY = """{ accounts { id source { state fetchedAt }
  usage(from: "2026-03-01", to: "2026-03-18") { requests series { start requests } } } }"""


def usage_calls(emulator) -> int:
    return sum(n for path, n in emulator.calls.items() if path.endswith("/api_usage"))


async def test_the_same_vendor_answer_is_built_into_usage_once(emulators, make_gateway) -> None:
    running = emulators["virustotal"]
    gateway = make_gateway(settings_for(account_entry("virustotal", running.url, 0, id="vt")))
    built = gateway.app.state.service.built_usage
    first = await gateway.data(QUERY)
    again = await gateway.data(QUERY)
    assert again == first and first["accounts"][0]["usage"]["requests"] > 0
    assert usage_calls(running.emulator) == 1 and built.builds == 1


async def test_each_new_vendor_answer_is_built_anew(emulators, make_gateway) -> None:
    running = emulators["virustotal"]
    gateway = make_gateway(
        settings_for(account_entry("virustotal", running.url, 0, id="vt"), cache=NO_CACHE)
    )
    built = gateway.app.state.service.built_usage
    answers = [await gateway.data(QUERY) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    assert usage_calls(running.emulator) == 3 and built.builds == 3


def args(start: date, days: int) -> UsageArgs:
    return UsageArgs(start, start + timedelta(days=days - 1), Granularity.DAY)


def test_kept_only_for_the_same_answer_and_status_and_bounded() -> None:
    memo = BuiltUsage()
    fresh = SourceStatus(SourceState.FRESH, NOW)
    start = date(2026, 3, 1)
    week = args(start, 7)

    def build(made: list[Usage], wanted: UsageArgs = week) -> Usage:
        usage = empty_usage(wanted.start, wanted.end, wanted.granularity)
        made.append(usage)
        return usage

    made: list[Usage] = []
    report = object()
    key = ("a", week, week.end)
    one = memo.get(key, report, fresh, lambda: build(made))
    assert memo.get(key, report, SourceStatus(SourceState.FRESH, NOW), lambda: build(made)) is one
    assert len(made) == 1
    memo.get(key, object(), fresh, lambda: build(made))  # another vendor answer, equal or not
    memo.get(key, object(), fresh, lambda: build(made))
    memo.get(key, None, SourceStatus(SourceState.STALE, NOW), lambda: build(made))
    assert len(made) == 4 and memo.builds == 4

    long = args(start, MAX_BUILT_DAYS)
    long_key = ("a", long, long.end)
    memo.get(long_key, report, fresh, lambda: build(made, long))
    memo.get(long_key, report, fresh, lambda: build(made, long))
    assert len(made) == 6  # a range of MAX_BUILT_DAYS days is never kept

    for n in range(MAX_BUILT + 10):
        wanted = args(start + timedelta(days=n), 1)
        memo.get(("a", wanted, wanted.end), report, fresh, lambda w=wanted: build(made, w))
    assert len(memo) == MAX_BUILT
    memo.get(key, report, fresh, lambda: build(made))  # the least recently used went first
    assert len(made) == 6 + MAX_BUILT + 10 + 1
