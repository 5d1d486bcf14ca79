"""The public graph: every type and field described, mirroring ``gateway.domain``.

Resolvers here are thin: they read the per-request :class:`~gateway.service.RequestScope` from
the context and convert domain objects with the ``from_domain`` constructors. Those reading
vendor data the request may already hold are plain functions answering the value itself when it
is at hand, else a coroutine for it (the scope's ``*_soon`` reads, :data:`~gateway.service.Soon`),
with their GraphQL type given as ``graphql_type``: graphql-core completes a value at once and
awaits only what is not there yet.
"""

from __future__ import annotations

import calendar
import enum
import json
import re
from collections.abc import Coroutine, Mapping
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime
from functools import lru_cache
from types import CoroutineType
from typing import TYPE_CHECKING, Annotated, Any, NewType, TypeVar, cast

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
)
from graphql.pyutils import inspect
from strawberry.litestar import BaseContext

from gateway import domain, history
from gateway.alerts import model as alerts
from gateway.forecast import Forecast
from gateway.graphql.memo import MEMOS, OperationMemo, coerced
from gateway.graphql.selected import wants_splits
from gateway.service import Soon, UsageArgs, then
from providers import registry

if TYPE_CHECKING:
    from gateway.service import RequestScope

BigInt = NewType("BigInt", int)
E = TypeVar("E", bound=enum.Enum)


def _serialize_datetime(value: datetime) -> str:
    return _utc_text(value if value.tzinfo is UTC else value.astimezone(UTC))


@lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    """A UTC moment as the graph shows it; the same few (bucket starts, resets, fetch times)
    come up in answer after answer, so each is written out once (bounded)."""
    return value.isoformat().replace("+00:00", "Z")


DATE_FORM = "YYYY-MM-DD, e.g. 2026-01-31"
DATETIME_FORM = "YYYY-MM-DDTHH:MM:SSZ (or an offset such as +02:00), e.g. 2026-01-31T23:59:59Z"
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_SHOWN = 40


def _shown(value: str) -> str:
    """A client's string quoted for a message, shortened: it is echoed back, never trusted."""
    text = value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"
    return '"' + "".join(ch if ch.isprintable() else "?" for ch in text) + '"'


