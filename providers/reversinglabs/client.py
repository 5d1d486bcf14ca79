"""ReversingLabs client: Spectra Intelligence customer usage (TCA-9999) and quota limits.

Always asks for JSON. Usage comes from the daily paths (ranges over 365 days are split) and,
for whole months, from the monthly paths. The limits answer carries no "used" figure: each
quota's ``used`` is derived by summing the usage of the limit's products over the limit's current
period (today for daily limits, this month for monthly ones, the license term for fixed-term ones),
in queries for count limits and in bytes for size limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from gateway.domain import (
    AccountScope,
    Allocation,
    Allowance,
    EndpointUsage,
    Entitlement,
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
from gateway.errors import AuthFailed, RequestRejected, UpstreamError
from providers.base import BaseProvider, ConfigField, as_count, as_list, as_object

PREFIX = "/api/customer_usage/v1"
MAX_DAILY_DAYS = 365
MAX_MONTHS_PER_CALL = 12
CONCURRENT_CALLS = 3
UNITS = {"byte": 1, "bytes": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
"""Decimal units: the vendor's own allocation example splits 5 GB as 3e9 + 2e9 bytes."""
WINDOWS = {
    "daily": QuotaWindow.DAY,
    "monthly": QuotaWindow.MONTH,
    "date_range": QuotaWindow.FIXED_TERM,
}


def _day(value: object) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def to_bytes(size: object, what: str) -> int:
    """``{"value": 1000, "unit": "GB"}`` as bytes (decimal units)."""
    entry = as_object(size, what)
    unit = str(entry.get("unit", "byte")).strip().lower()
    if unit not in UNITS:
        raise ValueError(f"{what} has an unknown unit {unit!r}")
    try:
        value = Decimal(str(entry["value"]))
    except InvalidOperation:
        raise ValueError(f"{what} is not a number") from None
    if value < 0 or not value.is_finite():
        raise ValueError(f"{what} is not a size")
    return int(value * UNITS[unit])


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def months_between(start: date, end: date) -> list[date]:
    """The 1st of every month from ``start``'s to ``end``'s."""
    months = []
    month = start.replace(day=1)
    while month <= end:
        months.append(month)
        month = first_of_next_month(month)
    return months


def month_end(month: date) -> date:
    return first_of_next_month(month) - timedelta(days=1)


def unique_ids(quotas: Iterable[Quota]) -> tuple[Quota, ...]:
    """The vendor may list the same products in several limits: number the repeats."""
    seen: dict[str, int] = {}
    result = []
    for quota in quotas:
        seen[quota.id] = seen.get(quota.id, 0) + 1
        if seen[quota.id] > 1:
            quota = replace(quota, id=f"{quota.id}#{seen[quota.id]}")
        result.append(quota)
    return tuple(result)


@dataclass(frozen=True)
class ProductUsage:
    """One product's use in one period."""

    queries: int
    bytes: int | None
    allocation: tuple[tuple[str, int | None], ...] = ()  # (name, used bytes)


def parse_report(raw: object, what: str) -> dict[str, ProductUsage]:
    """A ``usage_report`` list: product name -> its use."""
    products: dict[str, ProductUsage] = {}
    for item in as_list(raw if raw is not None else [], what):
        entry = as_object(item, f"{what} entry")
        name = str(entry["product"]).strip()
        queries = as_count(entry.get("number_of_queries", 0), f"{name} number_of_queries")
        used = entry.get("used_bytes")
        allocation = tuple(
            (
                str(as_object(a, "allocation")["name"]),
                as_count(a["used_bytes"], "allocation used_bytes") if "used_bytes" in a else None,
            )
            for a in as_list(entry.get("allocation", []), "allocation")
        )
        products[name] = ProductUsage(
            queries, None if used is None else as_count(used, f"{name} used_bytes"), allocation
        )
    return products


def parse_periods(rl: dict[str, Any], key: str) -> list[tuple[str, dict[str, ProductUsage]]]:
    """Single (``{key, usage_report}``) or range (``{usage_reports: [...]}``) answers."""
    if "usage_reports" in rl:
        return [
            (
                str(as_object(r, "usage_reports entry")[key]),
                parse_report(r.get("usage_report"), key),
            )
            for r in as_list(rl["usage_reports"], "usage_reports")
        ]
    return [(str(rl[key]), parse_report(rl.get("usage_report"), key))]


