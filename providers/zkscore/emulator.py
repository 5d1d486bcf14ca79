"""The ZKScore emulator: ``GET /v1/developer/usage`` as ``shared/upstream/zkscore.md`` describes it.

Paths: ``GET /v1/developer/usage`` (usage statistics), ``GET /v1/developer/keys`` (the key list);
``POST /v1/developer/keys`` and ``DELETE /v1/developer/keys/{keyId}`` answer 405; every other
path answers 404. Auth is ``Authorization: Bearer <api key>``; errors are the vendor's
``{"success": false, "error": "<CODE>", "message": "<text>", "timestamp": "<ISO 8601>"}``.

Data (:class:`ZkScoreData`) is generated per API key and UTC day from the seed: requests per
endpoint and outcome (success or one of five error types), the latency sum and the slowest request
per endpoint, and bytes per endpoint. Hours are split from the day, and minutes from the hour, with
seeded splits that add up exactly (counts, latency sums, bytes; the slowest request of a day is the
slowest of exactly one of its hours, and so on down to minutes), so every window at any granularity
is a sum of the same numbers and tests can recompute each one. All keys of an account share, per
day, the hour that holds its spike and, per hour, the minute that holds its spike, so the peak
minute and peak hour of any set of keys over a whole day are known without splitting the day.

Accounts (API key = the bearer token):

* ``acct_acme`` "ACME Analytics", professional (1,000/min, 1,000,000/day): ``key_1`` "prod"
  (``zk_live_acme_prod_demo``), ``key_2`` "staging" (``zk_live_acme_staging_demo``), ``key_3``
  "ci-legacy" (``zk_live_acme_ci_demo``, revoked on 2025-12-01: its token answers 403, its usage
  before that day stays).
* ``acct_hobby`` "Hobby Builder", free (60/min, 10,000/day): ``key_4`` "default"
  (``zk_live_hobby_demo``): about 9,500 requests every day, mostly from a batch job between 00:00
  and 10:00 UTC, so ``APPROACHING_DAILY_LIMIT`` fires every day from 10:30 UTC at the latest.
* ``acct_orbit`` "Orbit Labs", starter (300/min, 100,000/day): ``key_5`` "main"
  (``zk_live_orbit_main_demo``, about 9 % errors: ``HIGH_ERROR_RATE``), ``key_6`` "analytics"
  (``zk_live_orbit_analytics_demo``).

Decisions where the documents are silent:

* Only complete minutes count: a window ends at the start of the current minute (UTC) and starts
  ``timeframe`` before that (1h = 60 min, 24h, 7d, 30d, 90d, 1y = 365 days); ``all`` starts at the
  account's creation (00:00 UTC of its first key's creation day). Buckets before an account or key
  existed are listed with zeros.
* ``timeSeries`` buckets are aligned to the granularity (UTC; weeks start on Monday, months on the
  1st) and stamped with their aligned start; the first and the last bucket count only the part of
  them inside the window, so the buckets add up to the window's totals exactly.
* Granularity per timeframe: ``minute`` with 1h and 24h only; ``hour`` with 1h … 90d; ``day``,
  ``week`` and ``month`` with every timeframe (at most ~2,200 buckets). Any other combination is
  400 ``INVALID_PARAMETERS``. Without ``granularity`` the default is ``hour``, or ``day`` for 1y and
  ``all`` (where ``hour`` is not allowed).
* Validation order: unknown path (404), credentials (401 / 403), the per-minute rate limit (429),
  method (405), then ``timeframe``, ``granularity``, the granularity/timeframe combination, the
  three ``include*`` flags, ``sortBy``, ``order``, ``limit``, ``offset`` (all 400), and finally
  ``keyId`` (404). Values are case-sensitive and exactly as documented (``true``/``false``); an
  empty value is an invalid value; ``limit`` and ``offset`` are decimal integers. When both
  spellings of a parameter are given, the camelCase one (``keyId``, ``includeEndpoints``,
  ``sortBy``, ``order`` ...) wins. Unknown parameters are ignored.
* ``keyId`` may name any key of the caller's account, revoked ones included; a key of another
  account, an unknown id or an empty value is 404 ``NOT_FOUND`` ("No usage data found"). A key of
  the account without requests in the window answers 200 with zeros (zero is a fact there).
* A revoked key's token is 403 ``FORBIDDEN`` ("API key has been revoked"); a missing header, another
  scheme or an unknown token is 401 ``UNAUTHORIZED`` ("Invalid or missing API key"). Any active key
  of an account reads the whole account's usage. A key exists from its creation day on.
* Rate limit: the calls to ``/v1/developer/*`` are counted per account and calendar minute of the
  emulator's clock against the tier's per-minute limit; every counted answer (200, 400, 404 for a
  ``keyId``, 405) carries ``X-RateLimit-Limit`` (per minute), ``X-RateLimit-Remaining`` and
  ``X-RateLimit-Reset`` (Unix seconds of the next minute). Past the limit: 429
  ``RATE_LIMIT_EXCEEDED`` with ``Retry-After`` (seconds to the next minute, at least 1) and
  ``Remaining: 0``; 429s are not counted. Unknown paths, 401 and 403 carry no rate-limit headers.
  These calls are not part of the seeded usage (reading usage does not show up in it).
* ``rateLimits`` describes the account (every key), whatever ``keyId`` says: ``current`` is the
  tier (``requestsPerHour`` = 60 x the per-minute limit: the tier publishes no hourly figure);
  ``usage.requestsPerMinute`` is the last complete minute, ``requestsPerHour`` the current UTC hour
  so far and ``requestsPerDay`` the current UTC day so far (complete minutes); ``utilization`` is
  usage / limit in percent. Extra fields: ``tier`` and ``resetsAt`` (next minute / hour / day).
* ``requestsPerMinute`` / ``Hour`` / ``Day`` of ``usage`` are averages over the window's length;
  ``peakRequestsPerMinute`` is the busiest minute, ``peakRequestsPerHour`` the busiest UTC hour
  (clipped to the window). Rates and percentages are percent with two decimals; an empty selection
  has rates and averages of 0. ``averageLatency`` (ms) and ``averageDataPerRequest`` (bytes) have
  two decimals; ``peakLatency`` is the slowest single request (ms).
* ``breakdown.byEndpoint`` lists the endpoints with requests in the window, with extra fields
  ``method``, ``errors`` and ``lastRequestAt`` (start of the last minute in the window with a
  request to it); it is sorted by ``sortBy`` (``requests``; ``errors``; ``latency`` = average
  latency, also when latency fields are left out; ``timestamp`` = ``lastRequestAt``) in ``order``,
  ties by endpoint path ascending, then paged by ``offset``/``limit``. ``pagination`` describes
  that list (``total`` = all entries, ``hasMore`` = entries after this page); an ``offset`` past
  the end gives an empty page. With ``includeEndpoints=false`` both ``breakdown.byEndpoint`` and
  ``pagination`` are left out (``errors.byEndpoint`` stays: it belongs to ``errors``).
* ``byMethod``, ``byStatusCode`` (``breakdown``: every status, percent of requests; ``errors``:
  error statuses, percent of errors), ``errors.byType`` (percent of errors) and
  ``errors.byEndpoint`` (``errorRate`` = the endpoint's errors / its requests) list only non-zero
  entries, by count descending, ties by name or code. ``byKey`` lists every key of the selection
  (revoked ones too, zeros included) in key id order: ``keyId``, ``name``, ``status``,
  ``requests``, ``successfulRequests``, ``failedRequests``, ``successRate``, ``averageLatency``,
  ``dataTransferred``. Status codes: 200 success, ``RATE_LIMIT_EXCEEDED`` 429, ``INVALID_ADDRESS``
  400, ``NOT_FOUND`` 404, ``INTERNAL_ERROR`` 500, ``TIMEOUT`` 504.
* ``includeLatency=false`` removes ``averageLatency`` and ``peakLatency`` from ``usage``, every
  ``timeSeries`` bucket, ``byEndpoint`` and ``byKey``.
* Alerts, derived from the answer's data, ordered high before medium, then by type:
  ``HIGH_ERROR_RATE`` (high) when the selection's error rate over the window is above 5 %;
  ``APPROACHING_DAILY_LIMIT`` (high) when the account's requests today (UTC) are above 80 % of the
  daily limit; ``HIGH_UTILIZATION`` (medium) when the selection's average requests per day over the
  window are above 80 % of the daily limit; ``PEAK_NEAR_RATE_LIMIT`` (medium) when its busiest
  minute is above 80 % of the per-minute limit.
* Extra top-level ``period``: ``timeframe``, ``granularity``, ``start``, ``end``, ``keyId``.
  Timestamps are ISO 8601 UTC with milliseconds and ``Z`` (JavaScript's ``toISOString``).
* ``GET /v1/developer/keys`` answers ``{"success": true, "tier", "keys": [{"id", "name",
  "prefix", "status", "createdAt", "lastUsedAt", "revokedAt"}], "total", "timestamp"}``:
  ``prefix`` is the token's first 12 characters, ``lastUsedAt`` the start of the key's last minute
  with a request (``null`` if none), ``revokedAt`` ``null`` for active keys. Key management is
  read-only here: ``POST /v1/developer/keys`` and any method on ``/v1/developer/keys/{keyId}`` are
  405 ``METHOD_NOT_ALLOWED``. One trailing slash on a path is ignored.
* A fault's error uses the same form (500 ``INTERNAL_ERROR``, 502 ``BAD_GATEWAY``, 503
  ``SERVICE_UNAVAILABLE``, 504 ``GATEWAY_TIMEOUT``, 429 with ``Retry-After``); a wrong-shape fault
  answers ``{"success": true, "data": {...}}`` without ``usage``.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from gateway.domain import Granularity, bucket_start, day_start, first_of_next_month, utc_now
from providers.emulation import Emulator, EmulatorSpec, Request, Response

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PPM = 1_000_000

# -- the vendor's vocabulary -----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """An endpoint of the ZKScore API that the seeded traffic calls."""

    method: str
    path: str
    latency_ms: float
    """Mean response time."""
    bytes_per_request: int


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/v1/score/{address}", 85.0, 1_200),
    Endpoint("POST", "/v1/score/batch", 420.0, 38_000),
    Endpoint("GET", "/v1/identity/{address}", 120.0, 2_400),
    Endpoint("GET", "/v1/attestations", 160.0, 6_500),
    Endpoint("POST", "/v1/attestations/verify", 240.0, 900),
    Endpoint("GET", "/v1/leaderboard", 60.0, 14_000),
)
ENDPOINT_PATHS = tuple(e.path for e in ENDPOINTS)


@dataclass(frozen=True)
class ErrorType:
    """A kind of failed request in the seeded traffic."""

    code: str
    status: int
    description: str


ERROR_TYPES: tuple[ErrorType, ...] = (
    ErrorType("RATE_LIMIT_EXCEEDED", 429, "Requests over the key's rate limit were rejected"),
    ErrorType("INVALID_ADDRESS", 400, "The wallet address was malformed or had a bad checksum"),
    ErrorType("NOT_FOUND", 404, "No score, identity or attestation exists for the address"),
    ErrorType("INTERNAL_ERROR", 500, "The service failed while handling the request"),
    ErrorType("TIMEOUT", 504, "The request took longer than the 30 s processing limit"),
)
SUCCESS_STATUS = 200
OUTCOMES = 1 + len(ERROR_TYPES)
"""Per endpoint: success, then one count per error type."""
CELLS = len(ENDPOINTS) * OUTCOMES


@dataclass(frozen=True)
class Tier:
    """A plan's limits."""

    name: str
    per_minute: int
    per_day: int

    @property
    def per_hour(self) -> int:
        """No hourly limit is published: what the per-minute limit allows in an hour."""
        return self.per_minute * 60


