"""``GET /metrics``: the gateway in the Prometheus text format, through ``prometheus_client``.

Each app has a registry of its own (:class:`Metrics`), with custom collectors that read on
scrape, as ``prometheus_client`` intends for an exporter that proxies another system's numbers:

- :class:`ReadingCollector`: quotas, accounts' sources, forecasts, snapshot runs. A scrape
  first reads them through the service (:func:`read`), as a GraphQL request does: the same
  cache, TTLs and coalescing, so scrapes make no more vendor calls than the graph would, then
  builds the text from what it read, without waiting on anything (:func:`reading_families`);
- :class:`VendorCalls`: every vendor call, counted by provider and outcome as it ends, and its
  duration (told by the providers, :data:`providers.base.CallObserver`);
- :class:`CacheCollector`: the data cache's hits and misses (:class:`gateway.cache.CacheStats`),
  and whether its Redis answers;
- :class:`FlightCollector`: with Redis, how vendor reads went with the other gateways
  (:class:`gateway.shared_flights.FlightStats`);
- :class:`SnapshotPeriods`: the snapshot periods this replica settled, by outcome
  (:class:`gateway.scheduler.PeriodCounts`);
- :class:`AnswerCollector`: the answer cache's hits, executions and kept answers
  (:class:`gateway.response_cache.AnswerStats`).

Labels are bounded. ``account`` is a configured account id; ``quota`` and ``quota_id`` are a
quota's name and id, which come from the vendor's configuration of that account (a handful per
account); ``provider``, ``window``, ``unit``, ``state`` and ``outcome`` take the values of the
graph's enums (``VIRUSTOTAL``, ``DAY``, ``REQUESTS``, ``FRESH``, ``CONNECTION``), plus ``OK``
(a snapshot run's and a snapshot period's ``outcome`` are lowercase words of a fixed few);
``tier`` is ``memory`` or ``redis``. No label holds a date, a message or anything a client sent.

Values are floats, as Prometheus stores them: counts up to 2^53 are exact (ReversingLabs' byte
counts, past 2^31, are), larger ones are the nearest float.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from gateway.cache import Cache
from gateway.domain import (
    Account,
    FailureCause,
    Limits,
    ProviderId,
    SourceState,
    SourceStatus,
)
from gateway.export_routes import ScopeOf
from gateway.forecast import Forecast
from gateway.history import HistoryStore, HistoryUnavailable, RunSummary
from gateway.response_cache import AnswerStore
from gateway.scheduler import PeriodCounts
from gateway.service import GatewayService, RequestScope
from gateway.shared_flights import SharedFlights
from providers.base import CallObserver

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The classic text format (``version=0.0.4``), which every Prometheus reads."""
_MEDIA_TYPE = CONTENT_TYPE.removesuffix("; charset=utf-8")
"""What the route declares: Litestar adds the charset to ``text/`` types itself."""
OK = "OK"
OUTCOMES = (OK, *(c.name for c in FailureCause if c is not FailureCause.CIRCUIT_OPEN))
"""How a vendor call can end: ``OK`` or the cause of its failure. A call the circuit breaker
stops is never made, so it is not a vendor call (the account's source says so)."""
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the vendor call duration histogram (the default deadline is 10 s)."""
RUNS_SINCE = timedelta(hours=24)
"""``usage_gateway_snapshot_runs`` counts the runs started this long before a scrape."""
RUN_OUTCOMES = ("running", "ok", "failed", "abandoned")
UP = (SourceState.FRESH, SourceState.STALE)
"""Source states whose data is there to be read: ``usage_gateway_source_up`` is 1."""


def provider_label(provider: ProviderId) -> str:
    """A provider as the graph's ``Provider`` enum names it."""
    return provider.upper()


# -- vendor calls ------------------------------------------------------------------------------


@dataclass
class _Tally:
    calls: dict[str, int]
    """By outcome."""
    buckets: list[int]
    """Timed calls by the first bucket bound they are within (past the last: in none)."""
    timed: int = 0
    seconds: float = 0.0


