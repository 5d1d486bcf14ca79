"""Pure functions over usage: what to ask the vendor, how to merge it with history, roll-ups.

Nothing here awaits or reads a clock: the service passes in today, the vendor's answer and the
stored days, and gets back plain values, so each rule has unit tests of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from gateway.domain import (
    EndpointUsage,
    Granularity,
    SourceState,
    SourceStatus,
    Usage,
    UsageDetails,
    UsagePoint,
    UsageReport,
    bucket_start,
    day_start,
    days_between,
)
from gateway.history import DayRecord


def live_range(
    start: date,
    last: date,
    today: date,
    live_since: date | None,
    stored: Collection[date],
    *,
    recheck: bool = False,
) -> tuple[date, date] | None:
    """The days ``start``..``last`` to ask the vendor for, or ``None`` for none.

    Days before ``live_since`` are gone from the vendor. Closed days (before ``today``) that the
    history store already holds, from the first day on, need not be asked again unless the
    caller wants a revision check (``recheck``); the rest is asked in one contiguous range.
    """
    first = max(start, live_since) if live_since is not None else start
    if not recheck:
        while first <= last and first < today and first in stored:
            first += timedelta(days=1)
    return (first, last) if first <= last else None


def merge_history(
    report: UsageReport | None,
    records: Sequence[DayRecord],
    totals: Sequence[EndpointUsage] | None = None,
) -> UsageReport | None:
    """``report`` with the stored days it does not answer for itself.

    A stored day counts where the vendor gave nothing for it: a day outside what it was asked
    or kept, every day when it failed, and a day its answer left out (``absent_days``: the vendor
    counts those as zero, but may simply no longer keep them). A day the vendor listed wins over
    the stored one. Endpoint entries keep their details: requests and bytes add up; error rates
    and latencies are combined weighted by requests where both sides know them. Each day's
    endpoint split (``day_endpoints``) comes from the same side as the day's totals.

    ``totals``, when given, are the endpoint totals over all of ``records`` (read summed: the
    records then carry no split), none of whose days the vendor may have listed: they are
    days it was not asked for (``ValueError`` otherwise).
    """
    listed = report.known_days - report.absent_days if report is not None else frozenset()
    used = [r for r in records if r.day not in listed]
    if totals is not None and len(used) != len(records):
        raise ValueError("endpoint totals of stored days the vendor answered for")
    if not used:
        return report
    replaced = {r.day for r in used}
    live_split = report.day_endpoints if report is not None else None
    split = {day: items for day, items in (live_split or {}).items() if day not in replaced}
    split.update({r.day: r.endpoints for r in used if r.endpoints is not None})
    points = [p for p in (report.points if report else ()) if p.start.date() not in replaced]
    points += [
        UsagePoint(day_start(r.day), r.requests, r.quota_requests, r.bytes, r.failed_requests)
        for r in used
    ]
    endpoints: dict[tuple[str, bool], EndpointUsage] = {
        (e.endpoint, e.consumes_quota): e for e in (report.endpoints if report else ())
    }
    stored = [totals] if totals is not None else [r.endpoints or () for r in used]
    for items in stored:
        for item in items:
            key = (item.endpoint, item.consumes_quota)
            endpoints[key] = add_endpoint(endpoints[key], item) if key in endpoints else item
    return UsageReport(
        points=tuple(sorted(points, key=lambda p: p.start)),
        endpoints=tuple(endpoints.values()),
        known_days=(report.known_days if report else frozenset()) | replaced,
        details=report.details if report is not None else UsageDetails(),
        day_endpoints=split if live_split is not None or split else None,
    )


def add_endpoint(a: EndpointUsage, b: EndpointUsage) -> EndpointUsage:
    """One endpoint's totals over two disjoint sets of days."""
    return EndpointUsage(
        a.endpoint,
        a.requests + b.requests,
        a.consumes_quota,
        error_rate=_weighted(a.error_rate, a.requests, b.error_rate, b.requests),
        average_latency_ms=_weighted(
            a.average_latency_ms, a.requests, b.average_latency_ms, b.requests
        ),
        bytes=_plus(a.bytes, a.requests, b.bytes, b.requests),
    )


