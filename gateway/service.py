"""The service: fan-out over accounts, range planning, roll-ups, and each account's status.

The graph calls one :class:`RequestScope` per GraphQL request. A scope runs each distinct vendor
fetch once (every resolver that needs the same data awaits the same task), never lets an expected
vendor failure escape (it becomes the account's :class:`SourceStatus`), and answers usage with
unknown days listed as missing rather than counted as zero.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property

from gateway.cache import Cache, fingerprint
from gateway.domain import (
    Account,
    AccountConfig,
    EndpointUsage,
    Granularity,
    Limits,
    ProviderId,
    Quota,
    SourceState,
    SourceStatus,
    Usage,
    UsageDetails,
    UsagePoint,
    UsageReport,
    bucket_start,
    day_start,
    days_between,
    utc_now,
)
from gateway.errors import InputError
from gateway.forecast import Forecast, forecast, window_of
from gateway.history import DayRecord, HistoryStore, QuotaSample, SnapshotRun
from gateway.settings import CacheTimes
from gateway.upstream import Upstream
from providers.base import BaseProvider

log = logging.getLogger(__name__)

EARLIEST_DAY = date(2000, 1, 1)
MAX_RANGE_DAYS = {Granularity.MINUTE: 2, Granularity.HOUR: 62}
"""Longest range per granularity finer than a day (longer ones would be huge series)."""
MAX_FUTURE_DAYS = 366
_SEVERITY = {
    SourceState.FRESH: 0,
    SourceState.STALE: 1,
    SourceState.UNAVAILABLE: 2,
    SourceState.RATE_LIMITED: 3,
    SourceState.AUTH_FAILED: 4,
}


@dataclass(frozen=True)
class ConfiguredAccount:
    """An account, the provider client that serves it, and how long its answers keep."""

    config: AccountConfig
    provider: BaseProvider
    times: CacheTimes = field(default_factory=CacheTimes)

    @cached_property
    def fingerprint(self) -> str:
        """What identifies the account's answers in a cache shared with other gateways
        (hashed once: it is part of every cache key)."""
        config = self.config
        return fingerprint(
            config.provider,
            config.id,
            self.provider.base_url,
            repr(sorted(config.options.items())),
            *(f"{k}={v.reveal()}" for k, v in sorted(config.secrets.items())),
        )

    @property
    def account(self) -> Account:
        return Account(
            id=self.config.id,
            provider=self.config.provider,
            name=self.config.name,
            scope=self.provider.scope,
        )


class GatewayService:
    """Long-lived: the configured accounts and their provider clients."""

    def __init__(
        self,
        accounts: Iterable[ConfiguredAccount],
        *,
        clock: Callable[[], datetime] = utc_now,
        upstream: Upstream | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        self._accounts = {a.config.id: a for a in accounts}
        self.clock = clock
        self.upstream = upstream or Upstream(Cache("memory://"), clock)
        self.history = history

    def accounts(self, provider: ProviderId | None = None) -> list[Account]:
        return [
            a.account
            for a in self._accounts.values()
            if provider is None or a.config.provider is provider
        ]

    def account(self, account_id: str) -> Account | None:
        found = self._accounts.get(account_id)
        return found.account if found else None

    def configured(self, account_id: str) -> ConfiguredAccount:
        return self._accounts[account_id]

    def request(self) -> RequestScope:
        """A scope for one GraphQL request."""
        return RequestScope(self)


class RequestScope:
    """Per-request memo of vendor fetches and per-account status."""

    def __init__(self, service: GatewayService) -> None:
        self.service = service
        self._tasks: dict[tuple[object, ...], asyncio.Task[object]] = {}
        self._by_account: dict[str, list[asyncio.Task[object]]] = {}
        self._status: dict[str, SourceStatus] = {}

    # -- public reads ----------------------------------------------------------------------

    async def limits(self, account_id: str) -> Limits:
        """The account's quotas and rate limits; empty when the vendor failed."""
        configured = self.service.configured(account_id)
        result = await self._once(
            account_id, "limits", (), configured.provider.limits, configured.times.limits
        )
        return result if isinstance(result, Limits) else Limits()

    async def quotas(
        self, provider: ProviderId | None = None, min_utilization: float | None = None
    ) -> list[Quota]:
        """Every account's quotas, fetched concurrently, by utilization, highest first."""
        accounts = self.service.accounts(provider)
        results = await asyncio.gather(*(self.limits(a.id) for a in accounts))
        quotas = [q for limits in results for q in limits.quotas]
        if min_utilization is not None:
            quotas = [
                q for q in quotas if q.utilization is not None and q.utilization >= min_utilization
            ]
        return sorted(
            quotas,
            key=lambda q: (
                q.utilization is None,
                -(q.utilization or 0.0),
                q.account_id,
                q.name,
            ),
        )

    async def usage(
        self, account_id: str, start: date, end: date, granularity: Granularity
    ) -> Usage:
        """Usage for ``start``..``end`` in buckets of ``granularity``."""
        configured = self.service.configured(account_id)
        provider = configured.provider
        today = self.service.clock().date()
        native = self._plan(provider, start, end, granularity, today)
        last = min(end, today)
        problem = provider.check_range(start, last, native) if start <= last else None
        if problem is not None:
            raise InputError(problem, argument="granularity")
        if start > last:
            return _empty_usage(start, end, granularity)
        live_since = provider.live_since(today)
        live_start = max(start, live_since) if live_since is not None else start
        report: UsageReport | None = None
        if live_start <= last:  # only the part the vendor still keeps is asked of it
            ttl = configured.times.history if last < today else configured.times.usage
            answer = await self._once(
                account_id,
                "usage",
                (live_start.isoformat(), last.isoformat(), native.value),
                lambda: provider.usage(live_start, last, native),
                ttl,
            )
            report = answer if isinstance(answer, UsageReport) else None
        history = self.service.history
        days_wanted = (last - start).days + 1
        if (
            history is not None
            and native in (Granularity.DAY, Granularity.MONTH)
            and (report is None or len(report.known_days) < days_wanted)
        ):
            records = await history.days(account_id, start, last)
            report = with_history(report, records)
        return build_usage(report, start, end, last, granularity)

    async def quota_history(
        self, quota_id: str, start: datetime, end: datetime
    ) -> list[QuotaSample]:
        """A quota's stored samples between two moments."""
        history = self.service.history
        return [] if history is None else await history.quota_samples(quota_id, start, end)

    async def forecast(self, quota: Quota) -> Forecast | None:
        """The quota's projection over its current window, from its stored samples."""
        now = self.service.clock()
        window = window_of(quota, now)
        if window is None:
            return None
        samples = await self.quota_history(quota.id, window[0], now)
        points = [(s.at, s.used) for s in samples if s.used is not None]
        return forecast(quota, points, now)

    async def alerts(self, threshold: float) -> list[QuotaAlert]:
        """Quotas used past ``threshold``, and quotas projected to run out before their reset."""
        quotas = await self.quotas()
        forecasts = await asyncio.gather(*(self.forecast(q) for q in quotas))
        alerts = []
        for quota, projection in zip(quotas, forecasts, strict=True):
            if quota.utilization is not None and quota.utilization >= threshold:
                alerts.append(QuotaAlert(quota, AlertKind.OVER_THRESHOLD, projection))
            elif projection is not None and projection.runs_out_earliest is not None:
                alerts.append(QuotaAlert(quota, AlertKind.RUNS_OUT_BEFORE_RESET, projection))
        return alerts

    async def snapshots(self, account_id: str | None, limit: int) -> list[SnapshotRun]:
        history = self.service.history
        return [] if history is None else await history.runs(account_id, limit)

    async def source(self, account_id: str) -> SourceStatus:
        """How fresh this account's data is, over everything this request fetched for it."""
        await self.limits(account_id)
        # Let sibling resolvers of the same account (started in the same gather) register.
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.gather(*self._by_account.get(account_id, []), return_exceptions=True)
        return self._status.get(account_id, SourceStatus(SourceState.FRESH))

    # -- internals -------------------------------------------------------------------------

    def _plan(
        self,
        provider: BaseProvider,
        start: date,
        end: date,
        granularity: Granularity,
        today: date,
    ) -> Granularity:
        """Check the range and choose the granularity to ask the vendor for."""
        if start > end:
            raise InputError(
                f"`from` ({start.isoformat()}) is after `to` ({end.isoformat()})", argument="from"
            )
        if start < EARLIEST_DAY:
            raise InputError(
                f"`from` ({start.isoformat()}) is before {EARLIEST_DAY.isoformat()}",
                argument="from",
            )
        if end > today + timedelta(days=MAX_FUTURE_DAYS):
            raise InputError(
                f"`to` ({end.isoformat()}) is more than {MAX_FUTURE_DAYS} days in the future",
                argument="to",
            )
        if granularity is Granularity.MONTH and Granularity.MONTH in provider.native_granularities:
            return Granularity.MONTH  # the provider reads whole months from monthly totals
        if granularity in (Granularity.DAY, Granularity.WEEK, Granularity.MONTH):
            return Granularity.DAY
        if granularity not in provider.native_granularities:
            finest = min(provider.native_granularities, key=list(Granularity).index)
            raise InputError(
                f"{provider.display_name} reports usage per {finest.value}, not per "
                f"{granularity.value}; ask for {finest.name} or coarser",
                argument="granularity",
            )
        span = (end - start).days + 1
        limit = MAX_RANGE_DAYS[granularity]
        if span > limit:
            raise InputError(
                f"granularity {granularity.name} allows at most {limit} days; "
                f"this range has {span}",
                argument="granularity",
            )
        return granularity

    async def _once(
        self,
        account_id: str,
        resource: str,
        params: tuple[object, ...],
        fetch: Callable[[], Awaitable[object]],
        ttl: float,
    ) -> object:
        """One fetch per (account, resource, params) in this request; ``None`` on failure."""
        key = (account_id, resource, *params)
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(account_id, resource, params, fetch, ttl))
            self._tasks[key] = task
            self._by_account.setdefault(account_id, []).append(task)
        return await asyncio.shield(task)

    async def _fetch(
        self,
        account_id: str,
        resource: str,
        params: tuple[object, ...],
        fetch: Callable[[], Awaitable[object]],
        ttl: float,
    ) -> object:
        configured = self.service.configured(account_id)
        outcome = await self.service.upstream.fetch(
            account_id,
            configured.fingerprint,
            configured.provider.display_name,
            resource,
            params,
            fetch,
            ttl,
            configured.times.max_stale,
        )
        self._note(account_id, outcome.status)
        return outcome.value

    def _note(self, account_id: str, status: SourceStatus) -> None:
        current = self._status.get(account_id)
        if current is None or _SEVERITY[status.state] > _SEVERITY[current.state]:
            self._status[account_id] = status
        elif (
            status.state is current.state
            and status.fetched_at
            and current.fetched_at
            and status.fetched_at < current.fetched_at
        ):  # the same state: show the oldest data's age
            self._status[account_id] = replace(current, fetched_at=status.fetched_at)