class VendorCalls:
    """Every vendor call of this process, by provider and outcome, and how long each took.

    Counted on the event loop as each call ends; collected on scrape. Every configured provider
    has every outcome from the start (at 0), so a rate over them never misses a series.
    """

    def __init__(self, providers: Iterable[ProviderId]) -> None:
        self._tallies = {
            provider_label(p): _Tally(dict.fromkeys(OUTCOMES, 0), [0] * len(DURATION_BUCKETS))
            for p in providers
        }

    def observer(self, provider: ProviderId) -> CallObserver:
        """What ``provider``'s clients tell of each call."""
        tally = self._tallies[provider_label(provider)]

        def observe(cause: FailureCause | None, seconds: float | None) -> None:
            tally.calls[OK if cause is None else cause.name] += 1
            if seconds is not None:
                tally.timed += 1
                tally.seconds += seconds
                index = bisect.bisect_left(DURATION_BUCKETS, seconds)
                if index < len(tally.buckets):
                    tally.buckets[index] += 1

        return observe

    def collect(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "usage_gateway_vendor_calls",
            "Vendor calls (retries included) by how they ended: OK (a 200 with JSON) or the "
            "failure's cause; calls the gateway held back count as RATE_LIMITED, and calls that"
            " waited for a slot past their deadline (max_vendor_calls) as TIMEOUT.",
            labels=["provider", "outcome"],
        )
        durations = HistogramMetricFamily(
            "usage_gateway_vendor_call_duration_seconds",
            "How long vendor calls took, retries included (calls held back or never started"
            " are left out).",
            labels=["provider"],
        )
        for provider, tally in self._tallies.items():
            for outcome, count in tally.calls.items():
                calls.add_metric([provider, outcome], count)
            cumulative, total = [], 0
            for bound, count in zip(DURATION_BUCKETS, tally.buckets, strict=True):
                total += count
                cumulative.append((str(bound), total))
            cumulative.append(("+Inf", tally.timed))
            durations.add_metric([provider], cumulative, tally.seconds)
        return [calls, durations]


# -- the cache ---------------------------------------------------------------------------------