def _weighted(x: float | None, x_weight: int, y: float | None, y_weight: int) -> float | None:
    """A rate over two sets of requests: weighted by them; unknown when a side with requests
    does not know it."""
    if y_weight == 0:
        return x
    if x_weight == 0:
        return y
    if x is None or y is None:
        return None
    return (x * x_weight + y * y_weight) / (x_weight + y_weight)


def _plus(x: int | None, x_requests: int, y: int | None, y_requests: int) -> int | None:
    """A byte count over two sets of requests; a side without requests and bytes adds nothing."""
    if y is None and y_requests == 0:
        return x
    if x is None and x_requests == 0:
        return y
    return None if x is None or y is None else x + y


def build_usage(
    report: UsageReport | None,
    start: date,
    end: date,
    last: date,
    granularity: Granularity,
    source: SourceStatus,
    *,
    splits: bool = True,
) -> Usage:
    """Roll a report up into ``granularity`` buckets and list unknown days.

    ``last`` is the last day that can have data (``end`` or today, whichever is earlier); days
    after it are in the future, neither counted nor missing. With no report at all, every day up
    to ``last`` is missing. ``source`` is the status of the vendor read the report came from.
    Each bucket's endpoint split is built only with ``splits`` (otherwise every bucket's
    ``endpoints`` is empty: the caller does not show them).
    """
    days = list(days_between(start, last))
    if report is None:
        return Usage(start, end, granularity, 0, 0, None, (), (), tuple(days), source=source)
    missing = tuple(d for d in days if d not in report.known_days)
    day_endpoints = report.day_endpoints if splits else None
    series = rollup(report.points, granularity, day_endpoints or {}, missing)
    has_bytes = any(p.bytes is not None for p in series)
    return Usage(
        from_=start,
        to=end,
        granularity=granularity,
        requests=sum(p.requests for p in series),
        quota_requests=sum(p.quota_requests for p in series),
        bytes=sum(p.bytes or 0 for p in series) if has_bytes else None,
        series=series,
        endpoints=tuple(sorted(report.endpoints, key=_endpoint_order)),
        missing_days=missing,
        details=report.details,
        source=source,
    )


def empty_usage(start: date, end: date, granularity: Granularity) -> Usage:
    """A range wholly in the future: nothing to count, nothing missing, nothing asked."""
    return Usage(start, end, granularity, 0, 0, None, (), (), (), source=FROM_HISTORY)


FROM_HISTORY = SourceStatus(SourceState.FRESH)
"""The status of usage the gateway answered without asking the vendor (stored or future days)."""


def rollup(
    points: Sequence[UsagePoint],
    granularity: Granularity,
    day_endpoints: Mapping[date, Sequence[EndpointUsage]] | None = None,
    missing: Iterable[date] = (),
) -> tuple[UsagePoint, ...]:
    """Sum points into buckets of ``granularity`` (weeks from Monday, months from the 1st).

    Each bucket also gets its endpoint split (:func:`bucket_endpoints` of ``day_endpoints``)
    and how many of its days are ``missing``.
    """
    if granularity is Granularity.DAY:
        daily = _daily(points, day_endpoints or {}, missing)
        if daily is not None:
            return daily
    # Buckets are keyed by their start as a naive UTC datetime: hashing an aware one asks its
    # zone for the offset every time, which costs more than the rest of the roll-up.
    buckets: dict[datetime, list[UsagePoint]] = {}
    for point in points:
        key = bucket_start(point.start, granularity).replace(tzinfo=None)
        buckets.setdefault(key, []).append(point)
    splits = {
        moment.replace(tzinfo=None): items
        for moment, items in bucket_endpoints(day_endpoints or {}, granularity).items()
    }
    gaps = Counter(
        bucket_start(day_start(day), granularity).replace(tzinfo=None) for day in missing
    )
    result = []
    for key in sorted(buckets):
        group = buckets[key]
        moment = key.replace(tzinfo=UTC)
        if len(group) == 1:  # a bucket of one point (every day of a daily series): as it is
            [only] = group
            result.append(
                UsagePoint(
                    moment,
                    only.requests,
                    only.quota_requests,
                    only.bytes,
                    only.failed_requests,
                    splits.get(key, ()),
                    gaps[key],
                )
            )
            continue
        byte_values = [p.bytes for p in group if p.bytes is not None]
        failed = [p.failed_requests for p in group]
        result.append(
            UsagePoint(
                start=moment,
                requests=sum(p.requests for p in group),
                quota_requests=sum(p.quota_requests for p in group),
                bytes=sum(byte_values) if byte_values else None,
                failed_requests=None if None in failed else sum(f or 0 for f in failed),
                endpoints=splits.get(key, ()),
                missing_days=gaps[key],
            )
        )
    return tuple(result)