def _shown_json(value: object) -> str:
    """A client's non-string value as JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = inspect(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _calendar_day(year: int, month: int, day: int) -> str | None:
    """Why ``year-month-day`` is no day of the calendar, or ``None`` when it is one."""
    if not MINYEAR <= year <= MAXYEAR:
        return f"there is no year {year} (years run from {MINYEAR:04} to {MAXYEAR})"
    if not 1 <= month <= 12:
        return f"there is no month {month}"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return f"{calendar.month_name[month]} {year} has {days} days, not {day}"
    return None


def _parse_date(value: object) -> date:
    if not isinstance(value, str):
        raise GraphQLError(f"a Date is a string {DATE_FORM}, not {_shown_json(value)}")
    match = _DATE.fullmatch(value)
    if match is None:
        raise GraphQLError(f"{_shown(value)} is not a Date of the form {DATE_FORM}")
    year, month, day = (int(part) for part in match.groups())
    problem = _calendar_day(year, month, day)
    if problem is not None:
        raise GraphQLError(f"{_shown(value)} is not a Date: {problem} (expected {DATE_FORM})")
    return date(year, month, day)


def _parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise GraphQLError(f"a DateTime is a string {DATETIME_FORM}, not {_shown_json(value)}")
    match = _DATE.match(value)
    problem = _calendar_day(*(int(part) for part in match.groups())) if match else None
    if problem is not None:
        raise GraphQLError(
            f"{_shown(value)} is not a DateTime: {problem} (expected {DATETIME_FORM})"
        )
    try:
        if match is None or len(value) > 35 or value[10:11] not in ("", "T", " "):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:  # Python's reasons speak of its internals, not of the form
        raise GraphQLError(
            f"{_shown(value)} is not a DateTime of the form {DATETIME_FORM}"
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise GraphQLError(
            f"{_shown(value)} is not a DateTime: in UTC it falls outside the years "
            f"{MINYEAR:04}-{MAXYEAR}"
        ) from None


_BIGINT_DIGITS = 40
_BIGINT = re.compile(rf"-?[0-9]{{1,{_BIGINT_DIGITS}}}")


def _parse_bigint(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _BIGINT.fullmatch(value):
        number = int(value)
    else:
        raise GraphQLError(f"a BigInt is a JSON number (an integer), not {_shown_json(value)}")
    if len(str(abs(number))) > _BIGINT_DIGITS:
        raise GraphQLError(f"a BigInt has at most {_BIGINT_DIGITS} digits")
    return number


SCALARS = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer of any size (counts and byte sizes reach past 2^31); "
        "a JSON number.",
        serialize=int,
        parse_value=_parse_bigint,
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="A moment in ISO 8601, always UTC, e.g. 2026-01-31T23:59:59Z.",
        serialize=_serialize_datetime,
        parse_value=_parse_datetime,
    ),
    date: strawberry.scalar(
        name="Date",
        description="A UTC calendar day, YYYY-MM-DD.",
        serialize=date.isoformat,
        parse_value=_parse_date,
    ),
}


def _provider_enum() -> type[enum.Enum]:
    """The ``Provider`` enum, one value per registered provider: name ``ID``, value ``id``."""
    members = {
        provider.upper(): strawberry.enum_value(provider, description=entry.client.description)
        for provider, entry in registry().items()
    }
    # The functional API builds a class; typeshed calls that an Enum instance.
    provider = cast("type[enum.Enum]", enum.Enum("Provider", members))
    return strawberry.enum(provider, description="A vendor the gateway reads usage from.")


if TYPE_CHECKING:

    class Provider(enum.Enum):
        """Built from the provider registry at import; its members are not known here."""

else:
    Provider = _provider_enum()


@strawberry.enum(description="Whose usage an account reports.")
class AccountScope(enum.Enum):
    USER = strawberry.enum_value("user", description="One user of the vendor.")
    GROUP = strawberry.enum_value("group", description="A group of users (VirusTotal).")
    COMPANY = strawberry.enum_value("company", description="Every user of a company.")
    API_KEY = strawberry.enum_value("api_key", description="One API key.")


@strawberry.enum(description="Bucket size of a usage series.")
class Granularity(enum.Enum):
    MINUTE = strawberry.enum_value("minute", description="Minutes (where the vendor has them).")
    HOUR = strawberry.enum_value("hour", description="Hours (where the vendor has them).")
    DAY = strawberry.enum_value("day", description="UTC days.")
    WEEK = strawberry.enum_value("week", description="Weeks starting on Monday (UTC).")
    MONTH = strawberry.enum_value("month", description="Calendar months (UTC).")


@strawberry.enum(description="The period after which a quota or rate limit starts again.")
class QuotaWindow(enum.Enum):
    MINUTE = strawberry.enum_value("minute", description="Resets every minute.")
    HOUR = strawberry.enum_value("hour", description="Resets every hour.")
    DAY = strawberry.enum_value("day", description="Resets every day at 00:00 UTC.")
    MONTH = strawberry.enum_value("month", description="Resets on the 1st at 00:00 UTC.")
    FIXED_TERM = strawberry.enum_value(
        "fixed_term", description="Does not reset: an allowance for a license term."
    )


@strawberry.enum(description="What a quota counts.")
class QuotaUnit(enum.Enum):
    REQUESTS = strawberry.enum_value("requests", description="API requests.")
    BYTES = strawberry.enum_value("bytes", description="Bytes (decimal units: 1 GB = 10^9).")


@strawberry.enum(description="How trustworthy an account's data is in this answer.")
class SourceState(enum.Enum):
    FRESH = strawberry.enum_value("fresh", description="Read from the vendor for this answer.")
    STALE = strawberry.enum_value(
        "stale", description="An earlier answer, served because a fresh one is not at hand."
    )
    RATE_LIMITED = strawberry.enum_value(
        "rate_limited", description="The vendor asked us to wait; see retryAt."
    )
    AUTH_FAILED = strawberry.enum_value(
        "auth_failed", description="The vendor rejected the account's credentials."
    )
    UNAVAILABLE = strawberry.enum_value(
        "unavailable",
        description="No data: the vendor could not be reached, was too slow, failed, refused "
        "the request (the account's config) or answered something unreadable; see cause.",
    )


@strawberry.enum(description="Why a vendor read did not give fresh data.")
class FailureCause(enum.Enum):
    CONNECTION = strawberry.enum_value(
        "connection", description="The vendor could not be reached or broke off the connection."
    )
    TIMEOUT = strawberry.enum_value(
        "timeout", description="The vendor did not answer within the gateway's deadline."
    )
    VENDOR_ERROR = strawberry.enum_value(
        "vendor_error", description="The vendor failed on its side (HTTP 5xx)."
    )
    RATE_LIMITED = strawberry.enum_value(
        "rate_limited", description="The vendor asked us to wait, or its rate window is spent."
    )
    CREDENTIALS_REJECTED = strawberry.enum_value(
        "credentials_rejected", description="The vendor rejected the account's credentials."
    )
    REQUEST_REJECTED = strawberry.enum_value(
        "request_rejected",
        description="The vendor refused the request (unknown group, not an administrator, "
        "404): the account's config needs a change.",
    )
    MALFORMED = strawberry.enum_value(
        "malformed", description="The vendor's answer could not be read."
    )
    CIRCUIT_OPEN = strawberry.enum_value(
        "circuit_open", description="The gateway pauses calls to a vendor that kept failing."
    )
    INTERNAL = strawberry.enum_value(
        "internal", description="A fault of the gateway itself; see its log."
    )


def _enum(target: type[E], value: enum.Enum) -> E:
    return target[value.name]


@strawberry.type(description="How fresh some data is in this answer, and why not.")
class SourceStatus:
    state: SourceState = strawberry.field(description="The data's state.")
    fetched_at: datetime | None = strawberry.field(
        description="When the data was read from the vendor; null when there is none."
    )
    message: str | None = strawberry.field(
        description="Why the state is not FRESH, in words (never contains secrets)."
    )
    retry_at: datetime | None = strawberry.field(
        description="When the vendor allows the next call (RATE_LIMITED)."
    )
    cause: FailureCause | None = strawberry.field(
        description="Why the last read failed, for programs; null when it did not."
    )
    vendor: str | None = strawberry.field(
        description="The vendor whose read failed; null when none did."
    )
    http_status: int | None = strawberry.field(
        description="The vendor's HTTP status of the failed read, where it answered."
    )

    @classmethod
    def from_domain(cls, status: domain.SourceStatus) -> SourceStatus:
        return cls(
            state=_enum(SourceState, status.state),
            fetched_at=status.fetched_at,
            message=status.message,
            retry_at=status.retry_at,
            cause=None if status.cause is None else _enum(FailureCause, status.cause),
            vendor=status.vendor,
            http_status=status.http_status,
        )


@strawberry.type(description="An extra allowance attached to a quota, e.g. a free flex period.")
class Allowance:
    limit: BigInt = strawberry.field(description="The extra amount allowed.")
    unit: QuotaUnit = strawberry.field(description="What it counts.")
    starts_on: date | None = strawberry.field(description="First day it applies.")
    ends_on: date | None = strawberry.field(description="Last day it applies.")

    @classmethod
    def from_domain(cls, item: domain.Allowance) -> Allowance:
        return cls(
            limit=BigInt(item.limit),
            unit=_enum(QuotaUnit, item.unit),
            starts_on=item.starts_on,
            ends_on=item.ends_on,
        )


@strawberry.type(description="A licensed capability: a switch or an amount.")
class Entitlement:
    name: str = strawberry.field(description="The vendor's name for it (hardening, malware ...).")
    enabled: bool | None = strawberry.field(description="Whether it is on, for a switch.")
    amount: BigInt | None = strawberry.field(
        description="Its size, for an amount (bytes for sizes such as max_package_size)."
    )

    @classmethod
    def from_domain(cls, item: domain.Entitlement) -> Entitlement:
        return cls(name=item.name, enabled=item.enabled, amount=_big(item.amount))


@strawberry.type(description="A named share of a quota (e.g. Portal and API), with its use.")
class QuotaAllocation:
    name: str = strawberry.field(description="The allocation's name.")
    limit: BigInt | None = strawberry.field(description="Its share of the quota, in its unit.")
    used: BigInt | None = strawberry.field(
        description="Used by it in the quota's current period, where the vendor reports it."
    )

    @classmethod
    def from_domain(cls, item: domain.Allocation) -> QuotaAllocation:
        return cls(name=item.name, limit=_big(item.limit), used=_big(item.used))


@strawberry.type(description="A quota's use at one moment, as a snapshot sampled it.")
class QuotaSample:
    at: datetime = strawberry.field(description="When it was sampled.")
    used: BigInt | None = strawberry.field(description="Used at that moment.")
    limit: BigInt | None = strawberry.field(description="The limit at that moment.")

    @classmethod
    def from_domain(cls, item: history.QuotaSample) -> QuotaSample:
        return cls(at=item.at, used=_big(item.used), limit=_big(item.limit))


@strawberry.type(description="A quota's projection over its current window, as a range.")
class QuotaForecast:
    window_start: datetime = strawberry.field(description="Start of the current window.")
    window_end: datetime = strawberry.field(description="Its end: the reset, or the term's end.")
    used_at_reset_low: BigInt = strawberry.field(
        description="Projected use at the window's end, at the slowest likely pace."
    )
    used_at_reset_high: BigInt = strawberry.field(
        description="Projected use at the window's end, at the fastest likely pace."
    )
    runs_out_earliest: datetime | None = strawberry.field(
        description="When it would run out at the fastest likely pace; null: not in this window."
    )
    runs_out_latest: datetime | None = strawberry.field(
        description="When it would run out at the slowest likely pace; null: not in this window."
    )
    samples: int = strawberry.field(description="Samples the projection rests on.")

    @classmethod
    def from_domain(cls, item: Forecast) -> QuotaForecast:
        return cls(
            window_start=item.window_start,
            window_end=item.window_end,
            used_at_reset_low=BigInt(item.used_at_reset_low),
            used_at_reset_high=BigInt(item.used_at_reset_high),
            runs_out_earliest=item.runs_out_earliest,
            runs_out_latest=item.runs_out_latest,
            samples=item.samples,
        )


@strawberry.type(
    description="A vendor allowance: how much may be used in a window, and how much was."
)
class Quota:
    id: strawberry.ID = strawberry.field(description="Stable id: account id and quota name.")
    account_id: strawberry.ID = strawberry.field(description="The account the quota belongs to.")
    name: str = strawberry.field(description="The quota's name.")
    window: QuotaWindow = strawberry.field(description="When the quota starts again.")
    unit: QuotaUnit = strawberry.field(description="What the quota counts.")
    limit: BigInt | None = strawberry.field(description="The allowance; null when unknown.")
    used: BigInt | None = strawberry.field(
        description="Used in the current window (may exceed limit); null when unknown. For a "
        "ReversingLabs user account, that user's own share of a limit it may share with others."
    )
    remaining: BigInt | None = strawberry.field(
        description="limit - used, never below 0; null when either is unknown."
    )
    utilization: float | None = strawberry.field(
        description="used / limit as a fraction (0.2469), not clipped at 1; null when unknown."
    )
    exceeded: bool = strawberry.field(
        description="The vendor's verdict where it gives one, else whether used >= limit."
    )
    resets_at: datetime | None = strawberry.field(
        description="The next reset; null for FIXED_TERM."
    )
    starts_on: date | None = strawberry.field(description="First day of the license term.")
    ends_on: date | None = strawberry.field(description="Last day of the license term.")
    products: list[str] = strawberry.field(
        description="Vendor product names the quota covers (empty when it covers everything)."
    )
    free_flex: Allowance | None = strawberry.field(
        description="Extra allowance on top of the limit for a period (ReversingLabs free flex)."
    )
    per_file_limit: BigInt | None = strawberry.field(
        description="Largest single file the quota accepts, in bytes."
    )
    entitlements: list[Entitlement] = strawberry.field(
        description="Capabilities licensed with the quota."
    )
    allocations: list[QuotaAllocation] = strawberry.field(
        description="Named shares of the quota, with their use where known."
    )
    _domain: strawberry.Private[domain.Quota]

    @strawberry.field(
        description="How fresh this quota is: the status of the read of its account's quotas.",
        graphql_type=SourceStatus,
    )
    def source(self, info: strawberry.Info) -> Soon[SourceStatus]:
        payload = scope_of(info).limits_payload_soon(self._domain.account_id)
        return then(payload, lambda p: SourceStatus.from_domain(p.status))

    @strawberry.field(
        description="The quota's use as sampled by snapshots, oldest first; null (with an "
        "error naming the file and the cause) when the history store cannot be used."
    )
    async def history(
        self,
        info: strawberry.Info,
        from_: Annotated[
            datetime, strawberry.argument(name="from", description="From this moment (UTC).")
        ],
        to: Annotated[datetime, strawberry.argument(description="Up to this moment (UTC).")],
    ) -> list[QuotaSample] | None:
        samples = await scope_of(info).quota_history(self._domain.id, from_, to)
        return [QuotaSample.from_domain(s) for s in samples]

    @strawberry.field(
        description="Where the quota will stand at its reset and when it would run out, from "
        "its sampled use; null early in a window (before 10% of it), for fixed terms with too "
        "few samples, where there is no window, and (with an error naming the file and the "
        "cause) when the history store cannot be used.",
        graphql_type=QuotaForecast | None,
    )
    def forecast(self, info: strawberry.Info) -> Soon[QuotaForecast | None]:
        return then(scope_of(info).forecast_soon(self._domain), _forecast_of)

    @strawberry.field(
        description="Each alert rule's current state on this quota: every threshold and the "
        "predictive rule in force for its account ([alerts]), OK where it has nothing to say; "
        "empty without [alerts]; null (with an error naming the file and the cause) when the "
        "history store cannot be used."
    )
    async def alert_states(self, info: strawberry.Info) -> list[AlertState] | None:
        states = await scope_of(info).alert_states(self._domain.account_id, self._domain)
        return [AlertState.from_domain(s) for s in states]

    @classmethod
    def from_domain(cls, quota: domain.Quota) -> Quota:
        return cls(
            id=strawberry.ID(quota.id),
            account_id=strawberry.ID(quota.account_id),
            name=quota.name,
            window=_enum(QuotaWindow, quota.window),
            unit=_enum(QuotaUnit, quota.unit),
            limit=_big(quota.limit),
            used=_big(quota.used),
            remaining=_big(quota.remaining),
            utilization=quota.utilization,
            exceeded=quota.exceeded,
            resets_at=quota.resets_at,
            starts_on=quota.starts_on,
            ends_on=quota.ends_on,
            products=list(quota.products),
            free_flex=Allowance.from_domain(quota.free_flex) if quota.free_flex else None,
            per_file_limit=_big(quota.per_file_limit),
            entitlements=[Entitlement.from_domain(e) for e in quota.entitlements],
            allocations=[QuotaAllocation.from_domain(a) for a in quota.allocations],
            _domain=quota,
        )


@strawberry.type(description="A short-window request-rate limit.")
class RateLimit:
    name: str = strawberry.field(description="What the limit applies to.")
    window: QuotaWindow = strawberry.field(description="The window the limit counts in.")
    limit: BigInt = strawberry.field(description="Requests allowed per window.")
    used: BigInt | None = strawberry.field(description="Requests in the current window.")
    resets_at: datetime | None = strawberry.field(description="When the current window ends.")
    endpoints: list[str] = strawberry.field(
        description="The vendor paths the limit counts, where it counts only some (ReputeAPI's "
        "/v1/usage limit); empty when it counts every request of the account."
    )

    @classmethod
    def from_domain(cls, rate: domain.RateLimit) -> RateLimit:
        return cls(
            name=rate.name,
            window=_enum(QuotaWindow, rate.window),
            limit=BigInt(rate.limit),
            used=_big(rate.used),
            resets_at=rate.resets_at,
            endpoints=list(rate.endpoints),
        )


@strawberry.type(
    description="Usage in one bucket of a series.",
)
class UsagePoint:
    """Answered straight from :class:`gateway.domain.UsagePoint` (same field names): a year of
    points per account is not copied into objects of this class first."""

    start: datetime = strawberry.field(description="Start of the bucket (UTC).")
    requests: BigInt = strawberry.field(description="Requests the vendor counted in the bucket.")
    quota_requests: BigInt = strawberry.field(description="Those that consume quota.")
    bytes: BigInt | None = strawberry.field(description="Bytes, where the vendor meters them.")
    failed_requests: BigInt | None = strawberry.field(
        description="Requests that failed, where the vendor reports them."
    )
    missing_days: int = strawberry.field(
        description="Days of this bucket (within the range, up to today) that neither the "
        "vendor nor the history store knows; they are in Usage.missingDays too. Non-zero only "
        "for a WEEK or MONTH bucket known in part: a bucket with no known day is not in the "
        "series at all."
    )
    endpoints: list[EndpointUsage] = strawberry.field(
        description="This bucket's usage by endpoint (or product), requests descending, then "
        "by endpoint name: the split of each of its days (or of a whole month, where the vendor "
        "reads monthly totals) added up. Empty when the vendor gives no per-day endpoint split "
        "for any day of it (ZKScore and ReputeAPI split only whole ranges: see "
        "Usage.endpoints), and for buckets finer than a day."
    )


@strawberry.type(
    description="One endpoint's (or product's) total over the range, or over one bucket of it."
)
class EndpointUsage:
    """Answered straight from :class:`gateway.domain.EndpointUsage` (same field names)."""

    endpoint: str = strawberry.field(
        description="The vendor's own path (/api/v1/check) or product name."
    )
    requests: BigInt = strawberry.field(description="Requests over the range (or bucket).")
    consumes_quota: bool = strawberry.field(description="Whether these requests spend quota.")
    error_rate: float | None = strawberry.field(
        description="Share of its requests that failed (0.02 = 2%), where the vendor says."
    )
    average_latency_ms: float | None = strawberry.field(
        description="Its average response time in milliseconds, where the vendor says."
    )
    bytes: BigInt | None = strawberry.field(description="Bytes it transferred, where metered.")


@strawberry.type(description="Failed requests of one kind.")
class ErrorCount:
    type: str = strawberry.field(
        description="The vendor's error code (TIMEOUT, INVALID_DOMAIN ...)."
    )
    requests: BigInt = strawberry.field(description="Requests that failed this way.")
    description: str | None = strawberry.field(description="The vendor's explanation.")

    @classmethod
    def from_domain(cls, item: domain.ErrorCount) -> ErrorCount:
        return cls(type=item.type, requests=BigInt(item.requests), description=item.description)


@strawberry.type(description="One API key's share of an account's usage.")
class KeyUsage:
    key_id: strawberry.ID = strawberry.field(description="The vendor's id of the key.")
    name: str | None = strawberry.field(description="The key's name at the vendor.")
    requests: BigInt = strawberry.field(description="Requests made with the key.")
    error_rate: float | None = strawberry.field(description="Share of them that failed.")
    average_latency_ms: float | None = strawberry.field(
        description="Their average response time in milliseconds."
    )

    @classmethod
    def from_domain(cls, item: domain.KeyUsage) -> KeyUsage:
        return cls(
            key_id=strawberry.ID(item.key_id),
            name=item.name,
            requests=BigInt(item.requests),
            error_rate=item.error_rate,
            average_latency_ms=item.average_latency_ms,
        )


@strawberry.type(description="A span of time, start inclusive, end exclusive (UTC).")
class Period:
    start: datetime = strawberry.field(description="Where it starts.")
    end: datetime = strawberry.field(description="Where it ends.")

    @classmethod
    def from_domain(cls, item: domain.Period) -> Period:
        return cls(start=item.start, end=item.end)


@strawberry.type(description="A warning the vendor itself raised about the account.")
class VendorAlert:
    type: str = strawberry.field(description="The vendor's alert type (HIGH_ERROR_RATE ...).")
    message: str = strawberry.field(description="What the vendor says.")
    priority: str | None = strawberry.field(description="The vendor's priority (high, medium ...).")
    recommendation: str | None = strawberry.field(description="What the vendor suggests doing.")

    @classmethod
    def from_domain(cls, item: domain.VendorAlert) -> VendorAlert:
        return cls(
            type=item.type,
            message=item.message,
            priority=item.priority,
            recommendation=item.recommendation,
        )


@strawberry.type(description="Usage over a range of days.")
class Usage:
    from_: date = strawberry.field(name="from", description="First day of the range (UTC).")
    to: date = strawberry.field(description="Last day of the range (UTC).")
    granularity: Granularity = strawberry.field(description="Bucket size of the series.")
    requests: BigInt = strawberry.field(
        description="Every request the vendor counted on the known days of the range."
    )
    quota_requests: BigInt = strawberry.field(description="Those that consume quota.")
    bytes: BigInt | None = strawberry.field(description="Bytes, where the vendor meters them.")
    series: list[UsagePoint] = strawberry.field(
        description="One point per bucket with data, ascending; buckets of only missing days "
        "are left out."
    )
    endpoints: list[EndpointUsage] = strawberry.field(
        description="Totals per endpoint over the range, requests descending."
    )
    failed_requests: BigInt | None = strawberry.field(
        description="Requests that failed, where the vendor reports failures."
    )
    error_rate: float | None = strawberry.field(
        description="failedRequests / requests as a fraction (0.0198 = 1.98%)."
    )
    error_types: list[ErrorCount] = strawberry.field(
        description="Failed requests by kind, most first (over breakdownPeriod when set)."
    )
    average_latency_ms: float | None = strawberry.field(
        description="Average response time in milliseconds over the range, where the vendor "
        "reports latency."
    )
    peak_latency_ms: float | None = strawberry.field(
        description="Slowest response time in milliseconds over the range, where reported."
    )
    keys: list[KeyUsage] = strawberry.field(
        description="Per API key shares, requests descending (over breakdownPeriod when set)."
    )
    breakdown_period: Period | None = strawberry.field(
        description="Set when the vendor breaks usage down (endpoints, error types, keys) only "
        "over a window other than the range, e.g. ZKScore's rolling timeframes: the window "
        "those figures cover. Null when they cover exactly the range."
    )
    missing_days: list[date] = strawberry.field(
        description="Days up to today with no data from vendor or history: unknown, not zero."
    )
    source: SourceStatus = strawberry.field(
        description="How fresh this usage is: the status of the vendor read it came from "
        "(FRESH with no fetchedAt when the history store answered it all)."
    )

    @classmethod
    def from_domain(cls, usage: domain.Usage) -> Usage:
        return cls(
            source=SourceStatus.from_domain(usage.source),
            from_=usage.from_,
            to=usage.to,
            granularity=_enum(Granularity, usage.granularity),
            requests=BigInt(usage.requests),
            quota_requests=BigInt(usage.quota_requests),
            bytes=_big(usage.bytes),
            # The domain's points and endpoint totals have this schema's field names: answered
            # as they are (GraphQL reads their attributes), not copied.
            series=cast(list[UsagePoint], list(usage.series)),
            endpoints=cast(list[EndpointUsage], list(usage.endpoints)),
            missing_days=list(usage.missing_days),
            failed_requests=_big(usage.failed_requests),
            error_rate=usage.error_rate,
            error_types=[
                ErrorCount.from_domain(e)
                for e in sorted(usage.details.error_types, key=lambda e: (-e.requests, e.type))
            ],
            average_latency_ms=usage.details.average_latency_ms,
            peak_latency_ms=usage.details.peak_latency_ms,
            keys=[
                KeyUsage.from_domain(k)
                for k in sorted(usage.details.keys, key=lambda k: (-k.requests, k.key_id))
            ],
            breakdown_period=(
                Period.from_domain(usage.details.breakdown_period)
                if usage.details.breakdown_period
                else None
            ),
        )


class GatewayContext(BaseContext, kw_only=True):
    """Per-request context: the service scope that memoizes vendor calls for this request."""

    scope: RequestScope
    cost: int = 0
    """The operation's static cost (``gateway.graphql.cost``), once it was worked out."""
    operation_memo: OperationMemo | None = None
    """What the resolvers read from the operation's document (:mod:`gateway.graphql.memo`),
    found by the first that asks for the others of the same operation."""