class CacheCollector:
    """The data cache's counters (:class:`~gateway.cache.CacheStats`) and its memory tier."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def collect(self) -> Iterable[Metric]:
        stats = self.cache.stats
        hits = CounterMetricFamily(
            "usage_gateway_cache_hits",
            "Data cache reads answered from this process's memory or from Redis.",
            labels=["tier"],
        )
        hits.add_metric(["memory"], stats.memory_hits)
        hits.add_metric(["redis"], stats.redis_hits)
        memory = self.cache.memory
        entries = GaugeMetricFamily(
            "usage_gateway_cache_memory_entries", "Entries in the memory tier of the data cache."
        )
        entries.add_metric([], len(memory))
        size = GaugeMetricFamily(
            "usage_gateway_cache_memory_bytes",
            "Bytes of the memory tier's entries (each at its encoded size).",
        )
        size.add_metric([], memory.bytes)
        return [
            hits,
            CounterMetricFamily(
                "usage_gateway_cache_misses",
                "Data cache reads that found nothing (the vendor is asked).",
                value=stats.misses,
            ),
            CounterMetricFamily(
                "usage_gateway_cache_unreadable",
                "Redis entries not in this gateway's format (treated as misses).",
                value=stats.unreadable,
            ),
            CounterMetricFamily(
                "usage_gateway_cache_redis_failures",
                "Redis operations that failed or timed out.",
                value=stats.redis_failures,
            ),
            CounterMetricFamily(
                "usage_gateway_cache_redis_skipped",
                "Redis operations not tried while Redis kept failing (its cooldown).",
                value=stats.redis_skipped,
            ),
            entries,
            size,
            *self._redis(),
        ]

    def _redis(self) -> list[Metric]:
        health = self.cache.health
        if health is None:  # no Redis configured: nothing to say about it
            return []
        up = GaugeMetricFamily(
            "usage_gateway_redis_up",
            "1 while the shared Redis answers, 0 from an operation's failure until one succeeds"
            " again (meanwhile this process answers from its memory and its own vendor calls).",
        )
        up.add_metric([], 1 if health.up else 0)
        return [up]


class FlightCollector:
    """How this process's vendor reads went with the other gateways on the same Redis
    (:class:`~gateway.shared_flights.FlightStats`)."""

    def __init__(self, flights: SharedFlights) -> None:
        self.flights = flights

    def collect(self) -> Iterable[Metric]:
        reads = CounterMetricFamily(
            "usage_gateway_shared_reads",
            "Vendor reads this process needed (cache misses, refreshes), by how they went with "
            "the other gateways sharing Redis: called (held the key's lease and called), "
            "took_over (the same, after its holder's lease expired), joined / joined_failure "
            "(another gateway's answer or failure used, no call), alone (Redis unusable: "
            "called without a lease), timed_out (waited past the bound, no answer).",
            labels=["outcome"],
        )
        for outcome, count in self.flights.stats.counts().items():
            reads.add_metric([outcome], count)
        return [reads]


class SnapshotPeriods:
    """The snapshot periods this replica settled (``serve --snapshot-every``), by outcome."""

    def __init__(self, counts: PeriodCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        periods = CounterMetricFamily(
            "usage_gateway_snapshot_periods",
            "Snapshot periods this replica settled, by outcome: ran (it held the period's "
            "lease and ran it), taken_over (it ran a period whose earlier runner's lease "
            "expired), skipped (another replica ran it), lost (it ran it but its lease expired "
            "first), local (it ran without an election: no Redis configured, or Redis down).",
            labels=["outcome"],
        )
        for outcome, count in self.counts.counts.items():
            periods.add_metric([outcome.value], count)
        return [periods]


class ProcessCollector:
    """What this process does for the history store's readers and for its own event loop:
    stored days read for usage answers (:attr:`gateway.history.HistoryStore.days_read`) and
    the objects start-up froze out of garbage collection (``gc.freeze()``)."""

    def __init__(self, history: HistoryStore | None) -> None:
        self.history = history

    def collect(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(
                "usage_gateway_history_days_read",
                "Stored days read from the history store for usage answers (days the vendor "
                "no longer keeps, or was not asked for).",
                value=self.history.days_read if self.history is not None else 0,
            ),
            GaugeMetricFamily(
                "python_gc_frozen_objects",
                "Objects moved out of garbage collection at start-up (gc.freeze), so that full "
                "collections need not walk them while the gateway serves.",
                value=gc.get_freeze_count(),
            ),
        ]


# -- what a scrape reads -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccountReading:
    """One account as a scrape read it: its quotas' read and their projections."""

    account: Account
    status: SourceStatus
    limits: Limits | None
    """``None`` when the vendor could not be read (and nothing earlier is cached)."""
    forecasts: Mapping[str, Forecast] = field(default_factory=dict)
    """By quota id, for the quotas that have one."""


@dataclass(frozen=True)
class Reading:
    """Everything one scrape read, before any text is built."""

    accounts: tuple[AccountReading, ...]
    history_up: bool = True
    runs: tuple[RunSummary, ...] = ()


