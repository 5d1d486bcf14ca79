"""The ReversingLabs emulator: Spectra Intelligence customer usage (TCA-9999) and quota limits.

Serves the nine ``GET /api/customer_usage/v1/...`` paths of ``shared/upstream/reversinglabs.md``:
``/usage/daily``, ``/usage/company/daily``, ``/usage/monthly``, ``/usage/company/monthly``,
``/usage/date_range``, ``/usage/company/date_range``, ``/usage/yara``, ``/limits`` and
``/limits/company``, with HTTP Basic auth, the TCA-9999 entitlement (403), ``format=xml|json``
(XML by default; both forms come from one JSON-shaped answer), parameter validation (400, plain
text) and 404 for other paths.

Data is generated per user, day and product from the seed (:class:`ReversingLabsData`); every
figure the emulator answers (monthly sums, company sums, date-range totals, ``limit_exceeded``) is
a sum of those days, so tests can recompute each number. The company ``acme`` has the users
``acme_alice``, ``acme_bob``, ``acme_carol`` and ``acme_noent`` (no TCA-9999 entitlement); the
company ``initech`` has ``initech_dan``. ACME's monthly ``TCA-0101 File Reputation`` count is above
2^31 in every complete month.

Decisions where the documents are silent:

* Today is reported as far as it has gone: a day's seeded total is spread evenly over its 1,440
  minutes and today's figures are ``total * elapsed_minutes // 1440`` (per allocation for the
  allocation-split product, whose totals are the sums of its allocations). The current month is
  its complete days plus that part of today.
* Days and months after today are listed with an empty ``usage_report`` (not refused); so are days
  before a user's account existed (``User.since``). There is no retention limit in the past.
* ``from``/``to`` of the daily paths span at most 365 days, of the monthly paths at most 36 months
  (both inclusive). ``from`` equal to ``to`` is a one-entry range answer (``usage_reports``).
  An empty value (``date=``) is malformed. ``format`` is matched case-insensitively.
* Check order: unknown path (404), method other than GET (405, ``Allow: GET``), credentials (401),
  entitlement (403, empty body), ``format`` (400), then the other parameters (400).
* Every entitled user may read the company paths (the documents name no company role);
  ``acme_alice`` is listed in every ACME limit, so her ``/limits`` equals ``/limits/company``.
* ``limit_exceeded`` is ``used >= capacity``: ``used`` is the summed usage of the limit's products
  by the limit's listed users in its period (today for ``daily``, this calendar month so far for
  ``monthly``, ``start_date`` to today capped at ``end_date`` for ``date_range``), in queries for
  ``limit`` and bytes for ``limit_size``; the capacity of a ``limit_size`` grows by the
  ``free_flex`` size on days inside the free-flex term. It is the license's verdict, the same on
  ``/limits`` and ``/limits/company``.
* A monthly limit resets on the calendar month even when its term starts mid-month; licenses are
  listed whatever their term (the table is the account's current provisioning).
* ``/usage/date_range`` lists the ``date_range`` licenses that list the caller, with the caller's
  own usage; ``/usage/company/date_range`` lists all of the company's, summed over their users.
  ``used_bytes`` is present when a license's products are byte-metered.
* Each product is used only by users listed on its limits (``TCA-9999`` is under no limit), so a
  company's summed usage of a limit's products equals what ``limit_exceeded`` compares.
* The byte-metered ``TCAI-0011 Sample Submission Counter`` splits its usage between the
  allocations ``Portal`` and ``API``; an allocation without usage that day is left out.
* ``/usage/yara`` returns a seeded constant per user (0 for users without ``TCA-0303``).
* Error bodies are short plain text; 401 carries ``WWW-Authenticate``; a fault's 429 carries
  ``Retry-After`` (the API itself is not rate limited); a wrong-shape fault answers a JSON list.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from gateway.domain import days_between, first_of_next_month, utc_now
from providers.emulation import Emulator, EmulatorSpec, Request, Response

PREFIX = "/api/customer_usage/v1"
REALM = 'Basic realm="Spectra Intelligence"'
MAX_RANGE_DAYS = 365
MAX_RANGE_MONTHS = 36
MINUTES_PER_DAY = 1440
WEEKEND_FACTOR = 0.55
ALLOCATIONS = ("Portal", "API")
UNITS: dict[str, int] = {
    "byte": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}
"""Decimal units: 1 GB = 10^9 bytes."""

REPUTATION = "TCA-0101 File Reputation"
RLDATA = "TCA-0104 RLDATA"
RHA = "TCA-0301 RHA Functional Similarity"
YARA = "TCA-0303 Yara Hunting"
SUBMISSIONS = "TCAI-0011 Sample Submission Counter"
CUSTOMER_USAGE = "TCA-9999"


@dataclass(frozen=True)
class Product:
    """A Spectra Intelligence product and how much a whole company uses it."""

    name: str
    daily_mean: int
    """Queries on a weekday by all users of a product (their ``shares`` sum to 1)."""
    idle_rate: float
    """Chance a user does not use it on a weekday (twice that at weekends)."""
    bytes_per_query: int | None = None
    """Mean bytes per query for byte-metered products; ``None``: not byte-metered."""


PRODUCTS: tuple[Product, ...] = (
    Product(REPUTATION, 95_000_000, 0.0),
    Product(RLDATA, 3_200_000, 0.0),
    Product(RHA, 900, 0.1),
    Product(YARA, 1_500, 0.05),
    Product(SUBMISSIONS, 1_800, 0.05, bytes_per_query=20_000_000),
    Product(CUSTOMER_USAGE, 150, 0.2),
)
PRODUCT_NAMES = tuple(p.name for p in PRODUCTS)
BYTE_METERED = frozenset(p.name for p in PRODUCTS if p.bytes_per_query is not None)


@dataclass(frozen=True)
class User:
    """A Spectra Intelligence account."""

    name: str
    password: str
    company: str
    shares: Mapping[str, float]
    """Product name -> this user's share of the product's ``daily_mean``."""
    entitled: bool = True
    """Holds TCA-9999 (Customer Usage); without it every path answers 403."""
    since: date = date(2024, 1, 1)
    """The first day with usage."""
    away_rate: float = 0.0
    """Chance of a day without any usage at all."""


DEFAULT_USERS: tuple[User, ...] = (
    User(
        "acme_alice",
        "rl_demo_alice",
        "acme",
        {
            REPUTATION: 0.45,
            RLDATA: 0.5,
            RHA: 1.0,
            YARA: 0.4,
            SUBMISSIONS: 0.6,
            CUSTOMER_USAGE: 0.5,
        },
    ),
    User(
        "acme_bob",
        "rl_demo_bob",
        "acme",
        {REPUTATION: 0.3, RLDATA: 0.3, YARA: 0.35, SUBMISSIONS: 0.4, CUSTOMER_USAGE: 0.3},
    ),
    User(
        "acme_carol",
        "rl_demo_carol",
        "acme",
        {REPUTATION: 0.15, RLDATA: 0.2, YARA: 0.25, CUSTOMER_USAGE: 0.2},
        away_rate=0.06,
    ),
    User("acme_noent", "rl_demo_noent", "acme", {REPUTATION: 0.1}, entitled=False),
    User(
        "initech_dan",
        "rl_demo_dan",
        "initech",
        {REPUTATION: 0.02, RLDATA: 0.01, CUSTOMER_USAGE: 0.05},
        since=date(2025, 6, 2),
    ),
)


@dataclass(frozen=True)
class Size:
    """A byte size as the vendor writes it: ``{"value": 1000, "unit": "GB"}`` (decimal units)."""

    value: int
    unit: str = "byte"

    @property
    def bytes(self) -> int:
        return self.value * UNITS[self.unit]

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}


@dataclass(frozen=True)
class FreeFlex:
    """An extra allowance that resets with the license's quota, valid from ``start`` to ``end``."""

    size: Size
    start: date
    end: date


