"""The service: fan-out over accounts, range planning, and each payload's status.

The graph calls one :class:`RequestScope` per GraphQL request. A scope reads each distinct vendor
payload once (every resolver that needs the same data awaits the same task), never lets an
expected vendor failure escape (each payload carries its own :class:`SourceStatus`), and answers
usage with unknown days listed as missing rather than counted as zero. The rules themselves
(what to ask, merging with history, roll-ups) are pure functions in :mod:`gateway.usage`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter, OrderedDict
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from types import CoroutineType, MappingProxyType
from typing import Any, TypeVar, Union, cast

from gateway.alerts.config import AlertSettings
from gateway.alerts.machine import StateRow
from gateway.alerts.model import AlertEvent, AlertState, EventKind, Rule, StateName
from gateway.alerts.store import AlertStore
from gateway.answer_reads import AnswerClock
from gateway.cache import Cache, fingerprint
from gateway.domain import (
    Account,
    AccountConfig,
    FailureCause,
    Granularity,
    Limits,
    ProviderId,
    Quota,
    SourceState,
    SourceStatus,
    Usage,
    UsageReport,
    utc_now,
)
from gateway.errors import InputError
from gateway.forecast import Forecast, forecast, previous_window, window_of
from gateway.history import (
    DayRecord,
    HistoryStore,
    HistoryUnavailable,
    Plan,
    QuotaSample,
    RunSummary,
    SnapshotRun,
    StoredDays,
)
from gateway.settings import DEFAULT_MAX_QUERY_COST, CacheTimes
from gateway.upstream import Fetched, Upstream
from gateway.usage import FROM_HISTORY, build_usage, empty_usage, live_range, merge_history
from providers.base import BaseProvider

T = TypeVar("T")
U = TypeVar("U")
log = logging.getLogger(__name__)

Soon = Union[T, Coroutine[Any, Any, T]]  # noqa: UP007  # a generic alias needs Union here
"""A value, or (when it is not at hand yet) a coroutine that gives it: what the request scope's
``*_soon`` reads answer, so that a resolver whose data this request already holds returns it
without creating, scheduling and awaiting a coroutine."""


def then(value: Soon[T], convert: Callable[[T], U]) -> Soon[U]:
    """``convert`` applied to ``value`` now when it is at hand, else once it is."""
    if type(value) is CoroutineType:
        return _then(cast("Coroutine[Any, Any, T]", value), convert)
    return convert(cast("T", value))


async def _then(pending: Coroutine[Any, Any, T], convert: Callable[[T], U]) -> U:
    return convert(await pending)


EARLIEST_DAY = date(2000, 1, 1)
MAX_RANGE_DAYS = {Granularity.MINUTE: 2, Granularity.HOUR: 62}
"""Longest range per granularity finer than a day (longer ones would be huge series)."""
MAX_FUTURE_DAYS = 366
OFF_LOOP_DAYS = 400
"""Ranges of at least this many days are merged and rolled up in a worker thread (pure
functions), so that years of days do not hold up the event loop."""
BUILDS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-build")
"""The one worker thread those roll-ups run on, one after another: Python code in several
threads only takes turns for the interpreter, and each thread more was one more the event loop
waited behind to get it back (section 6 of the bench: the loop's longest stalls 43-57 ms with
asyncio's default pool of threads, 27-42 ms with this one)."""
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
        max_query_cost: int = DEFAULT_MAX_QUERY_COST,
        alerts: AlertSettings | None = None,
    ) -> None:
        self._accounts = {a.config.id: a for a in accounts}
        self._readable: dict[frozenset[str] | None, Readable] = {}
        """What each grant's accounts may read, worked out once per grant (a request looks
        its own up instead of walking every configured account)."""
        self.alerts = alerts
        """The alert rules (``[alerts]``), whose states the graph shows; None: no rules."""
        self.alert_store = AlertStore(history) if history is not None else None
        self.max_query_cost = max_query_cost
        self.heavy_turn = asyncio.Semaphore(1)
        """Held while a heavy operation executes (``gateway.graphql.cost.HeavyQueriesInTurn``)."""
        """The highest static cost of a GraphQL operation run for this service."""
        self.clock = AnswerClock.of(clock)
        """The time; reading it tells the answer being built how long it holds
        (:class:`~gateway.answer_reads.AnswerClock`)."""
        self.upstream = upstream or Upstream(Cache("memory://"), self.clock.read)
        self.history = history
        self._history_problem: str | None = None
        self.built_usage = BuiltUsage()
        """Usage answers built from a vendor's answer alone, kept for the next request that
        reads the same answer (:class:`BuiltUsage`)."""

    def history_failed(self, problem: HistoryUnavailable) -> None:
        """Log a history store that cannot be used, once per distinct cause (every request
        that needs it meets it again)."""
        if str(problem) != self._history_problem:
            self._history_problem = str(problem)
            log.warning("%s; answers that need it say so", problem)

    def accounts(self) -> list[Account]:
        """Every configured account, whoever asks (snapshots store them all); what a request
        may read comes from its :class:`RequestScope`."""
        return [a.account for a in self._accounts.values()]

    def configured(self, account_id: str) -> ConfiguredAccount:
        return self._accounts[account_id]

    def configured_accounts(self) -> list[ConfiguredAccount]:
        """Every configured account, in config order."""
        return list(self._accounts.values())

    def readable(self, visible: Collection[str] | None = None) -> Readable:
        """The configured accounts whose ids are in ``visible`` (all when ``None``), in config
        order; remembered per distinct set of ids (a gateway token's grant is one, worked out at
        start-up), at most :data:`READABLE_SETS` of them."""
        key = None if visible is None else frozenset(visible)  # a frozenset is its own
        found = self._readable.get(key)
        if found is None:
            if len(self._readable) >= READABLE_SETS:
                self._readable.clear()
            found = self._readable[key] = Readable.of(
                {a: c for a, c in self._accounts.items() if key is None or a in key}
            )
        return found

    def request(
        self, visible: Collection[str] | None = None, *, caller: str | None = None
    ) -> RequestScope:
        """A scope for one request that may read the accounts whose ids are in ``visible``
        (every configured account when ``None``); ``caller`` names who asks in log lines (a
        gateway token's name)."""
        return RequestScope(self, visible, caller=caller)


