"""ZKScore emulator fidelity against the vendor document, and the client's mapping.

Every expected number is recomputed from the emulator's seeded data model by summing its own
primitives (``ZkScoreData.day``, ``hour`` and ``minute`` per key), never from the emulator's
window, series or alert code; the answers are read over real loopback HTTP. The vendor document is
``shared/upstream/seeds/002_63db3c175b6fbbfb.txt``, summarised in ``shared/upstream/zkscore.md``;
the emulator's decisions where the document is silent are in its module docstring.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.servers import ServerThread
from gateway.settings import Settings
from providers.zkscore.emulator import ENDPOINTS, ERROR_TYPES, Stats, ZkScoreData, ZkScoreEmulator
from tests.conftest import (
    NO_CACHE,
    NOW,
    SEED,
    TLS,
    Gateway,
    Running,
    account_entry,
    settings_for,
)

USAGE = "/v1/developer/usage"
KEYS = "/v1/developer/keys"
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TODAY = NOW.date()
END = NOW.replace(second=0, microsecond=0)
"""Where every window ends: only complete minutes count."""
NEXT_MINUTE = END + MINUTE
SECONDS_TO_NEXT_MINUTE = math.ceil((NEXT_MINUTE - NOW).total_seconds())
STAMP = "2026-03-18T14:25:00.000Z"
"""NOW as the vendor writes it (JavaScript's toISOString)."""
DOC_TIERS = {"free": (60, 10_000), "starter": (300, 100_000), "professional": (1_000, 1_000_000)}
"""(requests per minute, per day) of each tier, from the vendor's documentation."""
UNAUTHORIZED = "Invalid or missing API key"
NO_USAGE = "No usage data found"
UNITS = ("minute", "hour", "day", "week", "month")
SPANS: dict[str, timedelta | None] = {
    "1h": HOUR,
    "24h": DAY,
    "7d": 7 * DAY,
    "30d": 30 * DAY,
    "90d": 90 * DAY,
    "1y": 365 * DAY,
    "all": None,
}
ALLOWED = {
    "1h": UNITS,
    "24h": UNITS,
    "7d": UNITS[1:],
    "30d": UNITS[1:],
    "90d": UNITS[1:],
    "1y": UNITS[2:],
    "all": UNITS[2:],
}
"""Granularities per timeframe, as the emulator's docstring decides."""
PRIORITY = {"high": 0, "medium": 1, "low": 2}
SERIES_FIELDS = {"averageLatency", "peakLatency"}
KEY_TABLE = {  # id: (name, token, revoked on), from the emulator's docstring
    "key_1": ("prod", "zk_live_acme_prod_demo", None),
    "key_2": ("staging", "zk_live_acme_staging_demo", None),
    "key_3": ("ci-legacy", "zk_live_acme_ci_demo", date(2025, 12, 1)),
    "key_4": ("default", "zk_live_hobby_demo", None),
    "key_5": ("main", "zk_live_orbit_main_demo", None),
    "key_6": ("analytics", "zk_live_orbit_analytics_demo", None),
}
REVOKED_TOKEN = KEY_TABLE["key_3"][1]


@dataclass(frozen=True)
class Acct:
    """A seeded ZKScore account: its id, the token the tests use, its keys and tier."""

    id: str
    token: str
    keys: tuple[str, ...]
    tier: str

    @property
    def per_minute(self) -> int:
        return DOC_TIERS[self.tier][0]

    @property
    def per_day(self) -> int:
        return DOC_TIERS[self.tier][1]


ACME = Acct("acct_acme", KEY_TABLE["key_1"][1], ("key_1", "key_2", "key_3"), "professional")
HOBBY = Acct("acct_hobby", KEY_TABLE["key_4"][1], ("key_4",), "free")
ORBIT = Acct("acct_orbit", KEY_TABLE["key_5"][1], ("key_5", "key_6"), "starter")
ACCOUNTS = (ACME, HOBBY, ORBIT)


# -- recomputation from the data model ---------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Usage over a span, summed from the data model's days, hours and minutes."""

    requests: int = 0
    failed: int = 0
    latency_ms: int = 0
    peak_latency_ms: int = 0
    data_bytes: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.requests + other.requests,
            self.failed + other.failed,
            self.latency_ms + other.latency_ms,
            max(self.peak_latency_ms, other.peak_latency_ms),
            self.data_bytes + other.data_bytes,
        )

    @property
    def successful(self) -> int:
        return self.requests - self.failed

    @property
    def success_rate(self) -> float:
        return percent(self.successful, self.requests)

    @property
    def average_latency(self) -> float:
        return round(self.latency_ms / self.requests, 2) if self.requests else 0.0

    @property
    def failed_fraction(self) -> float | None:
        """The graph's error rate: failed / requests, exact (the vendor gives the counts)."""
        if not self.requests:
            return None
        return self.failed / self.requests


