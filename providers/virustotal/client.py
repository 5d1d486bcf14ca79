"""VirusTotal client: group or user API usage (per day and endpoint) and quotas.

Usage ranges longer than the vendor's 30-day maximum are split into ≤ 30-day calls, run a few at
a time, and merged; days before the vendor's retention window are not asked for and come back as
unknown (missing), never as zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import httpx

from gateway.domain import (
    AccountScope,
    EndpointUsage,
    Granularity,
    Limits,
    ProviderId,
    Quota,
    QuotaUnit,
    QuotaWindow,
    UsagePoint,
    UsageReport,
    day_start,
    days_between,
    first_of_next_month,
)
from gateway.errors import AuthFailed, RequestRejected
from providers.base import BaseProvider, ConfigField, as_count, as_object

MAX_RANGE_DAYS = 30
DEFAULT_RETENTION_DAYS = 60
DAILY_KEYS = {"daily", "daily_endpoints_not_consuming_quota"}
TOTAL_KEYS = {"total", "total_endpoints_not_consuming_quota"}
USAGE_KEYS = DAILY_KEYS | TOTAL_KEYS
"""All four are optional in the wild, but an answer with none of them is not a usage answer."""
CONCURRENT_CALLS = 3
"""How many ≤ 30-day calls of one long range run at once."""


def normalise_endpoint(name: str) -> str:
    """``files`` and ``/api/v3/(files)`` both become ``/api/v3/(files)``."""
    name = name.strip()
    return name if name.startswith("/") else f"/api/v3/({name})"


def chunks(start: date, end: date, size: int = MAX_RANGE_DAYS) -> list[tuple[date, date]]:
    """``start``..``end`` cut into consecutive ranges of at most ``size`` days."""
    result = []
    while start <= end:
        last = min(start + timedelta(days=size - 1), end)
        result.append((start, last))
        start = last + timedelta(days=1)
    return result


def quota_window(name: str) -> QuotaWindow:
    for suffix, window in (
        ("_hourly", QuotaWindow.HOUR),
        ("_daily", QuotaWindow.DAY),
        ("_monthly", QuotaWindow.MONTH),
    ):
        if name.endswith(suffix):
            return window
    return QuotaWindow.FIXED_TERM  # standing allowances (hunting rules, storage) do not reset


def next_reset(window: QuotaWindow, now: datetime) -> datetime | None:
    if window is QuotaWindow.HOUR:
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if window is QuotaWindow.DAY:
        return day_start(now.date() + timedelta(days=1))
    if window is QuotaWindow.MONTH:
        return day_start(first_of_next_month(now.date()))
    return None


def unwrap(body: object) -> dict[str, Any]:
    """The payload with or without VirusTotal's ``{"data": ...}`` envelope."""
    payload = as_object(body, "answer")
    if "data" in payload and isinstance(payload["data"], dict):
        return payload["data"]
    return payload