MAX_ACCOUNT_IDS = 1_000
"""Account ids one ``accounts(ids:)`` or ``alerts(accountIds:)`` argument names at most."""
SAMPLE_BATCH = 500
"""Quotas whose samples one job of the history store's thread reads at most (for forecasts)."""
READABLE_SETS = 1024
"""Distinct sets of readable accounts remembered (one per gateway token, and one for all)."""


@dataclass(frozen=True)
class Readable:
    """The accounts one grant may read, in config order, and how many of each provider."""

    accounts: Mapping[str, ConfiguredAccount]
    provider_counts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, accounts: Mapping[str, ConfiguredAccount]) -> Readable:
        counts = Counter(str(a.config.provider) for a in accounts.values())
        return cls(MappingProxyType(dict(accounts)), tuple(sorted(counts.items())))


class BuiltUsage:
    """Usage answers built from a vendor's answer alone (no stored day), by account, arguments
    and last day: a request that reads the very same answer (the same object, from this
    process's cache) with the same status gets the same :class:`Usage`, built once. Bounded:
    :data:`MAX_BUILT` entries, each of a range under :data:`MAX_BUILT_DAYS` days (the least
    recently used goes first)."""

    def __init__(self) -> None:
        self._built: OrderedDict[Hashable, tuple[object, SourceStatus, Usage]] = OrderedDict()
        self.builds = 0
        """Usage answers built here (kept or not): a kept one is not built again."""

    def __len__(self) -> int:
        return len(self._built)

    def get(
        self,
        key: tuple[str, UsageArgs, date],
        report: object,
        status: SourceStatus,
        build: Callable[[], Usage],
    ) -> Usage:
        """The usage ``build`` makes of ``report`` with ``status``: the one kept under ``key``
        when it was built of this very ``report`` with an equal ``status``."""
        found = self._built.get(key)
        if found is not None and found[0] is report and found[1] == status:
            self._built.move_to_end(key)
            return found[2]
        self.builds += 1
        usage = build()
        if (key[2] - key[1].start).days + 1 < MAX_BUILT_DAYS:
            self._built[key] = (report, status, usage)
            self._built.move_to_end(key)
            while len(self._built) > MAX_BUILT:
                self._built.popitem(last=False)
        return usage


