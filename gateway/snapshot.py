"""One snapshot run: every account's recent days, quotas and rate limits into the history store.

Each account is read straight from its vendor (no cache) and stored in one transaction, so the
run is idempotent (the same day twice is an upsert), a run killed halfway leaves no partial day,
and the next run completes what the killed one did not. Days are stored up to yesterday: today
is still moving and is always read live.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from gateway.domain import Granularity, Quota, UsageReport
from gateway.errors import UpstreamError
from gateway.history import DayRecord, HistoryStore, HistoryUnavailable
from gateway.service import GatewayService

log = logging.getLogger(__name__)
CONCURRENT_ACCOUNTS = 4


@dataclass(frozen=True)
class AccountOutcome:
    """How one account's part of a run ended."""

    account_id: str
    ok: bool
    days: int = 0
    changed: int = 0
    error: str | None = None
    quotas: tuple[Quota, ...] = ()
    """The account's quotas as this run read them (alert rules are evaluated on them)."""


def day_records(report: UsageReport) -> list[DayRecord]:
    """The report's known days as history rows, with their endpoint split where given."""
    split = report.day_endpoints
    return [
        DayRecord(
            day=point.start.date(),
            requests=point.requests,
            quota_requests=point.quota_requests,
            bytes=point.bytes,
            failed_requests=point.failed_requests,
            endpoints=split.get(point.start.date()) if split is not None else None,
            absent=point.start.date() in report.absent_days,
        )
        for point in report.points
        if point.start.date() in report.known_days
    ]


async def snapshot_account(
    service: GatewayService, store: HistoryStore, account_id: str, *, days: int | None = None
) -> AccountOutcome:
    """One account into the store: the ``days`` days before today (default: the provider's
    ``snapshot_days``; never further back than the vendor still keeps), and its quotas and
    rate limits as they stand."""
    provider = service.configured(account_id).provider
    clock = service.clock
    run_id = await store.start_run(account_id, clock())
    try:
        today = clock().date()
        yesterday = today - timedelta(days=1)
        first = today - timedelta(days=provider.snapshot_days if days is None else days)
        live_since = provider.live_since(today)
        if live_since is not None:
            first = max(first, live_since)
        limits, report = await asyncio.gather(
            provider.limits(), provider.usage(first, yesterday, Granularity.DAY)
        )
        stored = await store.store(
            run_id, account_id, day_records(report), limits.quotas, limits.rate_limits, clock()
        )
    except HistoryUnavailable:
        raise  # the store itself cannot be used: no account can be stored
    except UpstreamError as exc:
        await store.fail_run(run_id, clock(), exc.message)
        log.warning("snapshot of %s failed: %s", account_id, exc.message)
        return AccountOutcome(account_id, False, error=exc.message)
    except Exception:
        log.exception("snapshot of %s failed unexpectedly", account_id)
        message = "internal error; see the gateway log"
        await store.fail_run(run_id, clock(), message)
        return AccountOutcome(account_id, False, error=message)
    log.info("snapshot of %s: %d days, %d changed", account_id, stored.days, stored.changed)
    return AccountOutcome(account_id, True, stored.days, stored.changed, quotas=limits.quotas)


async def run_snapshot(service: GatewayService, store: HistoryStore) -> list[AccountOutcome]:
    """Every account once, a few at a time; :class:`HistoryUnavailable` when the store cannot
    be used (raised once every account's part has ended)."""
    gate = asyncio.Semaphore(CONCURRENT_ACCOUNTS)

    async def one(account_id: str) -> AccountOutcome:
        async with gate:
            return await snapshot_account(service, store, account_id)

    await store.abandon_stale_runs(service.clock() - timedelta(minutes=30))
    results = await asyncio.gather(*(one(a.id) for a in service.accounts()), return_exceptions=True)
    for result in results:  # every account's part has ended, so the store can be closed now
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, AccountOutcome)]