@dataclass(frozen=True)
class Limit:
    """One limit object of ``/limits``: a quota shared by ``users`` over ``products``."""

    id: str
    """Our name for it (tests use it); not part of the vendor's answer."""
    company: str
    limit_type: str  # "daily", "monthly" or "date_range"
    products: tuple[str, ...]
    users: tuple[str, ...]
    limit: int | None = None
    limit_size: Size | None = None
    start: date | None = None
    end: date | None = None
    free_flex: FreeFlex | None = None
    limit_size_per_file: Size | None = None
    entitlements: tuple[tuple[str, bool | int], ...] = ()
    allocation: tuple[tuple[str, Size], ...] = ()

    @property
    def counts_bytes(self) -> bool:
        """Whether the limit is on bytes (``limit_size``) rather than queries (``limit``)."""
        return self.limit is None

    def to_json(self, exceeded: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.limit_size is not None:
            out["limit_size"] = self.limit_size.to_json()
        out["limit_type"] = self.limit_type
        out["limit_exceeded"] = exceeded
        out["products"] = list(self.products)
        out["users"] = list(self.users)
        if self.start is not None:
            out["start_date"] = self.start.isoformat()
        if self.end is not None:
            out["end_date"] = self.end.isoformat()
        if self.free_flex is not None:
            out["free_flex"] = {
                "limit_size": self.free_flex.size.to_json(),
                "start_date": self.free_flex.start.isoformat(),
                "end_date": self.free_flex.end.isoformat(),
            }
        if self.limit_size_per_file is not None:
            out["limit_size_per_file"] = self.limit_size_per_file.to_json()
        if self.entitlements:
            out["entitlements"] = dict(self.entitlements)
        if self.allocation:
            out["allocation"] = [
                {"name": name, "size": size.to_json()} for name, size in self.allocation
            ]
        return out


ACME = ("acme_alice", "acme_bob", "acme_carol", "acme_noent")
DEFAULT_LIMITS: tuple[Limit, ...] = (
    Limit(
        "acme-daily-reputation",
        "acme",
        "daily",
        (REPUTATION, RLDATA),
        ACME,
        limit=45_000_000,
    ),
    Limit(
        "acme-monthly-rha",
        "acme",
        "monthly",
        (RHA,),
        ("acme_alice",),
        limit=25_000,
        start=date(2025, 9, 15),
        end=date(2027, 9, 14),
    ),
    Limit(
        "acme-monthly-submissions",
        "acme",
        "monthly",
        (SUBMISSIONS,),
        ("acme_alice", "acme_bob"),
        limit_size=Size(1000, "GB"),
        start=date(2025, 9, 15),
        end=date(2027, 9, 14),
        free_flex=FreeFlex(Size(200, "GB"), date(2025, 9, 15), date(2025, 12, 15)),
        limit_size_per_file=Size(1, "GB"),
        entitlements=(
            ("hardening", True),
            ("licenses", True),
            ("malware", True),
            ("max_package_size", 10_737_418_240),
            ("secrets", False),
            ("tampering", True),
            ("vulnerabilities", True),
        ),
        allocation=(
            ("Portal", Size(400_000_000_000)),
            ("API", Size(600_000_000_000)),
        ),
    ),
    Limit(
        "acme-fixed-yara",
        "acme",
        "date_range",
        (YARA,),
        ("acme_alice", "acme_bob", "acme_carol"),
        limit=450_000,
        start=date(2026, 1, 1),
        end=date(2026, 12, 31),
    ),
    Limit(
        "initech-daily-reputation",
        "initech",
        "daily",
        (REPUTATION,),
        ("initech_dan",),
        limit=5_000_000,
    ),
)


@dataclass(frozen=True)
class AllocationUsage:
    """One named allocation's share of a product's usage."""

    name: str
    queries: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "number_of_queries": self.queries, "used_bytes": self.bytes}