TIERS: dict[str, Tier] = {
    "free": Tier("free", 60, 10_000),
    "starter": Tier("starter", 300, 100_000),
    "professional": Tier("professional", 1_000, 1_000_000),
}


@dataclass(frozen=True)
class ApiKey:
    """An API key and the traffic it makes (its profile)."""

    id: str
    name: str
    token: str
    created: date
    daily_mean: int
    endpoint_weights: tuple[float, ...]
    """Share of each endpoint of ``ENDPOINTS`` (0: never called)."""
    error_rate: float
    error_weights: tuple[float, ...]
    """Share of each error type of ``ERROR_TYPES``."""
    revoked: date | None = None
    """Revoked at 00:00 UTC of this day: no usage from then on, its token answers 403."""
    weekend_factor: float = 0.6
    noise: float = 0.15
    latency_factor: float = 1.0

    def active_on(self, day: date) -> bool:
        return self.created <= day and (self.revoked is None or day < self.revoked)

    def exists_at(self, now: datetime) -> bool:
        return self.created <= now.astimezone(UTC).date()

    def revoked_at(self, now: datetime) -> bool:
        return self.revoked is not None and day_start(self.revoked) <= now

    def status(self, now: datetime) -> str:
        return "revoked" if self.revoked_at(now) else "active"


@dataclass(frozen=True)
class Account:
    """A ZKScore developer account: a tier, keys, and when in the UTC day it is busy."""

    id: str
    name: str
    tier: str
    diurnal: tuple[float, ...]
    """Relative traffic of each UTC hour (24 values)."""
    keys: tuple[ApiKey, ...]

    @property
    def limits(self) -> Tier:
        return TIERS[self.tier]

    @property
    def created(self) -> datetime:
        """00:00 UTC of its first key's creation day: where ``timeframe=all`` starts."""
        return day_start(min(k.created for k in self.keys))


def _cosine(peak_hour: int, swing: float) -> tuple[float, ...]:
    return tuple(1 + swing * math.cos(2 * math.pi * (h - peak_hour) / 24) for h in range(24))


DEFAULT_ACCOUNTS: tuple[Account, ...] = (
    Account(
        "acct_acme",
        "ACME Analytics",
        "professional",
        _cosine(16, 0.5),
        (
            ApiKey(
                "key_1",
                "prod",
                "zk_live_acme_prod_demo",
                date(2025, 1, 15),
                120_000,
                (0.46, 0.08, 0.20, 0.12, 0.04, 0.10),
                0.012,
                (0.10, 0.35, 0.35, 0.10, 0.10),
                weekend_factor=0.55,
                noise=0.12,
            ),
            ApiKey(
                "key_2",
                "staging",
                "zk_live_acme_staging_demo",
                date(2025, 4, 1),
                15_000,
                (0.30, 0.15, 0.20, 0.15, 0.10, 0.10),
                0.035,
                (0.05, 0.50, 0.30, 0.10, 0.05),
                weekend_factor=0.2,
                noise=0.3,
                latency_factor=1.3,
            ),
            ApiKey(
                "key_3",
                "ci-legacy",
                "zk_live_acme_ci_demo",
                date(2025, 1, 15),
                4_000,
                (0.50, 0.30, 0.20, 0.0, 0.0, 0.0),
                0.02,
                (0.05, 0.40, 0.40, 0.10, 0.05),
                revoked=date(2025, 12, 1),
                weekend_factor=0.1,
                noise=0.25,
            ),
        ),
    ),
    Account(
        "acct_hobby",
        "Hobby Builder",
        "free",
        (500.0,) * 10 + (50.0,) * 14,
        (
            ApiKey(
                "key_4",
                "default",
                "zk_live_hobby_demo",
                date(2025, 9, 1),
                9_500,
                (0.55, 0.25, 0.12, 0.0, 0.0, 0.08),
                0.03,
                (0.50, 0.20, 0.20, 0.05, 0.05),
                weekend_factor=1.0,
                noise=0.04,
                latency_factor=1.1,
            ),
        ),
    ),
    Account(
        "acct_orbit",
        "Orbit Labs",
        "starter",
        _cosine(9, 0.4),
        (
            ApiKey(
                "key_5",
                "main",
                "zk_live_orbit_main_demo",
                date(2025, 6, 10),
                40_000,
                (0.35, 0.10, 0.25, 0.15, 0.05, 0.10),
                0.09,
                (0.10, 0.30, 0.20, 0.25, 0.15),
                weekend_factor=0.7,
                latency_factor=1.15,
            ),
            ApiKey(
                "key_6",
                "analytics",
                "zk_live_orbit_analytics_demo",
                date(2025, 11, 3),
                7_000,
                (0.10, 0.05, 0.10, 0.30, 0.0, 0.45),
                0.02,
                (0.10, 0.30, 0.30, 0.20, 0.10),
                weekend_factor=0.3,
            ),
        ),
    ),
)