MAX_BUILT = 256
"""Usage answers :class:`BuiltUsage` keeps, at most."""
MAX_BUILT_DAYS = 93
"""Usage answers of ranges (from the first day to the last one read) of this many days or more
are not kept by :class:`BuiltUsage`."""


@dataclass(frozen=True)
class UsageArgs:
    """The arguments of one ``usage`` field: what a request asks of an account's usage."""

    start: date
    end: date
    granularity: Granularity
    recheck: bool = False
    splits: bool = True
    """Whether each bucket's endpoint split is wanted (``UsagePoint.endpoints``): built only
    where a caller shows it."""


class RequestScope:
    """Per-request memo of vendor reads: each payload is read once and keeps its own status.

    The scope is the one place that says which accounts a request may read: every list of
    accounts, quotas, alerts and snapshot runs it answers holds only those, and an account
    outside them is answered exactly as one that is not configured (before any vendor call
    or history read).
    """

    def __init__(
        self,
        service: GatewayService,
        visible: Collection[str] | None = None,
        *,
        caller: str | None = None,
    ) -> None:
        self.service = service
        self.caller = caller
        """Who asks, for log lines: a gateway token's name (``None``: no tokens configured)."""
        self._readable = service.readable(visible)
        self._visible = self._readable.accounts
        self._tasks: dict[tuple[object, ...], asyncio.Future[Any]] = {}
        """Every read of this request by what it read, under way or done."""
        self._forecasts: dict[str, tuple[Forecast | None, Exception | None]] = {}
        """Each quota's forecast worked out in this request (or the store's failure)."""
        self._batch: dict[str, Quota] = {}
        """Quotas whose forecasts wait for this turn of the loop to end (:meth:`forecasts_soon`)."""
        self._pending: asyncio.Future[None] | None = None
        self._reads: set[asyncio.Task[None]] = set()

    # -- the accounts this request may read ------------------------------------------------

    def accounts(
        self, provider: ProviderId | None = None, ids: Collection[str] | None = None
    ) -> list[Account]:
        """The accounts this request may read (of ``provider``; whose id is among ``ids``,
        where given: others are left out as if not configured), in config order."""
        if ids is not None:
            wanted = set(ids)
            return [
                found.account
                for account_id, found in self._visible.items()
                if account_id in wanted and (provider is None or found.config.provider is provider)
            ]
        return [
            a.account
            for a in self._visible.values()
            if provider is None or a.config.provider is provider
        ]

    def account(self, account_id: str) -> Account | None:
        """The account, or ``None`` when it is not configured or not this request's to read."""
        found = self._visible.get(account_id)
        return found.account if found else None

    def account_ids(self) -> list[str]:
        return list(self._visible)

    def account_providers(self) -> list[ProviderId]:
        """Each readable account's provider, from the config alone."""
        return [a.config.provider for a in self._visible.values()]

    def provider_counts(self) -> tuple[tuple[str, int], ...]:
        """Readable accounts per provider id, sorted by id, from the config alone (the query
        cost counts accounts before any resolver runs); worked out once per grant."""
        return self._readable.provider_counts

    def configured(self, account_id: str) -> ConfiguredAccount:
        """A readable account's provider client; ``KeyError`` for any other id."""
        return self._visible[account_id]

    def release(self) -> None:
        """Forget what this request read, once its answer is built.

        Strawberry's per-request objects refer to each other in cycles that only a garbage
        collection frees; cleared here, what the request read (a year of points, say) goes at
        once instead of waiting for, and lengthening, the next full collection.
        """
        self._tasks.clear()
        self._forecasts.clear()

    # -- public reads ----------------------------------------------------------------------

    async def limits_payload(self, account_id: str) -> Fetched:
        """The account's quotas and rate limits with their status (value ``None`` on failure)."""
        payload: Fetched = await asyncio.shield(self._limits(account_id))
        return payload

    async def limits(self, account_id: str) -> Limits:
        """The account's quotas and rate limits; empty when the vendor failed."""
        return _limits_of(await self.limits_payload(account_id))

    async def quotas(
        self,
        provider: ProviderId | None = None,
        min_utilization: float | None = None,
        ids: Collection[str] | None = None,
    ) -> list[Quota]:
        """Every account's quotas (of those whose id is among ``ids``, where given), fetched
        concurrently, by utilization, highest first."""
        accounts = self.accounts(provider, ids)
        results = await asyncio.gather(*(self.limits(a.id) for a in accounts))
        return _quotas_of(results, min_utilization)

    async def usage(
        self,
        account_id: str,
        start: date,
        end: date,
        granularity: Granularity,
        *,
        recheck: bool = False,
        splits: bool = True,
    ) -> Usage:
        """Usage for ``start``..``end`` in buckets of ``granularity``, with its own status.

        Read once per request for the same arguments; ``InputError`` for a range the vendor
        cannot answer. Without ``splits`` the buckets carry no endpoint split.
        """
        args = UsageArgs(start, end, granularity, recheck, splits)
        return await self._once(("usage", account_id, args), lambda: self._usage(account_id, args))

    async def source(self, account_id: str, usages: Iterable[UsageArgs] = ()) -> SourceStatus:
        """How fresh this account's data is, over exactly the payloads named: its limits, and
        the usage of each of ``usages`` (the ``usage`` fields its selection asks for).

        Every one of them is awaited, so the answer does not depend on which resolver ran first.
        A usage the caller asked for wrongly (an ``InputError``) has no payload and no say.
        """
        limits, read = await asyncio.gather(
            self.limits_payload(account_id),
            asyncio.gather(
                *(
                    self.usage(
                        account_id,
                        a.start,
                        a.end,
                        a.granularity,
                        recheck=a.recheck,
                        splits=a.splits,
                    )
                    for a in dict.fromkeys(usages)
                ),
                return_exceptions=True,
            ),
        )
        statuses = [limits.status]
        for usage in read:
            if isinstance(usage, InputError):
                continue
            if isinstance(usage, BaseException):
                raise usage
            statuses.append(usage.source)
        return combine(statuses)

    # -- the same reads, at once when this request holds them -------------------------------
    #
    # Each answers as its ``async`` namesake does, from the same memo (one read per payload
    # per request); the value itself when it is at hand (read earlier in this request, or a
    # fresh answer in this process's cache), else a coroutine for it (:data:`Soon`).

    def limits_payload_soon(self, account_id: str) -> Soon[Fetched]:
        """:meth:`limits_payload`, at once when at hand."""
        return _soon(self._limits(account_id))

    def limits_soon(self, account_id: str) -> Soon[Limits]:
        """:meth:`limits`, at once when at hand."""
        return then(self.limits_payload_soon(account_id), _limits_of)

    def quotas_soon(
        self, provider: ProviderId | None = None, min_utilization: float | None = None
    ) -> Soon[list[Quota]]:
        """:meth:`quotas`, at once when every account's limits are at hand."""
        reads = [self._limits(a.id) for a in self.accounts(provider)]
        if not all(read.done() for read in reads):
            return self.quotas(provider, min_utilization)
        return _quotas_of([_limits_of(read.result()) for read in reads], min_utilization)

    def usage_soon(self, account_id: str, args: UsageArgs) -> Soon[Usage]:
        """:meth:`usage`, at once when this request read it already."""
        return _soon(self._usage_read(account_id, args))

    def source_soon(self, account_id: str, usages: Iterable[UsageArgs] = ()) -> Soon[SourceStatus]:
        """:meth:`source`, at once when every payload it covers is at hand."""
        usages = list(dict.fromkeys(usages))
        limits = self._limits(account_id)
        reads = [self._tasks.get(("usage", account_id, a)) for a in usages]
        if not limits.done() or not all(read is not None and read.done() for read in reads):
            return self.source(account_id, usages)
        statuses = [limits.result().status]
        for read in reads:
            assert read is not None
            failure = read.exception()  # raises CancelledError as awaiting it would
            if isinstance(failure, InputError):
                continue
            if failure is not None:
                raise failure
            statuses.append(read.result().source)
        return combine(statuses)

    def prefetch(
        self, reads: Iterable[tuple[str, bool, Iterable[UsageArgs]]]
    ) -> Coroutine[Any, Any, None] | None:
        """Start the reads named that this request has not started yet, each ``(account id,
        whether its limits are read, the arguments of each usage read)``, so that the fields
        that need them find them at hand; ``None`` when every one is at hand already, else a
        coroutine that waits until each has ended (never raising: a read's failure is for the
        fields that need it to meet)."""
        started: list[asyncio.Future[Any]] = []
        for account_id, limits, usages in reads:
            if limits:
                started.append(self._limits(account_id))
            started += (self._usage_read(account_id, args) for args in usages)
        waiting = [read for read in started if not read.done()]
        return _ended(waiting) if waiting else None

    async def quota_history(
        self, quota_id: str, start: datetime, end: datetime
    ) -> list[QuotaSample]:
        """A quota's stored samples between two moments; :class:`HistoryUnavailable` when the
        store cannot be used (so are forecasts and alerts, which rest on them)."""
        history = self.service.history
        if history is None:
            return []
        return await self._history(history.quota_samples(quota_id, start, end))

    def forecast_soon(self, quota: Quota) -> Soon[Forecast | None]:
        """:meth:`forecast`, at once when this request worked it out already (as
        :meth:`forecasts_soon` does for every quota of a list before its fields are read)."""
        known = self._forecasts.get(quota.id)
        if known is None:
            return self.forecast(quota)
        return _outcome(known)

    async def forecast(self, quota: Quota) -> Forecast | None:
        """The quota's projection over its current window, from its stored samples (of this
        window and the previous one: see :func:`gateway.forecast.forecast`), kept for the rest
        of the request like its other reads (a quota's ``forecast`` field and the ``alerts``
        list both ask for it)."""
        pending = self.forecasts_soon([quota])
        if pending is not None:
            await pending
        return self._worked_out(quota)

    def forecasts_soon(self, quotas: Iterable[Quota]) -> Coroutine[Any, Any, None] | None:
        """Work out the forecast of each of ``quotas`` this request has not yet: ``None`` when
        every one is known already, else a coroutine that ends once they are (never raising:
        a failure of the history store is kept for each quota's forecast to raise).

        Every quota asked for in the same turn of the event loop (a dashboard's every
        account, the alert list) is worked out together: one moment for all of them, their
        samples read in jobs of at most :data:`SAMPLE_BATCH` quotas of the store's thread,
        and every forecast made in one pass, without a task or a future per quota."""
        wanted = [q for q in quotas if q.id not in self._forecasts]
        if not wanted:
            return None
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._start_forecasts)
        batch = self._pending
        self._batch.update((q.id, q) for q in wanted)
        return _ended([batch])

    def _worked_out(self, quota: Quota) -> Forecast | None:
        """The forecast of ``quota`` once its batch has ended; a batch cancelled before it
        got to the quota (the request went away) leaves it cancelled."""
        known = self._forecasts.get(quota.id)
        if known is None:
            raise asyncio.CancelledError
        return _outcome(known)

    def _start_forecasts(self) -> None:
        batch, done = list(self._batch.values()), self._pending
        self._batch, self._pending = {}, None
        assert done is not None
        task = asyncio.ensure_future(self._work_out(batch))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

        def settle(_: object) -> None:
            if not done.done():
                done.set_result(None)

        task.add_done_callback(settle)

    async def _work_out(self, quotas: list[Quota]) -> None:
        """Every forecast of ``quotas`` into :attr:`_forecasts` (or the store's failure)."""
        now = self.service.clock()
        reads: list[tuple[Quota, datetime]] = []
        for quota in quotas:
            window = window_of(quota, now)
            if window is None:
                self._forecasts[quota.id] = (None, None)
                continue
            before = previous_window(quota.window, window[0])
            reads.append((quota, before[0] if before else window[0]))
        history = self.service.history
        chunks = [reads[i : i + SAMPLE_BATCH] for i in range(0, len(reads), SAMPLE_BATCH)]
        try:
            if history is None:
                found: list[list[QuotaSample]] = [[] for _ in reads]
            else:
                jobs = [
                    self._history(history.quota_samples_of([(q.id, s, now) for q, s in chunk]))
                    for chunk in chunks
                ]
                found = [samples for job in await asyncio.gather(*jobs) for samples in job]
        except Exception as exc:  # every forecast of the batch meets the store's failure
            for quota, _ in reads:
                self._forecasts[quota.id] = (None, exc)
            return
        for (quota, _), samples in zip(reads, found, strict=True):
            points = [(s.at, s.used) for s in samples if s.used is not None]
            self._forecasts[quota.id] = (forecast(quota, points, now), None)

    async def alerts(
        self, threshold: float, ids: Collection[str] | None = None
    ) -> list[QuotaAlert]:
        """Quotas used past ``threshold``, and quotas projected to run out before their reset
        (of the accounts whose id is among ``ids``, where given)."""
        quotas = await self.quotas(ids=ids)
        pending = self.forecasts_soon(quotas)
        if pending is not None:
            await pending
        alerts = []
        for quota in quotas:
            projection = self._worked_out(quota)
            if quota.utilization is not None and quota.utilization >= threshold:
                alerts.append(QuotaAlert(quota, AlertKind.OVER_THRESHOLD, projection))
            elif projection is not None and projection.runs_out_earliest is not None:
                alerts.append(QuotaAlert(quota, AlertKind.RUNS_OUT_BEFORE_RESET, projection))
        return alerts

    async def alert_events(
        self,
        account_id: str | None,
        rule: Rule | None,
        event: EventKind | None,
        since: datetime | None,
        limit: int,
    ) -> list[AlertEvent]:
        """Stored alert events of the readable accounts (or of one), newest first: none, with
        no history read, for an account this request may not read."""
        store = self.service.alert_store
        if store is None:
            return []
        accounts = [a for a in self._visible if account_id is None or a == account_id]
        if not accounts:
            return []
        return await self._history(
            store.events(accounts, rule=rule, event=event, since=since, limit=limit)
        )

    async def alert_states(self, account_id: str, quota: Quota | None) -> list[AlertState]:
        """Each rule's current state on ``quota`` (or, for None, the account's own rules):
        every rule in force, OK where it has nothing to say."""
        alerts, store = self.service.alerts, self.service.alert_store
        if alerts is None or store is None:
            return []
        rules = alerts.rules_for(self.service.configured(account_id).config)
        rows = await self._once(
            ("alert_states", account_id), lambda: self._history(store.latest_states(account_id))
        )
        wanted: list[tuple[Rule, float | None]] = []
        if quota is None:
            subject, current = account_id, None
            if rules.unreadable_after is not None:
                wanted.append((Rule.UNREADABLE, None))
        else:
            subject = quota.id
            wanted += [(Rule.THRESHOLD, t) for t in rules.thresholds]
            if rules.predictive:
                wanted.append((Rule.PREDICTIVE, None))
            window = window_of(quota, self.service.clock.read())  # the quota's own reset
            current = window[0] if window is not None else None
        latest = {(r.track.rule, r.track.threshold): r for r in rows if r.track.subject == subject}
        return [
            _alert_state(rule, level, latest.get((rule, level)), current) for rule, level in wanted
        ]

    async def snapshots(self, account_id: str | None, limit: int) -> list[SnapshotRun]:
        """Snapshot runs of the readable accounts (of ``account_id`` alone when given: none,
        with no history read, when it is not one of them), newest first."""
        history = self.service.history
        if history is None or (account_id is not None and account_id not in self._visible):
            return []
        wanted = [account_id] if account_id is not None else list(self._visible)
        if not wanted:
            return []
        return await self._history(history.runs(wanted, limit))

    async def snapshot_summary(self, since: datetime) -> list[RunSummary]:
        """The readable accounts' snapshot runs in brief (:meth:`HistoryStore.run_summary`)."""
        history = self.service.history
        ids = list(self._visible)
        if history is None:
            return [RunSummary(a, {}) for a in ids]
        return await self._history(history.run_summary(ids, since))

    async def _history(self, read: Awaitable[T]) -> T:
        try:
            return await read
        except HistoryUnavailable as exc:
            self.service.history_failed(exc)
            raise

    # -- internals -------------------------------------------------------------------------

    async def _usage(self, account_id: str, args: UsageArgs) -> Usage:
        """One sweep: the store says which closed days it holds, the vendor is asked for the
        rest of the days it keeps while the store reads the days it is not asked for, and the
        two are merged. Only days the vendor's answer does not give (it failed, or left some
        out) are read from the store afterwards."""
        configured = self.configured(account_id)
        provider = configured.provider
        start, end, granularity = args.start, args.end, args.granularity
        today = self.service.clock.today()
        native = self._plan(provider, start, end, granularity, today)
        last = min(end, today)
        problem = provider.check_range(start, last, native) if start <= last else None
        if problem is not None:
            raise InputError(problem, argument="granularity")
        if start > last:
            return empty_usage(start, end, granularity)
        live_since = provider.live_since(today)
        history = self.service.history
        if native not in (Granularity.DAY, Granularity.MONTH):
            history = None

        def plan(held: frozenset[date]) -> Plan:
            # A stored day replaces the vendor's only where it keeps the endpoint split too;
            # otherwise the range's endpoint totals would cover only the days asked.
            return live_range(start, last, today, live_since, held, recheck=args.recheck)

        sweep = None
        if history is not None:
            sweep = history.sweep(
                account_id,
                start,
                last,
                _held_days(start, last, today, live_since, recheck=args.recheck),
                plan,
                splits=args.splits,
            )
            ask = await sweep.planned
        else:
            ask = plan(frozenset())
        report: UsageReport | None = None
        status = FROM_HISTORY
        if ask is not None:  # only what the vendor still keeps, and the store does not hold
            first, final = ask
            ttl = configured.times.history if final < today else configured.times.usage
            fetched = await self._fetch(
                account_id,
                "usage",
                (first.isoformat(), final.isoformat(), native.value),
                lambda: provider.usage(first, final, native),
                ttl,
            )
            report = fetched.value if isinstance(fetched.value, UsageReport) else None
            status = fetched.status
        stored = StoredDays()
        recent: list[DayRecord] = []
        broken: HistoryUnavailable | None = None
        if history is not None and sweep is not None:
            try:
                stored = await self._history(sweep.stored)
                missed = _unanswered(report, ask)
                if missed is not None:  # the store's days where the vendor's answer has none
                    recent = await self._history(history.days(account_id, *missed))
            except HistoryUnavailable as exc:
                broken = exc
        if broken is not None and live_since is not None and start < live_since:
            status = combine([status, _history_status(broken, live_since)])

        def build() -> Usage:
            merged = merge_history(merge_history(report, recent), stored.days, stored.totals)
            return build_usage(merged, start, end, last, granularity, status, splits=args.splits)

        if (last - start).days >= OFF_LOOP_DAYS:
            return await asyncio.get_running_loop().run_in_executor(BUILDS, build)
        if recent or stored.days or stored.totals is not None:
            return build()
        return self.service.built_usage.get((account_id, args, last), report, status, build)

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

    async def _once(self, key: tuple[object, ...], make: Callable[[], Awaitable[T]]) -> T:
        """One task per ``key`` in this request; every caller awaits the same outcome."""
        result: T = await asyncio.shield(self._start(key, make))
        return result

    def _start(
        self, key: tuple[object, ...], make: Callable[[], Awaitable[T]]
    ) -> asyncio.Future[T]:
        """This request's read under ``key``, started (as a task) if it was not yet."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._tasks[key] = task
        return task

    def _limits(self, account_id: str) -> asyncio.Future[Fetched]:
        """This request's read of the account's limits: settled at once from a fresh answer in
        this process's cache (what :meth:`Upstream.fetch` would answer), else started."""
        configured = self.configured(account_id)
        key = ("limits", account_id)
        read = self._tasks.get(key)
        if read is not None:
            return read
        found = self.service.upstream.fresh(
            configured.fingerprint, "limits", (), configured.times.limits
        )
        if found is None:
            return self._start(
                key,
                lambda: self._fetch(
                    account_id, "limits", (), configured.provider.limits, configured.times.limits
                ),
            )
        settled: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()
        settled.set_result(found)
        self._tasks[key] = settled
        return settled

    def _usage_read(self, account_id: str, args: UsageArgs) -> asyncio.Future[Usage]:
        """This request's read of usage for ``args`` (the one :meth:`usage` awaits)."""
        return self._start(("usage", account_id, args), lambda: self._usage(account_id, args))

    async def _fetch(
        self,
        account_id: str,
        resource: str,
        params: tuple[object, ...],
        fetch: Callable[[], Awaitable[object]],
        ttl: float,
    ) -> Fetched:
        configured = self.configured(account_id)
        return await self.service.upstream.fetch(
            account_id,
            configured.fingerprint,
            configured.provider.display_name,
            resource,
            params,
            fetch,
            ttl,
            configured.times.max_stale,
        )