@dataclass(frozen=True)
class ProductUsage:
    """A product's usage in a period: queries, bytes (byte-metered only) and allocations."""

    product: str
    queries: int
    bytes: int | None = None
    allocation: tuple[AllocationUsage, ...] = field(default=())

    def __add__(self, other: ProductUsage) -> ProductUsage:
        if other.product != self.product:
            raise ValueError("cannot add usage of different products")
        sizes = None
        if self.bytes is not None or other.bytes is not None:
            sizes = (self.bytes or 0) + (other.bytes or 0)
        merged: dict[str, AllocationUsage] = {a.name: a for a in self.allocation}
        for part in other.allocation:
            mine = merged.get(part.name)
            merged[part.name] = (
                part
                if mine is None
                else AllocationUsage(
                    part.name, mine.queries + part.queries, mine.bytes + part.bytes
                )
            )
        return ProductUsage(self.product, self.queries + other.queries, sizes, _ordered(merged))

    def prorated(self, minutes: int) -> ProductUsage | None:
        """The part used in the first ``minutes`` of the day; ``None`` when nothing."""
        if self.allocation:
            parts = tuple(
                AllocationUsage(
                    a.name,
                    a.queries * minutes // MINUTES_PER_DAY,
                    a.bytes * minutes // MINUTES_PER_DAY,
                )
                for a in self.allocation
            )
            parts = tuple(a for a in parts if a.queries > 0)
            if not parts:
                return None
            return ProductUsage(
                self.product,
                sum(a.queries for a in parts),
                sum(a.bytes for a in parts),
                parts,
            )
        queries = self.queries * minutes // MINUTES_PER_DAY
        if queries <= 0:
            return None
        size = None if self.bytes is None else self.bytes * minutes // MINUTES_PER_DAY
        return ProductUsage(self.product, queries, size)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"product": self.product, "number_of_queries": self.queries}
        if self.bytes is not None:
            out["used_bytes"] = self.bytes
        if self.allocation:
            out["allocation"] = [a.to_json() for a in self.allocation]
        return out