async def read(scope: RequestScope) -> Reading:
    """Read the accounts ``scope`` may read, through it: their quotas (cache, TTLs and
    coalescing as for the graph), the quotas' forecasts and the accounts' snapshot runs (the
    history store)."""
    service = scope.service
    try:
        accounts = scope.accounts()
        payloads = await asyncio.gather(*(scope.limits_payload(a.id) for a in accounts))
        history_up = True
        limits = [p.value if isinstance(p.value, Limits) else None for p in payloads]
        quotas = [q for found in limits if found is not None for q in found.quotas]
        projections = await asyncio.gather(
            *(scope.forecast(q) for q in quotas), return_exceptions=True
        )
        forecasts: dict[str, Forecast] = {}
        for quota, projection in zip(quotas, projections, strict=True):
            if isinstance(projection, HistoryUnavailable):
                history_up = False
            elif isinstance(projection, BaseException):
                raise projection
            elif projection is not None:
                forecasts[quota.id] = projection
        try:
            runs = await scope.snapshot_summary(service.clock() - RUNS_SINCE)
        except HistoryUnavailable:
            history_up, runs = False, []
        wanted = {a.id for a in accounts}
        return Reading(
            tuple(
                AccountReading(
                    account,
                    payload.status,
                    found,
                    {
                        q.id: forecasts[q.id]
                        for q in (found.quotas if found else ())
                        if q.id in forecasts
                    },
                )
                for account, payload, found in zip(accounts, payloads, limits, strict=True)
            ),
            history_up,
            tuple(r for r in runs if r.account_id in wanted),
        )
    finally:
        scope.release()


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def reading_families(reading: Reading) -> list[Metric]:
    """The metric families of one scrape's reading: pure, nothing awaited."""
    quota_labels = ["account", "quota", "quota_id", "window", "unit"]

    def quota_gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=quota_labels)

    used = quota_gauge("usage_gateway_quota_used", "Used in the quota's current window.")
    limit = quota_gauge("usage_gateway_quota_limit", "The quota's allowance per window.")
    remaining = quota_gauge(
        "usage_gateway_quota_remaining", "limit - used, never below 0 (Quota.remaining)."
    )
    utilization = quota_gauge(
        "usage_gateway_quota_utilization", "used / limit as a fraction, not clipped at 1."
    )
    resets = quota_gauge(
        "usage_gateway_quota_resets_at_seconds",
        "The quota's next reset, as a Unix time (none for a fixed term).",
    )
    runs_out = quota_gauge(
        "usage_gateway_quota_runs_out_at_seconds",
        "When the quota would run out at the fastest likely pace (Quota.forecast."
        "runsOutEarliest), as a Unix time; only for quotas projected to run out in their window.",
    )
    account_labels = ["account", "provider"]
    up = GaugeMetricFamily(
        "usage_gateway_source_up",
        "1 when the account's quotas are there to be read (FRESH or STALE), else 0.",
        labels=account_labels,
    )
    state = GaugeMetricFamily(
        "usage_gateway_source_state",
        "1 for the state of the account's quotas read (Account.quotasSource), 0 for the others.",
        labels=[*account_labels, "state"],
    )
    fetched = GaugeMetricFamily(
        "usage_gateway_source_fetched_at_seconds",
        "When the account's quotas were read from the vendor, as a Unix time.",
        labels=account_labels,
    )
    for item in reading.accounts:
        account = item.account
        labels = [account.id, provider_label(account.provider)]
        up.add_metric(labels, 1 if item.status.state in UP else 0)
        for each in SourceState:
            state.add_metric([*labels, each.name], 1 if item.status.state is each else 0)
        if item.status.fetched_at is not None:
            fetched.add_metric(labels, _seconds(item.status.fetched_at))
        for quota in item.limits.quotas if item.limits else ():
            key = [account.id, quota.name, quota.id, quota.window.name, quota.unit.name]
            if quota.used is not None:
                used.add_metric(key, quota.used)
            if quota.limit is not None:
                limit.add_metric(key, quota.limit)
            if quota.remaining is not None:
                remaining.add_metric(key, quota.remaining)
            if quota.utilization is not None:
                utilization.add_metric(key, quota.utilization)
            if quota.resets_at is not None:
                resets.add_metric(key, _seconds(quota.resets_at))
            projection = item.forecasts.get(quota.id)
            if projection is not None and projection.runs_out_earliest is not None:
                runs_out.add_metric(key, _seconds(projection.runs_out_earliest))
    history = GaugeMetricFamily(
        "usage_gateway_history_up",
        "1 when the history store could be read (or does not exist yet), 0 when it cannot be "
        "used (forecasts and snapshot runs are then missing).",
    )
    history.add_metric([], 1 if reading.history_up else 0)
    return [
        used,
        limit,
        remaining,
        utilization,
        resets,
        runs_out,
        up,
        state,
        fetched,
        history,
        *_run_families(reading.runs),
    ]