def _empty_usage(start: date, end: date, granularity: Granularity) -> Usage:
    return Usage(start, end, granularity, 0, 0, None, (), (), ())


def build_usage(
    report: UsageReport | None,
    start: date,
    end: date,
    last: date,
    granularity: Granularity,
) -> Usage:
    """Roll a provider report up into ``granularity`` buckets and list unknown days.

    ``last`` is the last day that can have data (``end`` or today, whichever is earlier); days
    after it are in the future, neither counted nor missing. With no report at all, every day up
    to ``last`` is missing.
    """
    days = list(days_between(start, last))
    if report is None:
        return Usage(start, end, granularity, 0, 0, None, (), (), tuple(days))
    series = rollup(report.points, granularity)
    has_bytes = any(p.bytes is not None for p in series)
    return Usage(
        from_=start,
        to=end,
        granularity=granularity,
        requests=sum(p.requests for p in series),
        quota_requests=sum(p.quota_requests for p in series),
        bytes=sum(p.bytes or 0 for p in series) if has_bytes else None,
        series=series,
        endpoints=tuple(sorted(report.endpoints, key=lambda e: (-e.requests, e.endpoint))),
        missing_days=tuple(d for d in days if d not in report.known_days),
        details=report.details,
    )


class AlertKind(enum.Enum):
    """Why a quota is on the alert list."""

    OVER_THRESHOLD = "over_threshold"
    RUNS_OUT_BEFORE_RESET = "runs_out_before_reset"