Report = dict[str, ProductUsage]
"""Usage by product name, in ``PRODUCTS`` order, products without usage left out."""


def _ordered(parts: Mapping[str, AllocationUsage]) -> tuple[AllocationUsage, ...]:
    names = [n for n in ALLOCATIONS if n in parts] + [n for n in parts if n not in ALLOCATIONS]
    return tuple(parts[n] for n in names)


def combine(reports: Iterable[Mapping[str, ProductUsage]]) -> Report:
    """The sum of several reports, in ``PRODUCTS`` order."""
    sums: dict[str, ProductUsage] = {}
    for report in reports:
        for name, usage in report.items():
            mine = sums.get(name)
            sums[name] = usage if mine is None else mine + usage
    order = {name: index for index, name in enumerate(PRODUCT_NAMES)}
    return {name: sums[name] for name in sorted(sums, key=lambda n: order.get(n, len(order)))}


def elapsed_minutes(now: datetime) -> int:
    """Whole minutes of ``now``'s UTC day that have passed."""
    moment = now.astimezone(UTC)
    return moment.hour * 60 + moment.minute


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


class ReversingLabsData:
    """Deterministic usage per user, day and product; every answer is summed from it.

    Methods that take ``now`` report what the vendor shows at that moment: complete past days,
    the elapsed part of today, nothing after today.
    """

    def __init__(
        self,
        seed: int = 0,
        users: Iterable[User] = DEFAULT_USERS,
        limits: Iterable[Limit] = DEFAULT_LIMITS,
    ) -> None:
        self.seed = seed
        self.users: dict[str, User] = {u.name: u for u in users}
        self.limits: tuple[Limit, ...] = tuple(limits)
        self._full_day = lru_cache(maxsize=200_000)(self._generate_day)
        self._full_month = lru_cache(maxsize=20_000)(self._complete_month)
        self._period = lru_cache(maxsize=4096)(self._sum_period)

    # -- per user and day ------------------------------------------------------------------

    def _generate_day(self, user_name: str, day: date) -> tuple[ProductUsage, ...]:
        user = self.users[user_name]
        if day < user.since:
            return ()
        rng = random.Random(f"reversinglabs:{self.seed}:{user_name}:{day.isoformat()}")
        weekday = day.weekday() < 5
        week_factor = 1.0 if weekday else WEEKEND_FACTOR
        away = rng.random() < user.away_rate
        out: list[ProductUsage] = []
        for product in PRODUCTS:
            # Draw every number whether used or not, so one product never shifts another's.
            noise = rng.uniform(0.8, 1.2)
            idle = rng.random() < product.idle_rate * (1 if weekday else 2)
            size_noise = rng.uniform(0.6, 1.4)
            portal_share = rng.uniform(0.25, 0.45)
            portal_bytes_share = portal_share * rng.uniform(0.8, 1.2)
            share = user.shares.get(product.name, 0.0)
            if away or idle or share <= 0:
                continue
            queries = round(product.daily_mean * share * week_factor * noise)
            if queries <= 0:
                continue
            if product.bytes_per_query is None:
                out.append(ProductUsage(product.name, queries))
                continue
            size = round(queries * product.bytes_per_query * size_noise)
            portal_queries = round(queries * portal_share)
            portal_bytes = round(size * portal_bytes_share) if portal_queries else 0
            if portal_queries == queries:
                portal_bytes = size
            split = (
                AllocationUsage("Portal", portal_queries, portal_bytes),
                AllocationUsage("API", queries - portal_queries, size - portal_bytes),
            )
            parts = tuple(p for p in split if p.queries > 0)
            out.append(ProductUsage(product.name, queries, size, parts))
        return tuple(out)

    def full_day(self, user: str, day: date) -> Report:
        """``user``'s complete usage of ``day`` (regardless of the clock)."""
        return {u.product: u for u in self._full_day(user, day)}

    def user_day(self, user: str, day: date, now: datetime) -> Report:
        """``user``'s usage of ``day`` as reported at ``now``."""
        today = now.astimezone(UTC).date()
        if day > today:
            return {}
        if day < today:
            return self.full_day(user, day)
        minutes = elapsed_minutes(now)
        report: Report = {}
        for usage in self._full_day(user, day):
            part = usage.prorated(minutes)
            if part is not None:
                report[part.product] = part
        return report

    def users_day(self, users: Iterable[str], day: date, now: datetime) -> Report:
        """The summed usage of ``users`` on ``day`` as reported at ``now``."""
        return combine(self.user_day(u, day, now) for u in users)

    def company_users(self, company: str) -> tuple[str, ...]:
        """Every user of ``company`` (entitled or not), in table order."""
        return tuple(u.name for u in self.users.values() if u.company == company)

    def period(self, users: Iterable[str], start: date, end: date, now: datetime) -> Report:
        """The summed usage of ``users`` over the days ``start``..``end`` (inclusive) at ``now``."""
        names = tuple(users)
        moment = now.astimezone(UTC)
        last = min(end, moment.date())
        if last < start:
            return {}
        # Reported usage moves with whole minutes only (``user_day``): sums are kept per minute.
        return dict(self._period(names, start, last, moment.replace(second=0, microsecond=0)))

    def _sum_period(self, names: tuple[str, ...], start: date, last: date, now: datetime) -> Report:
        return combine(self.user_day(u, d, now) for u in names for d in days_between(start, last))

    # -- months ----------------------------------------------------------------------------

    def _complete_month(self, user: str, month: date) -> tuple[ProductUsage, ...]:
        days = days_between(month, first_of_next_month(month) - timedelta(days=1))
        return tuple(combine(self.full_day(user, d) for d in days).values())

    def user_month(self, user: str, month: date, now: datetime) -> Report:
        """``user``'s usage in the calendar month of ``month`` at ``now`` (so far, if current)."""
        first = month_start(month)
        today = now.astimezone(UTC).date()
        if first > today:
            return {}
        if first_of_next_month(first) <= today:
            return {u.product: u for u in self._full_month(user, first)}
        return self.period((user,), first, today, now)

    def users_month(self, users: Iterable[str], month: date, now: datetime) -> Report:
        return combine(self.user_month(u, month, now) for u in users)

    # -- limits ----------------------------------------------------------------------------

    def company_limits(self, company: str) -> tuple[Limit, ...]:
        """``/limits/company``: every limit of ``company``."""
        return tuple(limit for limit in self.limits if limit.company == company)

    def user_limits(self, user: str) -> tuple[Limit, ...]:
        """``/limits``: the limits of ``user``'s company that list ``user``."""
        company = self.users[user].company
        return tuple(limit for limit in self.company_limits(company) if user in limit.users)

    def limit(self, limit_id: str) -> Limit:
        """The limit with our id ``limit_id``."""
        for limit in self.limits:
            if limit.id == limit_id:
                return limit
        raise KeyError(limit_id)

    @staticmethod
    def limit_period(limit: Limit, now: datetime) -> tuple[date, date]:
        """The days whose usage counts against ``limit`` at ``now`` (may be empty: end < start)."""
        today = now.astimezone(UTC).date()
        if limit.limit_type == "daily":
            return today, today
        if limit.limit_type == "monthly":
            return month_start(today), today
        if limit.start is None or limit.end is None:
            raise ValueError(f"date_range limit {limit.id} has no term")
        return limit.start, min(limit.end, today)

    def limit_usage(
        self, limit: Limit, now: datetime, users: Iterable[str] | None = None
    ) -> tuple[int, int | None]:
        """(queries, bytes or ``None``) of ``limit``'s products in its period at ``now``.

        Summed over ``users`` (default: the limit's listed users). For a ``date_range`` limit this
        is the ``count``/``used_bytes`` of ``/usage/date_range``.
        """
        start, end = self.limit_period(limit, now)
        report = self.period(limit.users if users is None else users, start, end, now)
        queries = sum(report[p].queries for p in limit.products if p in report)
        metered = any(p in BYTE_METERED for p in limit.products)
        size = sum(report[p].bytes or 0 for p in limit.products if p in report)
        return queries, size if metered else None

    def limit_used(self, limit: Limit, now: datetime, users: Iterable[str] | None = None) -> int:
        """What counts against ``limit``: queries for ``limit``, bytes for ``limit_size``."""
        queries, size = self.limit_usage(limit, now, users)
        return (size or 0) if limit.counts_bytes else queries

    @staticmethod
    def limit_capacity(limit: Limit, today: date) -> int:
        """The allowance on ``today``: ``limit``, or ``limit_size`` bytes plus a valid free flex."""
        if limit.limit is not None:
            return limit.limit
        if limit.limit_size is None:
            raise ValueError(f"limit {limit.id} has neither limit nor limit_size")
        capacity = limit.limit_size.bytes
        flex = limit.free_flex
        if flex is not None and flex.start <= today <= flex.end:
            capacity += flex.size.bytes
        return capacity

    def limit_exceeded(self, limit: Limit, now: datetime) -> bool:
        """The vendor's ``limit_exceeded``: used (listed users) >= capacity."""
        today = now.astimezone(UTC).date()
        return self.limit_used(limit, now) >= self.limit_capacity(limit, today)

    def yara_rulesets(self, user: str) -> int:
        """``number_of_active_rulesets`` of ``/usage/yara`` (a constant per user and seed)."""
        if self.users[user].shares.get(YARA, 0.0) <= 0:
            return 0
        return random.Random(f"reversinglabs:{self.seed}:{user}:yara").randint(3, 40)


