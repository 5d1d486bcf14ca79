"""Vendor-neutral domain objects: what every provider produces and the graph shows.

All values are frozen. Times are timezone-aware UTC ``datetime`` objects; days are ``date``
objects meant as UTC days. Counts and byte sizes are plain Python ``int`` (unbounded).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NewType
from urllib.parse import quote, quote_plus

import msgspec

ProviderId = NewType("ProviderId", str)
"""A vendor the gateway speaks to, as the config's ``provider`` string names it (``"acme"``).

The set of ids is not written here: each provider package declares its own (``id =
ProviderId("acme")``) and :func:`providers.registry` is the one list of them.
"""


class AccountScope(enum.Enum):
    """Whose usage an account reports."""

    USER = "user"
    GROUP = "group"
    COMPANY = "company"
    API_KEY = "api_key"


class Granularity(enum.Enum):
    """Bucket size of a usage series."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class QuotaWindow(enum.Enum):
    """The period after which a quota or rate limit starts again."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    FIXED_TERM = "fixed_term"


class QuotaUnit(enum.Enum):
    """What a quota counts."""

    REQUESTS = "requests"
    BYTES = "bytes"


class SourceState(enum.Enum):
    """How trustworthy an account's data is in one answer."""

    FRESH = "fresh"
    STALE = "stale"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILED = "auth_failed"
    UNAVAILABLE = "unavailable"


class FailureCause(enum.Enum):
    """Why a vendor read did not give fresh data: the cause, not its display.

    Only ``CONNECTION``, ``TIMEOUT`` and ``VENDOR_ERROR`` say the vendor itself is unwell (and
    count toward an account's circuit breaker); the others are answers about this request.
    """

    CONNECTION = "connection"
    """The vendor could not be reached, or broke off the connection."""
    TIMEOUT = "timeout"
    """The vendor did not answer within ``upstream_timeout``; or the call waited that long for
    a slot among the gateway's own calls in flight (``max_vendor_calls``), which, the vendor
    never being asked, does not count toward the breaker."""
    VENDOR_ERROR = "vendor_error"
    """The vendor answered with a 5xx."""
    RATE_LIMITED = "rate_limited"
    """The vendor answered 429, or its rate window is spent and the gateway holds back."""
    CREDENTIALS_REJECTED = "credentials_rejected"
    """401, or 403 for the credentials themselves: the key or password is not accepted."""
    REQUEST_REJECTED = "request_rejected"
    """Another 4xx (unknown group, not an administrator, 404): the account's config is wrong."""
    MALFORMED = "malformed"
    """An answer the gateway cannot read (not JSON, wrong shape, too large)."""
    CIRCUIT_OPEN = "circuit_open"
    """The gateway pauses calls to a vendor that kept failing."""
    INTERNAL = "internal"
    """A fault of the gateway itself (logged)."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def day_start(day: date) -> datetime:
    """00:00:00 UTC of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days_between(start: date, end: date) -> Iterator[date]:
    """Every day from ``start`` to ``end``, both inclusive."""
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)