def scope_of(info: strawberry.Info) -> RequestScope:
    context = info.context
    assert isinstance(context, GatewayContext)
    return context.scope


def operation_memo(info: strawberry.Info) -> OperationMemo:
    """The memo of the operation being executed with its variable values, looked up once per
    operation (kept on a ``GatewayContext``)."""
    raw = info._raw_info
    return memo_of(info.context, raw.operation, raw.fragments, raw.variable_values)


def memo_of(
    context: object,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variable_values: object,
) -> OperationMemo:
    """The memo of ``operation`` with these fragments and variable values: the one its
    ``GatewayContext`` holds (a one-off document's own, :func:`one_off`, or the store's, found
    by the first that asked), else the store's (:data:`~gateway.graphql.memo.MEMOS`)."""
    if isinstance(context, GatewayContext) and context.operation_memo is not None:
        return context.operation_memo
    memo = MEMOS.of(operation, fragments, coerced(variable_values))
    if isinstance(context, GatewayContext):
        context.operation_memo = memo
    return memo


def one_off(context: object) -> None:
    """The operation about to run on ``context`` is of a document parsed for this request and
    not kept parsed (:mod:`gateway.graphql.documents`): its nodes go with the request, so what
    is read from them is worked out for this request only, in a memo kept nowhere."""
    if isinstance(context, GatewayContext) and context.operation_memo is None:
        context.operation_memo = OperationMemo(kept=False)