# -- answers ---------------------------------------------------------------------------------


def to_xml(data: Mapping[str, Any]) -> bytes:
    """The XML form of a JSON-shaped answer ``{"rl": {...}}``: lists as ``<item>`` elements."""
    ((root_name, content),) = data.items()
    root = ET.Element(root_name)
    _fill(root, content)
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _fill(ET.SubElement(element, str(key)), item)
    elif isinstance(value, list | tuple):
        for item in value:
            _fill(ET.SubElement(element, "item"), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def usage_list(report: Mapping[str, ProductUsage]) -> list[dict[str, Any]]:
    """A ``usage_report`` array."""
    return [usage.to_json() for usage in report.values() if usage.queries > 0]


class BadRequest(Exception):
    """A parameter the vendor refuses (400, plain text)."""


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


def parse_day(value: str, name: str) -> date:
    if _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise BadRequest(f"Invalid {name} {value!r}: expected YYYY-MM-DD")


def parse_month(value: str, name: str) -> date:
    if _MONTH.fullmatch(value):
        year, month = int(value[:4]), int(value[5:])
        if year >= 1 and 1 <= month <= 12:
            return date(year, month, 1)
    raise BadRequest(f"Invalid {name} {value!r}: expected YYYY-MM")


def _period_params(request: Request, single: str) -> tuple[str | None, str | None, str | None]:
    """(single, from, to) raw values, after the combination rules."""
    given = request.param(single) if request.has_param(single) else None
    start = request.param("from") if request.has_param("from") else None
    end = request.param("to") if request.has_param("to") else None
    if given is not None and (start is not None or end is not None):
        raise BadRequest(f"Parameter '{single}' cannot be combined with 'from'/'to'")
    if (start is None) != (end is None):
        raise BadRequest("Parameters 'from' and 'to' must be given together")
    return given, start, end


ROUTES = {
    "/usage/daily": ("daily", False),
    "/usage/company/daily": ("daily", True),
    "/usage/monthly": ("monthly", False),
    "/usage/company/monthly": ("monthly", True),
    "/usage/date_range": ("date_range", False),
    "/usage/company/date_range": ("date_range", True),
    "/usage/yara": ("yara", False),
    "/limits": ("limits", False),
    "/limits/company": ("limits", True),
}
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ReversingLabsEmulator(Emulator):
    """Spectra Intelligence customer usage: nine paths, Basic auth, XML or JSON, seeded data."""

    vendor = "ReversingLabs"

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        users: Iterable[User] = DEFAULT_USERS,
        limits: Iterable[Limit] = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(seed=seed, clock=clock)
        self.data = ReversingLabsData(seed, users, limits)

    # -- errors ----------------------------------------------------------------------------

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        if status == 403:
            return Response(status=403, body=b"", content_type="text/plain")
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = REALM
        if status == 429:
            headers["Retry-After"] = str(retry_after if retry_after is not None else 60)
        elif retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        text = message or REASONS.get(status, "Error")
        return Response(
            status=status, body=text.encode(), headers=headers, content_type="text/plain"
        )

    def malformed_shape(self) -> Response:
        return Response.json([{"rl": {"unexpected": "this is not the vendor's shape"}}])

    # -- requests --------------------------------------------------------------------------

    def authenticate(self, request: Request) -> User | Response:
        """The caller, or the 401/403 answer."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return self.error(401, "Authentication required")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return self.error(401, "Invalid credentials")
        username, sep, password = decoded.partition(":")
        user = self.data.users.get(username)
        if (
            not sep
            or user is None
            or not hmac.compare_digest(user.password.encode(), password.encode())
        ):
            return self.error(401, "Invalid credentials")
        if not user.entitled:
            return self.error(403, "")
        return user

    async def handle(self, request: Request) -> Response:
        route = ROUTES.get(request.path[len(PREFIX) :]) if request.path.startswith(PREFIX) else None
        if route is None:
            return self.error(404, f"Not found: {request.path}")
        if request.method != "GET":
            response = self.error(405, "Method not allowed")
            response.headers["Allow"] = "GET"
            return response
        user = self.authenticate(request)
        if isinstance(user, Response):
            return user
        kind, company = route
        now = self.clock().astimezone(UTC)
        try:
            fmt = self._format(request)
            if kind == "daily":
                body = self._daily(request, user, company, now)
            elif kind == "monthly":
                body = self._monthly(request, user, company, now)
            elif kind == "date_range":
                body = self._date_range(user, company, now)
            elif kind == "yara":
                body = {
                    "rl": {
                        "product": YARA,
                        "number_of_active_rulesets": self.data.yara_rulesets(user.name),
                    }
                }
            else:
                body = self._limits(user, company, now)
        except BadRequest as exc:
            return self.error(400, str(exc))
        if fmt == "json":
            return Response(body=json.dumps(body).encode(), content_type="application/json")
        return Response(body=to_xml(body), content_type="application/xml")

    @staticmethod
    def _format(request: Request) -> str:
        if not request.has_param("format"):
            return "xml"
        value = request.param("format") or ""
        if value.lower() not in ("xml", "json"):
            raise BadRequest(f"Unsupported format {value!r}: expected xml or json")
        return value.lower()

    def _scope(self, user: User, company: bool) -> tuple[str, ...]:
        return self.data.company_users(user.company) if company else (user.name,)

    def _daily(self, request: Request, user: User, company: bool, now: datetime) -> dict[str, Any]:
        single, start_text, end_text = _period_params(request, "date")
        users = self._scope(user, company)
        if start_text is None or end_text is None:
            day = parse_day(single, "date") if single is not None else now.date()
            report = self.data.users_day(users, day, now)
            return {"rl": {"date": day.isoformat(), "usage_report": usage_list(report)}}
        start, end = parse_day(start_text, "from"), parse_day(end_text, "to")
        if start > end:
            raise BadRequest("'from' must not be after 'to'")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise BadRequest(f"Date range exceeds the maximum of {MAX_RANGE_DAYS} days")
        reports = [
            {
                "date": day.isoformat(),
                "usage_report": usage_list(self.data.users_day(users, day, now)),
            }
            for day in days_between(start, end)
        ]
        return {"rl": {"usage_reports": reports}}

    def _monthly(
        self, request: Request, user: User, company: bool, now: datetime
    ) -> dict[str, Any]:
        single, start_text, end_text = _period_params(request, "month")
        users = self._scope(user, company)
        if start_text is None or end_text is None:
            month = parse_month(single, "month") if single is not None else month_start(now.date())
            report = self.data.users_month(users, month, now)
            return {"rl": {"month": month.strftime("%Y-%m"), "usage_report": usage_list(report)}}
        start, end = parse_month(start_text, "from"), parse_month(end_text, "to")
        if start > end:
            raise BadRequest("'from' must not be after 'to'")
        count = (end.year - start.year) * 12 + end.month - start.month + 1
        if count > MAX_RANGE_MONTHS:
            raise BadRequest(f"Month range exceeds the maximum of {MAX_RANGE_MONTHS} months")
        reports = []
        for index in range(count):
            month = add_months(start, index)
            report = self.data.users_month(users, month, now)
            reports.append({"month": month.strftime("%Y-%m"), "usage_report": usage_list(report)})
        return {"rl": {"usage_reports": reports}}

    def _date_range(self, user: User, company: bool, now: datetime) -> dict[str, Any]:
        limits = (
            self.data.company_limits(user.company) if company else self.data.user_limits(user.name)
        )
        reports = []
        for limit in limits:
            if limit.limit_type != "date_range" or limit.start is None or limit.end is None:
                continue
            count, size = self.data.limit_usage(limit, now, None if company else (user.name,))
            entry: dict[str, Any] = {
                "start_date": limit.start.isoformat(),
                "end_date": limit.end.isoformat(),
                "products": list(limit.products),
                "count": count,
            }
            if size is not None:
                entry["used_bytes"] = size
            reports.append(entry)
        return {"rl": {"usage_reports": reports}}

    def _limits(self, user: User, company: bool, now: datetime) -> dict[str, Any]:
        limits = (
            self.data.company_limits(user.company) if company else self.data.user_limits(user.name)
        )
        return {
            "rl": {
                "limits": [limit.to_json(self.data.limit_exceeded(limit, now)) for limit in limits]
            }
        }


EMULATOR = EmulatorSpec(
    factory=ReversingLabsEmulator,
    accounts=(
        {
            "id": "rl-acme",
            "name": "ReversingLabs ACME (company)",
            "username": "acme_alice",
            "password": "rl_demo_alice",
            "scope": "company",
        },
    ),
    bad_credentials={"password": "wrong-password"},
    # The demo account reads its company: usage starts with the company's first user.
    first_day=min(u.since for u in DEFAULT_USERS if u.company == "acme"),
)