# -- usage numbers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint's usage in a span."""

    endpoint: str
    method: str
    requests: int
    failed: int
    latency_total_ms: int
    peak_latency_ms: int
    data_bytes: int

    @property
    def successful(self) -> int:
        return self.requests - self.failed

    @property
    def success_rate(self) -> float:
        """Percent, unrounded; 0 without requests."""
        return self.successful / self.requests * 100 if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests * 100 if self.requests else 0.0

    @property
    def average_latency(self) -> float:
        return self.latency_total_ms / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Stats:
    """Usage of a set of keys over a span (a minute, an hour, a day, or any window).

    ``counts`` holds, per endpoint of ``ENDPOINTS`` (endpoint-major), the successful requests
    and then the failed ones per error type of ``ERROR_TYPES``.
    """

    counts: tuple[int, ...]
    latency: tuple[int, ...]
    """Per endpoint: the sum of response times, ms."""
    data: tuple[int, ...]
    """Per endpoint: bytes transferred."""
    peak_latency: tuple[int, ...]
    """Per endpoint: the slowest single request, ms (0 without requests)."""
    peak_minute: int
    """Requests in the busiest minute of the span."""
    peak_hour: int
    """Requests in the busiest UTC hour of the span (clipped to the span)."""

    @property
    def requests(self) -> int:
        return sum(self.counts)

    @property
    def successful(self) -> int:
        return sum(self.counts[0::OUTCOMES])

    @property
    def failed(self) -> int:
        return self.requests - self.successful

    @property
    def latency_total_ms(self) -> int:
        return sum(self.latency)

    @property
    def max_latency_ms(self) -> int:
        return max(self.peak_latency)

    @property
    def data_bytes(self) -> int:
        return sum(self.data)

    @property
    def success_rate(self) -> float:
        """Percent, unrounded; 0 without requests."""
        requests = self.requests
        return self.successful / requests * 100 if requests else 0.0

    @property
    def error_rate(self) -> float:
        requests = self.requests
        return self.failed / requests * 100 if requests else 0.0

    @property
    def average_latency(self) -> float:
        requests = self.requests
        return self.latency_total_ms / requests if requests else 0.0

    def endpoint_requests(self, index: int) -> int:
        return sum(self.counts[index * OUTCOMES : (index + 1) * OUTCOMES])

    def endpoint(self, index: int) -> EndpointStats:
        """The usage of ``ENDPOINTS[index]``."""
        cells = self.counts[index * OUTCOMES : (index + 1) * OUTCOMES]
        return EndpointStats(
            ENDPOINTS[index].path,
            ENDPOINTS[index].method,
            sum(cells),
            sum(cells[1:]),
            self.latency[index],
            self.peak_latency[index],
            self.data[index],
        )

    def endpoints(self) -> list[EndpointStats]:
        """Every endpoint in ``ENDPOINTS`` order (zeros included)."""
        return [self.endpoint(i) for i in range(len(ENDPOINTS))]

    def errors_by_type(self) -> dict[str, int]:
        """Failed requests per error type (zeros included)."""
        return {
            kind.code: sum(self.counts[1 + t :: OUTCOMES]) for t, kind in enumerate(ERROR_TYPES)
        }

    def by_status(self) -> dict[int, int]:
        """Requests per HTTP status (zeros included)."""
        out = {SUCCESS_STATUS: self.successful}
        for kind, count in zip(ERROR_TYPES, self.errors_by_type().values(), strict=True):
            out[kind.status] = out.get(kind.status, 0) + count
        return out

    def by_method(self) -> dict[str, int]:
        """Requests per HTTP method (zeros included)."""
        out: dict[str, int] = {}
        for index, endpoint in enumerate(ENDPOINTS):
            out[endpoint.method] = out.get(endpoint.method, 0) + self.endpoint_requests(index)
        return out


ZERO = Stats(
    (0,) * CELLS, (0,) * len(ENDPOINTS), (0,) * len(ENDPOINTS), (0,) * len(ENDPOINTS), 0, 0
)