def _usage_splits(info: strawberry.Info) -> bool:
    """Whether the ``usage`` field being resolved shows its buckets' endpoint splits
    (:func:`~gateway.graphql.selected.wants_splits` of any of its field nodes: a field asked
    twice under one response key is one field, its selections merged), worked out once per
    operation and variable values."""
    raw = info._raw_info
    splits = operation_memo(info).splits
    node = id(raw.field_nodes[0])
    found = splits.get(node)
    if found is None:
        found = splits[node] = any(wants_splits(field) for field in info.selected_fields)
    return found


ACCOUNT_FIELDS_READING_LIMITS = frozenset(
    {"source", "quotasSource", "plan", "activeRulesets", "vendorAlerts", "quotas", "rateLimits"}
)
"""The fields of ``Account`` (GraphQL names) that read the account's quotas and rate limits:
where one is selected, the root field that lists the account starts that read, together with
its usage reads (``gateway.graphql.selection``), rather than each field starting it later."""


@strawberry.type(description="A vendor account the gateway reads: a key, user, group or company.")
class Account:
    id: strawberry.ID = strawberry.field(description="Stable id from the config.")
    provider: Provider = strawberry.field(description="The vendor.")
    name: str = strawberry.field(description="Display name from the config.")
    scope: AccountScope = strawberry.field(description="Whose usage the account reports.")
    _usages: strawberry.Private[tuple[UsageArgs, ...]]
    """The ``usage`` fields the query selects on this account (their payloads count in
    ``source``)."""

    @classmethod
    def from_domain(cls, account: domain.Account, usages: tuple[UsageArgs, ...] = ()) -> Account:
        return cls(
            id=strawberry.ID(account.id),
            provider=Provider(account.provider),
            name=account.name,
            scope=_enum(AccountScope, account.scope),
            _usages=usages,
        )

    @strawberry.field(
        description="The vendor's name for people (VirusTotal, ReversingLabs, ...): the name "
        "`SourceStatus.vendor` gives."
    )
    def provider_name(self) -> str:
        return registry()[domain.ProviderId(self.provider.value)].client.display_name

    @strawberry.field(
        description="How fresh this account's data is in this answer, and why not: the most "
        "severe status over its quotas and every usage this query selects on it.",
        graphql_type=SourceStatus,
    )
    def source(self, info: strawberry.Info) -> Soon[SourceStatus]:
        return then(scope_of(info).source_soon(self.id, self._usages), SourceStatus.from_domain)

    @strawberry.field(
        description="How fresh the account's quotas, rate limits, plan and vendor alerts are.",
        graphql_type=SourceStatus,
    )
    def quotas_source(self, info: strawberry.Info) -> Soon[SourceStatus]:
        payload = scope_of(info).limits_payload_soon(self.id)
        return then(payload, lambda p: SourceStatus.from_domain(p.status))

    @strawberry.field(
        description="The vendor's plan or tier name for the account, if it says.",
        graphql_type=str | None,
    )
    def plan(self, info: strawberry.Info) -> Soon[str | None]:
        return then(scope_of(info).limits_soon(self.id), lambda limits: limits.plan)

    @strawberry.field(
        description="Active YARA hunting rulesets (ReversingLabs); null for other vendors.",
        graphql_type=BigInt | None,
    )
    def active_rulesets(self, info: strawberry.Info) -> Soon[BigInt | None]:
        return then(
            scope_of(info).limits_soon(self.id), lambda limits: _big(limits.active_rulesets)
        )

    @strawberry.field(
        description="Warnings the vendor itself raises about the account.",
        graphql_type=list[VendorAlert],
    )
    def vendor_alerts(self, info: strawberry.Info) -> Soon[list[VendorAlert]]:
        return then(
            scope_of(info).limits_soon(self.id),
            lambda limits: [VendorAlert.from_domain(a) for a in limits.alerts],
        )

    @strawberry.field(
        description="The account's quotas; empty when the vendor failed (see source).",
        graphql_type=list[Quota],
    )
    def quotas(self, info: strawberry.Info) -> Soon[list[Quota]]:
        scope = scope_of(info)
        listed = then(
            scope.limits_soon(self.id), lambda limits: [Quota.from_domain(q) for q in limits.quotas]
        )
        if not _asks_forecast(info):
            return listed
        if type(listed) is CoroutineType:
            return _with_forecasts(scope, listed)
        quotas = cast("list[Quota]", listed)
        pending = scope.forecasts_soon(q._domain for q in quotas)
        return quotas if pending is None else _after(pending, quotas)

    @strawberry.field(
        description="The account's own alert rules' states (the unreadable rule), OK where it "
        "has nothing to say; empty without [alerts] or with unreadable_after off; null (with an "
        "error naming the file and the cause) when the history store cannot be used."
    )
    async def alert_states(self, info: strawberry.Info) -> list[AlertState] | None:
        states = await scope_of(info).alert_states(self.id, None)
        return [AlertState.from_domain(s) for s in states]

    @strawberry.field(
        description="The account's rate limits; empty when the vendor failed.",
        graphql_type=list[RateLimit],
    )
    def rate_limits(self, info: strawberry.Info) -> Soon[list[RateLimit]]:
        return then(
            scope_of(info).limits_soon(self.id),
            lambda limits: [RateLimit.from_domain(r) for r in limits.rate_limits],
        )

    @strawberry.field(
        description="Usage from `from` to `to` (UTC days, inclusive) in buckets of granularity.",
        graphql_type=Usage,
    )
    def usage(
        self,
        info: strawberry.Info,
        from_: Annotated[
            date, strawberry.argument(name="from", description="First day (UTC), inclusive.")
        ],
        to: Annotated[date, strawberry.argument(description="Last day (UTC), inclusive.")],
        granularity: Annotated[
            Granularity, strawberry.argument(description="Bucket size of the series.")
        ] = Granularity.DAY,
        recheck: Annotated[
            bool,
            strawberry.argument(
                description="Ask the vendor again even for closed days the history store "
                "holds (a revision check); by default those are answered from the store."
            ),
        ] = False,
    ) -> Soon[Usage]:
        args = UsageArgs(
            from_,
            to,
            domain.Granularity[granularity.name],
            recheck,
            _usage_splits(info),
        )
        return then(scope_of(info).usage_soon(self.id, args), Usage.from_domain)