def _run_families(runs: Iterable[RunSummary]) -> list[Metric]:
    recent = GaugeMetricFamily(
        "usage_gateway_snapshot_runs",
        f"Snapshot runs of the account started in the last {RUNS_SINCE.total_seconds() / 3600:g}"
        " hours (from the history store: cron's runs and serve's alike), by outcome.",
        labels=["account", "outcome"],
    )
    duration = GaugeMetricFamily(
        "usage_gateway_snapshot_last_run_duration_seconds",
        "How long the account's latest finished snapshot run took.",
        labels=["account"],
    )
    last_ok = GaugeMetricFamily(
        "usage_gateway_snapshot_last_run_ok",
        "1 when the account's latest finished snapshot run stored it, 0 when it failed.",
        labels=["account"],
    )
    success = GaugeMetricFamily(
        "usage_gateway_snapshot_last_success_timestamp_seconds",
        "When the account's latest successful snapshot run finished, as a Unix time.",
        labels=["account"],
    )
    for run in runs:
        for outcome in RUN_OUTCOMES:
            recent.add_metric([run.account_id, outcome], run.recent.get(outcome, 0))
        if run.last_started is not None and run.last_finished is not None:
            took = (run.last_finished - run.last_started).total_seconds()
            duration.add_metric([run.account_id], took)
            last_ok.add_metric([run.account_id], 1 if run.last_outcome == "ok" else 0)
        if run.last_ok is not None:
            success.add_metric([run.account_id], _seconds(run.last_ok))
    return [recent, duration, last_ok, success]


class ReadingCollector:
    """Collects the reading of the scrape under way (:meth:`Metrics.render` sets it and builds
    the text without awaiting in between, so concurrent scrapes never see each other's)."""

    def __init__(self) -> None:
        self.reading: Reading | None = None

    def collect(self) -> Iterable[Metric]:
        return [] if self.reading is None else reading_families(self.reading)


class AnswerCollector:
    """The answer cache's counters (:class:`~gateway.response_cache.AnswerStats`) and size."""

    def __init__(self, answers: AnswerStore) -> None:
        self.answers = answers

    def collect(self) -> Iterable[Metric]:
        stats = self.answers.stats
        counters = {
            "hits": "POST /graphql requests answered from a kept answer, nothing executed.",
            "executions": "POST /graphql requests executed (the answer cache on).",
            "shared": "Requests that waited for the same request's execution and got its answer.",
            "kept": "Executed answers kept.",
            "dropped": "Kept answers found no longer holding (their data changed or ended).",
        }
        found: list[Metric] = [
            CounterMetricFamily(
                f"usage_gateway_answer_cache_{name}", text, value=getattr(stats, name)
            )
            for name, text in counters.items()
        ]
        entries = GaugeMetricFamily("usage_gateway_answer_cache_entries", "Answers kept.")
        entries.add_metric([], len(self.answers.entries))
        size = GaugeMetricFamily(
            "usage_gateway_answer_cache_bytes",
            "Bytes of the kept answers (bodies, headers and what they read).",
        )
        size.add_metric([], self.answers.size)
        return [*found, entries, size]


class Metrics:
    """One app's metrics: its own registry and the collectors in it."""

    def __init__(
        self, service: GatewayService, calls: VendorCalls, answers: AnswerStore | None = None
    ) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self._reading = ReadingCollector()
        for collector in (
            self._reading,
            calls,
            CacheCollector(service.upstream.cache),
            ProcessCollector(service.history),
        ):
            self.registry.register(collector)
        if service.upstream.shared is not None:
            self.registry.register(FlightCollector(service.upstream.shared))
        if answers is not None:
            self.registry.register(AnswerCollector(answers))

    async def render(self, scope: RequestScope) -> bytes:
        """The text of one scrape over the accounts ``scope`` may read."""
        reading = await read(scope)
        self._reading.reading = reading
        try:
            return generate_latest(self.registry)
        finally:
            self._reading.reading = None


PATH = "/metrics"


def metrics_route(metrics: Metrics, scope_of: ScopeOf | None = None) -> HTTPRouteHandler:
    """The route handler of ``GET /metrics``: the accounts ``scope_of`` each request lets it
    read (with a gateway token, the token's; every configured account by default) and the
    process's own counters."""

    def every_account(connection: Mapping[str, object]) -> RequestScope:
        return metrics.service.request()

    scopes = scope_of or every_account

    @get(PATH)
    async def scrape(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The gateway's metrics in the Prometheus text format."""
        body = await metrics.render(scopes(request.scope))
        return Response(body, media_type=_MEDIA_TYPE)

    return scrape
