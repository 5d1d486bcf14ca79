"""The forecast backtest of ``make bench`` (section 8): how often the forecast's range held what
happened.

A store is filled with the demo's past (:func:`gateway.demo.fill_history`, the demo's seed) with
:data:`PAST_WINDOWS` earlier windows of every quota sampled as the demo samples its current ones
(at 0, 25, 50 and 75 % of the window), and once a second before each closed. For every such
window of every quota that resets (hour, day, month), the projection is made again at 25, 50
and 75 % of it by :func:`gateway.forecast.forecast`, from the samples taken up to that moment
only, and compared with what the quota came to at its reset (the closing sample):

- **coverage**: the share of projections whose range holds the outcome
  (``usedAtResetLow <= actual <= usedAtResetHigh``);
- **median relative error**: of the range's middle, ``|(low + high) / 2 - actual| / actual``
  (projections whose outcome is 0 are left out of it, not of the coverage).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.demo import CLOSING, earlier_windows, fill_history
from gateway.domain import Quota, QuotaWindow
from gateway.forecast import Forecast, forecast, previous_window
from gateway.history import HistoryStore, QuotaSample

FRACTIONS = (0.25, 0.5, 0.75)
"""Where in a window the projection is made again."""
PAST_WINDOWS = 12
"""Earlier windows of each quota sampled and replayed."""

Projector = Callable[[Quota, Sequence[tuple[datetime, int]], datetime], Forecast | None]


@dataclass(frozen=True)
class Projection:
    """One projection made again part-way through a past window, and what happened."""

    quota_id: str
    window: QuotaWindow
    start: datetime
    fraction: float
    low: int
    high: int
    actual: int
    moved: bool = True
    """Whether the quota's use changed within the window (some quotas of the demo stand still:
    VirusTotal's hourly allowance shows a constant, its daily one the whole day's use from
    00:00)."""

    @property
    def covered(self) -> bool:
        return self.low <= self.actual <= self.high

    @property
    def error(self) -> float | None:
        """``|middle - actual| / actual``; ``None`` when the outcome is 0."""
        if self.actual == 0:
            return None
        return abs((self.low + self.high) / 2 - self.actual) / self.actual


@dataclass(frozen=True)
class Score:
    """What a set of projections says about the forecast."""

    projections: int
    windows: int
    coverage: float
    median_error: float | None
    missing: int
    """Projections the forecast declined to make (no forecast at that point)."""


def replay(
    quota: Quota,
    window: tuple[datetime, datetime],
    samples: Sequence[QuotaSample],
    *,
    actual: int,
    project: Projector = forecast,
    fractions: Iterable[float] = FRACTIONS,
) -> list[Projection | None]:
    """The projections of ``quota`` made at each fraction of ``window`` from the ``samples``
    taken up to that moment (the quota's use then: the latest of them in the window), against
    ``actual``; ``None`` where no sample was taken in the window by then or the forecast makes
    none. Samples before the window are passed on as the service passes them (the forecast
    reads the previous window's pace from them)."""
    start, end = window
    points = sorted((s.at, s.used) for s in samples if s.used is not None and s.at < end)
    moved = any(used != actual for at, used in points if at >= start)
    made: list[Projection | None] = []
    for fraction in fractions:
        moment = start + (end - start) * fraction
        seen = [(at, used) for at, used in points if at <= moment]
        if not seen or seen[-1][0] < start:
            made.append(None)
            continue
        then = replace(quota, used=seen[-1][1], resets_at=end)
        projection = project(then, seen, moment)
        made.append(
            None
            if projection is None
            else Projection(
                quota.id,
                quota.window,
                start,
                fraction,
                projection.used_at_reset_low,
                projection.used_at_reset_high,
                actual,
                moved,
            )
        )
    return made


def score(made: Sequence[Projection | None]) -> Score:
    """Coverage and median relative error over the projections that were made."""
    done = [p for p in made if p is not None]
    errors = [e for e in (p.error for p in done) if e is not None]
    return Score(
        projections=len(done),
        windows=len({(p.quota_id, p.start) for p in done}),
        coverage=sum(p.covered for p in done) / len(done) if done else 0.0,
        median_error=statistics.median(errors) if errors else None,
        missing=len(made) - len(done),
    )


async def replay_store(
    store: HistoryStore,
    quotas: Iterable[Quota],
    now: datetime,
    past_windows: int = PAST_WINDOWS,
    project: Projector = forecast,
) -> list[Projection | None]:
    """Every earlier window of every quota in ``store``, replayed; a window without a closing
    sample (its outcome unknown) is left out."""
    made: list[Projection | None] = []
    for quota in quotas:
        for start, end in earlier_windows(quota, now, past_windows):
            before = previous_window(quota.window, start)
            samples = await store.quota_samples(quota.id, before[0] if before else start, end)
            closing = [s for s in samples if s.at < end and s.used is not None]
            if not closing or closing[-1].at != end - CLOSING:
                continue
            outcome = closing[-1].used
            assert outcome is not None
            made.extend(replay(quota, (start, end), closing[:-1], actual=outcome, project=project))
    return made


async def backtest(
    path: str, *, seed: int, now: datetime, project: Projector = forecast
) -> tuple[list[Projection | None], float]:
    """Fill ``path`` with the demo's past (``seed``, up to ``now``) and replay every earlier
    window in it; the projections (``None``: not made) and the seconds the filling took."""
    filled = await fill_history(path, seed=seed, now=now, past_windows=PAST_WINDOWS)
    store = HistoryStore(path)
    try:
        return await replay_store(store, filled.quotas, now, project=project), filled.seconds
    finally:
        await store.close()