class VirusTotalProvider(BaseProvider):
    """A VirusTotal group (scope GROUP) or user (scope USER)."""

    id = ProviderId("virustotal")
    display_name = "VirusTotal"
    description = "VirusTotal API v3."
    default_base_url = "https://www.virustotal.com"
    fields: ClassVar[tuple[ConfigField, ...]] = (
        ConfigField("api_key", required=True, secret=True, help="x-apikey value"),
        ConfigField("group", help="a group id (scope GROUP); the key must be its administrator"),
        ConfigField("user", help="a user id or API key (scope USER)"),
        ConfigField(
            "retention_days",
            integer=(1, 3650),
            help="how many days back the vendor keeps usage (default 60)",
        ),
    )

    @classmethod
    def validate_options(cls, options: Mapping[str, str]) -> tuple[str, str] | None:
        if ("group" in options) == ("user" in options):
            return ("group", "give exactly one of group or user")
        return None

    @property
    def scope(self) -> AccountScope:
        return AccountScope.GROUP if "group" in self.account.options else AccountScope.USER

    @property
    def entity_path(self) -> str:
        if "group" in self.account.options:
            return f"/api/v3/groups/{self.account.options['group']}"
        return f"/api/v3/users/{self.account.options['user']}"

    @property
    def retention_days(self) -> int:
        return int(self.account.options.get("retention_days", DEFAULT_RETENTION_DAYS))

    def auth_headers(self) -> dict[str, str]:
        return {"x-apikey": self.account.secret("api_key")}

    def refusal(self, response: httpx.Response, detail: str | None) -> AuthFailed | RequestRejected:
        """A 403 ``ForbiddenError`` is a key that is no administrator of the group (or reads
        another user): the account's config, not its credentials, which VirusTotal rejects
        with a 401."""
        if response.status_code == 403:
            return RequestRejected(self.display_name, status=403, detail=detail)
        return super().refusal(response, detail)

    # -- quotas ----------------------------------------------------------------------------

    async def limits(self) -> Limits:
        if self.scope is AccountScope.GROUP:
            answer = await self.get_json(self.entity_path)
            with self.parsing():
                attributes = as_object(unwrap(answer.body)["attributes"], "attributes")
                entries = as_object(attributes["quotas"], "quotas")
                quotas = [self._quota(name, entry) for name, entry in entries.items()]
        else:
            answer = await self.get_json(f"{self.entity_path}/overall_quotas")
            with self.parsing():
                quotas = [
                    self._quota(name, self._user_part(as_object(entry, name)))
                    for name, entry in unwrap(answer.body).items()
                ]
        return Limits(quotas=tuple(q for q in quotas if q is not None))

    @staticmethod
    def _user_part(entry: dict[str, Any]) -> object:
        """A user's own allowance, or the group's it draws on when it has none."""
        return entry.get("user") or entry.get("group")

    def _quota(self, name: str, raw: object) -> Quota | None:
        if raw is None:
            return None
        entry = as_object(raw, f"quota {name}")
        window = quota_window(name)
        return Quota(
            id=f"{self.account.id}:{name}",
            account_id=self.account.id,
            name=name,
            window=window,
            unit=QuotaUnit.BYTES if name.endswith("_bytes") else QuotaUnit.REQUESTS,
            limit=as_count(entry["allowed"], f"{name}.allowed") if "allowed" in entry else None,
            used=as_count(entry["used"], f"{name}.used") if "used" in entry else None,
            resets_at=next_reset(window, self.clock().astimezone(UTC)),
        )

    # -- usage -----------------------------------------------------------------------------

    snapshot_days = DEFAULT_RETENTION_DAYS

    def retention_start(self) -> date:
        """The oldest day the vendor still keeps."""
        return self.live_since(self.clock().date())

    def live_since(self, today: date) -> date:
        return today - timedelta(days=self.retention_days - 1)

    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        first = max(start, self.retention_start())
        pieces = chunks(first, end) if first <= end else []
        gate = asyncio.Semaphore(CONCURRENT_CALLS)

        async def fetch(piece: tuple[date, date]) -> Any:
            async with gate:
                answer = await self.get_json(
                    f"{self.entity_path}/api_usage",
                    {
                        "start_date": piece[0].strftime("%Y%m%d"),
                        "end_date": piece[1].strftime("%Y%m%d"),
                    },
                )
                return answer.body

        bodies = await asyncio.gather(*(fetch(p) for p in pieces))
        with self.parsing():
            return self._merge(bodies, pieces)

    def _merge(self, bodies: list[Any], pieces: list[tuple[date, date]]) -> UsageReport:
        consuming: dict[date, int] = {}
        every: dict[date, int] = {}
        endpoints: dict[tuple[str, bool], int] = {}
        per_day: dict[date, dict[tuple[str, bool], int]] = {}
        known: set[date] = set()
        listed: set[date] = set()
        for body, (first, last) in zip(bodies, pieces, strict=True):
            payload = unwrap(body)
            if payload and not USAGE_KEYS & payload.keys():
                raise ValueError(f"no usage maps in the answer (keys: {sorted(payload)[:5]})")
            if not DAILY_KEYS & payload.keys() and TOTAL_KEYS & payload.keys():
                # Totals without days: the range's endpoints are known, its days are not.
                for key, quota in (("total", True), ("total_endpoints_not_consuming_quota", False)):
                    for name, value in as_object(payload.get(key) or {}, key).items():
                        endpoint = (normalise_endpoint(str(name)), quota)
                        endpoints[endpoint] = endpoints.get(endpoint, 0) + as_count(value, key)
                continue
            for key, quota in (("daily", True), ("daily_endpoints_not_consuming_quota", False)):
                for day_text, counts in as_object(payload.get(key) or {}, key).items():
                    day = date.fromisoformat(day_text)
                    if not first <= day <= last:
                        continue  # not what this call asked for
                    listed.add(day)
                    for name, value in as_object(counts or {}, f"{key}[{day_text}]").items():
                        count = as_count(value, f"{key}[{day_text}][{name}]")
                        endpoint = (normalise_endpoint(str(name)), quota)
                        endpoints[endpoint] = endpoints.get(endpoint, 0) + count
                        split = per_day.setdefault(day, {})
                        split[endpoint] = split.get(endpoint, 0) + count
                        every[day] = every.get(day, 0) + count
                        if quota:
                            consuming[day] = consuming.get(day, 0) + count
            # The vendor answered for the whole range of the call: a day it left out is a day
            # without use, or one it no longer keeps (its real retention may be shorter than
            # configured), so it counts as zero unless the history store knows better.
            known.update(days_between(first, last))
        points = tuple(
            UsagePoint(
                start=day_start(day),
                requests=every.get(day, 0),
                quota_requests=consuming.get(day, 0),
            )
            for day in sorted(known)
        )
        return UsageReport(
            points=points,
            endpoints=tuple(EndpointUsage(e, n, q) for (e, q), n in endpoints.items()),
            known_days=frozenset(known),
            absent_days=frozenset(known - listed),
            day_endpoints={
                day: tuple(
                    EndpointUsage(e, n, q) for (e, q), n in sorted(per_day.get(day, {}).items())
                )
                for day in known
            },
        )