def _held_days(
    start: date, last: date, today: date, live_since: date | None, *, recheck: bool
) -> tuple[date, date] | None:
    """The closed days the vendor keeps of ``start``..``last``, whose being stored decides
    what it is asked (:func:`gateway.usage.live_range`); ``None`` when nothing does."""
    first = max(start, live_since) if live_since is not None else start
    final = min(last, today - timedelta(days=1))
    return None if recheck or first > final else (first, final)


def _unanswered(report: UsageReport | None, asked: Plan) -> tuple[date, date] | None:
    """The first and last of the asked days that the vendor's answer does not give (every
    one when it failed; a day it left out, ``absent_days``), or ``None``."""
    if asked is None or report is None:
        return asked
    first, last = asked
    listed = report.known_days - report.absent_days
    if len(listed) == (last - first).days + 1 and min(listed) == first and max(listed) == last:
        return None  # every asked day, and only those (years of days: no walk through them)
    day = timedelta(days=1)
    while first <= last and first in listed:
        first += day
    while last >= first and last in listed:
        last -= day
    return (first, last) if first <= last else None


def _soon(read: asyncio.Future[T]) -> Soon[T]:
    """A read's outcome now when it has ended (raising what it raised), else a coroutine."""
    return read.result() if read.done() else _awaited(read)