def _daily(
    points: Sequence[UsagePoint],
    day_endpoints: Mapping[date, Sequence[EndpointUsage]],
    missing: Iterable[date],
) -> tuple[UsagePoint, ...] | None:
    """:func:`rollup` by day of points that are one per day at 00:00 UTC (what providers and
    the history store give): each is its own bucket, keyed by its date (hashing thousands of
    aware datetimes costs more than the rest). ``None`` when the points are not like that."""
    by_day: dict[date, UsagePoint] = {}
    for point in points:
        start = point.start
        if start.tzinfo is not UTC or start.hour or start.minute or start.second:
            return None
        day = start.date()
        if start.microsecond or day in by_day:
            return None
        by_day[day] = point
    gaps = set(missing)
    return tuple(
        UsagePoint(
            point.start,
            point.requests,
            point.quota_requests,
            point.bytes,
            point.failed_requests,
            sum_endpoints([day_endpoints[day]]) if day in day_endpoints else (),
            1 if day in gaps else 0,
        )
        for day, point in sorted(by_day.items())
    )


SPLIT_GRANULARITIES = (Granularity.DAY, Granularity.WEEK, Granularity.MONTH)
"""Buckets an endpoint split is given for: a day's split cannot be cut into hours."""


def bucket_endpoints(
    day_endpoints: Mapping[date, Sequence[EndpointUsage]], granularity: Granularity
) -> dict[datetime, tuple[EndpointUsage, ...]]:
    """Each bucket's usage by endpoint: the splits of its days added up per endpoint (and quota
    flag), requests descending, then by endpoint name. A bucket none of whose days has a split
    is not in the answer; nor is any bucket finer than a day."""
    if granularity not in SPLIT_GRANULARITIES:
        return {}
    groups: dict[date, list[Sequence[EndpointUsage]]] = {}  # keyed by the bucket's first day
    for day, items in day_endpoints.items():
        groups.setdefault(bucket_start(day_start(day), granularity).date(), []).append(items)
    return {day_start(first): sum_endpoints(parts) for first, parts in groups.items()}


def sum_endpoints(parts: Iterable[Sequence[EndpointUsage]]) -> tuple[EndpointUsage, ...]:
    """Endpoint totals over disjoint sets of days (:func:`add_endpoint` per endpoint and quota
    flag), requests descending, then by endpoint name, quota-consuming first."""
    parts = list(parts)
    if len(parts) == 1 and len({(e.endpoint, e.consumes_quota) for e in parts[0]}) == len(parts[0]):
        # One day's split, each endpoint once (every bucket of a daily series): only ordered.
        return tuple(sorted(parts[0], key=_endpoint_order))
    totals: dict[tuple[str, bool], EndpointUsage] = {}
    for items in parts:
        for item in items:
            key = (item.endpoint, item.consumes_quota)
            found = totals.get(key)
            totals[key] = item if found is None else add_endpoint(found, item)
    return tuple(sorted(totals.values(), key=_endpoint_order))


def _endpoint_order(item: EndpointUsage) -> tuple[int, str, bool]:
    return (-item.requests, item.endpoint, not item.consumes_quota)
