"""ZKScore client: per-API-key usage statistics from ``GET /v1/developer/usage``.

The vendor answers for rolling timeframes counted back from now (1h, 24h, 7d, 30d, 90d, 1y,
all). For a range of days the client asks for the smallest timeframe whose window covers the
range's first day whole, keeps only the buckets that lie wholly inside the window and the range,
and walks every page of the endpoint breakdown. Totals, failures and latency come from those
buckets, so they cover exactly the range; the endpoint, error-type and per-key breakdowns cover the
vendor's window, which the answer names as its ``breakdownPeriod``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from gateway.domain import (
    AccountScope,
    EndpointUsage,
    ErrorCount,
    Granularity,
    KeyUsage,
    Limits,
    Period,
    ProviderId,
    Quota,
    QuotaUnit,
    QuotaWindow,
    RateLimit,
    UsageDetails,
    UsagePoint,
    UsageReport,
    VendorAlert,
    bucket_start,
    day_start,
)
from providers.base import (
    BaseProvider,
    ConfigField,
    as_count,
    as_list,
    as_object,
    as_time,
)

USAGE_PATH = "/v1/developer/usage"
PAGE_SIZE = 1000
MAX_PAGES = 50
TIMEFRAMES: tuple[tuple[str, timedelta | None], ...] = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
    ("90d", timedelta(days=90)),
    ("1y", timedelta(days=365)),
    ("all", None),
)
LONGEST = {  # the longest timeframe the vendor allows per granularity
    Granularity.MINUTE: "24h",
    Granularity.HOUR: "90d",
    Granularity.DAY: "all",
}
WIRE = {Granularity.MINUTE: "minute", Granularity.HOUR: "hour", Granularity.DAY: "day"}


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is not a number")
    return float(value)


def _fraction(percent: object, what: str) -> float:
    """A vendor percentage (0-100) as a fraction."""
    return round(_number(percent, what) / 100, 6)


def error_rate(item: Mapping[str, Any], failed_key: str, requests: int) -> float | None:
    """The share of failed requests: exact from a failure count where the vendor gives one,
    else from its two-decimal ``successRate``."""
    if not requests:
        return None
    if item.get(failed_key) is not None:
        return as_count(item[failed_key], failed_key) / requests
    rate = item.get("successRate")
    return None if rate is None else round(1 - _fraction(rate, "successRate"), 6)


def timeframe_for(start: date, granularity: Granularity, now: datetime) -> str | None:
    """The smallest timeframe whose window holds ``start`` whole, at ``granularity``."""
    window_end = now.replace(second=0, microsecond=0)
    allowed = [name for name, _ in TIMEFRAMES]
    allowed = allowed[: allowed.index(LONGEST[granularity]) + 1]
    for name, span in TIMEFRAMES:
        if name not in allowed:
            break
        if span is None or window_end - span <= day_start(start):
            return name
    return None


class ZkScoreProvider(BaseProvider):
    """A ZKScore developer account: every key, or one key (``key_id``)."""

    id = ProviderId("zkscore")
    display_name = "ZKScore"
    description = "ZKScore developer API."
    default_base_url = "https://api-mainnet.onzks.com"
    fields: ClassVar[tuple[ConfigField, ...]] = (
        ConfigField("api_key", required=True, secret=True, help="Bearer token"),
        ConfigField("key_id", help="one API key id (key_1); default: every key of the account"),
    )
    native_granularities = frozenset({Granularity.MINUTE, Granularity.HOUR, Granularity.DAY})
    outbound_rate = (60, 60.0)  # the free tier's, until the first answer tells the tier's
    rate_header_period = 60.0

    @property
    def scope(self) -> AccountScope:
        return AccountScope.API_KEY if "key_id" in self.account.options else AccountScope.USER

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.account.secret('api_key')}"}

    def _params(self, **params: str) -> dict[str, str]:
        key_id = self.account.options.get("key_id")
        return {**params, "keyId": key_id} if key_id else params

    def check_range(self, start: date, end: date, granularity: Granularity) -> str | None:
        if timeframe_for(start, granularity, self.clock()) is None:
            span = {"24h": "24 hours", "90d": "90 days"}[LONGEST[granularity]]
            return (
                f"ZKScore keeps per-{granularity.value} data for the last {span} only; "
                f"ask for a later start or a coarser granularity"
            )
        return None

    # -- quotas, rate limits, alerts -------------------------------------------------------

    async def limits(self) -> Limits:
        answer = await self.get_json(
            USAGE_PATH,
            self._params(
                timeframe="24h",
                granularity="day",
                includeEndpoints="false",
                includeLatency="false",
            ),
        )
        with self.parsing():
            body = as_object(answer.body, "answer")
            return self._limits(body, as_time(body["timestamp"]))

    def _limits(self, body: dict[str, Any], now: datetime) -> Limits:
        rates = as_object(body["rateLimits"], "rateLimits")
        current = as_object(rates["current"], "rateLimits.current")
        used = as_object(rates.get("usage", {}), "rateLimits.usage")
        minute = now.replace(second=0, microsecond=0)

        def used_of(name: str) -> int | None:
            return as_count(used[name], f"usage.{name}") if name in used else None

        daily = Quota(
            id=f"{self.account.id}:daily-requests",
            account_id=self.account.id,
            name="Daily requests",
            window=QuotaWindow.DAY,
            unit=QuotaUnit.REQUESTS,
            limit=as_count(current["requestsPerDay"], "requestsPerDay"),
            used=used_of("requestsPerDay"),
            resets_at=day_start(now.date() + timedelta(days=1)),
        )
        rate_limits = [
            RateLimit(
                name="Requests per minute",
                window=QuotaWindow.MINUTE,
                limit=as_count(current["requestsPerMinute"], "requestsPerMinute"),
                used=used_of("requestsPerMinute"),
                resets_at=minute + timedelta(minutes=1),
            )
        ]
        per_hour = as_count(current.get("requestsPerHour", 0), "requestsPerHour")
        if per_hour > 0:  # 0: the vendor sets no hourly limit
            rate_limits.append(
                RateLimit(
                    name="Requests per hour",
                    window=QuotaWindow.HOUR,
                    limit=per_hour,
                    used=used_of("requestsPerHour"),
                    resets_at=bucket_start(now, Granularity.HOUR) + timedelta(hours=1),
                )
            )
        alerts = tuple(
            VendorAlert(
                type=str(alert["type"]),
                message=str(alert.get("message", "")),
                priority=str(alert["priority"]) if alert.get("priority") else None,
                recommendation=str(alert["recommendation"])
                if alert.get("recommendation")
                else None,
            )
            for alert in (as_object(a, "alert") for a in as_list(body.get("alerts", []), "alerts"))
        )
        tier = rates.get("tier")
        return Limits(
            quotas=(daily,),
            rate_limits=tuple(rate_limits),
            plan=tier if isinstance(tier, str) else None,
            alerts=alerts,
        )

    # -- usage -----------------------------------------------------------------------------

    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        timeframe = timeframe_for(start, granularity, self.clock())
        if timeframe is None:  # the service asks check_range first; the clock moved since
            timeframe = LONGEST[granularity]
        pages: list[dict[str, Any]] = []
        offset = 0
        for _ in range(MAX_PAGES):
            answer = await self.get_json(
                USAGE_PATH,
                self._params(
                    timeframe=timeframe,
                    granularity=WIRE[granularity],
                    sortBy="requests",
                    order="desc",
                    limit=str(PAGE_SIZE),
                    offset=str(offset),
                ),
            )
            with self.parsing():
                body = as_object(answer.body, "answer")
                pages.append(body)
                paging = as_object(body.get("pagination", {}), "pagination")
                breakdown = as_object(body.get("breakdown", {}), "breakdown")
                served = len(as_list(breakdown.get("byEndpoint", []), "byEndpoint"))
                if not paging.get("hasMore") or served == 0:
                    break
                offset += served  # the vendor may serve fewer than asked
        with self.parsing():
            return self._usage(pages, timeframe, start, end)

    def _usage(
        self,
        pages: list[dict[str, Any]],
        timeframe: str,
        start: date,
        end: date,
    ) -> UsageReport:
        first = pages[0]
        window_end = as_time(first["timestamp"]).replace(second=0, microsecond=0)
        span = dict(TIMEFRAMES)[timeframe]
        series = [
            as_object(b, "timeSeries entry") for b in as_list(first["timeSeries"], "timeSeries")
        ]
        window_start = window_end - span if span is not None else None
        if window_start is None and series:
            window_start = as_time(series[0]["timestamp"])
        points = []
        latency_total = 0.0
        peak: float | None = None
        for bucket in series:
            moment = as_time(bucket["timestamp"])
            if window_start is not None and moment < window_start:
                continue  # partly before the window: not the whole bucket
            if not start <= moment.date() <= end:
                continue
            requests = as_count(bucket["requests"], "timeSeries.requests")
            points.append(
                UsagePoint(
                    start=moment,
                    requests=requests,
                    quota_requests=requests,
                    bytes=(
                        as_count(bucket["dataTransferred"], "dataTransferred")
                        if "dataTransferred" in bucket
                        else None
                    ),
                    failed_requests=(
                        as_count(bucket["failedRequests"], "failedRequests")
                        if "failedRequests" in bucket
                        else None
                    ),
                )
            )
            if "averageLatency" in bucket:
                latency_total += _number(bucket["averageLatency"], "averageLatency") * requests
            if bucket.get("peakLatency") is not None and requests:
                value = _number(bucket["peakLatency"], "peakLatency")
                peak = value if peak is None else max(peak, value)
        requests_total = sum(p.requests for p in points)
        endpoints = tuple(
            self._endpoint(as_object(item, "byEndpoint entry"))
            for page in pages
            for item in as_list(
                as_object(page.get("breakdown", {}), "breakdown").get("byEndpoint", []),
                "byEndpoint",
            )
        )
        breakdown = as_object(first.get("breakdown", {}), "breakdown")
        errors = as_object(first.get("errors", {}), "errors")
        details = UsageDetails(
            error_types=tuple(
                ErrorCount(
                    str(item["type"]),
                    as_count(item["count"], "byType.count"),
                    str(item["description"]) if item.get("description") else None,
                )
                for item in (
                    as_object(i, "byType entry")
                    for i in as_list(errors.get("byType", []), "byType")
                )
            ),
            average_latency_ms=(
                round(latency_total / requests_total, 2)
                if requests_total and latency_total
                else None
            ),
            peak_latency_ms=peak,
            keys=tuple(
                self._key(as_object(item, "byKey entry"))
                for item in as_list(breakdown.get("byKey", []), "byKey")
            ),
            breakdown_period=Period(window_start, window_end) if window_start else None,
        )
        return UsageReport(
            points=tuple(points),
            endpoints=endpoints,
            known_days=frozenset(p.start.date() for p in points),
            details=details,
        )

    @staticmethod
    def _endpoint(item: Mapping[str, Any]) -> EndpointUsage:
        latency = item.get("averageLatency")
        data = item.get("dataTransferred")
        requests = as_count(item["requests"], "byEndpoint.requests")
        return EndpointUsage(
            endpoint=str(item["endpoint"]),
            requests=requests,
            consumes_quota=True,
            error_rate=error_rate(item, "errors", requests),
            average_latency_ms=None if latency is None else _number(latency, "averageLatency"),
            bytes=None if data is None else as_count(data, "dataTransferred"),
        )

    @staticmethod
    def _key(item: Mapping[str, Any]) -> KeyUsage:
        requests = as_count(item["requests"], "byKey.requests")
        latency = item.get("averageLatency")
        return KeyUsage(
            key_id=str(item["keyId"]),
            name=str(item["name"]) if item.get("name") else None,
            requests=requests,
            error_rate=error_rate(item, "failedRequests", requests),
            average_latency_ms=(
                _number(latency, "averageLatency") if latency is not None and requests else None
            ),
        )