def _big(value: int | None) -> BigInt | None:
    return None if value is None else BigInt(value)


@strawberry.enum(description="How a snapshot of an account ended.")
class SnapshotOutcome(enum.Enum):
    RUNNING = strawberry.enum_value("running", description="Under way (or its process died).")
    OK = strawberry.enum_value("ok", description="Stored.")
    FAILED = strawberry.enum_value("failed", description="The vendor failed; nothing stored.")
    ABANDONED = strawberry.enum_value(
        "abandoned", description="Its process stopped before it finished; nothing stored."
    )


@strawberry.type(description="One account's part of a snapshot run into the history store.")
class SnapshotRun:
    id: strawberry.ID = strawberry.field(description="The run's id in the store.")
    account_id: strawberry.ID = strawberry.field(description="The account.")
    started_at: datetime = strawberry.field(description="When it started.")
    finished_at: datetime | None = strawberry.field(description="When it ended.")
    outcome: SnapshotOutcome = strawberry.field(description="How it ended.")
    error: str | None = strawberry.field(description="Why it failed.")
    days: int | None = strawberry.field(description="Days it stored.")
    changed: int | None = strawberry.field(
        description="Stored counts it found changed since an earlier snapshot (and recorded)."
    )

    @classmethod
    def from_domain(cls, run: history.SnapshotRun) -> SnapshotRun:
        return cls(
            id=strawberry.ID(str(run.id)),
            account_id=strawberry.ID(run.account_id),
            started_at=run.started_at,
            finished_at=run.finished_at,
            outcome=SnapshotOutcome[run.outcome.upper()],
            error=run.error,
            days=run.days,
            changed=run.changed,
        )