def percent(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def of_stats(stats: Stats) -> Figures:
    return Figures(
        stats.requests,
        stats.failed,
        stats.latency_total_ms,
        stats.max_latency_ms,
        stats.data_bytes,
    )


def spans(start: datetime, end: datetime) -> Iterator[tuple[str, datetime]]:
    """``[start, end)`` as whole UTC days, whole hours and single minutes."""
    moment = start
    while moment < end:
        if moment == floor_to(moment, "day") and moment + DAY <= end:
            yield "day", moment
            moment += DAY
        elif moment == floor_to(moment, "hour") and moment + HOUR <= end:
            yield "hour", moment
            moment += HOUR
        else:
            yield "minute", moment
            moment += MINUTE


def stats_in(
    data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime
) -> list[Stats]:
    """The data model's per-key stats that make up ``[start, end)``."""
    out = []
    for kind, moment in spans(start, end):
        for key in keys:
            if kind == "day":
                out.append(data.day(key, moment.date()))
            elif kind == "hour":
                out.append(data.hour(key, moment))
            else:
                out.append(data.minute(key, moment))
    return out


def tally(data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime) -> Figures:
    return sum((of_stats(s) for s in stats_in(data, keys, start, end)), Figures())


def per_endpoint(
    data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime
) -> dict[str, Figures]:
    """Every endpoint's figures over ``[start, end)`` (zeros included), by path."""
    parts = stats_in(data, keys, start, end)
    out = {}
    for index, endpoint in enumerate(ENDPOINTS):
        total = Figures()
        for stats in parts:
            e = stats.endpoint(index)
            total += Figures(
                e.requests, e.failed, e.latency_total_ms, e.peak_latency_ms, e.data_bytes
            )
        out[endpoint.path] = total
    return out


def per_error_type(
    data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime
) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stats in stats_in(data, keys, start, end):
        counts.update(stats.errors_by_type())
    return +counts


def last_request(
    data: ZkScoreData,
    keys: tuple[str, ...],
    start: datetime,
    end: datetime,
    index: int | None = None,
) -> datetime | None:
    """The last minute in ``[start, end)`` with a request (to ``ENDPOINTS[index]``)."""

    def busy(stats: Stats) -> bool:
        return (stats.requests if index is None else stats.endpoint_requests(index)) > 0

    moment = end - MINUTE
    while moment >= start:
        hour = floor_to(moment, "hour")
        if not any(busy(data.hour(k, hour)) for k in keys):
            moment = hour - MINUTE
        elif any(busy(data.minute(k, moment)) for k in keys):
            return moment
        else:
            moment -= MINUTE
    return None


def busiest_minute(data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime) -> int:
    minutes = (start + MINUTE * i for i in range(int((end - start) / MINUTE)))
    return max(sum(data.minute(k, m).requests for k in keys) for m in minutes)


def floor_to(moment: datetime, unit: str) -> datetime:
    """The start of ``unit`` holding ``moment`` (UTC; weeks from Monday, months from the 1st)."""
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if unit == "month" else day


def step(moment: datetime, unit: str) -> datetime:
    if unit == "month":
        return (moment.replace(day=28) + 4 * DAY).replace(day=1)
    return moment + {"minute": MINUTE, "hour": HOUR, "day": DAY, "week": 7 * DAY}[unit]


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def created(data: ZkScoreData, account: Acct) -> datetime:
    """Where ``timeframe=all`` starts: 00:00 UTC of the account's first key's creation day."""
    return midnight(min(data.keys[k].created for k in account.keys))


def window(data: ZkScoreData, account: Acct, timeframe: str) -> tuple[datetime, datetime]:
    span = SPANS[timeframe]
    return (created(data, account) if span is None else END - span), END


def iso(moment: datetime) -> str:
    """A moment as the vendor writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def z(moment: datetime) -> str:
    """A moment as the graph writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def series_point(moment: datetime, figures: Figures) -> dict[str, Any]:
    return {
        "timestamp": iso(moment),
        "requests": figures.requests,
        "successfulRequests": figures.successful,
        "failedRequests": figures.failed,
        "averageLatency": figures.average_latency,
        "peakLatency": figures.peak_latency_ms,
        "dataTransferred": figures.data_bytes,
    }


def expected_series(
    data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime, unit: str
) -> list[dict[str, Any]]:
    """Buckets aligned to ``unit`` covering ``[start, end)``, each counting only its part inside."""
    out = []
    moment = floor_to(start, unit)
    while moment < end:
        following = step(moment, unit)
        figures = tally(data, keys, max(moment, start), min(following, end))
        out.append(series_point(moment, figures))
        moment = following
    return out


def endpoint_entries(
    data: ZkScoreData, keys: tuple[str, ...], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """``breakdown.byEndpoint`` entries of the endpoints with requests, in path order."""
    figures = per_endpoint(data, keys, start, end)
    entries = []
    for index, endpoint in enumerate(ENDPOINTS):
        f = figures[endpoint.path]
        if not f.requests:
            continue
        last = last_request(data, keys, start, end, index)
        entries.append(
            {
                "endpoint": endpoint.path,
                "method": endpoint.method,
                "requests": f.requests,
                "errors": f.failed,
                "successRate": f.success_rate,
                "averageLatency": f.average_latency,
                "dataTransferred": f.data_bytes,
                "lastRequestAt": iso(last) if last else None,
            }
        )
    return sorted(entries, key=lambda e: e["endpoint"])


SORT_VALUES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "requests": lambda e: e["requests"],
    "errors": lambda e: e["errors"],
    "latency": lambda e: e["averageLatency"],
    "timestamp": lambda e: e["lastRequestAt"],
}


def sort_entries(entries: list[dict[str, Any]], sort_by: str, order: str) -> list[dict[str, Any]]:
    """The documented order: by ``sort_by`` in ``order``, ties by endpoint path ascending."""
    by_path = sorted(entries, key=lambda e: e["endpoint"])
    return sorted(by_path, key=SORT_VALUES[sort_by], reverse=order == "desc")


def without(value: Any, *names: str) -> Any:
    """``value`` with every mapping key in ``names`` removed, at any depth."""
    if isinstance(value, dict):
        return {k: without(v, *names) for k, v in value.items() if k not in names}
    if isinstance(value, list):
        return [without(v, *names) for v in value]
    return value


def field_names(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {n for v in value.values() for n in field_names(v)}
    if isinstance(value, list):
        return {n for v in value for n in field_names(v)}
    return set()


def rates(value: Any) -> Iterator[float]:
    """Every rate and percentage in an answer."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name in ("successRate", "errorRate", "percentage"):
                yield item
            else:
                yield from rates(item)
    elif isinstance(value, list):
        for item in value:
            yield from rates(item)


# -- HTTP helpers --------------------------------------------------------------------------------


async def get(
    client: httpx.AsyncClient,
    params: Mapping[str, str] | None = None,
    token: str | None = ACME.token,
    path: str = USAGE,
    method: str = "GET",
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return await client.request(method, path, params=dict(params or {}), headers=headers)


async def usage_body(
    client: httpx.AsyncClient, params: Mapping[str, str] | None = None, token: str = ACME.token
) -> dict[str, Any]:
    response = await get(client, params, token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def endpoint_pages(
    client: httpx.AsyncClient, params: Mapping[str, str], limit: int, token: str = ACME.token
) -> list[dict[str, Any]]:
    """Walk ``breakdown.byEndpoint`` page by page, checking each page's ``pagination``."""
    entries: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = await usage_body(
            client, {**params, "limit": str(limit), "offset": str(offset)}, token
        )
        page = body["breakdown"]["byEndpoint"]
        total = body["pagination"]["total"]
        assert len(page) == min(limit, total - offset)
        assert body["pagination"] == {
            "total": total,
            "limit": limit,
            "offset": offset,
            "hasMore": offset + limit < total,
        }
        entries += page
        if not body["pagination"]["hasMore"]:
            return entries
        offset += limit


def assert_error(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> None:
    """The vendor's error form: success false, a code, a message and the time."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "message", "timestamp"}
    assert body["message"] if message is None else body["message"] == message
    assert {**body, "message": None} == {
        "success": False,
        "error": code,
        "message": None,
        "timestamp": STAMP,
    }


def assert_limit_headers(response: httpx.Response, limit: int, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert response.headers["X-RateLimit-Reset"] == str(int(NEXT_MINUTE.timestamp()))


def assert_no_limit_headers(response: httpx.Response) -> None:
    assert not [name for name in response.headers if name.lower().startswith("x-ratelimit")]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def zks(emulators: dict[str, Running]) -> Running:
    return emulators["zkscore"]


@pytest.fixture
def emulator(zks: Running) -> ZkScoreEmulator:
    assert isinstance(zks.emulator, ZkScoreEmulator)
    return zks.emulator


@pytest.fixture
def data(emulator: ZkScoreEmulator) -> ZkScoreData:
    return emulator.data


@pytest.fixture
async def client(zks: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=zks.url, verify=TLS) as http:
        yield http


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Moving:
    emulator: ZkScoreEmulator
    clock: Clock
    url: str


@pytest.fixture(scope="module")
def moving_server() -> Iterator[Moving]:
    """An emulator of its own whose clock the test sets, served on loopback."""
    clock = Clock()
    emulator = ZkScoreEmulator(seed=SEED, clock=clock)
    with ServerThread(emulator) as server:
        yield Moving(emulator, clock, server.urls[0])


@pytest.fixture
def moving(moving_server: Moving) -> Moving:
    moving_server.emulator.reset()
    moving_server.clock.now = NOW
    return moving_server


# -- 1. auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {ACME.token}"},
        {"Authorization": f"Token {ACME.token}"},
        {"Authorization": ACME.token},
        {"X-API-Key": ACME.token},
        {"Authorization": "Bearer zk_live_not_a_key"},
    ],
    ids=["missing", "empty", "no-token", "basic", "token", "bare", "other-header", "unknown"],
)
async def test_missing_or_unknown_credentials_are_401(
    client: httpx.AsyncClient, emulator: ZkScoreEmulator, headers: dict[str, str]
) -> None:
    response = await client.get(USAGE, headers=headers)
    assert_error(response, 401, "UNAUTHORIZED", UNAUTHORIZED)
    assert_no_limit_headers(response)
    assert all(emulator.calls_this_minute(a.id) == 0 for a in ACCOUNTS)


async def test_revoked_key_is_403(client: httpx.AsyncClient, data: ZkScoreData) -> None:
    revoked = data.keys["key_3"].revoked
    assert revoked is not None and revoked <= TODAY
    for path in (USAGE, KEYS):
        response = await get(client, token=REVOKED_TOKEN, path=path)
        assert_error(response, 403, "FORBIDDEN", "API key has been revoked")
        assert_no_limit_headers(response)


# -- 2. parameters -------------------------------------------------------------------------------

SPELLINGS = [
    pytest.param("keyId", "key_id", "key_2", "key_1", id="keyId"),
    pytest.param("includeEndpoints", "include_endpoints", "false", "true", id="includeEndpoints"),
    pytest.param("includeErrors", "include_errors", "false", "true", id="includeErrors"),
    pytest.param("includeLatency", "include_latency", "false", "true", id="includeLatency"),
    pytest.param("sortBy", "sort_by", "latency", "requests", id="sortBy"),
    pytest.param("order", "sortOrder", "asc", "desc", id="order"),
]


@pytest.mark.parametrize(("camel", "snake", "value", "other"), SPELLINGS)
async def test_both_spellings_give_the_same_answer_and_camel_case_wins(
    client: httpx.AsyncClient, camel: str, snake: str, value: str, other: str
) -> None:
    default = await usage_body(client)
    camel_body = await usage_body(client, {camel: value})
    assert camel_body != default  # the value is honoured
    assert await usage_body(client, {snake: value}) == camel_body
    assert await usage_body(client, {camel: value, snake: other}) == camel_body


async def test_key_id_selects_one_key(client: httpx.AsyncClient, data: ZkScoreData) -> None:
    body = await usage_body(client, {"keyId": "key_2"})
    figures = tally(data, ("key_2",), END - DAY, END)
    assert [k["keyId"] for k in body["breakdown"]["byKey"]] == ["key_2"]
    assert body["usage"]["totalRequests"] == figures.requests
    assert body["usage"]["failedRequests"] == figures.failed
    assert body["period"]["keyId"] == "key_2"


@pytest.mark.parametrize(
    ("params", "explicit"),
    [
        (
            {},
            {
                "timeframe": "24h",
                "granularity": "hour",
                "includeEndpoints": "true",
                "includeErrors": "true",
                "includeLatency": "true",
                "sortBy": "requests",
                "order": "desc",
                "limit": "100",
                "offset": "0",
            },
        ),
        ({"timeframe": "7d"}, {"timeframe": "7d", "granularity": "hour"}),
        ({"timeframe": "1y"}, {"timeframe": "1y", "granularity": "day"}),
        ({"timeframe": "all"}, {"timeframe": "all", "granularity": "day"}),
    ],
    ids=["nothing", "7d", "1y", "all"],
)
async def test_defaults(
    client: httpx.AsyncClient,
    data: ZkScoreData,
    params: dict[str, str],
    explicit: dict[str, str],
) -> None:
    body = await usage_body(client, params)
    assert body == await usage_body(client, explicit)
    timeframe, granularity = explicit["timeframe"], explicit["granularity"]
    start, end = window(data, ACME, timeframe)
    assert body["period"] == {
        "timeframe": timeframe,
        "granularity": granularity,
        "start": iso(start),
        "end": iso(end),
        "keyId": None,
    }
    assert body["timestamp"] == STAMP
    assert body["timeSeries"][0]["timestamp"] == iso(floor_to(start, granularity))
    assert {"errors", "pagination"} <= set(body)
    assert set(body["usage"]) >= SERIES_FIELDS
    entries = sort_entries(endpoint_entries(data, ACME.keys, start, end), "requests", "desc")
    assert body["breakdown"]["byEndpoint"] == entries
    assert body["pagination"] == {
        "total": len(entries),
        "limit": 100,
        "offset": 0,
        "hasMore": False,
    }


DISALLOWED = [(tf, unit) for tf in SPANS for unit in UNITS if unit not in ALLOWED[tf]]
BAD_VALUES = [
    *(({"timeframe": v}, "INVALID_TIMEFRAME", "Invalid timeframe") for v in ("2d", "24H", "")),
    *(
        ({"granularity": v}, "INVALID_GRANULARITY", "Invalid granularity")
        for v in ("hourly", "Day", "")
    ),
    *(({"limit": v}, "INVALID_PARAMETERS", None) for v in ("0", "1001", "ten", "1.5", "-1", "")),
    *(({"offset": v}, "INVALID_PARAMETERS", None) for v in ("-1", "x", "1e3")),
    *(
        ({name: v}, "INVALID_PARAMETERS", None)
        for name in ("includeEndpoints", "include_errors", "includeLatency")
        for v in ("yes", "TRUE", "1", "")
    ),
    *(({n: v}, "INVALID_PARAMETERS", None) for n in ("sortBy", "sort_by") for v in ("name", "")),
    *(({n: v}, "INVALID_PARAMETERS", None) for n in ("order", "sortOrder") for v in ("up", "DESC")),
    *(({"timeframe": tf, "granularity": g}, "INVALID_PARAMETERS", None) for tf, g in DISALLOWED),
]


@pytest.mark.parametrize(
    ("params", "code", "message"),
    BAD_VALUES,
    ids=["-".join(f"{k}={v}" for k, v in p.items()) for p, _, _ in BAD_VALUES],
)
async def test_bad_values_are_400_with_the_right_code(
    client: httpx.AsyncClient, params: dict[str, str], code: str, message: str | None
) -> None:
    response = await get(client, params)
    assert_error(response, 400, code, message)
    assert_limit_headers(response, 1_000, 999)


@pytest.mark.parametrize("params", [{"limit": "5\n"}, {"offset": "1\n"}], ids=["limit", "offset"])
async def test_integer_with_a_trailing_newline_is_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert_error(await get(client, params), 400, "INVALID_PARAMETERS")


@pytest.mark.parametrize(
    "params",
    [
        {"keyId": "key_99"},
        {"key_id": "key_99"},
        {"keyId": "key_4"},  # the hobby account's key
        {"key_id": "key_5"},  # the orbit account's key
        {"keyId": ""},
        {"keyId": "KEY_1"},
    ],
    ids=["unknown", "unknown-snake", "other-account", "other-account-snake", "empty", "case"],
)
async def test_unknown_or_foreign_key_is_404(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await get(client, params)
    assert_error(response, 404, "NOT_FOUND", NO_USAGE)
    assert_limit_headers(response, 1_000, 999)


async def test_a_revoked_key_of_the_account_can_be_selected(
    client: httpx.AsyncClient, data: ZkScoreData
) -> None:
    params = {"keyId": "key_3", "timeframe": "1y", "granularity": "month"}
    body = await usage_body(client, params)
    start, end = window(data, ACME, "1y")
    assert body["usage"]["totalRequests"] == tally(data, ("key_3",), start, end).requests > 0
    assert body["breakdown"]["byKey"][0]["status"] == "revoked"
    recent = await usage_body(client, {"keyId": "key_3"})  # no requests since the revocation
    assert recent["usage"]["totalRequests"] == 0
    assert recent["breakdown"]["byEndpoint"] == []


# -- 3. include flags ----------------------------------------------------------------------------


def drop_endpoints(body: dict[str, Any]) -> dict[str, Any]:
    breakdown = {k: v for k, v in body["breakdown"].items() if k != "byEndpoint"}
    rest = {k: v for k, v in body.items() if k != "pagination"}
    return {**rest, "breakdown": breakdown}


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("includeEndpoints", drop_endpoints),
        ("includeErrors", lambda body: {k: v for k, v in body.items() if k != "errors"}),
        ("includeLatency", lambda body: without(body, *SERIES_FIELDS)),
    ],
    ids=["endpoints", "errors", "latency"],
)
@pytest.mark.parametrize("account", [ACME, ORBIT], ids=lambda a: a.id)
async def test_include_flags_leave_out_exactly_their_fields(
    client: httpx.AsyncClient,
    account: Acct,
    flag: str,
    expected: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    params = {"timeframe": "7d", "granularity": "day"}
    full = await usage_body(client, params, account.token)
    partial = await usage_body(client, {**params, flag: "false"}, account.token)
    assert partial == expected(full)
    if flag == "includeEndpoints":
        assert "pagination" not in partial and "byEndpoint" not in partial["breakdown"]
        assert partial["errors"]["byEndpoint"] == full["errors"]["byEndpoint"] != []
    elif flag == "includeErrors":
        assert "errors" not in partial
    else:
        assert not [name for name in field_names(partial) if "latency" in name.lower()]


# -- 4. sorting and paging of byEndpoint ---------------------------------------------------------

SORT_CASES = [
    pytest.param(HOBBY, "24h", id="hobby-24h"),  # last requests at different minutes
    pytest.param(ACME, "7d", id="acme-7d"),  # every endpoint called in the last minute: ties
]


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("sort_by", list(SORT_VALUES))
@pytest.mark.parametrize(("account", "timeframe"), SORT_CASES)
async def test_endpoints_are_sorted_as_asked(
    client: httpx.AsyncClient,
    data: ZkScoreData,
    account: Acct,
    timeframe: str,
    sort_by: str,
    order: str,
) -> None:
    params = {"timeframe": timeframe, "granularity": "day", "sortBy": sort_by, "order": order}
    body = await usage_body(client, params, account.token)
    start, end = window(data, account, timeframe)
    expected = sort_entries(endpoint_entries(data, account.keys, start, end), sort_by, order)
    assert body["breakdown"]["byEndpoint"] == expected
    # Sorting by latency uses the average latency even when latency fields are left out.
    lean = await usage_body(client, {**params, "includeLatency": "false"}, account.token)
    paths = [e["endpoint"] for e in lean["breakdown"]["byEndpoint"]]
    assert paths == [e["endpoint"] for e in expected]


@pytest.mark.parametrize("limit", [1, 2, 4, 5, 6, 1000])
async def test_paging_walks_every_endpoint_exactly_once(
    client: httpx.AsyncClient, data: ZkScoreData, limit: int
) -> None:
    params = {"timeframe": "7d", "granularity": "day", "sortBy": "errors", "order": "asc"}
    walked = await endpoint_pages(client, params, limit)
    start, end = window(data, ACME, "7d")
    expected = sort_entries(endpoint_entries(data, ACME.keys, start, end), "errors", "asc")
    assert len(expected) == 6
    assert walked == expected
    assert sum(e["requests"] for e in walked) == tally(data, ACME.keys, start, end).requests


@pytest.mark.parametrize("offset", [6, 7, 100_000])
async def test_offset_past_the_end_gives_an_empty_page(
    client: httpx.AsyncClient, offset: int
) -> None:
    body = await usage_body(client, {"timeframe": "7d", "limit": "2", "offset": str(offset)})
    assert body["breakdown"]["byEndpoint"] == []
    assert body["pagination"] == {"total": 6, "limit": 2, "offset": offset, "hasMore": False}


# -- 5. time series ------------------------------------------------------------------------------

SERIES_CASES = [(tf, unit) for tf, units in ALLOWED.items() for unit in units]
ALIGNED: dict[str, Callable[[datetime], bool]] = {
    "minute": lambda s: s.second == 0,
    "hour": lambda s: (s.minute, s.second) == (0, 0),
    "day": lambda s: (s.hour, s.minute) == (0, 0),
    "week": lambda s: (s.weekday(), s.hour, s.minute) == (0, 0, 0),
    "month": lambda s: (s.day, s.hour, s.minute) == (1, 0, 0),
}


@pytest.mark.parametrize(
    ("timeframe", "unit"), SERIES_CASES, ids=[f"{t}-{u}" for t, u in SERIES_CASES]
)
async def test_time_series_is_aligned_ascending_and_equals_the_data(
    client: httpx.AsyncClient, data: ZkScoreData, timeframe: str, unit: str
) -> None:
    body = await usage_body(client, {"timeframe": timeframe, "granularity": unit})
    start, end = window(data, ACME, timeframe)
    series = body["timeSeries"]
    stamps = [datetime.fromisoformat(p["timestamp"]) for p in series]
    assert all(floor_to(s, unit) == s for s in stamps)
    assert all(ALIGNED[unit](s) for s in stamps)
    assert stamps == sorted(stamps)
    assert stamps[0] <= start < step(stamps[0], unit)
    assert stamps[-1] < end <= step(stamps[-1], unit)
    assert series == expected_series(data, ACME.keys, start, end, unit)
    usage = body["usage"]
    assert usage["peakLatency"] == max(p["peakLatency"] for p in series)
    if unit == "minute":
        assert usage["peakRequestsPerMinute"] == max(p["requests"] for p in series)
    if unit == "hour":
        assert usage["peakRequestsPerHour"] == max(p["requests"] for p in series)


# -- 6. consistency ------------------------------------------------------------------------------

CONSISTENCY_CASES = [
    pytest.param(ACME, "24h", "hour", id="acme-24h-hour"),
    pytest.param(ACME, "all", "month", id="acme-all-month"),
    pytest.param(HOBBY, "1h", "minute", id="hobby-1h-minute"),
    pytest.param(HOBBY, "30d", "day", id="hobby-30d-day"),
    pytest.param(ORBIT, "7d", "hour", id="orbit-7d-hour"),
    pytest.param(ORBIT, "1y", "week", id="orbit-1y-week"),
]


@pytest.mark.parametrize(("account", "timeframe", "unit"), CONSISTENCY_CASES)
async def test_consistency_rules(
    client: httpx.AsyncClient, data: ZkScoreData, account: Acct, timeframe: str, unit: str
) -> None:
    params = {"timeframe": timeframe, "granularity": unit}
    body = await usage_body(client, params, account.token)
    start, end = window(data, account, timeframe)
    figures = tally(data, account.keys, start, end)
    usage, breakdown, errors = body["usage"], body["breakdown"], body["errors"]
    total = usage["totalRequests"]

    assert total == figures.requests > 0
    assert total == sum(p["requests"] for p in body["timeSeries"])
    assert total == sum(k["requests"] for k in breakdown["byKey"])
    assert total == sum(
        e["requests"] for e in await endpoint_pages(client, params, 2, account.token)
    )
    assert total == sum(m["requests"] for m in breakdown["byMethod"])
    assert total == sum(s["count"] for s in breakdown["byStatusCode"])
    assert usage["successfulRequests"] + usage["failedRequests"] == total
    assert usage["failedRequests"] == figures.failed
    assert usage["dataTransferred"] == figures.data_bytes
    assert [k["keyId"] for k in breakdown["byKey"]] == list(account.keys)

    failed = errors["totalErrors"]
    assert failed == usage["failedRequests"] == sum(p["failedRequests"] for p in body["timeSeries"])
    assert failed == sum(t["count"] for t in errors["byType"])
    assert failed == sum(e["count"] for e in errors["byEndpoint"])
    assert failed == sum(s["count"] for s in errors["byStatusCode"])
    assert {t["type"]: t["count"] for t in errors["byType"]} == per_error_type(
        data, account.keys, start, end
    )

    # Rates and percentages are percent with two decimals.
    assert usage["successRate"] == percent(usage["successfulRequests"], total)
    assert errors["errorRate"] == percent(failed, total)
    assert [t["percentage"] for t in errors["byType"]] == [
        percent(t["count"], failed) for t in errors["byType"]
    ]
    assert [s["percentage"] for s in breakdown["byStatusCode"]] == [
        percent(s["count"], total) for s in breakdown["byStatusCode"]
    ]
    assert [m["percentage"] for m in breakdown["byMethod"]] == [
        percent(m["requests"], total) for m in breakdown["byMethod"]
    ]
    found = list(rates(body))
    assert found
    assert all(0 <= value <= 100 and value == round(value, 2) for value in found)


# -- 7. the rate limit ---------------------------------------------------------------------------

COUNTED = [
    pytest.param("GET", USAGE, {}, 200, id="usage"),
    pytest.param("GET", USAGE, {"timeframe": "2d"}, 400, id="bad-timeframe"),
    pytest.param("GET", USAGE, {"keyId": "key_4"}, 404, id="foreign-key"),
    pytest.param("GET", KEYS, {}, 200, id="key-list"),
    pytest.param("POST", KEYS, {}, 405, id="create-key"),
    pytest.param("DELETE", f"{KEYS}/key_2", {}, 405, id="revoke-key"),
]


@pytest.mark.parametrize(("method", "path", "params", "status"), COUNTED)
async def test_counted_answers_carry_rate_limit_headers(
    client: httpx.AsyncClient,
    emulator: ZkScoreEmulator,
    method: str,
    path: str,
    params: dict[str, str],
    status: int,
) -> None:
    response = await get(client, params, path=path, method=method)
    assert response.status_code == status
    assert_limit_headers(response, ACME.per_minute, ACME.per_minute - 1)
    assert emulator.calls_this_minute(ACME.id) == 1


@pytest.mark.parametrize(
    ("token", "path", "status"),
    [(None, USAGE, 401), (REVOKED_TOKEN, USAGE, 403), (ACME.token, "/v1/developer/nothing", 404)],
    ids=["401", "403", "unknown-path"],
)
async def test_uncounted_answers_carry_no_rate_limit_headers(
    client: httpx.AsyncClient, emulator: ZkScoreEmulator, token: str | None, path: str, status: int
) -> None:
    response = await get(client, token=token, path=path)
    assert response.status_code == status
    assert_no_limit_headers(response)
    assert emulator.calls_this_minute(ACME.id) == 0


async def exhaust(client: httpx.AsyncClient, account: Acct) -> None:
    """Spend the account's minute: answers of every kind count, and say what is left."""
    kinds: list[dict[str, str]] = [{"timeframe": "1h"}, {"timeframe": "bad"}, {"keyId": "key_1"}]
    for used in range(1, account.per_minute + 1):
        response = await get(client, kinds[used % 3], account.token)
        assert response.status_code in (200, 400, 404)
        assert response.headers["X-RateLimit-Limit"] == str(account.per_minute)
        assert response.headers["X-RateLimit-Remaining"] == str(account.per_minute - used)


async def test_free_tier_allows_60_calls_a_minute_then_429(
    client: httpx.AsyncClient, emulator: ZkScoreEmulator
) -> None:
    await exhaust(client, HOBBY)
    for path in (USAGE, KEYS, USAGE):  # 429s do not count, and the window stays spent
        limited = await get(client, token=HOBBY.token, path=path)
        assert_error(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert limited.headers["Retry-After"] == str(SECONDS_TO_NEXT_MINUTE) == "60"
        assert_limit_headers(limited, 60, 0)
    assert emulator.calls_this_minute(HOBBY.id) == 60
    # Other accounts have windows of their own.
    assert_limit_headers(await get(client, token=ORBIT.token), ORBIT.per_minute, 299)
    assert_limit_headers(await get(client, token=ACME.token), ACME.per_minute, 999)


@pytest.mark.parametrize(
    ("seconds", "retry_after"), [(0, 60), (42, 18), (59.5, 1)], ids=["0s", "42s", "59.5s"]
)
async def test_retry_after_counts_to_the_next_minute(
    moving: Moving, seconds: float, retry_after: int
) -> None:
    moving.clock.now = NOW + timedelta(seconds=seconds)
    async with httpx.AsyncClient(base_url=moving.url, verify=TLS) as http:
        await exhaust(http, HOBBY)
        limited = await get(http, token=HOBBY.token)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == str(retry_after)
        assert limited.headers["X-RateLimit-Reset"] == str(int(NEXT_MINUTE.timestamp()))
        moving.clock.now = NEXT_MINUTE  # a new window
        response = await get(http, {"timeframe": "bad"}, HOBBY.token)
        assert response.status_code == 400
        assert response.headers["X-RateLimit-Remaining"] == "59"
        assert response.headers["X-RateLimit-Reset"] == str(int((NEXT_MINUTE + MINUTE).timestamp()))


# -- 8. alerts -----------------------------------------------------------------------------------


def derived_alerts(data: ZkScoreData, account: Acct) -> list[tuple[str, str]]:
    """The alerts of the default (24h) answer, from the thresholds and recomputed numbers."""
    start, end = window(data, account, "24h")
    figures = tally(data, account.keys, start, end)
    today = tally(data, account.keys, midnight(TODAY), END).requests
    per_day = figures.requests / ((end - start) / MINUTE) * 1440
    busiest = busiest_minute(data, account.keys, start, end)
    alerts = []
    if figures.failed / figures.requests * 100 > 5:
        alerts.append(("HIGH_ERROR_RATE", "high"))
    if today / account.per_day * 100 > 80:
        alerts.append(("APPROACHING_DAILY_LIMIT", "high"))
    if per_day / account.per_day * 100 > 80:
        alerts.append(("HIGH_UTILIZATION", "medium"))
    if busiest / account.per_minute * 100 > 80:
        alerts.append(("PEAK_NEAR_RATE_LIMIT", "medium"))
    return sorted(alerts, key=lambda a: (PRIORITY[a[1]], a[0]))


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        pytest.param(ACME, [], id="acme"),
        pytest.param(HOBBY, ["APPROACHING_DAILY_LIMIT", "HIGH_UTILIZATION"], id="hobby"),
        pytest.param(ORBIT, ["HIGH_ERROR_RATE"], id="orbit"),
    ],
)
async def test_alerts_follow_the_data(
    client: httpx.AsyncClient, data: ZkScoreData, account: Acct, expected: list[str]
) -> None:
    body = await usage_body(client, token=account.token)
    alerts = body["alerts"]
    assert [(a["type"], a["priority"]) for a in alerts] == derived_alerts(data, account)
    assert [a["type"] for a in alerts] == expected
    assert all(set(a) == {"type", "message", "priority", "recommendation"} for a in alerts)
    start, end = window(data, account, "24h")
    figures = tally(data, account.keys, start, end)
    today = tally(data, account.keys, midnight(TODAY), END).requests
    messages = {a["type"]: a["message"] for a in alerts}
    if "HIGH_ERROR_RATE" in messages:
        assert f"{figures.failed} of {figures.requests}" in messages["HIGH_ERROR_RATE"]
    if "APPROACHING_DAILY_LIMIT" in messages:
        assert f"{today} of {account.per_day}" in messages["APPROACHING_DAILY_LIMIT"]
    assert body["rateLimits"]["usage"]["requestsPerDay"] == today
    assert body["usage"]["peakRequestsPerMinute"] == busiest_minute(data, account.keys, start, end)


# -- 9. the key list -----------------------------------------------------------------------------


@pytest.mark.parametrize("account", ACCOUNTS, ids=lambda a: a.id)
async def test_key_list_names_every_key_of_the_account(
    client: httpx.AsyncClient, data: ZkScoreData, account: Acct
) -> None:
    response = await get(client, token=account.token, path=KEYS)
    assert response.status_code == 200
    keys = []
    for key_id in account.keys:
        name, token, revoked = KEY_TABLE[key_id]
        since = midnight(data.keys[key_id].created)
        last = last_request(data, (key_id,), since, END)
        keys.append(
            {
                "id": key_id,
                "name": name,
                "prefix": token[:12],
                "status": "revoked" if revoked else "active",
                "createdAt": iso(since),
                "lastUsedAt": iso(last) if last else None,
                "revokedAt": iso(midnight(revoked)) if revoked else None,
            }
        )
    assert response.json() == {
        "success": True,
        "tier": account.tier,
        "keys": keys,
        "total": len(keys),
        "timestamp": STAMP,
    }
    assert_limit_headers(response, account.per_minute, account.per_minute - 1)


# -- 10-15. the client's mapping through the gateway ---------------------------------------------


@dataclass(frozen=True)
class Configured:
    """A gateway account: the seeded account it reads and the keys it selects."""

    account: Acct
    key_id: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key_id,) if self.key_id else self.account.keys


CONFIGURED = {
    "zks-prod": Configured(ACME),
    "zks-staging": Configured(ACME, "key_2"),
    "zks-hobby": Configured(HOBBY),
    "zks-orbit": Configured(ORBIT),
}


def gateway_accounts(url: str) -> list[dict[str, str]]:
    prod = account_entry("zkscore", url)
    assert prod["id"] == "zks-prod" and prod["api_key"] == ACME.token
    common = {"provider": "zkscore", "base_url": url}
    return [
        prod,
        {"id": "zks-staging", **common, "api_key": ACME.token, "key_id": "key_2"},
        {"id": "zks-hobby", **common, "api_key": HOBBY.token},
        {"id": "zks-orbit", **common, "api_key": ORBIT.token},
    ]


@pytest.fixture
def gateway(make_gateway: Callable[[Settings], Gateway], zks: Running) -> Gateway:
    return make_gateway(settings_for(*gateway_accounts(zks.url)))


LIMITS_QUERY = """
query ($id: ID!) {
  account(id: $id) {
    scope
    plan
    source { state retryAt }
    quotas { id name window unit limit used remaining utilization exceeded resetsAt }
    rateLimits { name window limit used resetsAt }
    vendorAlerts { type message priority recommendation }
  }
}
"""

USAGE_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      granularity requests quotaRequests bytes failedRequests errorRate missingDays
      series { start requests quotaRequests bytes failedRequests }
      endpoints { endpoint requests consumesQuota errorRate averageLatencyMs bytes }
      errorTypes { type requests description }
      averageLatencyMs peakLatencyMs
      keys { keyId name requests errorRate averageLatencyMs }
      breakdownPeriod { start end }
    }
  }
}
"""


async def usage_of(
    gateway: Gateway, account_id: str, first: date, last: date, granularity: str
) -> dict[str, Any]:
    variables = {
        "id": account_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "granularity": granularity,
    }
    usage: dict[str, Any] = (await gateway.data(USAGE_QUERY, variables))["account"]["usage"]
    return usage


def served_usage(emulator: ZkScoreEmulator) -> list[dict[str, str]]:
    """The query parameters of every usage call the emulator served, in order."""
    return [dict(r.query) for r in emulator.served if r.path == USAGE]


def usage_params(timeframe: str, unit: str, offset: int = 0, limit: int = 1000) -> dict[str, str]:
    """What the client asks for a page of usage."""
    return {
        "timeframe": timeframe,
        "granularity": unit,
        "sortBy": "requests",
        "order": "desc",
        "limit": str(limit),
        "offset": str(offset),
    }


@pytest.mark.parametrize("account_id", list(CONFIGURED))
async def test_client_maps_scope_plan_quota_rate_limits_and_alerts(
    gateway: Gateway,
    client: httpx.AsyncClient,
    emulator: ZkScoreEmulator,
    data: ZkScoreData,
    account_id: str,
) -> None:
    configured = CONFIGURED[account_id]
    account = configured.account
    answer = (await gateway.data(LIMITS_QUERY, {"id": account_id}))["account"]

    (asked,) = served_usage(emulator)
    expected_params = {
        "timeframe": "24h",
        "granularity": "day",
        "includeEndpoints": "false",
        "includeLatency": "false",
    }
    assert asked == (
        {**expected_params, "keyId": configured.key_id} if configured.key_id else expected_params
    )
    keys = account.keys  # limits are the account's, whatever key is selected
    minute = tally(data, keys, END - MINUTE, END).requests
    hour = tally(data, keys, floor_to(END, "hour"), END).requests
    today = tally(data, keys, midnight(TODAY), END).requests
    vendor_alerts = (await usage_body(client, asked, account.token))["alerts"]
    assert answer == {
        "scope": "API_KEY" if configured.key_id else "USER",
        "plan": account.tier,
        "source": {"state": "FRESH", "retryAt": None},
        "quotas": [
            {
                "id": f"{account_id}:daily-requests",
                "name": "Daily requests",
                "window": "DAY",
                "unit": "REQUESTS",
                "limit": account.per_day,
                "used": today,
                "remaining": account.per_day - today,
                "utilization": today / account.per_day,
                "exceeded": False,
                "resetsAt": "2026-03-19T00:00:00Z",
            }
        ],
        "rateLimits": [
            {
                "name": "Requests per minute",
                "window": "MINUTE",
                "limit": account.per_minute,
                "used": minute,
                "resetsAt": z(NEXT_MINUTE),
            },
            {
                "name": "Requests per hour",
                "window": "HOUR",
                "limit": account.per_minute * 60,
                "used": hour,
                "resetsAt": "2026-03-18T15:00:00Z",
            },
        ],
        "vendorAlerts": vendor_alerts,
    }
    if not configured.key_id:
        assert [(a["type"], a["priority"]) for a in vendor_alerts] == derived_alerts(data, account)


CHOICES = [
    ("DAY", 0, "24h"),
    ("DAY", 3, "7d"),
    ("DAY", 6, "7d"),
    ("DAY", 7, "30d"),  # 7d starts at 14:25 seven days ago: that day is not whole
    ("DAY", 20, "30d"),
    ("DAY", 60, "90d"),
    ("DAY", 200, "1y"),
    ("DAY", 364, "1y"),
    ("DAY", 365, "all"),
    ("DAY", 500, "all"),
    ("HOUR", 0, "24h"),
    ("HOUR", 1, "7d"),
    ("HOUR", 20, "30d"),
    ("HOUR", 60, "90d"),
    ("MINUTE", 0, "24h"),
]


@pytest.mark.parametrize(
    ("granularity", "days_back", "timeframe"),
    CHOICES,
    ids=[f"{g}-{d}d-{t}" for g, d, t in CHOICES],
)
async def test_client_asks_for_the_smallest_timeframe_that_holds_the_range(
    gateway: Gateway, emulator: ZkScoreEmulator, granularity: str, days_back: int, timeframe: str
) -> None:
    await usage_of(gateway, "zks-prod", TODAY - timedelta(days=days_back), TODAY, granularity)
    assert served_usage(emulator) == [usage_params(timeframe, granularity.lower())]


REFUSED = [
    pytest.param("MINUTE", 2, 0, "granularity MINUTE allows at most 2 days", id="minute-3-days"),
    pytest.param(
        "MINUTE", 1, 0, "ZKScore keeps per-minute data for the last 24 hours only", id="minute-1d"
    ),
    pytest.param("HOUR", 100, 0, "granularity HOUR allows at most 62 days", id="hour-101-days"),
    pytest.param(
        "HOUR", 100, 95, "ZKScore keeps per-hour data for the last 90 days only", id="hour-old"
    ),
]


@pytest.mark.parametrize(("granularity", "first_back", "last_back", "message"), REFUSED)
async def test_ranges_beyond_the_vendors_windows_are_refused_without_a_call(
    gateway: Gateway,
    emulator: ZkScoreEmulator,
    granularity: str,
    first_back: int,
    last_back: int,
    message: str,
) -> None:
    variables = {
        "id": "zks-prod",
        "from": (TODAY - timedelta(days=first_back)).isoformat(),
        "to": (TODAY - timedelta(days=last_back)).isoformat(),
        "granularity": granularity,
    }
    answer = await gateway.query(USAGE_QUERY, variables)
    assert answer["data"] == {"account": None}
    [error] = answer["errors"]
    assert error["path"] == ["account", "usage"]
    assert message in error["message"]
    assert emulator.total_calls() == 0


TRIM_CASES = [
    pytest.param("zks-prod", "DAY", TODAY - timedelta(days=20), TODAY, "30d", id="day-30d"),
    pytest.param("zks-prod", "DAY", date(2026, 2, 1), date(2026, 2, 10), "90d", id="day-past"),
    pytest.param("zks-prod", "DAY", date(2026, 3, 10), date(2026, 3, 25), "30d", id="day-future"),
    pytest.param("zks-prod", "DAY", TODAY - timedelta(days=500), TODAY, "all", id="day-all"),
    # Days before the hobby key existed are in the 1y window as zeros: known, not missing.
    pytest.param("zks-hobby", "DAY", date(2025, 8, 25), date(2025, 9, 5), "1y", id="day-zeros"),
    pytest.param("zks-prod", "HOUR", TODAY, TODAY, "24h", id="hour-today"),
    pytest.param("zks-staging", "HOUR", TODAY - timedelta(days=1), TODAY, "7d", id="hour-7d"),
    pytest.param("zks-orbit", "MINUTE", TODAY, TODAY, "24h", id="minute-today"),
]


@pytest.mark.parametrize(("account_id", "granularity", "first", "last", "timeframe"), TRIM_CASES)
async def test_client_keeps_whole_buckets_inside_window_and_range(
    gateway: Gateway,
    emulator: ZkScoreEmulator,
    data: ZkScoreData,
    account_id: str,
    granularity: str,
    first: date,
    last: date,
    timeframe: str,
) -> None:
    configured = CONFIGURED[account_id]
    usage = await usage_of(gateway, account_id, first, last, granularity)
    [asked] = served_usage(emulator)
    assert (asked["timeframe"], asked.get("keyId")) == (timeframe, configured.key_id)

    unit = granularity.lower()
    start, end = window(data, configured.account, timeframe)
    stop = min(midnight(last) + DAY, END)
    buckets = []
    moment = midnight(first)
    while moment < stop:
        if moment >= start:  # a bucket starting before the window is not whole
            buckets.append(
                (moment, tally(data, configured.keys, moment, min(step(moment, unit), stop)))
            )
        moment = step(moment, unit)
    requests = sum(f.requests for _, f in buckets)
    failed = sum(f.failed for _, f in buckets)
    known = {m.date() for m, _ in buckets}
    assert usage["series"] == [
        {
            "start": z(m),
            "requests": f.requests,
            "quotaRequests": f.requests,
            "bytes": f.data_bytes,
            "failedRequests": f.failed,
        }
        for m, f in buckets
    ]
    assert (usage["requests"], usage["quotaRequests"]) == (requests, requests)
    assert usage["failedRequests"] == failed
    assert usage["bytes"] == sum(f.data_bytes for _, f in buckets)
    assert usage["errorRate"] == (failed / requests if requests else None)
    assert usage["missingDays"] == [
        d.isoformat() for d in days(first, min(last, TODAY)) if d not in known
    ]
    assert usage["breakdownPeriod"] == {"start": z(start), "end": z(end)}


async def test_days_before_the_account_existed_are_missing_with_all(
    gateway: Gateway, data: ZkScoreData
) -> None:
    first = TODAY - timedelta(days=500)
    usage = await usage_of(gateway, "zks-prod", first, TODAY, "DAY")
    opened = created(data, ACME).date()
    assert opened == date(2025, 1, 15)
    assert usage["missingDays"] == [d.isoformat() for d in days(first, opened - DAY)]
    assert usage["series"][0]["start"] == z(midnight(opened))


@pytest.mark.parametrize(("page_cap", "calls"), [(None, 1), (6, 1), (4, 2), (2, 3), (1, 6)])
async def test_client_walks_every_page_of_endpoints(
    make_gateway: Callable[[Settings], Gateway], page_cap: int | None, calls: int
) -> None:
    # The seeded accounts call six endpoints: a vendor that serves fewer per page than asked
    # (the emulator's page_cap) makes the walk visible; with the whole page it is one call.
    emulator = ZkScoreEmulator(seed=SEED, clock=lambda: NOW, page_cap=page_cap)
    with ServerThread(emulator) as server:
        gateway = make_gateway(settings_for(*gateway_accounts(server.urls[0])))
        usage = await usage_of(gateway, "zks-prod", TODAY - timedelta(days=3), TODAY, "DAY")
    size = page_cap or 6
    assert served_usage(emulator) == [
        usage_params("7d", "day", offset=i * size) for i in range(calls)
    ]
    start, end = window(emulator.data, ACME, "7d")
    figures = per_endpoint(emulator.data, ACME.keys, start, end)
    assert {e["endpoint"]: e["requests"] for e in usage["endpoints"]} == {
        path: f.requests for path, f in figures.items()
    }
    assert len(usage["endpoints"]) == len(ENDPOINTS) == 6


async def test_client_stays_under_the_free_tiers_rate(
    make_gateway: Callable[[Settings], Gateway], zks: Running, emulator: ZkScoreEmulator
) -> None:
    hobby = {"id": "zks-hobby", "provider": "zkscore", "base_url": zks.url, "api_key": HOBBY.token}
    gateway = make_gateway(settings_for(hobby, cache=NO_CACHE))  # every query calls the vendor
    query = '{ account(id: "zks-hobby") { source { state retryAt } quotas { used } } }'
    for _ in range(HOBBY.per_minute):
        account = (await gateway.data(query))["account"]
        assert account["source"] == {"state": "FRESH", "retryAt": None}
        assert len(account["quotas"]) == 1
    held = (await gateway.data(query))["account"]
    assert held == {"source": {"state": "RATE_LIMITED", "retryAt": z(NEXT_MINUTE)}, "quotas": []}
    assert held["source"]["retryAt"] == "2026-03-18T14:26:00Z"
    assert len(emulator.served) == 60
    assert emulator.calls_this_minute(HOBBY.id) == 60  # every call counted: none was a 429


@pytest.mark.parametrize("account_id", ["zks-prod", "zks-staging", "zks-orbit"])
async def test_client_maps_endpoints_error_types_keys_and_latency(
    gateway: Gateway, data: ZkScoreData, account_id: str
) -> None:
    configured = CONFIGURED[account_id]
    keys = configured.keys
    first = TODAY - timedelta(days=3)
    usage = await usage_of(gateway, account_id, first, TODAY, "DAY")
    start, end = window(data, configured.account, "7d")

    endpoints = [
        (path, f) for path, f in per_endpoint(data, keys, start, end).items() if f.requests
    ]
    assert usage["endpoints"] == [
        {
            "endpoint": path,
            "requests": f.requests,
            "consumesQuota": True,
            "errorRate": f.failed_fraction,
            "averageLatencyMs": f.average_latency,
            "bytes": f.data_bytes,
        }
        for path, f in sorted(endpoints, key=lambda item: (-item[1].requests, item[0]))
    ]

    descriptions = {e.code: e.description for e in ERROR_TYPES}
    types = per_error_type(data, keys, start, end)
    assert usage["errorTypes"] == [
        {"type": code, "requests": count, "description": descriptions[code]}
        for code, count in sorted(types.items(), key=lambda item: (-item[1], item[0]))
    ]

    per_key = {k: tally(data, (k,), start, end) for k in keys}
    assert usage["keys"] == [
        {
            "keyId": k,
            "name": KEY_TABLE[k][0],
            "requests": f.requests,
            "errorRate": f.failed_fraction,
            "averageLatencyMs": f.average_latency if f.requests else None,
        }
        for k, f in sorted(per_key.items(), key=lambda item: (-item[1].requests, item[0]))
    ]

    # Latency of the range: from its whole buckets (the days first..today), not the window.
    buckets = [
        tally(data, keys, midnight(d), min(midnight(d) + DAY, END)) for d in days(first, TODAY)
    ]
    range_total = sum(buckets, Figures())
    assert usage["averageLatencyMs"] == pytest.approx(
        range_total.latency_ms / range_total.requests, abs=0.01
    )
    assert usage["peakLatencyMs"] == max(f.peak_latency_ms for f in buckets if f.requests)
    assert usage["breakdownPeriod"] == {"start": z(start), "end": z(end)}