def _sum(vectors: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(map(sum, zip(*vectors, strict=True)))


def _max(vectors: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(map(max, zip(*vectors, strict=True)))


def merge(parts: Sequence[Stats]) -> Stats:
    """Several keys' usage of the same aligned span (one minute, one UTC hour or one UTC day).

    Counts add; so do ``peak_minute`` and ``peak_hour``, which is exact because all keys of an
    account have their spike in the same hour of a day and the same minute of an hour.
    """
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return ZERO
    return Stats(
        _sum(p.counts for p in parts),
        _sum(p.latency for p in parts),
        _sum(p.data for p in parts),
        _max(p.peak_latency for p in parts),
        sum(p.peak_minute for p in parts),
        sum(p.peak_hour for p in parts),
    )


def chain(parts: Sequence[Stats]) -> Stats:
    """The usage of consecutive spans, each already a sum over the same keys: peaks are maxima."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return ZERO
    return Stats(
        _sum(p.counts for p in parts),
        _sum(p.latency for p in parts),
        _sum(p.data for p in parts),
        _max(p.peak_latency for p in parts),
        max(p.peak_minute for p in parts),
        max(p.peak_hour for p in parts),
    )


# -- deterministic splitting -----------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder), summing exactly."""
    size = sum(weights)
    if total <= 0 or size <= 0:
        return [0] * len(weights)
    shares = [total * w / size for w in weights]
    out = [math.floor(s) for s in shares]
    left = total - sum(out)
    order = sorted(range(len(weights)), key=lambda i: (out[i] - shares[i], i))
    for i in order[:left]:
        out[i] += 1
    return out


def valid_peak(requests: int, latency_total: int, wanted: int) -> int:
    """The slowest request nearest ``wanted`` that ``requests`` requests summing to
    ``latency_total`` ms (each at least 1 ms) can have."""
    if requests <= 0:
        return 0
    low = _ceil_div(latency_total, requests)
    high = latency_total - (requests - 1)
    return min(max(wanted, low), high)


def _shape_split(total: int, spike: int, spike_ppm: int, cumulative: Sequence[int]) -> list[int]:
    """``total`` over ``len(cumulative)`` rows: row ``spike`` gets ``ceil(total * spike_ppm)``,
    the others share the rest by their cumulative integer weights (``cumulative`` has one more
    entry than there are other rows, from 0 to their sum)."""
    rows = len(cumulative)
    out = [0] * rows
    top = min(total, _ceil_div(total * spike_ppm, PPM))
    out[spike] = top
    rest = total - top
    weight = cumulative[-1]
    others = [r for r in range(rows) if r != spike]
    for i, row in enumerate(others):
        out[row] = rest * cumulative[i + 1] // weight - rest * cumulative[i] // weight
    return out


def round_matrix(rows: Sequence[int], cols: Sequence[int], rng: random.Random) -> list[list[int]]:
    """A non-negative integer matrix whose row sums are ``rows`` and column sums ``cols``.

    Each column is spread over the rows in proportion to what the rows can still take (largest
    remainder, ties broken by a seeded rotation), so no row ever overflows.
    """
    height = len(rows)
    caps = list(rows)
    left = sum(caps)
    out = [[0] * len(cols) for _ in range(height)]
    for j, column in enumerate(cols):
        if column == 0:
            continue
        if column == left:
            for r in range(height):
                out[r][j] = caps[r]
                caps[r] = 0
            left = 0
            continue
        rotation = rng.randrange(height)
        remainders: list[tuple[int, int, int]] = []
        given = 0
        for r in range(height):
            cap = caps[r]
            if cap == 0:
                continue
            share, remainder = divmod(column * cap, left)
            if share:
                out[r][j] = share
                caps[r] = cap - share
                given += share
            if remainder:
                remainders.append((remainder, (rotation - r) % height, r))
        extra = column - given
        if extra:
            remainders.sort(reverse=True)
            for _, _, r in remainders[:extra]:
                out[r][j] += 1
                caps[r] -= 1
        left -= column
    return out


def split_stats(parent: Stats, rows: Sequence[int], rng: random.Random) -> list[Stats]:
    """``parent`` split over ``len(rows)`` consecutive sub-spans holding ``rows`` requests.

    Counts, latency sums and bytes add up exactly; per endpoint, the parent's slowest request falls
    in the sub-span with the most requests of that endpoint, every other sub-span's slowest request
    lies between its average and the parent's. ``peak_minute``/``peak_hour`` are left at 0 for
    the caller.
    """
    height = len(rows)
    matrix = round_matrix(rows, parent.counts, rng)
    endpoints = len(ENDPOINTS)
    latency = [[0] * endpoints for _ in range(height)]
    data = [[0] * endpoints for _ in range(height)]
    peaks = [[0] * endpoints for _ in range(height)]
    for e in range(endpoints):
        lo, hi = e * OUTCOMES, (e + 1) * OUTCOMES
        counts = [sum(row[lo:hi]) for row in matrix]
        total = sum(counts)
        if total == 0:
            continue
        parent_latency, peak = parent.latency[e], parent.peak_latency[e]
        carrier = counts.index(max(counts))
        others_latency = parent_latency - peak  # the other total - 1 requests
        others = total - 1
        running = 0
        bytes_running = 0
        for r in range(height):
            n = counts[r]
            group = n - 1 if r == carrier else n
            share = 0
            if others:
                share = (
                    others_latency * (running + group) // others
                    - others_latency * running // others
                )
            running += group
            row_latency = share + (peak if r == carrier else 0)
            latency[r][e] = row_latency
            data[r][e] = (
                parent.data[e] * (bytes_running + n) // total
                - parent.data[e] * bytes_running // total
            )
            bytes_running += n
            if n == 0:
                continue
            if r == carrier:
                peaks[r][e] = peak
            else:
                low = _ceil_div(row_latency, n)
                high = min(peak, row_latency - (n - 1))
                wanted = round(row_latency / n * rng.uniform(1.5, 4.0))
                peaks[r][e] = min(max(wanted, low), high)
    return [
        Stats(tuple(matrix[r]), tuple(latency[r]), tuple(data[r]), tuple(peaks[r]), 0, 0)
        for r in range(height)
    ]


@dataclass(frozen=True)
class DayShape:
    """How an account's day is spread over its hours (shared by all its keys)."""

    spike_hour: int
    spike_ppm: int
    """Share of each key's day in the spike hour (ppm, rounded up)."""
    cumulative: tuple[int, ...]
    """Cumulative integer weights of the other 23 hours, in hour order, from 0."""
    minute_ppm: int
    """Share of each hour of this day in its spike minute (ppm, rounded up)."""


@dataclass(frozen=True)
class HourShape:
    """How an account's hour is spread over its minutes (shared by all its keys)."""

    spike_minute: int
    cumulative: tuple[int, ...]
    """Cumulative integer weights of the other 59 minutes, in minute order, from 0."""


MINUTE_WEIGHTS = (800, 1200)
MINUTE_FLOOR_PPM = _ceil_div(MINUTE_WEIGHTS[1] * PPM, MINUTE_WEIGHTS[1] + 58 * MINUTE_WEIGHTS[0])
"""The spike minute's share is at least the largest share any other minute can have."""
PEAK_CAP = 0.75
"""Spike minutes aim below this fraction of the tier's per-minute limit."""

Piece = tuple[str, datetime, datetime]
"""A part of a window: ("day" | "hour" | "minutes", start, end)."""


def pieces(start: datetime, end: datetime) -> list[Piece]:
    """``[start, end)`` (minute-aligned) as whole UTC days, whole hours and runs of minutes."""
    out: list[Piece] = []
    moment = start
    while moment < end:
        if moment.hour == 0 and moment.minute == 0 and moment + DAY <= end:
            out.append(("day", moment, moment + DAY))
            moment += DAY
        elif moment.minute == 0 and moment + HOUR <= end:
            out.append(("hour", moment, moment + HOUR))
            moment += HOUR
        else:
            stop = min(end, moment.replace(minute=0) + HOUR)
            out.append(("minutes", moment, stop))
            moment = stop
    return out


def next_bucket(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket after the one starting at ``moment``."""
    if granularity is Granularity.MINUTE:
        return moment + MINUTE
    if granularity is Granularity.HOUR:
        return moment + HOUR
    if granularity is Granularity.DAY:
        return moment + DAY
    if granularity is Granularity.WEEK:
        return moment + 7 * DAY
    return day_start(first_of_next_month(moment.date()))


class ZkScoreData:
    """Deterministic usage per API key: days from the seed, hours from days, minutes from hours.

    Every figure the emulator answers is computed here. Keys are named by id (``key_1``);
    instants are timezone-aware UTC and windows ``[start, end)`` are minute-aligned.
    """

    def __init__(self, seed: int = 0, accounts: Iterable[Account] = DEFAULT_ACCOUNTS) -> None:
        self.seed = seed
        self.accounts: dict[str, Account] = {a.id: a for a in accounts}
        self.keys: dict[str, ApiKey] = {k.id: k for a in self.accounts.values() for k in a.keys}
        self._owner: dict[str, Account] = {k.id: a for a in self.accounts.values() for k in a.keys}
        self._tokens: dict[str, ApiKey] = {k.token: k for k in self.keys.values()}
        self._raw_day = lru_cache(maxsize=50_000)(self._generate_day)
        self._full_day = lru_cache(maxsize=50_000)(self._complete_day)
        self._day_shape = lru_cache(maxsize=20_000)(self._generate_day_shape)
        self._hour_shape = lru_cache(maxsize=4_096)(self._generate_hour_shape)
        self._day_split = lru_cache(maxsize=1_024)(self._split_day)
        self._hour_split = lru_cache(maxsize=512)(self._split_hour)

    # -- the account and key table -----------------------------------------------------------

    def account_of(self, key_id: str) -> Account:
        """The account that owns ``key_id`` (``KeyError`` if none)."""
        return self._owner[key_id]

    def key_by_token(self, token: str) -> ApiKey | None:
        """The key whose bearer token is ``token``."""
        return self._tokens.get(token)

    def account_keys(self, account_id: str, now: datetime) -> tuple[ApiKey, ...]:
        """The keys of ``account_id`` that exist at ``now`` (revoked ones included), by id."""
        keys = self.accounts[account_id].keys
        return tuple(sorted((k for k in keys if k.exists_at(now)), key=lambda k: _key_order(k.id)))

    # -- generation ----------------------------------------------------------------------------

    def _generate_day(self, key_id: str, day: date) -> Stats:
        key = self.keys[key_id]
        if not key.active_on(day):
            return ZERO
        rng = random.Random(f"zkscore:{self.seed}:{key_id}:{day.isoformat()}")
        week = 1.0 if day.weekday() < 5 else key.weekend_factor
        total = round(key.daily_mean * week * rng.uniform(1 - key.noise, 1 + key.noise))
        weights = [w * rng.uniform(0.85, 1.15) for w in key.endpoint_weights]
        per_endpoint = apportion(total, weights)
        counts: list[int] = []
        latency: list[int] = []
        data: list[int] = []
        peaks: list[int] = []
        for endpoint, requests in zip(ENDPOINTS, per_endpoint, strict=True):
            # Draw every number whether used or not, so one endpoint never shifts another's.
            error_noise = rng.uniform(0.5, 1.5)
            type_weights = [w * rng.uniform(0.6, 1.4) for w in key.error_weights]
            latency_noise = rng.uniform(0.85, 1.2)
            peak_factor = rng.uniform(2.5, 8.0)
            size_noise = rng.uniform(0.9, 1.1)
            failed = min(requests, round(requests * key.error_rate * error_noise))
            counts.append(requests - failed)
            counts.extend(apportion(failed, type_weights))
            average = endpoint.latency_ms * key.latency_factor * latency_noise
            total_latency = max(requests, round(requests * average))
            latency.append(total_latency)
            peaks.append(valid_peak(requests, total_latency, round(average * peak_factor)))
            data.append(round(requests * endpoint.bytes_per_request * size_noise))
        return Stats(tuple(counts), tuple(latency), tuple(data), tuple(peaks), 0, 0)

    def _generate_day_shape(self, account_id: str, day: date) -> DayShape:
        account = self.accounts[account_id]
        rng = random.Random(f"zkscore:{self.seed}:{account_id}:{day.isoformat()}:hours")
        weights = [max(1, round(w * rng.uniform(0.8, 1.2) * 1000)) for w in account.diurnal]
        spike = weights.index(max(weights))
        others = [w for h, w in enumerate(weights) if h != spike]
        cumulative = [0]
        for w in others:
            cumulative.append(cumulative[-1] + w)
        floor_ppm = _ceil_div(max(others) * PPM, cumulative[-1])
        spike_ppm = min(PPM, max(floor_ppm, round(floor_ppm * rng.uniform(1.1, 1.5))))
        busiest = sum(
            min(d, _ceil_div(d * spike_ppm, PPM))
            for d in (self._raw_day(k.id, day).requests for k in account.keys)
        )
        wanted = round(MINUTE_FLOOR_PPM * rng.uniform(1.0, 1.6))
        cap = math.floor(PEAK_CAP * account.limits.per_minute * PPM / busiest) if busiest else PPM
        minute_ppm = max(MINUTE_FLOOR_PPM, min(wanted, cap))
        return DayShape(spike, spike_ppm, tuple(cumulative), minute_ppm)

    def _generate_hour_shape(self, account_id: str, start: datetime) -> HourShape:
        rng = random.Random(f"zkscore:{self.seed}:{account_id}:{start.isoformat()}:minutes")
        spike = rng.randrange(60)
        cumulative = [0]
        for _ in range(59):
            cumulative.append(cumulative[-1] + rng.randint(*MINUTE_WEIGHTS))
        return HourShape(spike, tuple(cumulative))

    def day_shape(self, account_id: str, day: date) -> DayShape:
        """How ``account_id``'s ``day`` is spread over its hours."""
        return self._day_shape(account_id, day)

    def hour_shape(self, account_id: str, start: datetime) -> HourShape:
        """How ``account_id``'s hour starting at ``start`` is spread over its minutes."""
        return self._hour_shape(account_id, start)

    # -- per key ---------------------------------------------------------------------------------

    def day(self, key_id: str, day: date) -> Stats:
        """``key_id``'s usage over the whole UTC ``day`` (regardless of any clock)."""
        return self._full_day(key_id, day)

    def _complete_day(self, key_id: str, day: date) -> Stats:
        raw = self._raw_day(key_id, day)
        requests = raw.requests
        if requests == 0:
            return raw
        shape = self._day_shape(self._owner[key_id].id, day)
        busiest_hour = min(requests, _ceil_div(requests * shape.spike_ppm, PPM))
        busiest_minute = _ceil_div(busiest_hour * shape.minute_ppm, PPM)
        return Stats(
            raw.counts, raw.latency, raw.data, raw.peak_latency, busiest_minute, busiest_hour
        )

    def hour_totals(self, key_id: str, day: date) -> list[int]:
        """Requests of ``key_id`` in each of the 24 hours of ``day``."""
        shape = self._day_shape(self._owner[key_id].id, day)
        requests = self._raw_day(key_id, day).requests
        return _shape_split(requests, shape.spike_hour, shape.spike_ppm, shape.cumulative)

    def _split_day(self, key_id: str, day: date) -> tuple[Stats, ...]:
        parent = self._raw_day(key_id, day)
        if parent.requests == 0:
            return (ZERO,) * 24
        minute_ppm = self._day_shape(self._owner[key_id].id, day).minute_ppm
        rows = self.hour_totals(key_id, day)
        rng = random.Random(f"zkscore:{self.seed}:{key_id}:{day.isoformat()}:split")
        return tuple(
            Stats(
                s.counts,
                s.latency,
                s.data,
                s.peak_latency,
                _ceil_div(n * minute_ppm, PPM),
                n,
            )
            for s, n in zip(split_stats(parent, rows, rng), rows, strict=True)
        )

    def hours(self, key_id: str, day: date) -> tuple[Stats, ...]:
        """``key_id``'s usage in each of the 24 UTC hours of ``day``."""
        return self._day_split(key_id, day)

    def hour(self, key_id: str, start: datetime) -> Stats:
        """``key_id``'s usage in the UTC hour starting at ``start``."""
        start = start.astimezone(UTC)
        return self._day_split(key_id, start.date())[start.hour]

    def minute_totals(self, key_id: str, start: datetime) -> list[int]:
        """Requests of ``key_id`` in each of the 60 minutes of the hour starting at ``start``."""
        start = start.astimezone(UTC)
        account = self._owner[key_id].id
        minute_ppm = self._day_shape(account, start.date()).minute_ppm
        shape = self._hour_shape(account, start)
        requests = self.hour(key_id, start).requests
        return _shape_split(requests, shape.spike_minute, minute_ppm, shape.cumulative)

    def _split_hour(self, key_id: str, start: datetime) -> tuple[Stats, ...]:
        parent = self.hour(key_id, start)
        if parent.requests == 0:
            return (ZERO,) * 60
        rows = self.minute_totals(key_id, start)
        rng = random.Random(f"zkscore:{self.seed}:{key_id}:{start.isoformat()}:split")
        return tuple(
            Stats(s.counts, s.latency, s.data, s.peak_latency, n, n)
            for s, n in zip(split_stats(parent, rows, rng), rows, strict=True)
        )

    def minutes(self, key_id: str, hour_start: datetime) -> tuple[Stats, ...]:
        """``key_id``'s usage in each of the 60 minutes of the hour starting at ``hour_start``."""
        return self._hour_split(key_id, hour_start.astimezone(UTC))

    def minute(self, key_id: str, start: datetime) -> Stats:
        """``key_id``'s usage in the minute starting at ``start``."""
        start = start.astimezone(UTC)
        return self.minutes(key_id, start.replace(minute=0))[start.minute]

    # -- windows -------------------------------------------------------------------------------

    def piece(self, key_ids: Sequence[str], kind: str, start: datetime, end: datetime) -> Stats:
        """The usage of ``key_ids`` in one piece of :func:`pieces`."""
        if kind == "day":
            return merge([self.day(k, start.date()) for k in key_ids])
        if kind == "hour":
            return merge([self.hour(k, start) for k in key_ids])
        hour = start.replace(minute=0)
        splits = [self.minutes(k, hour) for k in key_ids]
        stats = chain(
            [merge([s[m] for s in splits]) for m in range(start.minute, _minute_of(end, hour))]
        )
        # All of these minutes lie in one UTC hour: that hour (clipped) holds all of them.
        return Stats(
            stats.counts,
            stats.latency,
            stats.data,
            stats.peak_latency,
            stats.peak_minute,
            stats.requests,
        )

    def window(self, key_ids: Iterable[str], start: datetime, end: datetime) -> Stats:
        """The usage of ``key_ids`` together in ``[start, end)`` (minute-aligned, UTC)."""
        keys = tuple(key_ids)
        return chain([self.piece(keys, *p) for p in pieces(start, end)])

    def series(
        self, key_ids: Iterable[str], start: datetime, end: datetime, granularity: Granularity
    ) -> list[tuple[datetime, Stats]]:
        """Buckets aligned to ``granularity`` covering ``[start, end)``, each clipped to it."""
        keys = tuple(key_ids)
        out: list[tuple[datetime, Stats]] = []
        moment = bucket_start(start, granularity)
        while moment < end:
            following = next_bucket(moment, granularity)
            out.append((moment, self.window(keys, max(moment, start), min(following, end))))
            moment = following
        return out

    def last_request(
        self,
        key_ids: Iterable[str],
        start: datetime,
        end: datetime,
        endpoint: str | None = None,
    ) -> datetime | None:
        """The start of the last minute in ``[start, end)`` with a request (to ``endpoint``)."""
        keys = tuple(key_ids)
        index = None if endpoint is None else ENDPOINT_PATHS.index(endpoint)

        def busy(stats: Stats) -> bool:
            return (stats.requests if index is None else stats.endpoint_requests(index)) > 0

        for kind, a, b in reversed(pieces(start, end)):
            if not busy(self.piece(keys, kind, a, b)):
                continue
            hours = [a + HOUR * h for h in range(24)] if kind == "day" else [a.replace(minute=0)]
            for hour in reversed(hours):
                if kind == "day" and not busy(self.piece(keys, "hour", hour, hour + HOUR)):
                    continue
                first = a.minute if kind == "minutes" else 0
                last = _minute_of(b, hour) if kind == "minutes" else 60
                splits = [self.minutes(k, hour) for k in keys]
                for m in range(last - 1, first - 1, -1):
                    if busy(merge([s[m] for s in splits])):
                        return hour + MINUTE * m
        return None

    def rate_usage(self, account_id: str, now: datetime) -> tuple[int, int, int]:
        """The account's requests in the last complete minute, in the current UTC hour so far and
        in the current UTC day so far (complete minutes; every key of the account)."""
        end = bucket_start(now, Granularity.MINUTE)
        keys = [k.id for k in self.accounts[account_id].keys]
        return (
            self.window(keys, end - MINUTE, end).requests,
            self.window(keys, bucket_start(now, Granularity.HOUR), end).requests,
            self.window(keys, bucket_start(now, Granularity.DAY), end).requests,
        )


def _minute_of(end: datetime, hour: datetime) -> int:
    """``end``'s minute within ``hour`` (60 when ``end`` is the next hour)."""
    return int((end - hour).total_seconds() // 60)


def _key_order(key_id: str) -> tuple[int, str]:
    match = re.fullmatch(r"key_(\d+)", key_id)
    return (int(match.group(1)), key_id) if match else (1 << 62, key_id)


# -- the HTTP side ---------------------------------------------------------------------------

TIMEFRAMES: dict[str, timedelta | None] = {
    "1h": HOUR,
    "24h": DAY,
    "7d": 7 * DAY,
    "30d": 30 * DAY,
    "90d": 90 * DAY,
    "1y": 365 * DAY,
    "all": None,
}
GRANULARITIES = ("minute", "hour", "day", "week", "month")
ALLOWED_GRANULARITIES: dict[str, tuple[str, ...]] = {
    "1h": GRANULARITIES,
    "24h": GRANULARITIES,
    "7d": GRANULARITIES[1:],
    "30d": GRANULARITIES[1:],
    "90d": GRANULARITIES[1:],
    "1y": GRANULARITIES[2:],
    "all": GRANULARITIES[2:],
}
SORT_FIELDS = ("requests", "errors", "latency", "timestamp")
ORDERS = ("desc", "asc")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
ERROR_RATE_ALERT = 5.0
UTILIZATION_ALERT = 80.0
CODES = {
    400: "INVALID_PARAMETERS",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}
UNAUTHORIZED = "Invalid or missing API key"
NO_USAGE = "No usage data found"
USAGE_PATH = "/v1/developer/usage"
KEYS_PATH = "/v1/developer/keys"
_KEY_PATH = re.compile(r"^/v1/developer/keys/([^/]+)$")
_INTEGER = re.compile(r"-?[0-9]+")
PRIORITIES = {"high": 0, "medium": 1, "low": 2}


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, as JavaScript's ``toISOString``."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def pct(part: float, whole: float) -> float:
    """``part / whole`` in percent with two decimals; 0 when ``whole`` is 0."""
    return round(part / whole * 100, 2) if whole else 0.0


class BadRequest(Exception):
    """A parameter the vendor refuses: 400 with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UsageQuery:
    """The validated parameters of ``GET /v1/developer/usage``."""

    key_id: str | None
    timeframe: str
    granularity: str
    include_endpoints: bool
    include_errors: bool
    include_latency: bool
    sort_by: str
    order: str
    limit: int
    offset: int


def _flag(request: Request, *names: str) -> bool:
    value = request.param(*names)
    if value is None:
        return True
    if value not in ("true", "false"):
        raise BadRequest("INVALID_PARAMETERS", f"Invalid {names[0]}: use true or false")
    return value == "true"


def _integer(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    value = request.param(name)
    if value is None:
        return default
    number = int(value) if _INTEGER.fullmatch(value) else None
    if number is None or number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest("INVALID_PARAMETERS", f"Invalid {name}: must be an integer {bound}")
    return number


def parse_usage_query(request: Request) -> UsageQuery:
    """The parameters of a usage request, in the documented validation order."""
    timeframe = request.param("timeframe")
    if timeframe is None:
        timeframe = "24h"
    if timeframe not in TIMEFRAMES:
        raise BadRequest("INVALID_TIMEFRAME", "Invalid timeframe")
    granularity = request.param("granularity")
    allowed = ALLOWED_GRANULARITIES[timeframe]
    if granularity is None:
        granularity = "hour" if "hour" in allowed else "day"
    if granularity not in GRANULARITIES:
        raise BadRequest("INVALID_GRANULARITY", "Invalid granularity")
    if granularity not in allowed:
        raise BadRequest(
            "INVALID_PARAMETERS",
            f"Granularity '{granularity}' is not available for timeframe '{timeframe}' "
            f"(use {', '.join(allowed)})",
        )
    include_endpoints = _flag(request, "includeEndpoints", "include_endpoints")
    include_errors = _flag(request, "includeErrors", "include_errors")
    include_latency = _flag(request, "includeLatency", "include_latency")
    sort_by = request.param("sortBy", "sort_by")
    if sort_by is None:
        sort_by = "requests"
    if sort_by not in SORT_FIELDS:
        raise BadRequest(
            "INVALID_PARAMETERS", f"Invalid sortBy: use one of {', '.join(SORT_FIELDS)}"
        )
    order = request.param("order", "sortOrder")
    if order is None:
        order = "desc"
    if order not in ORDERS:
        raise BadRequest("INVALID_PARAMETERS", "Invalid order: use desc or asc")
    limit = _integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _integer(request, "offset", 0, 0, None)
    return UsageQuery(
        request.param("keyId", "key_id"),
        timeframe,
        granularity,
        include_endpoints,
        include_errors,
        include_latency,
        sort_by,
        order,
        limit,
        offset,
    )


def window_of(timeframe: str, account: Account, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``timeframe`` at ``now``: complete minutes only."""
    end = bucket_start(now, Granularity.MINUTE)
    span = TIMEFRAMES[timeframe]
    start = account.created if span is None else end - span
    return start, max(start, end)


class ZkScoreEmulator(Emulator):
    """ZKScore's developer usage API with auth, validation, the tier rate limit and seeded data."""

    vendor = "ZKScore"

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        accounts: Iterable[Account] = DEFAULT_ACCOUNTS,
        page_cap: int | None = None,
    ) -> None:
        super().__init__(seed=seed, clock=clock)
        self.data = ZkScoreData(seed, accounts)
        self.page_cap = page_cap
        """Serve at most this many endpoints a page whatever ``limit`` asks (a vendor that caps
        pages on its side), so that a client must follow ``hasMore`` and the offsets."""
        self._window_lock = threading.Lock()
        self._windows: Counter[tuple[str, datetime]] = Counter()

    # -- state and errors ----------------------------------------------------------------------

    def reset_state(self) -> None:
        with self._window_lock:
            self._windows.clear()

    def calls_this_minute(self, account_id: str) -> int:
        """The calls of ``account_id`` counted in the current minute of the clock."""
        minute = bucket_start(self.clock(), Granularity.MINUTE)
        with self._window_lock:
            return self._windows[(account_id, minute)]

    def fail(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        """An error in the vendor's form."""
        body = {
            "success": False,
            "error": code,
            "message": message,
            "timestamp": iso(self.clock()),
        }
        return Response.json(body, status=status, headers=headers)

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(retry_after if retry_after is not None else 60)
            message = message or "Rate limit exceeded"
        elif retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return self.fail(status, CODES.get(status, "INTERNAL_ERROR"), message, headers)

    def malformed_shape(self) -> Response:
        return Response.json(
            {"success": True, "data": {"unexpected": "this is not the usage shape"}}
        )

    # -- requests ------------------------------------------------------------------------------

    def authenticate(self, request: Request, now: datetime) -> ApiKey | Response:
        """The caller's key, or the 401/403 answer."""
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        key = self.data.key_by_token(token.strip()) if scheme.lower() == "bearer" else None
        if key is None or not key.exists_at(now):
            return self.fail(401, "UNAUTHORIZED", UNAUTHORIZED)
        if key.revoked_at(now):
            return self.fail(403, "FORBIDDEN", "API key has been revoked")
        return key

    def _admit(self, account: Account, now: datetime) -> tuple[bool, dict[str, str], int]:
        """Count a call: (admitted, rate-limit headers, seconds to the next minute)."""
        minute = bucket_start(now, Granularity.MINUTE)
        following = minute + MINUTE
        limit = account.limits.per_minute
        with self._window_lock:
            used = self._windows[(account.id, minute)]
            admitted = used < limit
            if admitted:
                if len(self._windows) > 10_000:
                    for stale in [w for w in self._windows if w[1] < minute]:
                        del self._windows[stale]
                used += 1
                self._windows[(account.id, minute)] = used
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(int(following.timestamp())),
        }
        wait = max(1, math.ceil((following - now).total_seconds()))
        return admitted, headers, wait

    async def handle(self, request: Request) -> Response:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        if path not in (USAGE_PATH, KEYS_PATH) and not _KEY_PATH.match(path):
            return self.fail(404, "NOT_FOUND", f"Endpoint not found: {request.path}")
        now = self.clock().astimezone(UTC)
        key = self.authenticate(request, now)
        if isinstance(key, Response):
            return key
        account = self.data.account_of(key.id)
        admitted, headers, wait = self._admit(account, now)
        if not admitted:
            limited = self.fail(
                429,
                "RATE_LIMIT_EXCEEDED",
                f"Rate limit exceeded: {account.limits.per_minute} requests per minute",
            )
            limited.headers.update(headers)
            limited.headers["Retry-After"] = str(wait)
            return limited
        response = self._route(request, path, account, now)
        response.headers.update(headers)
        return response

    def _route(self, request: Request, path: str, account: Account, now: datetime) -> Response:
        if path == USAGE_PATH:
            if request.method != "GET":
                return self._not_allowed("GET")
            try:
                query = parse_usage_query(request)
            except BadRequest as exc:
                return self.fail(400, exc.code, exc.message)
            return self._usage(query, account, now)
        if path == KEYS_PATH:
            if request.method != "GET":
                return self._not_allowed("GET")
            return self._keys(account, now)
        return self._not_allowed(None)

    def _not_allowed(self, allow: str | None) -> Response:
        response = self.fail(
            405, "METHOD_NOT_ALLOWED", "Method not allowed: key management is read-only here"
        )
        if allow is not None:
            response.headers["Allow"] = allow
        return response

    def _keys(self, account: Account, now: datetime) -> Response:
        end = bucket_start(now, Granularity.MINUTE)
        keys = []
        for key in self.data.account_keys(account.id, now):
            last = self.data.last_request((key.id,), day_start(key.created), end)
            keys.append(
                {
                    "id": key.id,
                    "name": key.name,
                    "prefix": key.token[:12],
                    "status": key.status(now),
                    "createdAt": iso(day_start(key.created)),
                    "lastUsedAt": iso(last) if last else None,
                    "revokedAt": (
                        iso(day_start(key.revoked))
                        if key.revoked is not None and key.revoked_at(now)
                        else None
                    ),
                }
            )
        return Response.json(
            {
                "success": True,
                "tier": account.tier,
                "keys": keys,
                "total": len(keys),
                "timestamp": iso(now),
            }
        )

    # -- the usage answer ----------------------------------------------------------------------

    def _usage(self, query: UsageQuery, account: Account, now: datetime) -> Response:
        keys = self.data.account_keys(account.id, now)
        if query.key_id is not None:
            keys = tuple(k for k in keys if k.id == query.key_id)
            if not keys:
                return self.fail(404, "NOT_FOUND", NO_USAGE)
        key_ids = tuple(k.id for k in keys)
        start, end = window_of(query.timeframe, account, now)
        granularity = Granularity(query.granularity)
        total = self.data.window(key_ids, start, end)
        latency = query.include_latency
        minutes = (end - start).total_seconds() / 60
        requests = total.requests

        def per(factor: int) -> float:
            return round(requests / minutes * factor, 2) if minutes else 0.0

        usage: dict[str, Any] = {
            "totalRequests": requests,
            "successfulRequests": total.successful,
            "failedRequests": total.failed,
            "successRate": round(total.success_rate, 2),
        }
        if latency:
            usage["averageLatency"] = round(total.average_latency, 2)
            usage["peakLatency"] = total.max_latency_ms
        usage.update(
            {
                "requestsPerMinute": per(1),
                "requestsPerHour": per(60),
                "requestsPerDay": per(1440),
                "peakRequestsPerMinute": total.peak_minute,
                "peakRequestsPerHour": total.peak_hour,
                "dataTransferred": total.data_bytes,
                "averageDataPerRequest": round(total.data_bytes / requests, 2) if requests else 0.0,
            }
        )
        series = []
        for moment, stats in self.data.series(key_ids, start, end, granularity):
            point: dict[str, Any] = {
                "timestamp": iso(moment),
                "requests": stats.requests,
                "successfulRequests": stats.successful,
                "failedRequests": stats.failed,
            }
            if latency:
                point["averageLatency"] = round(stats.average_latency, 2)
                point["peakLatency"] = stats.max_latency_ms
            point["dataTransferred"] = stats.data_bytes
            series.append(point)

        breakdown: dict[str, Any] = {}
        pagination: dict[str, Any] | None = None
        used = [e for e in total.endpoints() if e.requests]
        if query.include_endpoints:
            page, pagination = self._endpoint_page(query, used, key_ids, start, end)
            breakdown["byEndpoint"] = page
        breakdown["byMethod"] = [
            {"method": method, "requests": count, "percentage": pct(count, requests)}
            for method, count in _ranked(total.by_method())
        ]
        breakdown["byStatusCode"] = [
            {"statusCode": status, "count": count, "percentage": pct(count, requests)}
            for status, count in _ranked(total.by_status())
        ]
        by_key = []
        for key in keys:
            stats = self.data.window((key.id,), start, end)
            entry: dict[str, Any] = {
                "keyId": key.id,
                "name": key.name,
                "status": key.status(now),
                "requests": stats.requests,
                "successfulRequests": stats.successful,
                "failedRequests": stats.failed,
                "successRate": round(stats.success_rate, 2),
            }
            if latency:
                entry["averageLatency"] = round(stats.average_latency, 2)
            entry["dataTransferred"] = stats.data_bytes
            by_key.append(entry)
        breakdown["byKey"] = by_key

        body: dict[str, Any] = {
            "success": True,
            "usage": usage,
            "timeSeries": series,
            "breakdown": breakdown,
        }
        if query.include_errors:
            failed = total.failed
            body["errors"] = {
                "totalErrors": failed,
                "errorRate": round(total.error_rate, 2),
                "byType": [
                    {
                        "type": code,
                        "count": count,
                        "percentage": pct(count, failed),
                        "description": _description(code),
                    }
                    for code, count in _ranked(total.errors_by_type())
                ],
                "byEndpoint": [
                    {"endpoint": e.endpoint, "count": e.failed, "errorRate": round(e.error_rate, 2)}
                    for e in sorted(used, key=lambda e: (-e.failed, e.endpoint))
                    if e.failed
                ],
                "byStatusCode": [
                    {"statusCode": status, "count": count, "percentage": pct(count, failed)}
                    for status, count in _ranked(total.by_status())
                    if status != SUCCESS_STATUS
                ],
            }
        rate_limits, today = self._rate_limits(account, now)
        body["rateLimits"] = rate_limits
        body["alerts"] = self._alerts(total, per(1440), today, account)
        if pagination is not None:
            body["pagination"] = pagination
        body["period"] = {
            "timeframe": query.timeframe,
            "granularity": query.granularity,
            "start": iso(start),
            "end": iso(end),
            "keyId": query.key_id,
        }
        body["timestamp"] = iso(now)
        return Response.json(body)

    def _endpoint_page(
        self,
        query: UsageQuery,
        used: list[EndpointStats],
        key_ids: tuple[str, ...],
        start: datetime,
        end: datetime,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        last = {e.endpoint: self.data.last_request(key_ids, start, end, e.endpoint) for e in used}
        ordered = sorted(used, key=lambda e: e.endpoint)

        def value(e: EndpointStats) -> Any:
            if query.sort_by == "errors":
                return e.failed
            if query.sort_by == "latency":
                return e.average_latency
            if query.sort_by == "timestamp":
                return last[e.endpoint] or datetime.min.replace(tzinfo=UTC)
            return e.requests

        ordered.sort(key=value, reverse=query.order == "desc")
        size = min(query.limit, self.page_cap or query.limit)
        page = ordered[query.offset : query.offset + size]
        entries = []
        for e in page:
            entry: dict[str, Any] = {
                "endpoint": e.endpoint,
                "method": e.method,
                "requests": e.requests,
                "errors": e.failed,
                "successRate": round(e.success_rate, 2),
            }
            if query.include_latency:
                entry["averageLatency"] = round(e.average_latency, 2)
            moment = last[e.endpoint]
            entry["dataTransferred"] = e.data_bytes
            entry["lastRequestAt"] = iso(moment) if moment else None
            entries.append(entry)
        pagination = {
            "total": len(ordered),
            "limit": size,
            "offset": query.offset,
            "hasMore": query.offset + len(page) < len(ordered),
        }
        return entries, pagination

    def _rate_limits(self, account: Account, now: datetime) -> tuple[dict[str, Any], int]:
        tier = account.limits
        minute, hour, day = self.data.rate_usage(account.id, now)
        minute_start = bucket_start(now, Granularity.MINUTE)
        return {
            "tier": tier.name,
            "current": {
                "requestsPerMinute": tier.per_minute,
                "requestsPerHour": tier.per_hour,
                "requestsPerDay": tier.per_day,
            },
            "usage": {"requestsPerMinute": minute, "requestsPerHour": hour, "requestsPerDay": day},
            "utilization": {
                "requestsPerMinute": pct(minute, tier.per_minute),
                "requestsPerHour": pct(hour, tier.per_hour),
                "requestsPerDay": pct(day, tier.per_day),
            },
            "resetsAt": {
                "requestsPerMinute": iso(minute_start + MINUTE),
                "requestsPerHour": iso(bucket_start(now, Granularity.HOUR) + HOUR),
                "requestsPerDay": iso(bucket_start(now, Granularity.DAY) + DAY),
            },
        }, day

    @staticmethod
    def _alerts(total: Stats, per_day: float, today: int, account: Account) -> list[dict[str, str]]:
        tier = account.limits
        alerts: list[dict[str, str]] = []
        if total.requests and total.error_rate > ERROR_RATE_ALERT:
            alerts.append(
                {
                    "type": "HIGH_ERROR_RATE",
                    "message": f"Error rate is {total.error_rate:.2f}% "
                    f"({total.failed} of {total.requests} requests failed)",
                    "priority": "high",
                    "recommendation": "Check errors.byType and errors.byEndpoint; validate "
                    "addresses before calling and retry server errors with backoff",
                }
            )
        if today / tier.per_day * 100 > UTILIZATION_ALERT:
            alerts.append(
                {
                    "type": "APPROACHING_DAILY_LIMIT",
                    "message": f"{today} of {tier.per_day} daily requests used today "
                    f"({today / tier.per_day * 100:.2f}%)",
                    "priority": "high",
                    "recommendation": "Reduce or cache requests until 00:00 UTC, "
                    "or upgrade the plan",
                }
            )
        if per_day / tier.per_day * 100 > UTILIZATION_ALERT:
            alerts.append(
                {
                    "type": "HIGH_UTILIZATION",
                    "message": f"Averaging {per_day:.2f} requests per day, "
                    f"{per_day / tier.per_day * 100:.2f}% of the {tier.name} daily limit",
                    "priority": "medium",
                    "recommendation": "Batch lookups with /v1/score/batch and cache scores, "
                    "or upgrade the plan",
                }
            )
        if total.peak_minute / tier.per_minute * 100 > UTILIZATION_ALERT:
            alerts.append(
                {
                    "type": "PEAK_NEAR_RATE_LIMIT",
                    "message": f"Busiest minute had {total.peak_minute} requests, "
                    f"{total.peak_minute / tier.per_minute * 100:.2f}% of the per-minute limit",
                    "priority": "medium",
                    "recommendation": "Spread bursts over time or queue requests client-side",
                }
            )
        alerts.sort(key=lambda a: (PRIORITIES[a["priority"]], a["type"]))
        return alerts


def _ranked(counts: dict[Any, int]) -> Iterator[tuple[Any, int]]:
    """Non-zero entries by count descending, ties by name or code ascending."""
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count:
            yield name, count


def _description(code: str) -> str:
    return next(e.description for e in ERROR_TYPES if e.code == code)


DEMO_TOKEN = "zk_live_acme_prod_demo"
EMULATOR = EmulatorSpec(
    factory=ZkScoreEmulator,
    accounts=({"id": "zks-prod", "name": "ZKScore production", "api_key": DEMO_TOKEN},),
    bad_credentials={"api_key": "zks_wrong_key"},
    # The demo account reads every key of its account, which exists from its first key's day.
    first_day=next(
        a.created.date() for a in DEFAULT_ACCOUNTS if any(k.token == DEMO_TOKEN for k in a.keys)
    ),
)