@strawberry.enum(description="Why a quota is on the alert list.")
class AlertKind(enum.Enum):
    OVER_THRESHOLD = strawberry.enum_value(
        "over_threshold", description="Used at least the threshold's share of its limit."
    )
    RUNS_OUT_BEFORE_RESET = strawberry.enum_value(
        "runs_out_before_reset",
        description="Projected to run out before its window ends (at the fastest likely pace).",
    )


@strawberry.type(description="A quota that needs attention.")
class QuotaAlert:
    kind: AlertKind = strawberry.field(description="Why it is here.")
    quota: Quota = strawberry.field(description="The quota.")
    forecast: QuotaForecast | None = strawberry.field(description="Its projection, if any.")
    message: str = strawberry.field(description="What is wrong, in words.")


@strawberry.enum(description="What makes an alert.")
class AlertRule(enum.Enum):
    THRESHOLD = strawberry.enum_value(
        "threshold", description="A quota used at least a threshold's share of its limit."
    )
    PREDICTIVE = strawberry.enum_value(
        "predictive", description="A quota projected to run out before its window ends."
    )
    UNREADABLE = strawberry.enum_value(
        "unreadable",
        description="An account not read successfully for longer than unreadable_after.",
    )


@strawberry.enum(description="What an alert event announces.")
class AlertEventKind(enum.Enum):
    FIRING = strawberry.enum_value("firing", description="The rule's condition started to hold.")
    RESOLVED = strawberry.enum_value(
        "resolved", description="It no longer holds, or its window reset (see reason)."
    )


