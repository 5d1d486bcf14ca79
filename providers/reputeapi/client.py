"""ReputeAPI client: ``GET /v1/usage`` -> monthly quota, per-minute rate limits, usage."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from gateway.domain import (
    AccountScope,
    EndpointUsage,
    ErrorCount,
    Granularity,
    Limits,
    ProviderId,
    Quota,
    QuotaUnit,
    QuotaWindow,
    RateLimit,
    UsageDetails,
    UsagePoint,
    UsageReport,
)
from gateway.errors import MalformedResponse
from providers.base import (
    BaseProvider,
    ConfigField,
    VendorAnswer,
    as_count,
    as_list,
    as_object,
    as_time,
)

USAGE_PATH = "/v1/usage"
USAGE_ENDPOINT_LIMIT = 30
"""``/v1/usage`` allows 30 calls per minute on every tier (it does not spend the quota)."""


class ReputeApiProvider(BaseProvider):
    """One ReputeAPI key (scope API_KEY)."""

    id = ProviderId("reputeapi")
    display_name = "ReputeAPI"
    description = "ReputeAPI."
    default_base_url = "https://api.reputeapi.com"
    fields: ClassVar[tuple[ConfigField, ...]] = (
        ConfigField("api_key", required=True, secret=True, help="X-API-Key value (ra_live_...)"),
    )
    native_granularities = frozenset({Granularity.HOUR, Granularity.DAY})
    outbound_rate = (USAGE_ENDPOINT_LIMIT, 60.0)
    rate_header_period = 60.0

    @property
    def scope(self) -> AccountScope:
        return AccountScope.API_KEY

    def auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.account.secret("api_key")}

    async def limits(self) -> Limits:
        answer = await self.get_json(USAGE_PATH)
        with self.parsing():
            return self._limits(answer)

    def _limits(self, answer: VendorAnswer) -> Limits:
        body = as_object(answer.body, "answer")
        quota = as_object(body["quota"], "quota")
        rates = as_object(body["rate_limits"], "rate_limits")
        account = body.get("account")
        plan = account.get("tier") if isinstance(account, dict) else None
        limit = as_count(quota["monthly_limit"], "quota.monthly_limit")
        used = as_count(quota["used"], "quota.used")
        monthly = Quota(
            id=f"{self.account.id}:monthly-requests",
            account_id=self.account.id,
            name="Monthly requests",
            window=QuotaWindow.MONTH,
            unit=QuotaUnit.REQUESTS,
            limit=limit,
            used=used,
            resets_at=as_time(quota["reset_date"]) if quota.get("reset_date") else None,
        )
        rate_limits = [
            RateLimit(
                name="Requests per minute",
                window=QuotaWindow.MINUTE,
                limit=as_count(rates["requests_per_minute"], "rate_limits.requests_per_minute"),
                used=as_count(rates.get("current_minute_usage", 0), "current_minute_usage"),
                resets_at=as_time(rates["next_reset"]) if rates.get("next_reset") else None,
            )
        ]
        usage_limit = self._usage_endpoint_limit(answer)
        if usage_limit is not None:
            rate_limits.append(usage_limit)
        return Limits(
            quotas=(monthly,),
            rate_limits=tuple(rate_limits),
            plan=str(plan) if isinstance(plan, str) else None,
        )

    def _usage_endpoint_limit(self, answer: VendorAnswer) -> RateLimit | None:
        """The ``/v1/usage`` endpoint's own limit, read from the ``X-RateLimit-*`` headers."""
        headers = answer.headers
        try:
            limit = int(headers.get("x-ratelimit-limit", USAGE_ENDPOINT_LIMIT))
            remaining = headers.get("x-ratelimit-remaining")
            reset = headers.get("x-ratelimit-reset")
            used = max(limit - int(remaining), 0) if remaining is not None else None
            resets_at = datetime.fromtimestamp(int(reset), UTC) if reset is not None else None
        except (ValueError, OverflowError, OSError):
            return None
        return RateLimit(
            name=f"{USAGE_PATH} requests per minute",
            window=QuotaWindow.MINUTE,
            limit=limit,
            used=used,
            resets_at=resets_at,
            endpoints=(USAGE_PATH,),
        )

    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        wire = "hour" if granularity is Granularity.HOUR else "day"
        answer = await self.get_json(
            USAGE_PATH,
            {"start_date": start.isoformat(), "end_date": end.isoformat(), "granularity": wire},
        )
        with self.parsing():
            return self._usage(answer.body, start, end)

    def _usage(self, raw: Any, start: date, end: date) -> UsageReport:
        body = as_object(raw, "answer")
        points: dict[datetime, UsagePoint] = {}
        for entry in as_list(body["daily_breakdown"], "daily_breakdown"):
            item = as_object(entry, "daily_breakdown entry")
            moment = as_time(item["date"])
            if not start <= moment.date() <= end:
                continue  # outside what we asked for: not ours to count
            requests = as_count(item["requests"], "daily_breakdown.requests")
            failed = (
                as_count(item["failed"], "daily_breakdown.failed") if "failed" in item else None
            )
            if moment in points:
                raise MalformedResponse(self.display_name, detail=f"{item['date']} listed twice")
            points[moment] = UsagePoint(moment, requests, requests, failed_requests=failed)
        summary = as_object(body["summary"], "summary")
        endpoints = tuple(
            sorted(
                (
                    EndpointUsage(
                        endpoint=str(path),
                        requests=as_count(n, f"summary.endpoints[{path}]"),
                        consumes_quota=path != USAGE_PATH,
                    )
                    for path, n in as_object(summary.get("endpoints", {}), "endpoints").items()
                ),
                key=lambda e: (-e.requests, e.endpoint),
            )
        )
        ordered = tuple(points[m] for m in sorted(points))
        return UsageReport(
            points=ordered,
            endpoints=endpoints,
            known_days=frozenset(p.start.date() for p in ordered),
            details=self._details(body, summary),
        )

    @staticmethod
    def _details(body: dict[str, Any], summary: dict[str, Any]) -> UsageDetails:
        errors = body.get("errors")
        by_code = as_object(errors.get("by_code", {}), "errors.by_code") if errors else {}
        latency = summary.get("average_response_time_ms")
        failed = summary.get("failed_requests")
        return UsageDetails(
            failed_requests=None if failed is None else as_count(failed, "failed_requests"),
            error_types=tuple(
                ErrorCount(str(code), as_count(n, f"errors.by_code[{code}]"))
                for code, n in by_code.items()
            ),
            average_latency_ms=None if latency is None else float(latency),
        )