class ReversingLabsProvider(BaseProvider):
    """A ReversingLabs Spectra Intelligence user (scope USER) or its whole company (COMPANY)."""

    id = ProviderId("reversinglabs")
    display_name = "ReversingLabs"
    description = "ReversingLabs Spectra Intelligence."
    default_base_url = "https://data.reversinglabs.com"
    fields: ClassVar[tuple[ConfigField, ...]] = (
        ConfigField("username", required=True, secret=True, help="Spectra Intelligence user"),
        ConfigField("password", required=True, secret=True, help="its password"),
        ConfigField("scope", choices=("user", "company"), help="user (default) or company"),
    )
    basic_auth = ("username", "password")

    def refusal(self, response: httpx.Response, detail: str | None) -> AuthFailed | RequestRejected:
        """A 403 is a user whose credentials work but who lacks the Customer Usage entitlement
        (TCA-9999), often with an empty body: the account's config, said in words."""
        if response.status_code == 403:
            detail = detail or "the user is not entitled to the Customer Usage API (TCA-9999)"
            return RequestRejected(self.display_name, status=403, detail=detail)
        return super().refusal(response, detail)

    native_granularities = frozenset({Granularity.DAY, Granularity.MONTH})

    @property
    def scope(self) -> AccountScope:
        if self.account.options.get("scope") == "company":
            return AccountScope.COMPANY
        return AccountScope.USER

    def path(self, kind: str) -> str:
        """``usage/daily`` or ``limits`` -> the user's or the company's path."""
        company = self.scope is AccountScope.COMPANY
        if kind == "limits":
            return f"{PREFIX}/limits/company" if company else f"{PREFIX}/limits"
        head, tail = kind.split("/")
        return f"{PREFIX}/{head}/company/{tail}" if company else f"{PREFIX}/{kind}"

    async def rl(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The ``rl`` object of a JSON answer from ``path``."""
        answer = await self.get_json(path, {**(params or {}), "format": "json"})
        with self.parsing():
            return as_object(as_object(answer.body, "answer")["rl"], "rl")

    # -- usage -----------------------------------------------------------------------------

    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        today = self.clock().astimezone(UTC).date()
        whole = [  # months read from the monthly paths: wholly inside the range (up to today)
            month
            for month in months_between(start, end)
            if granularity is Granularity.MONTH
            and start <= month
            and end >= min(month_end(month), today)
        ]
        month_runs = [
            whole[i : i + MAX_MONTHS_PER_CALL] for i in range(0, len(whole), MAX_MONTHS_PER_CALL)
        ]
        gate = asyncio.Semaphore(CONCURRENT_CALLS)

        async def call(kind: str, params: dict[str, str]) -> dict[str, Any]:
            async with gate:
                return await self.rl(self.path(kind), params)

        day_answers, month_answers = await asyncio.gather(
            asyncio.gather(
                *(
                    call("usage/daily", {"from": a.isoformat(), "to": b.isoformat()})
                    for a, b in self._day_runs(start, end, whole)
                )
            ),
            asyncio.gather(
                *(
                    call("usage/monthly", {"from": f"{m[0]:%Y-%m}", "to": f"{m[-1]:%Y-%m}"})
                    for m in month_runs
                )
            ),
        )
        with self.parsing():
            return self._merge(start, end, day_answers, month_answers)

    @staticmethod
    def _day_runs(start: date, end: date, whole: list[date]) -> list[tuple[date, date]]:
        """Runs of days outside the whole months, cut to at most 365 days each."""
        covered = {d for m in whole for d in days_between(m, month_end(m))}
        runs: list[tuple[date, date]] = []
        for day in days_between(start, end):
            if day in covered:
                continue
            if (
                runs
                and runs[-1][1] == day - timedelta(days=1)
                and (day - runs[-1][0]).days < MAX_DAILY_DAYS
            ):
                runs[-1] = (runs[-1][0], day)
            else:
                runs.append((day, day))
        return runs

    def _merge(
        self,
        start: date,
        end: date,
        day_answers: Iterable[dict[str, Any]],
        month_answers: Iterable[dict[str, Any]],
    ) -> UsageReport:
        periods: dict[date, dict[str, ProductUsage]] = {}
        known: set[date] = set()
        for rl in day_answers:
            for text, products in parse_periods(rl, "date"):
                day = date.fromisoformat(text)
                if start <= day <= end:
                    periods[day] = products
                    known.add(day)
        for rl in month_answers:
            for text, products in parse_periods(rl, "month"):
                month = date.fromisoformat(f"{text}-01")
                if start <= month <= end:
                    periods[month] = products
                    known.update(days_between(month, min(month_end(month), end)))
        metered = any(p.bytes is not None for ps in periods.values() for p in ps.values())
        points = []
        totals: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for moment in sorted(periods):
            products = periods[moment]
            queries = sum(p.queries for p in products.values())
            used = sum(p.bytes or 0 for p in products.values()) if metered else None
            points.append(UsagePoint(day_start(moment), queries, queries, used))
            for name, product in products.items():
                totals[name] = totals.get(name, 0) + product.queries
                if product.bytes is not None:  # only byte-metered products report bytes
                    sizes[name] = sizes.get(name, 0) + product.bytes
        return UsageReport(
            points=tuple(points),
            endpoints=tuple(
                EndpointUsage(name, n, True, bytes=sizes.get(name)) for name, n in totals.items()
            ),
            known_days=frozenset(known),
            # Each period's products: a day's, or a whole month's keyed by its 1st.
            day_endpoints={
                first: tuple(
                    EndpointUsage(n, p.queries, True, bytes=p.bytes)
                    for n, p in periods[first].items()
                )
                for first in periods
            },
        )

    # -- limits ----------------------------------------------------------------------------

    async def limits(self) -> Limits:
        """One round: the limits, the active rulesets and the usage of every period a limit
        may need (today, this month, the fixed terms) are read at once, and only the usage the
        limits turn out to need is used.

        Reading usage ahead costs nothing at the vendor: "This API is not rate limited" (the
        vendor document, ``shared/upstream/seeds/001_1b4edf4e2aa94206.txt``), and the Customer
        Usage product (TCA-9999) is under no quota limit, so the reads spend nothing that a
        quota counts. A speculative read that fails (say ``/usage/date_range`` for a user with
        no fixed-term license answering an error) fails the account only when a limit needs
        it; otherwise its error is dropped.
        """
        today = self.clock().astimezone(UTC).date()
        needs = {
            "daily": ("usage/daily", {"date": today.isoformat()}),
            "monthly": ("usage/monthly", {"month": f"{today:%Y-%m}"}),
            "date_range": ("usage/date_range", {}),
        }
        read, rulesets, *ahead = await asyncio.gather(
            self.rl(self.path("limits")),
            self._active_rulesets(),
            *(self.rl(self.path(kind), params) for kind, params in needs.values()),
            return_exceptions=True,
        )
        for outcome in (read, rulesets):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(read, dict) and (rulesets is None or isinstance(rulesets, int))
        with self.parsing():
            raw_limits = [as_object(item, "limit") for item in as_list(read["limits"], "limits")]
            types = {str(item["limit_type"]) for item in raw_limits}
        usage: dict[str, dict[str, Any]] = {}
        for kind, answer in zip(needs, ahead, strict=True):
            if kind not in types:
                if isinstance(answer, BaseException) and not isinstance(answer, UpstreamError):
                    raise answer  # not the vendor's answer: a fault of ours, or a cancellation
                continue  # read ahead for nothing: its answer, or its failure, is dropped
            if isinstance(answer, BaseException):
                raise answer
            usage[kind] = answer
        with self.parsing():
            period: dict[str, dict[str, ProductUsage]] = {
                t: parse_periods(usage[t], "date" if t == "daily" else "month")[0][1]
                for t in ("daily", "monthly")
                if t in usage
            }
            terms = as_list(usage.get("date_range", {}).get("usage_reports", []), "usage_reports")
            quotas = unique_ids(self._quota(item, period, terms, today) for item in raw_limits)
        return Limits(quotas=quotas, active_rulesets=rulesets)

    async def _active_rulesets(self) -> int | None:
        """Active YARA rulesets of the account's user (the vendor has no company variant)."""
        try:
            rl = await self.rl(f"{PREFIX}/usage/yara")
        except (RequestRejected, AuthFailed):
            return None  # not licensed for YARA hunting: nothing to show
        with self.parsing():
            value = rl.get("number_of_active_rulesets")
            return None if value is None else as_count(value, "number_of_active_rulesets")

    def _quota(
        self,
        item: dict[str, Any],
        period: dict[str, dict[str, ProductUsage]],
        terms: list[Any],
        today: date,
    ) -> Quota:
        limit_type = str(item["limit_type"])
        if limit_type not in WINDOWS:
            raise ValueError(f"unknown limit_type {limit_type!r}")
        window = WINDOWS[limit_type]
        products = tuple(str(p) for p in as_list(item["products"], "products"))
        sized = "limit" not in item and "limit_size" in item
        if sized:
            limit: int | None = to_bytes(item["limit_size"], "limit_size")
        else:
            limit = as_count(item["limit"], "limit") if "limit" in item else None
        starts_on, ends_on = _day(item.get("start_date")), _day(item.get("end_date"))
        usage: dict[str, ProductUsage] = {}
        if window is QuotaWindow.FIXED_TERM:
            used = self._term_used(terms, products, starts_on, ends_on, sized)
        else:
            usage = period[limit_type]
            used = sum(
                (usage[p].bytes or 0) if sized else usage[p].queries for p in products if p in usage
            )
        resets_at = {
            QuotaWindow.DAY: day_start(today + timedelta(days=1)),
            QuotaWindow.MONTH: day_start(first_of_next_month(today)),
        }.get(window)
        kind = "bytes" if sized else "queries"
        codes = "+".join(p.split(" ", 1)[0] for p in products)
        per_file = item.get("limit_size_per_file")
        return Quota(
            id=f"{self.account.id}:{limit_type}:{kind}:{codes}",
            account_id=self.account.id,
            name=f"{limit_type.replace('_', ' ').capitalize()} {kind}: {', '.join(products)}",
            window=window,
            unit=QuotaUnit.BYTES if sized else QuotaUnit.REQUESTS,
            limit=limit,
            used=used,
            resets_at=resets_at,
            starts_on=starts_on,
            ends_on=ends_on,
            products=products,
            vendor_exceeded=_flag(item.get("limit_exceeded")),
            free_flex=self._free_flex(item.get("free_flex")),
            per_file_limit=to_bytes(per_file, "limit_size_per_file") if per_file else None,
            entitlements=self._entitlements(item.get("entitlements")),
            allocations=self._allocations(item.get("allocation"), products, usage),
        )

    @staticmethod
    def _term_used(
        terms: list[Any],
        products: tuple[str, ...],
        starts_on: date | None,
        ends_on: date | None,
        sized: bool,
    ) -> int | None:
        """A fixed-term license's use, from the ``/usage/date_range`` entry for its products."""
        for raw in terms:
            entry = as_object(raw, "date_range entry")
            if {str(p) for p in as_list(entry.get("products", []), "products")} != set(products):
                continue
            if starts_on and _day(entry.get("start_date")) not in (None, starts_on):
                continue
            if ends_on and _day(entry.get("end_date")) not in (None, ends_on):
                continue
            key = "used_bytes" if sized else "count"
            return as_count(entry[key], f"date_range {key}") if key in entry else None
        return None  # the vendor reported no use for this term: unknown, not zero

    @staticmethod
    def _free_flex(raw: object) -> Allowance | None:
        if not raw:
            return None
        entry = as_object(raw, "free_flex")
        if "limit_size" in entry:
            amount, unit = to_bytes(entry["limit_size"], "free_flex.limit_size"), QuotaUnit.BYTES
        else:
            amount, unit = as_count(entry["limit"], "free_flex.limit"), QuotaUnit.REQUESTS
        return Allowance(amount, unit, _day(entry.get("start_date")), _day(entry.get("end_date")))

    @staticmethod
    def _entitlements(raw: object) -> tuple[Entitlement, ...]:
        if not raw:
            return ()
        result = []
        for name, value in as_object(raw, "entitlements").items():
            flag = _flag(value)
            if flag is not None:
                result.append(Entitlement(str(name), enabled=flag))
            else:
                result.append(Entitlement(str(name), amount=as_count(value, f"entitlement {name}")))
        return tuple(result)

    @staticmethod
    def _allocations(
        raw: object, products: tuple[str, ...], usage: dict[str, ProductUsage]
    ) -> tuple[Allocation, ...]:
        if not raw:
            return ()
        result = []
        for item in as_list(raw, "allocation"):
            entry = as_object(item, "allocation")
            name = str(entry["name"])
            shares = [
                used
                for p in products
                if p in usage
                for share, used in usage[p].allocation
                if share == name and used is not None
            ]
            size = entry.get("size")
            result.append(
                Allocation(
                    name=name,
                    limit=to_bytes(size, f"allocation {name}") if size is not None else None,
                    used=sum(shares) if shares else None,
                )
            )
        return tuple(result)
