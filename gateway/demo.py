"""The demo's config and its past: a history store as a gateway that had been snapshotting the
emulators would hold it.

The past is read, never invented. Each run is a real snapshot run
(:func:`gateway.snapshot.snapshot_account`: the providers' own clients, the store's own
interface) against a second, in-process instance of every emulator (``httpx.ASGITransport``, no
socket) whose clock is set to the run's moment; an emulator's data is a function of its seed and
its clock, so each run stores what the vendor would have answered then. Per account, oldest
first (:func:`past_runs`):

* **coverage**: the run at the start stores every day back to the first day of the emulator's
  seeded data (``EmulatorSpec.first_day``), at most :data:`MAX_PAST_DAYS` days; a vendor that
  forgets days (``live_since``) answers only its retention window, so earlier runs, each at the
  last moment it still kept the day before the next run's first day, reach further back;
* **samples**: :data:`SAMPLES_PER_WINDOW` regular snapshot runs (the provider's own
  ``snapshot_days``) evenly spread over each current quota window, as the quotas read at the
  start give them (:func:`gateway.forecast.window_of`), so that ``Quota.history``, forecasts and
  alerts have something to go on.

With ``past_windows`` (the forecast backtest of ``make bench`` asks for it; the demo does not),
each quota's earlier windows are sampled the same way, and once more a second before each of
them closed (:data:`CLOSING`), so that what the quota came to at its reset is stored too.

The filling runs on its own event loop before the demo serves anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from gateway.app import build_service
from gateway.domain import ProviderId, Quota, day_start
from gateway.errors import UpstreamError
from gateway.forecast import previous_window, window_of
from gateway.settings import Settings, parse_settings
from gateway.snapshot import snapshot_account
from providers import registry

MAX_PAST_DAYS = 1096
"""The longest the demo's history reaches back (three years), for an emulator that generates
usage for any day."""
SAMPLES_PER_WINDOW = 4
"""Snapshot runs spread over each current quota window."""
CLOSING = timedelta(seconds=1)
"""How long before an earlier window's end its closing sample is taken."""
PAST_HOST = "{provider}.past.invalid"
"""Where the in-process past emulators answer (never resolved: the client routes to them)."""


def demo_settings(emulators: Mapping[str, str], history_path: str | None = None) -> Settings:
    """A config with every emulator's demo accounts; ``emulators`` maps provider id -> base URL."""
    accounts: list[dict[str, Any]] = []
    for provider, entry in registry().items():
        for account in entry.emulator.accounts:
            accounts.append({"provider": provider, "base_url": emulators[provider], **account})
    data: dict[str, Any] = {"accounts": accounts}
    if history_path is not None:
        data["gateway"] = {"history_path": history_path}
    return parse_settings(data, source="<demo>", env={})


@dataclass(frozen=True, order=True)
class PastRun:
    """One snapshot run of the demo's past."""

    at: datetime
    days: int | None = None
    """Days before ``at``'s day to store; ``None``: the provider's own ``snapshot_days``."""


def horizon(today: date, first_day: date | None) -> date:
    """The oldest day the demo's history holds: the emulator's first day, at most
    :data:`MAX_PAST_DAYS` days before ``today``."""
    oldest = today - timedelta(days=MAX_PAST_DAYS)
    return oldest if first_day is None else max(first_day, oldest)


def past_runs(
    now: datetime,
    oldest: date,
    windows: Iterable[tuple[datetime, datetime]],
    live_since: Callable[[date], date | None],
) -> list[PastRun]:
    """An account's runs, oldest first: coverage of the days from ``oldest`` to the day before
    ``now`` (for a vendor that keeps the days from ``live_since(today)`` on), and
    :data:`SAMPLES_PER_WINDOW` samples evenly spread over the part of each of ``windows``
    that lies between ``oldest`` and ``now`` (the first at its start)."""
    runs: dict[datetime, int | None] = {}
    earliest = day_start(oldest)
    for start, end in windows:
        start, stop = max(start, earliest), min(end, now)
        for index in range(SAMPLES_PER_WINDOW if start < stop else 0):
            runs.setdefault(start + (stop - start) * index / SAMPLES_PER_WINDOW, None)
    moment = now
    while moment.date() > oldest:
        runs[moment] = (moment.date() - oldest).days
        kept = live_since(moment.date())
        if kept is None or kept <= oldest or kept >= moment.date():
            break
        # The next run is at the same time of day on the first day this one stored: its
        # yesterday is the day before that, and the vendor still kept it then.
        moment -= timedelta(days=(moment.date() - kept).days)
    return sorted(PastRun(at, days) for at, days in runs.items())