@strawberry.enum(description="Where one rule stands on one quota (or account) now.")
class AlertStateName(enum.Enum):
    OK = strawberry.enum_value(
        "ok", description="Nothing to say: the condition does not hold in this window."
    )
    PENDING = strawberry.enum_value(
        "pending",
        description="The condition holds, but the rule resolved less than the cooldown ago: "
        "it fires once the cooldown is over, if the condition still holds.",
    )
    FIRING = strawberry.enum_value("firing", description="Fired; not resolved yet.")
    RESOLVED = strawberry.enum_value(
        "resolved",
        description="Fired in this window and resolved: quiet until the window resets.",
    )


@strawberry.enum(description="Why an alert resolved.")
class AlertResolution(enum.Enum):
    CLEARED = strawberry.enum_value(
        "cleared",
        description="The condition no longer holds (use fell, the limit rose, the account was "
        "read).",
    )
    WINDOW_RESET = strawberry.enum_value(
        "window_reset", description="The quota's window ended; a new one starts from zero."
    )
    RULE_REMOVED = strawberry.enum_value(
        "rule_removed", description="The config no longer has the rule."
    )
    QUOTA_GONE = strawberry.enum_value(
        "quota_gone", description="The vendor no longer reports the quota."
    )


@strawberry.enum(description="Where an alert event stands with one webhook.")
class AlertDeliveryState(enum.Enum):
    PENDING = strawberry.enum_value(
        "pending", description="Not acknowledged yet: tried again on the next snapshot run."
    )
    DELIVERED = strawberry.enum_value(
        "delivered", description="The webhook answered 2xx; never sent again."
    )
    FAILED = strawberry.enum_value(
        "failed",
        description="The webhook refused it (4xx) in three runs; not tried again.",
    )


@strawberry.type(description="An alert event's delivery to one webhook.")
class AlertDelivery:
    webhook: str = strawberry.field(description="The webhook's name (never its URL).")
    state: AlertDeliveryState = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="HTTP requests made for it, over every run.")
    delivered_at: datetime | None = strawberry.field(description="When the webhook took it.")
    last_status: int | None = strawberry.field(
        description="The webhook's HTTP status on the last try; null when it did not answer."
    )
    last_error: str | None = strawberry.field(
        description="Why the last try failed, in words; null once delivered."
    )

    @classmethod
    def from_domain(cls, item: alerts.Delivery) -> AlertDelivery:
        return cls(
            webhook=item.webhook,
            state=_enum(AlertDeliveryState, item.state),
            attempts=item.attempts,
            delivered_at=item.delivered_at,
            last_status=item.last_status,
            last_error=item.last_error,
        )


