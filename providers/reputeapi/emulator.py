"""The ReputeAPI emulator: ``GET /v1/usage`` as ``shared/upstream/reputeapi.md`` describes it.

Data is generated per key and per UTC hour from the seed (see :class:`ReputeData`), so any period
at any granularity is a sum of the same hours and tests can recompute every number. Only complete
hours count: the data is as of the start of the current hour.

Decisions where the vendor's documents are silent:

* 401 has three messages: no key (``API key required``), an unknown key (``Invalid API key``) and a
  revoked key (``API key revoked``).
* Only ``start_date``: the period ends now. Only ``end_date``: the period is the default span of
  the granularity ending there (24 hours, the month, 12 weeks, 12 months).
* Days (or hours, weeks, months) after now are not listed; days before the key existed are listed
  with zeros.
* ``/v1/usage`` counts 30 requests per key per calendar minute; a 400 counts, a 429 does not.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from gateway.domain import Granularity, bucket_start, day_start, first_of_next_month, utc_now
from providers.emulation import Emulator, EmulatorSpec, Request, Response

TIERS: dict[str, tuple[int, int, int]] = {
    # tier: (requests per month, per minute, per second)
    "free": (1_000, 10, 2),
    "basic": (10_000, 60, 10),
    "premium": (50_000, 120, 20),
}
USAGE_LIMIT_PER_MINUTE = 30
ENDPOINTS = (
    "/api/v1/check",
    "/api/v1/score",
    "/api/v1/recommendations",
    "/api/v1/history",
    "/v1/validate",
    "/v1/usage",
)
_WEIGHTS = (0.58, 0.21, 0.08, 0.06, 0.07)
ERROR_CODES = ("DNS_RESOLUTION_FAILED", "INVALID_DOMAIN", "TIMEOUT")
DOMAINS = (
    "example.com",
    "acme-corp.com",
    "mail.contoso.com",
    "fabrikam.net",
    "northwind-traders.com",
    "tailspin-toys.io",
    "wingtip.org",
    "adventure-works.com",
    "litware.info",
    "proseware.co",
    "lucerne-publishing.com",
    "woodgrove-bank.com",
)
GRANULARITIES = ("hour", "day", "week", "month")
DATE_ERROR = "Invalid date format. Use ISO 8601 format (YYYY-MM-DD)"


@dataclass(frozen=True)
class KeyInfo:
    """An API key the emulator knows."""

    key: str
    api_key_id: str
    tier: str
    created_at: datetime
    target_utilization: float = 0.6
    revoked: bool = False
    custom_limits: tuple[int, int] | None = None
    """(per month, per minute) for the custom ``enterprise`` tier."""

    @property
    def monthly_limit(self) -> int:
        return self.custom_limits[0] if self.custom_limits else TIERS[self.tier][0]

    @property
    def per_minute(self) -> int:
        return self.custom_limits[1] if self.custom_limits else TIERS[self.tier][1]


DEFAULT_KEYS = (
    KeyInfo(
        "ra_live_premium_demo", "key_prem01", "premium", datetime(2025, 1, 6, tzinfo=UTC), 0.62
    ),
    KeyInfo("ra_live_basic_demo", "key_basic01", "basic", datetime(2025, 3, 3, tzinfo=UTC), 0.86),
    KeyInfo("ra_live_free_demo", "key_free01", "free", datetime(2025, 6, 2, tzinfo=UTC), 0.35),
    KeyInfo(
        "ra_live_revoked_demo", "key_rev01", "basic", datetime(2025, 2, 3, tzinfo=UTC), revoked=True
    ),
    KeyInfo(
        "ra_live_enterprise_demo",
        "key_ent01",
        "enterprise",
        datetime(2025, 1, 6, tzinfo=UTC),
        0.7,
        custom_limits=(6_000_000_000, 200_000),
    ),
)


def many_keys(count: int) -> tuple[KeyInfo, ...]:
    """``count`` more keys (``ra_live_many_00000`` ...), for trying a gateway with many
    accounts: tiers in turn, created on one of the first 150 days of 2025, each aiming at its
    own share of its quota. Pass them with the defaults: ``keys=(*DEFAULT_KEYS, *many_keys(n))``.
    """
    tiers = ("premium", "basic", "free")
    return tuple(
        KeyInfo(
            f"ra_live_many_{index:05d}",
            f"key_many{index:05d}",
            tiers[index % len(tiers)],
            datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=index % 150),
            0.2 + (index % 7) / 10,
        )
        for index in range(count)
    )


@dataclass(frozen=True)
class Stats:
    """Usage in one bucket (an hour, or a sum of hours)."""

    endpoints: tuple[int, ...]  # aligned with ENDPOINTS
    failed_by_code: tuple[int, ...]  # aligned with ERROR_CODES
    latency_total_ms: int  # sum of response times, for weighted averages
    unique_domains: int

    @property
    def requests(self) -> int:
        return sum(self.endpoints)

    @property
    def failed(self) -> int:
        return sum(self.failed_by_code)

    @property
    def successful(self) -> int:
        return self.requests - self.failed

    @property
    def average_ms(self) -> int:
        return round(self.latency_total_ms / self.requests) if self.requests else 0

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            tuple(a + b for a, b in zip(self.endpoints, other.endpoints, strict=True)),
            tuple(a + b for a, b in zip(self.failed_by_code, other.failed_by_code, strict=True)),
            self.latency_total_ms + other.latency_total_ms,
            self.unique_domains + other.unique_domains,
        )


ZERO = Stats((0,) * len(ENDPOINTS), (0,) * len(ERROR_CODES), 0, 0)


def total(stats: Iterable[Stats]) -> Stats:
    result = ZERO
    for item in stats:
        result = result + item
    return result


class ReputeData:
    """Deterministic usage per key and hour; everything the emulator answers is summed from it."""

    def __init__(self, seed: int, keys: Iterable[KeyInfo] = DEFAULT_KEYS) -> None:
        self.seed = seed
        self.keys = {k.key: k for k in keys}
        self.hour = lru_cache(maxsize=200_000)(self._hour)

    def _hour(self, key: KeyInfo, start: datetime) -> Stats:
        """Usage of ``key`` in the hour starting at ``start`` (UTC)."""
        if start < key.created_at:
            return ZERO
        rng = random.Random(f"reputeapi:{self.seed}:{key.api_key_id}:{start.isoformat()}")
        base = key.monthly_limit * key.target_utilization / (30.4 * 24)
        diurnal = 1 + 0.6 * math.cos(2 * math.pi * (start.hour - 15) / 24)
        weekly = 1.0 if start.weekday() < 5 else 0.45
        mean = base * diurnal * weekly / 0.93
        counts = [max(0, round(mean * w * rng.uniform(0.5, 1.5))) for w in _WEIGHTS]
        counts.append(rng.choice((0, 0, 0, 1, 1, 2)))  # the gateway's own /v1/usage calls
        requests = sum(counts)
        failed = round(requests * rng.uniform(0.0, 0.045))
        split = [rng.random() + 0.2 for _ in ERROR_CODES]
        by_code = [math.floor(failed * s / sum(split)) for s in split]
        by_code[0] += failed - sum(by_code)
        latency = sum(rng.randint(150, 340) for _ in range(min(requests, 3))) // max(
            min(requests, 3), 1
        )
        unique = requests - rng.randint(0, requests // 4) if requests else 0
        return Stats(tuple(counts), tuple(by_code), latency * requests, unique)

    def last_complete_hour(self, now: datetime) -> datetime:
        """The start of the newest hour that has ended."""
        return bucket_start(now, Granularity.HOUR) - timedelta(hours=1)

    def hours(self, key: KeyInfo, start: datetime, end: datetime, now: datetime) -> list[datetime]:
        """Starts of the complete hours that overlap ``[start, end]``."""
        first = bucket_start(start, Granularity.HOUR)
        last = min(bucket_start(end, Granularity.HOUR), self.last_complete_hour(now))
        count = int((last - first).total_seconds() // 3600) + 1
        return [first + timedelta(hours=i) for i in range(max(count, 0))]

    def day(self, key: KeyInfo, day: date, now: datetime) -> Stats:
        """Usage of ``key`` on ``day`` (complete hours only)."""
        start = day_start(day)
        return total(
            self.hour(key, h) for h in self.hours(key, start, start + timedelta(hours=23), now)
        )

    def month_to_date(self, key: KeyInfo, now: datetime) -> Stats:
        """The current calendar month's usage: what ``quota.used`` counts."""
        first = bucket_start(now, Granularity.MONTH).date()
        return total(self.day(key, first + timedelta(days=i), now) for i in range(now.day))

    def minute_usage(self, key: KeyInfo, now: datetime) -> int:
        """Requests in the current minute (for ``rate_limits.current_minute_usage``)."""
        minute = bucket_start(now, Granularity.MINUTE)
        rng = random.Random(f"reputeapi:{self.seed}:{key.api_key_id}:minute:{minute.isoformat()}")
        per_hour = key.monthly_limit * key.target_utilization / (30.4 * 24)
        return min(key.per_minute, rng.randint(0, math.ceil(per_hour / 30)))

    def buckets(
        self, key: KeyInfo, start: datetime, end: datetime, granularity: str, now: datetime
    ) -> list[tuple[datetime, Stats]]:
        """The ``daily_breakdown`` buckets of a period, in order, each with its usage."""
        if granularity == "hour":
            return [(h, self.hour(key, h)) for h in self.hours(key, start, end, now)]
        days = [
            start.date() + timedelta(days=i)
            for i in range((end.date() - start.date()).days + 1)
            if start.date() + timedelta(days=i) <= now.date()
        ]
        if granularity == "day":
            return [(day_start(d), self.day(key, d, now)) for d in days]
        unit = Granularity.WEEK if granularity == "week" else Granularity.MONTH
        grouped: dict[datetime, Stats] = {}
        for d in days:
            b = bucket_start(day_start(d), unit)
            grouped[b] = grouped.get(b, ZERO) + self.day(key, d, now)
        return list(grouped.items())


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_when(text: str, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` or an ISO 8601 date-time; a bare date ends at 23:59:59 when ``end``."""
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = day_start(day)
        return moment + timedelta(hours=23, minutes=59, seconds=59) if end else moment
    if len(text) < 16 or text[10] not in "Tt ":
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ReputeEmulator(Emulator):
    """ReputeAPI's ``/v1/usage`` with auth, validation, the 30/minute limit and seeded data."""

    vendor = "ReputeAPI"

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        keys: Iterable[KeyInfo] = DEFAULT_KEYS,
    ) -> None:
        super().__init__(seed=seed, clock=clock)
        self.data = ReputeData(seed, keys)
        self._window_lock = threading.Lock()
        self._windows: Counter[tuple[str, datetime]] = Counter()

    def reset_state(self) -> None:
        with self._window_lock:
            self._windows.clear()

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        if status == 429:
            seconds = retry_after or 60
            return Response.json(
                {
                    "error": "Rate limit exceeded",
                    "message": "You have exceeded your rate limit of "
                    f"{USAGE_LIMIT_PER_MINUTE} requests per minute",
                    "retry_after": seconds,
                },
                status=429,
                headers={"Retry-After": str(seconds)},
            )
        reasons = {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        body = {"error": reasons.get(status, "Error"), "message": message, "status": status}
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return Response.json(body, status=status, headers=headers)

    async def handle(self, request: Request) -> Response:
        if request.path != "/v1/usage":
            return self.error(404, "Endpoint not found")
        if request.method != "GET":
            return self.error(405, "Method not allowed")
        supplied = request.headers.get("x-api-key", "").strip()
        if not supplied:
            return self.error(401, "API key required")
        key = self.data.keys.get(supplied)
        if key is None:
            return self.error(401, "Invalid API key")
        if key.revoked:
            return self.error(401, "API key revoked")

        now = self.clock()
        minute = bucket_start(now, Granularity.MINUTE)
        next_minute = minute + timedelta(minutes=1)
        with self._window_lock:
            used = self._windows[(key.key, minute)]
            if used >= USAGE_LIMIT_PER_MINUTE:
                wait = max(1, math.ceil((next_minute - now).total_seconds()))
                limited = self.error(429, "", retry_after=wait)
                limited.headers.update(self._limit_headers(0, next_minute))
                return limited
            self._windows[(key.key, minute)] = used + 1
            remaining = USAGE_LIMIT_PER_MINUTE - used - 1
        response = self._usage(request, key, now)
        response.headers.update(self._limit_headers(remaining, next_minute))
        return response

    @staticmethod
    def _limit_headers(remaining: int, reset: datetime) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(USAGE_LIMIT_PER_MINUTE),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset.timestamp())),
        }

    def default_start(self, granularity: str, end: datetime) -> datetime:
        """Where a period ending at ``end`` starts when ``start_date`` is not given."""
        if granularity == "hour":  # the 24 whole hours that end by ``end``
            return bucket_start(end + timedelta(seconds=1), Granularity.HOUR) - timedelta(hours=24)
        if granularity == "week":
            return bucket_start(end, Granularity.WEEK) - timedelta(weeks=11)
        month = bucket_start(end, Granularity.MONTH)
        if granularity == "month":
            year, index = divmod(month.year * 12 + month.month - 1 - 11, 12)
            return month.replace(year=year, month=index + 1)
        return month

    def _usage(self, request: Request, key: KeyInfo, now: datetime) -> Response:
        granularity = (request.param("granularity") or "day").strip().lower()
        if granularity not in GRANULARITIES:
            return self.error(400, "Invalid granularity. Use one of: hour, day, week, month")
        raw_start = request.param("start_date")
        raw_end = request.param("end_date")
        try:
            start = parse_when(raw_start, end=False) if raw_start else None
            end = parse_when(raw_end, end=True) if raw_end else None
        except ValueError:
            return self.error(400, DATE_ERROR)
        if start is None and end is None and granularity == "day":
            month = bucket_start(now, Granularity.MONTH)
            start = month
            end = day_start(first_of_next_month(month.date())) - timedelta(seconds=1)
        if end is None:
            end = now
        if start is None:
            start = self.default_start(granularity, end)
        if start > end:
            return self.error(400, "Invalid date range: start_date must not be after end_date")

        buckets = self.data.buckets(key, start, end, granularity, now)
        period = total(stats for _, stats in buckets)
        this_month = self.data.month_to_date(key, now)
        limit = key.monthly_limit
        reset = day_start(first_of_next_month(now.date()))
        requests = period.requests

        def label(moment: datetime) -> str:
            return iso_z(moment) if granularity == "hour" else moment.date().isoformat()

        body = {
            "account": {
                "api_key_id": key.api_key_id,
                "tier": key.tier,
                "created_at": iso_z(key.created_at),
            },
            "period": {
                "start_date": iso_z(start),
                "end_date": iso_z(end),
                "granularity": granularity,
            },
            "quota": {
                "monthly_limit": limit,
                "used": this_month.requests,
                "remaining": limit - this_month.requests,
                "reset_date": iso_z(reset),
                "percentage_used": round(this_month.requests / limit * 100, 2),
            },
            "rate_limits": {
                "requests_per_minute": key.per_minute,
                "current_minute_usage": self.data.minute_usage(key, now),
                "next_reset": iso_z(bucket_start(now, Granularity.MINUTE) + timedelta(minutes=1)),
            },
            "summary": {
                "total_requests": requests,
                "successful_requests": period.successful,
                "failed_requests": period.failed,
                "success_rate": round(period.successful / requests * 100, 2) if requests else 0.0,
                "endpoints": {
                    path: count
                    for path, count in zip(ENDPOINTS, period.endpoints, strict=True)
                    if count
                },
                "average_response_time_ms": period.average_ms,
                "total_domains_validated": period.unique_domains,
            },
            "daily_breakdown": [
                {
                    "date": label(moment),
                    "requests": stats.requests,
                    "successful": stats.successful,
                    "failed": stats.failed,
                    "unique_domains": stats.unique_domains,
                    "average_response_time_ms": stats.average_ms,
                }
                for moment, stats in buckets
            ],
            "errors": {
                "by_code": {
                    code: n for code, n in zip(ERROR_CODES, period.failed_by_code, strict=True) if n
                },
                "total": period.failed,
            },
            "top_domains": self._top_domains(buckets, period),
        }
        return Response.json(body)

    def _top_domains(self, buckets: list[tuple[datetime, Stats]], period: Stats) -> list[object]:
        active = [moment for moment, stats in buckets if stats.requests]
        if not active:
            return []
        last = active[-1]
        rng = random.Random(f"reputeapi:{self.seed}:top:{iso_z(last)}:{period.requests}")
        order = list(DOMAINS)
        rng.shuffle(order)
        top: list[object] = []
        share = period.successful * 0.02
        for rank, domain in enumerate(order[:10]):
            count = int(share / (rank + 1))
            if count <= 0:
                break
            checked = last + timedelta(minutes=59 - 7 * rank)
            top.append({"domain": domain, "request_count": count, "last_checked": iso_z(checked)})
        return top


EMULATOR = EmulatorSpec(
    factory=ReputeEmulator,
    accounts=(
        {"id": "repute-premium", "name": "ReputeAPI premium", "api_key": "ra_live_premium_demo"},
        {"id": "repute-basic", "name": "ReputeAPI basic", "api_key": "ra_live_basic_demo"},
    ),
    bad_credentials={"api_key": "ra_live_not_a_key"},
    first_day=min(
        k.created_at.date()
        for k in DEFAULT_KEYS
        if k.key in ("ra_live_premium_demo", "ra_live_basic_demo")
    ),
)