def earlier_windows(quota: Quota, now: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The ``count`` windows of ``quota`` before its current one, newest first (fewer for a
    quota whose windows do not repeat)."""
    found: list[tuple[datetime, datetime]] = []
    current = window_of(quota, now)
    while current is not None and len(found) < count:
        current = previous_window(quota.window, current[0])
        if current is not None:
            found.append(current)
    return found


def closing_runs(windows: Iterable[tuple[datetime, datetime]], oldest: date) -> list[PastRun]:
    """A run :data:`CLOSING` before the end of each of ``windows`` that starts on or after
    ``oldest``: what its quota came to at its reset."""
    return [PastRun(end - CLOSING) for start, end in windows if start >= day_start(oldest)]


class PastClock:
    """A clock set by hand to the moment of each run, and a monotonic clock for the providers'
    pacing that never goes back: real time plus every jump the hand clock made, either way
    (the vendor's rate windows, counted on the emulator's clock, pass with each jump)."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._travelled = 0.0

    def __call__(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._travelled += abs((moment - self._now).total_seconds())
        self._now = moment

    def monotonic(self) -> float:
        return time.monotonic() + self._travelled


@dataclass(frozen=True)
class Filled:
    """What filling the demo's history did."""

    runs: int
    failed: int
    oldest: date | None
    """The oldest day stored, over every account."""
    seconds: float
    quotas: tuple[Quota, ...] = ()
    """Every account's quotas as they stood at ``now``."""


async def fill_history(
    history_path: str, *, seed: int, now: datetime, past_windows: int = 0
) -> Filled:
    """Fill ``history_path`` with the demo's past up to ``now`` (see the module docstring),
    with ``past_windows`` earlier windows of each quota sampled too;
    :class:`~gateway.history.HistoryUnavailable` when the store cannot be used."""
    started = time.perf_counter()
    now = now.replace(microsecond=0)
    clock = PastClock(now)
    mounts: dict[str, httpx.AsyncBaseTransport] = {}
    urls: dict[str, str] = {}
    first_days: dict[ProviderId, date | None] = {}
    for provider_id, entry in registry().items():
        host = PAST_HOST.format(provider=provider_id)
        emulator = entry.emulator.factory(seed=seed, clock=clock)
        mounts[f"all://{host}"] = httpx.ASGITransport(app=emulator)
        urls[provider_id] = f"http://{host}"
        first_days[provider_id] = entry.emulator.first_day
    settings = demo_settings(urls, history_path)
    runs = failed = 0
    oldest: date | None = None
    current: list[Quota] = []
    async with httpx.AsyncClient(mounts=mounts) as http:
        service = build_service(settings, http, clock=clock, monotonic=clock.monotonic)
        store = service.history
        assert store is not None
        try:
            for account in settings.accounts:
                provider = service.configured(account.id).provider
                clock.set(now)
                try:
                    quotas = (await provider.limits()).quotas
                except UpstreamError:
                    quotas = ()
                current.extend(quotas)
                windows = [w for w in (window_of(q, now) for q in quotas) if w is not None]
                earlier = {w for q in quotas for w in earlier_windows(q, now, past_windows)}
                first = horizon(now.date(), first_days[account.provider])
                planned = {r.at: r for r in closing_runs(earlier, first)}
                planned.update(
                    (r.at, r)
                    for r in past_runs(now, first, [*windows, *earlier], provider.live_since)
                )
                for _, run in sorted(planned.items()):
                    clock.set(run.at)
                    outcome = await snapshot_account(service, store, account.id, days=run.days)
                    runs += 1
                    failed += not outcome.ok
                oldest = first if oldest is None else min(oldest, first)
        finally:
            await service.upstream.close()
            await store.close()
    return Filled(runs, failed, oldest, time.perf_counter() - started, tuple(current))
