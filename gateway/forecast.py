"""Quota forecasts from sampled use: where a quota will stand at its reset, and when it runs out.

A straight line is fitted (least squares) through the quota's samples in its current window and
its current use: its slope is the pace. The range is the pace two standard errors either side,
kept up until the reset, where the pace's error combines

- the fit's own standard error (how well the line fits this window's samples), and
- the spread of the pace between samples (:func:`pace_spread`): the pace of every stretch
  between two consecutive samples of this window and of the previous one, against the fitted
  pace. A stretch running faster or slower than the line says how far off the pace may be for
  the rest of the window; without it, a window with two samples had a range of zero width.

The forecast backtest of ``make bench`` measures how often the range held what happened. No
forecast early in a window (before 10% of it has passed: too little to go on), and none for a
fixed term without at least ``MIN_TERM_SAMPLES`` samples in the term.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain import Quota, QuotaWindow, day_start, first_of_next_month

MIN_ELAPSED = 0.10
MIN_TERM_SAMPLES = 3


@dataclass(frozen=True)
class Forecast:
    """A quota's projection over its current window."""

    window_start: datetime
    window_end: datetime
    used_at_reset_low: int
    used_at_reset_high: int
    runs_out_earliest: datetime | None
    """When the quota would run out at the fastest likely pace; None: not before the window
    ends."""
    runs_out_latest: datetime | None
    """At the slowest likely pace; None: not before the window ends."""
    samples: int


def window_of(quota: Quota, now: datetime) -> tuple[datetime, datetime] | None:
    """The current window of ``quota`` (start, end), where it has one."""
    if quota.window is QuotaWindow.FIXED_TERM:
        if quota.starts_on is None or quota.ends_on is None:
            return None
        return day_start(quota.starts_on), day_start(quota.ends_on + timedelta(days=1))
    end = quota.resets_at
    if end is None:
        return None
    if quota.window is QuotaWindow.HOUR:
        return end - timedelta(hours=1), end
    if quota.window is QuotaWindow.DAY:
        return end - timedelta(days=1), end
    if quota.window is QuotaWindow.MONTH:
        last_day = (end - timedelta(days=1)).date()
        return day_start(last_day.replace(day=1)), end
    return None  # per-minute windows are too short to forecast


def previous_window(window: QuotaWindow, start: datetime) -> tuple[datetime, datetime] | None:
    """The window of kind ``window`` that ends at ``start`` (the one before the window starting
    there); ``None`` for kinds that do not repeat (a fixed term) or are too short to forecast."""
    if window is QuotaWindow.HOUR:
        return start - timedelta(hours=1), start
    if window is QuotaWindow.DAY:
        return start - timedelta(days=1), start
    if window is QuotaWindow.MONTH:
        last_day = (start - timedelta(days=1)).date()
        first = day_start(last_day.replace(day=1))
        return (first, start) if day_start(first_of_next_month(first.date())) == start else None
    return None


def forecast(
    quota: Quota, samples: Sequence[tuple[datetime, int]], now: datetime
) -> Forecast | None:
    """The projection of ``quota`` from ``samples`` (moment, used) and its use ``now``.

    Samples of the current window make the fit; those of the previous window (where there is
    one) count in the pace's spread only; older ones are not used.
    """
    window = window_of(quota, now)
    if window is None or quota.used is None:
        return None
    start, end = window
    span = (end - start).total_seconds()
    if span <= 0 or not start <= now < end:
        return None
    if (now - start).total_seconds() / span < MIN_ELAPSED:
        return None
    points = sorted({(t, u) for t, u in samples if start <= t <= now} | {(now, quota.used)})
    if quota.window is QuotaWindow.FIXED_TERM and len(points) < MIN_TERM_SAMPLES:
        return None
    resets = quota.window is not QuotaWindow.FIXED_TERM
    if resets:
        points = sorted(set(points) | {(start, 0)})  # a resetting window starts from zero
    slope, error = _fit(points)
    if slope is None:
        return None
    stretches = [points]
    before = previous_window(quota.window, start)
    if before is not None:
        earlier = {(t, u) for t, u in samples if before[0] <= t < before[1]}
        stretches.append(sorted(earlier | ({(before[0], 0)} if resets and earlier else set())))
    spread = pace_spread(stretches, slope)
    error = math.sqrt(error**2 + spread**2)
    low, high = max(slope - 2 * error, 0.0), max(slope + 2 * error, 0.0)
    remaining_s = (end - now).total_seconds()
    used = quota.used

    def runs_out(rate: float) -> datetime | None:
        if quota.limit is None:
            return None
        if used >= quota.limit:
            return now
        if rate <= 0:
            return None
        moment = now + timedelta(seconds=(quota.limit - used) / rate)
        return moment if moment < end else None

    return Forecast(
        window_start=start,
        window_end=end,
        used_at_reset_low=round(used + low * remaining_s),
        used_at_reset_high=round(used + high * remaining_s),
        runs_out_earliest=runs_out(high),
        runs_out_latest=runs_out(low),  # never without an earliest: low <= high
        samples=len(points),
    )


def pace_spread(windows: Sequence[Sequence[tuple[datetime, int]]], pace: float) -> float:
    """The root mean square of (pace of a stretch - ``pace``), per second, over every stretch
    between two consecutive samples of each of ``windows`` (each: one window's samples, in time
    order); 0 without any stretch."""
    squares = [
        ((u2 - u1) / (t2 - t1).total_seconds() - pace) ** 2
        for points in windows
        for (t1, u1), (t2, u2) in itertools.pairwise(points)
        if t2 > t1
    ]
    return math.sqrt(sum(squares) / len(squares)) if squares else 0.0


def _fit(points: Sequence[tuple[datetime, int]]) -> tuple[float | None, float]:
    """Least-squares slope (per second) and its standard error."""
    if len(points) < 2:
        return None, 0.0
    origin = points[0][0]
    xs = [(t - origin).total_seconds() for t, _ in points]
    ys = [float(u) for _, u in points]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    if n <= 2:
        return slope, 0.0
    intercept = mean_y - slope * mean_x
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(residual / (n - 2) / sxx)