@dataclass(frozen=True)
class QuotaAlert:
    """A quota that needs attention, and its projection where there is one."""

    quota: Quota
    kind: AlertKind
    forecast: Forecast | None


def with_history(report: UsageReport | None, records: Sequence[DayRecord]) -> UsageReport | None:
    """``report`` with the stored days it does not know itself (older days, or all of them
    when the vendor failed)."""
    known = report.known_days if report is not None else frozenset()
    used = [r for r in records if r.day not in known]
    if not used:
        return report
    totals: dict[tuple[str, bool], int] = {
        (e.endpoint, e.consumes_quota): e.requests for e in (report.endpoints if report else ())
    }
    for record in used:
        for item in record.endpoints or ():
            key = (item.endpoint, item.consumes_quota)
            totals[key] = totals.get(key, 0) + item.requests
    points = [
        UsagePoint(day_start(r.day), r.requests, r.quota_requests, r.bytes, r.failed_requests)
        for r in used
    ]
    return UsageReport(
        points=tuple(sorted([*(report.points if report else ()), *points], key=lambda p: p.start)),
        endpoints=tuple(EndpointUsage(e, n, q) for (e, q), n in totals.items()),
        known_days=known | {r.day for r in used},
        details=report.details if report is not None else UsageDetails(),
    )


def rollup(points: Sequence[UsagePoint], granularity: Granularity) -> tuple[UsagePoint, ...]:
    """Sum points into buckets of ``granularity`` (weeks from Monday, months from the 1st)."""
    buckets: dict[datetime, list[UsagePoint]] = {}
    for point in points:
        buckets.setdefault(bucket_start(point.start, granularity), []).append(point)
    result = []
    for moment in sorted(buckets):
        group = buckets[moment]
        byte_values = [p.bytes for p in group if p.bytes is not None]
        failed = [p.failed_requests for p in group]
        result.append(
            UsagePoint(
                start=moment,
                requests=sum(p.requests for p in group),
                quota_requests=sum(p.quota_requests for p in group),
                bytes=sum(byte_values) if byte_values else None,
                failed_requests=None if None in failed else sum(f or 0 for f in failed),
            )
        )
    return tuple(result)
