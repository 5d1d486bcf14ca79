"""The forecast backtest (benchmarks/backtest.py) on small synthetic cases, the forecast's range
(gateway/forecast.py), and the demo's earlier windows it replays (gateway/demo.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.backtest import FRACTIONS, PAST_WINDOWS, Projection, replay, score
from benchmarks.bench import BACKTEST_NOW
from gateway.cli import DEMO_SEED
from gateway.demo import (
    CLOSING,
    SAMPLES_PER_WINDOW,
    PastRun,
    closing_runs,
    earlier_windows,
    fill_history,
)
from gateway.domain import Quota, QuotaUnit, QuotaWindow
from gateway.forecast import Forecast, forecast, pace_spread, previous_window
from gateway.history import HistoryStore, QuotaSample
from providers.zkscore.emulator import ZkScoreData
from tests.conftest import NOW, SEED

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def at(day: float) -> datetime:
    return MARCH + DAY * day


def month_quota(used: int | None = None, limit: int = 100_000) -> Quota:
    return Quota("q", "acct", "q", QuotaWindow.MONTH, QuotaUnit.REQUESTS, limit, used, APRIL)


# -- the coverage computation ------------------------------------------------------------------


def projection(low: int, high: int, actual: int, start: datetime = MARCH) -> Projection:
    return Projection("q", QuotaWindow.MONTH, start, 0.5, low, high, actual)


def test_coverage_is_the_share_of_ranges_that_hold_the_outcome() -> None:
    made = [
        projection(90, 110, 100),  # held, middle exact
        projection(100, 100, 100),  # held at both ends
        projection(101, 120, 100),  # missed: above
        projection(50, 70, 100, start=APRIL),  # missed: below; a second window
        None,  # not made
    ]
    result = score(made)
    assert result.projections == 4 and result.missing == 1 and result.windows == 2
    assert result.coverage == 0.5
    # Errors of the middles: 0, 0, 0.105, 0.4 -> median 0.0525
    assert result.median_error == pytest.approx((0.105 + 0.0) / 2)


def test_an_outcome_of_zero_has_no_relative_error_but_counts_in_the_coverage() -> None:
    result = score([projection(0, 5, 0), projection(0, 0, 4)])
    assert result.coverage == 0.5
    assert result.median_error == 1.0  # only the second: |0 - 4| / 4


def test_replay_projects_from_the_samples_up_to_each_moment_only() -> None:
    """A month used at 1,000 a day, sampled at its start, 25, 50 and 75 %: each projection sees
    the samples up to its moment (and the use then), none after."""
    samples = [QuotaSample(at(d), round(1_000 * d), 100_000) for d in (0, 7.75, 15.5, 23.25)]
    seen: list[tuple[datetime, int | None, list[datetime]]] = []

    def recording(quota: Quota, points, now: datetime) -> Forecast | None:
        seen.append((now, quota.used, [t for t, _ in points]))
        return forecast(quota, points, now)

    made = replay(month_quota(), (MARCH, APRIL), samples, actual=31_000, project=recording)
    moments = [MARCH + (APRIL - MARCH) * f for f in FRACTIONS]
    assert [s[0] for s in seen] == moments
    for (moment, used, points), sample in zip(seen, samples[1:], strict=True):
        assert all(t <= moment for t in points) and points[-1] == sample.at == moment
        assert used == sample.used
    # A steady pace is projected exactly: every range holds the outcome.
    assert all(p is not None and p.low <= 31_000 <= p.high for p in made)
    assert score(made).coverage == 1.0 and score(made).median_error == 0.0


def test_replay_declines_where_no_sample_was_taken_in_the_window_by_then() -> None:
    late = [QuotaSample(at(20), 20_000, 100_000)]
    made = replay(month_quota(), (MARCH, APRIL), late, actual=31_000)
    assert made[:2] == [None, None] and made[2] is not None
    assert score(made).missing == 2


# -- the forecast's range ----------------------------------------------------------------------


def test_a_window_sampled_twice_gets_a_range_from_the_previous_windows_pace() -> None:
    """At 25 % of March with only the reset and one sample, the fit is exact (zero error); the
    range comes from February, whose pace ran unevenly (fast, then slow)."""
    now = at(7.75)
    quota = month_quota(used=7_750)
    february = [
        (datetime(2026, 2, 1, tzinfo=UTC), 0),
        (datetime(2026, 2, 8, tzinfo=UTC), 14_000),
        (datetime(2026, 2, 15, tzinfo=UTC), 21_000),
        (datetime(2026, 2, 22, tzinfo=UTC), 28_000),
    ]
    steady = forecast(quota, [], now)
    assert steady is not None and steady.used_at_reset_low == steady.used_at_reset_high == 31_000
    uneven = forecast(quota, february, now)
    assert uneven is not None
    assert uneven.used_at_reset_low < 31_000 < uneven.used_at_reset_high
    # The spread: February's stretches ran at 2,000, 1,000 and 1,000 a day, March's one at
    # 1,000, against the fitted 1,000: the root mean square of (1,000, 0, 0, 0) is 500 a day.
    pace = 1_000 / 86_400
    spread = pace_spread([[(MARCH, 0), (now, 7_750)], february], pace)
    assert spread == pytest.approx(500 / 86_400)
    remaining = (APRIL - now).total_seconds()
    assert uneven.used_at_reset_high == round(7_750 + (pace + 2 * spread) * remaining)
    assert uneven.used_at_reset_low == round(7_750 + (pace - 2 * spread) * remaining)
    # Samples older than the previous window are not used.
    january = [(datetime(2026, 1, 2, tzinfo=UTC), 0), (datetime(2026, 1, 3, tzinfo=UTC), 90_000)]
    assert forecast(quota, january, now) == steady


def test_pace_spread_skips_moments_sampled_twice() -> None:
    points = [(MARCH, 0), (MARCH, 5), (at(1), 5)]
    assert pace_spread([points], 0.0) == 0.0  # one stretch, at pace 0
    assert pace_spread([], 1.0) == 0.0


@pytest.mark.parametrize(
    ("window", "start", "expected"),
    [
        (
            QuotaWindow.HOUR,
            datetime(2026, 3, 18, 14, tzinfo=UTC),
            datetime(2026, 3, 18, 13, tzinfo=UTC),
        ),
        (QuotaWindow.DAY, MARCH, datetime(2026, 2, 28, tzinfo=UTC)),
        (QuotaWindow.MONTH, MARCH, datetime(2026, 2, 1, tzinfo=UTC)),
        (QuotaWindow.MONTH, datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)),
    ],
)
def test_the_previous_window_ends_where_the_window_starts(window, start, expected) -> None:
    assert previous_window(window, start) == (expected, start)


def test_terms_and_minutes_have_no_previous_window() -> None:
    assert previous_window(QuotaWindow.FIXED_TERM, MARCH) is None
    assert previous_window(QuotaWindow.MINUTE, MARCH) is None
    assert previous_window(QuotaWindow.MONTH, at(3)) is None  # not a month's start


# -- the demo's earlier windows ----------------------------------------------------------------


def test_earlier_windows_walk_back_from_the_current_one() -> None:
    daily = Quota("d", "a", "d", QuotaWindow.DAY, QuotaUnit.REQUESTS, 10, 1, at(18))
    assert earlier_windows(daily, NOW, 2) == [(at(16), at(17)), (at(15), at(16))]
    term = Quota("t", "a", "t", QuotaWindow.FIXED_TERM, QuotaUnit.REQUESTS, 10, 1)
    assert earlier_windows(term, NOW, 3) == []
    assert closing_runs([(at(16), at(17)), (at(1), at(2))], at(10).date()) == [
        PastRun(at(17) - CLOSING)
    ]


def test_the_backtest_is_as_the_readme_says() -> None:
    assert datetime(2026, 3, 18, 14, 25, tzinfo=UTC) == BACKTEST_NOW
    assert (PAST_WINDOWS, FRACTIONS, SAMPLES_PER_WINDOW) == (12, (0.25, 0.5, 0.75), 4)
    assert timedelta(seconds=1) == CLOSING and DEMO_SEED == 42


async def test_filling_earlier_windows_stores_what_the_vendor_said_before_each_reset(
    tmp_path,
) -> None:
    """ZKScore's daily quota (acct_acme: the day so far, complete minutes), one window back:
    sampled at its start, 25, 50 and 75 %, and a second before midnight."""
    path = str(tmp_path / "history.sqlite")
    filled = await fill_history(path, seed=SEED, now=NOW, past_windows=1)
    assert filled.failed == 0
    assert {q.id for q in filled.quotas} >= {"zks-prod:daily-requests"}
    start, end = at(16), at(17)
    store = HistoryStore(path)
    try:
        samples = await store.quota_samples("zks-prod:daily-requests", start, end - CLOSING)
    finally:
        await store.close()
    moments = [start + (end - start) * i / SAMPLES_PER_WINDOW for i in range(4)] + [end - CLOSING]
    assert [s.at for s in samples] == moments
    data = ZkScoreData(SEED)
    assert [s.used for s in samples] == [data.rate_usage("acct_acme", m)[2] for m in moments]
