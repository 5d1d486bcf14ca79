"""Quota forecasts from sampled use: where a quota will stand at its reset, and when it runs out.

A straight line is fitted (least squares) through the quota's samples in its current window and
its current use; the slope's uncertainty (two standard errors) gives the range. No forecast early
in a window (before 10% of it has passed: too little to go on), and none for a fixed term without
at least ``MIN_TERM_SAMPLES`` samples in the term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain import Quota, QuotaWindow, day_start

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


def forecast(
    quota: Quota, samples: Sequence[tuple[datetime, int]], now: datetime
) -> Forecast | None:
    """The projection of ``quota`` from ``samples`` (moment, used) and its use ``now``."""
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
    if quota.window is not QuotaWindow.FIXED_TERM:
        points = sorted(set(points) | {(start, 0)})  # a resetting window starts from zero
    slope, error = _fit(points)
    if slope is None:
        return None
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