async def _awaited(read: asyncio.Future[T]) -> T:
    result: T = await asyncio.shield(read)
    return result


def _outcome(known: tuple[Forecast | None, Exception | None]) -> Forecast | None:
    value, failure = known
    if failure is not None:
        raise failure.with_traceback(None)  # raised for many fields: no traceback grows
    return value


async def _ended(reads: list[asyncio.Future[Any]]) -> None:
    """Wait until every one of ``reads`` has ended, whatever its outcome."""
    await asyncio.wait(reads)
    for read in reads:
        if not read.cancelled():
            read.exception()  # retrieved: the fields that need it raise it themselves


def _limits_of(payload: Fetched) -> Limits:
    return payload.value if isinstance(payload.value, Limits) else Limits()


def _quotas_of(limits: Iterable[Limits], min_utilization: float | None) -> list[Quota]:
    """Every quota of ``limits`` used at least ``min_utilization``, highest first."""
    quotas = [q for each in limits for q in each.quotas]
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


def _history_status(problem: HistoryUnavailable, live_since: date) -> SourceStatus:
    """The status of usage whose days before ``live_since`` only the (broken) store knew."""
    return SourceStatus(
        SourceState.UNAVAILABLE,
        message=f"{problem}; days before {live_since.isoformat()}, which the vendor no longer "
        "keeps, are missing",
        cause=FailureCause.INTERNAL,
    )


def _alert_state(
    rule: Rule, threshold: float | None, row: StateRow | None, window: datetime | None
) -> AlertState:
    """A rule's state from its newest stored row: open as stored; resolved while its window
    is the quota's current one (or the quota has none); OK otherwise."""
    if row is not None and not row.open:
        earlier = row.window is not None and window is not None and row.window.start != window
        if earlier or rule is Rule.UNREADABLE:
            row = None  # resolved in an earlier window, or the outage is over
    if row is None:
        return AlertState(rule, threshold, StateName.OK, None, window, None, None)
    start = row.window.start if row.window is not None else None
    return AlertState(rule, threshold, row.state, row.since, start, row.fired_at, row.resolved_at)


def combine(statuses: Sequence[SourceStatus]) -> SourceStatus:
    """One status over several payloads: the most severe state, and with it that payload's
    message, cause and retry time; among payloads in that state, the oldest data's age."""
    worst = max(statuses, key=lambda s: _SEVERITY[s.state])
    ages = [s.fetched_at for s in statuses if s.state is worst.state and s.fetched_at is not None]
    return replace(worst, fetched_at=min(ages)) if ages else worst


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