@strawberry.type(
    description="An alert's firing or resolution, as stored after a snapshot run and sent to "
    "the webhooks (their json body has the same fields)."
)
class AlertEvent:
    id: strawberry.ID = strawberry.field(
        description="Unique and stable: the json body's id and the X-Usage-Gateway-Event header."
    )
    event: AlertEventKind = strawberry.field(description="Firing or resolved.")
    rule: AlertRule = strawberry.field(description="The rule.")
    threshold: float | None = strawberry.field(
        description="The threshold (0.8 = 80%) for threshold rules; null for the others."
    )
    reason: AlertResolution | None = strawberry.field(
        description="Why it resolved; null for a firing."
    )
    at: datetime = strawberry.field(description="When it happened (the snapshot run's time).")
    fired_at: datetime | None = strawberry.field(description="When the alert fired.")
    window_start: datetime | None = strawberry.field(
        description="Start of the quota window the alert belongs to (it fires at most once per "
        "window); for unreadable, the last successful read; null for a quota without a window."
    )
    message: str = strawberry.field(description="What happened, in words.")
    account_id: strawberry.ID = strawberry.field(description="The account.")
    provider: Provider = strawberry.field(description="The account's vendor.")
    quota_id: strawberry.ID | None = strawberry.field(description="The quota; null for unreadable.")
    quota_name: str | None = strawberry.field(description="The quota's name.")
    window: QuotaWindow | None = strawberry.field(description="The quota's window kind.")
    unit: QuotaUnit | None = strawberry.field(description="What the quota counts.")
    used: BigInt | None = strawberry.field(description="Used, as read when it happened.")
    limit: BigInt | None = strawberry.field(description="The limit, as read when it happened.")
    utilization: float | None = strawberry.field(description="used / limit, as read.")
    resets_at: datetime | None = strawberry.field(description="The quota's next reset.")
    runs_out_earliest: datetime | None = strawberry.field(
        description="Projected run-out at the fastest likely pace (the forecast's range)."
    )
    runs_out_latest: datetime | None = strawberry.field(
        description="Projected run-out at the slowest likely pace; null: not in this window."
    )
    last_read_at: datetime | None = strawberry.field(
        description="For unreadable: the account's last successful read (null: never)."
    )
    deliveries: list[AlertDelivery] = strawberry.field(
        description="Its delivery to each webhook configured when it happened."
    )

    @classmethod
    def from_domain(cls, item: alerts.AlertEvent) -> AlertEvent:
        facts = item.facts
        return cls(
            id=strawberry.ID(item.id),
            event=_enum(AlertEventKind, item.event),
            rule=_enum(AlertRule, item.rule),
            threshold=item.threshold,
            reason=_enum(AlertResolution, item.reason) if item.reason else None,
            at=item.at,
            fired_at=item.fired_at,
            window_start=item.window_start,
            message=item.message,
            account_id=strawberry.ID(facts.account_id),
            provider=Provider(facts.provider),
            quota_id=strawberry.ID(facts.quota_id) if facts.quota_id is not None else None,
            quota_name=facts.quota_name,
            window=_enum(QuotaWindow, facts.window) if facts.window else None,
            unit=_enum(QuotaUnit, facts.unit) if facts.unit else None,
            used=_big(facts.used),
            limit=_big(facts.limit),
            utilization=facts.utilization,
            resets_at=facts.resets_at,
            runs_out_earliest=facts.runs_out_earliest,
            runs_out_latest=facts.runs_out_latest,
            last_read_at=facts.last_read_at,
            deliveries=[AlertDelivery.from_domain(d) for d in item.deliveries],
        )


@strawberry.type(description="One alert rule's current state on a quota (or an account).")
class AlertState:
    rule: AlertRule = strawberry.field(description="The rule.")
    threshold: float | None = strawberry.field(
        description="The threshold for threshold rules; null for the others."
    )
    state: AlertStateName = strawberry.field(description="Where it stands.")
    since: datetime | None = strawberry.field(
        description="When it entered this state; null for OK."
    )
    window_start: datetime | None = strawberry.field(
        description="Start of the window the state belongs to (the quota's current window for "
        "OK); for unreadable, the last successful read; null without a window."
    )
    fired_at: datetime | None = strawberry.field(description="When it fired in this window.")
    resolved_at: datetime | None = strawberry.field(description="When it resolved.")

    @classmethod
    def from_domain(cls, item: alerts.AlertState) -> AlertState:
        return cls(
            rule=_enum(AlertRule, item.rule),
            threshold=item.threshold,
            state=_enum(AlertStateName, item.state),
            since=item.since,
            window_start=item.window_start,
            fired_at=item.fired_at,
            resolved_at=item.resolved_at,
        )


def _forecast_of(projection: Forecast | None) -> QuotaForecast | None:
    return None if projection is None else QuotaForecast.from_domain(projection)


def _asks_forecast(info: strawberry.Info) -> bool:
    """Whether a ``quotas`` field selects its quotas' ``forecast`` (through fragments; a
    forecast skipped by ``@skip``/``@include`` counts too: worked out, it is only unused)."""
    raw = info._raw_info
    nodes: list[Any] = [node.selection_set for node in raw.field_nodes]
    while nodes:
        selections = nodes.pop()
        for selection in selections.selections if selections is not None else ():
            if isinstance(selection, FieldNode):
                if selection.name.value == "forecast":
                    return True
            elif isinstance(selection, InlineFragmentNode):
                nodes.append(selection.selection_set)
            else:
                fragment = raw.fragments.get(selection.name.value)
                if fragment is not None:
                    nodes.append(fragment.selection_set)
    return False


async def _with_forecasts(
    scope: RequestScope, listed: Coroutine[Any, Any, list[Quota]]
) -> list[Quota]:
    quotas = await listed
    pending = scope.forecasts_soon(q._domain for q in quotas)
    if pending is not None:
        await pending
    return quotas


async def _after(pending: Coroutine[Any, Any, None], quotas: list[Quota]) -> list[Quota]:
    await pending
    return quotas