def first_of_next_month(day: date) -> date:
    """The 1st of the month after ``day``'s month."""
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def bucket_start(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket holding ``moment``: weeks start on Monday, months on the 1st."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    if granularity is Granularity.DAY and not (moment.hour or moment.minute or moment.second):
        return moment if not moment.microsecond else moment.replace(microsecond=0)
    if granularity is Granularity.MINUTE:
        return moment.replace(second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.date()
    if granularity is Granularity.WEEK:
        day -= timedelta(days=day.weekday())
    elif granularity is Granularity.MONTH:
        day = day.replace(day=1)
    return day_start(day)


def secret_forms(secret: str) -> set[str]:
    """``secret`` as a log line may carry it: as is, URL-encoded and base64-encoded (standard
    and URL-safe alphabets, with and without ``=`` padding)."""
    raw = secret.encode()
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        *encoded,
        *(e.rstrip("=") for e in encoded),
    }


class Secret:
    """A credential. Its ``repr`` and ``str`` never show the value; ``reveal()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class AccountConfig:
    """One validated ``[[accounts]]`` entry.

    ``options`` holds the provider's own plain fields (``group``, ``scope``, ``key_id`` ...) and
    ``secrets`` its credentials, already resolved from ``${VAR}`` references.
    """

    id: str
    provider: ProviderId
    name: str
    base_url: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)

    def secret(self, name: str) -> str:
        return self.secrets[name].reveal()


@dataclass(frozen=True)
class Allowance:
    """An extra allowance attached to a quota (a free flex period, say)."""

    limit: int
    unit: QuotaUnit
    starts_on: date | None = None
    ends_on: date | None = None


@dataclass(frozen=True)
class Entitlement:
    """A licensed capability: a switch (``enabled``) or an amount (bytes, counts)."""

    name: str
    enabled: bool | None = None
    amount: int | None = None


@dataclass(frozen=True)
class Allocation:
    """A named share of a quota (ReversingLabs' Portal/API split), with its use if known."""

    name: str
    limit: int | None
    used: int | None = None


@dataclass(frozen=True)
class Quota:
    """A vendor allowance: how much may be used in a window, and how much was."""

    id: str
    account_id: str
    name: str
    window: QuotaWindow
    unit: QuotaUnit
    limit: int | None
    used: int | None
    resets_at: datetime | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    products: tuple[str, ...] = ()
    vendor_exceeded: bool | None = None
    free_flex: Allowance | None = None
    per_file_limit: int | None = None
    entitlements: tuple[Entitlement, ...] = ()
    allocations: tuple[Allocation, ...] = ()

    @property
    def remaining(self) -> int | None:
        """What is left, never below zero; unknown when the limit or the use is."""
        if self.limit is None or self.used is None:
            return None
        return max(self.limit - self.used, 0)

    @property
    def utilization(self) -> float | None:
        """``used / limit`` as a fraction, not clipped at 1; unknown without both numbers."""
        if self.limit is None or self.used is None or self.limit <= 0:
            return None
        return self.used / self.limit

    @property
    def exceeded(self) -> bool:
        """The vendor's own verdict where it gives one, else whether the allowance is used up."""
        if self.vendor_exceeded is not None:
            return self.vendor_exceeded
        return self.limit is not None and self.used is not None and self.used >= self.limit


@dataclass(frozen=True)
class RateLimit:
    """A short-window request-rate limit."""

    name: str
    window: QuotaWindow
    limit: int
    used: int | None = None
    resets_at: datetime | None = None
    endpoints: tuple[str, ...] = ()
    """The vendor paths the limit counts, where it counts only some (ReputeAPI's ``/v1/usage``
    limit); empty: every request of the account."""


class UsagePoint(msgspec.Struct, frozen=True, gc=False):
    """The usage in one bucket starting at ``start``.

    A year of points per account sits in the data cache: as a struct the garbage collector does
    not track (it holds numbers, a time and untracked endpoint totals, so no reference cycle can
    pass through it), a full collection need not walk through them.

    A vendor's raw points leave ``endpoints`` and ``missing_days`` empty; the service's roll-up
    (:func:`gateway.usage.build_usage`) fills them in for each bucket of a series.
    """

    start: datetime
    requests: int
    quota_requests: int
    bytes: int | None = None
    failed_requests: int | None = None
    endpoints: tuple[EndpointUsage, ...] = ()
    """The bucket's usage by endpoint, requests descending, from the days of it whose endpoint
    split the vendor (or the history store) gives; empty when none of its days has one."""
    missing_days: int = 0
    """Days of the bucket, within the asked range and not in the future, that nobody knows."""


class EndpointUsage(msgspec.Struct, frozen=True, gc=False):
    """One endpoint's (or product's) total over a range (untracked by the garbage collector,
    as :class:`UsagePoint`)."""

    endpoint: str
    requests: int
    consumes_quota: bool
    error_rate: float | None = None
    average_latency_ms: float | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class ErrorCount:
    """Failed requests of one kind."""

    type: str
    requests: int
    description: str | None = None


@dataclass(frozen=True)
class KeyUsage:
    """One API key's share of an account's usage."""

    key_id: str
    name: str | None
    requests: int
    error_rate: float | None = None
    average_latency_ms: float | None = None


@dataclass(frozen=True)
class Period:
    """A span of time, start inclusive, end exclusive."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class UsageDetails:
    """What some vendors add to usage: failures, latency, per-key shares.

    ``breakdown_period`` is set when the vendor's breakdowns (endpoints, error types, keys,
    latency) cover a window other than the asked range (ZKScore's rolling timeframes).
    """

    failed_requests: int | None = None
    error_types: tuple[ErrorCount, ...] = ()
    average_latency_ms: float | None = None
    peak_latency_ms: float | None = None
    keys: tuple[KeyUsage, ...] = ()
    breakdown_period: Period | None = None


@dataclass(frozen=True)
class VendorAlert:
    """A warning the vendor itself raised about the account."""

    type: str
    message: str
    priority: str | None = None
    recommendation: str | None = None


@dataclass(frozen=True)
class Limits:
    """What a provider reports about an account apart from usage."""

    quotas: tuple[Quota, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    plan: str | None = None
    active_rulesets: int | None = None
    alerts: tuple[VendorAlert, ...] = ()


@dataclass(frozen=True)
class UsageReport:
    """A provider's raw answer for a range, before the service rolls it up.

    ``points`` are buckets of the granularity the provider was asked for (whole months may
    stand beside days where it reads monthly totals). ``known_days`` lists every day of the range
    for which the vendor gave an answer (zero or not); the service derives ``missingDays`` from
    it.
    """

    points: tuple[UsagePoint, ...]
    endpoints: tuple[EndpointUsage, ...]
    known_days: frozenset[date]
    details: UsageDetails = UsageDetails()
    day_endpoints: Mapping[date, tuple[EndpointUsage, ...]] | None = None
    """The endpoint split of each point, keyed by the point's first day, where the vendor gives
    one: a day's (kept by the history store), or a whole month's where the vendor reads monthly
    totals (ReversingLabs at MONTH granularity)."""
    absent_days: frozenset[date] = frozenset()
    """Known days the vendor's answer left out and that count as zero: a vendor that omits
    unused days may also omit days it no longer keeps, so a stored day overrides these."""


@dataclass(frozen=True)
class SourceStatus:
    """How fresh one payload (or an account's data, over its payloads) is, and why not.

    ``message`` is for people; ``cause``, ``vendor`` and ``http_status`` are for programs.
    """

    state: SourceState
    fetched_at: datetime | None = None
    message: str | None = None
    retry_at: datetime | None = None
    cause: FailureCause | None = None
    vendor: str | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class Usage:
    """Usage over ``[from_, to]`` in buckets of ``granularity``."""

    from_: date
    to: date
    granularity: Granularity
    requests: int
    quota_requests: int
    bytes: int | None
    series: tuple[UsagePoint, ...]
    endpoints: tuple[EndpointUsage, ...]
    missing_days: tuple[date, ...]
    details: UsageDetails = UsageDetails()
    source: SourceStatus = SourceStatus(SourceState.FRESH)
    """The status of the vendor read this usage came from (FRESH when none was needed)."""

    @property
    def failed_requests(self) -> int | None:
        """Failed requests over the known days: from the series where every bucket has them."""
        if self.series and all(p.failed_requests is not None for p in self.series):
            return sum(p.failed_requests or 0 for p in self.series)
        return self.details.failed_requests

    @property
    def error_rate(self) -> float | None:
        """``failed_requests / requests`` as a fraction; unknown without both."""
        failed = self.failed_requests
        if failed is None or self.requests <= 0:
            return None
        return failed / self.requests


@dataclass(frozen=True)
class Account:
    """An account as the graph shows it (configuration without secrets)."""

    id: str
    provider: ProviderId
    name: str
    scope: AccountScope
