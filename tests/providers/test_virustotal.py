"""VirusTotal emulator fidelity against the vendor document, and the client's mapping.

Every expected number is recomputed from the emulator's seeded data model (``VirusTotalData.day``
and, for quotas, ``quota_used``); the answers are read over real loopback HTTP. The vendor
document is ``shared/upstream/seeds/000_915510fe70c1fa91.txt``, summarised in
``shared/upstream/virustotal.md``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings
from providers.emulation import Fault
from providers.virustotal.emulator import (
    DEFAULT_GROUPS,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_USERS,
    QUOTAS,
    VirusTotalData,
    VirusTotalEmulator,
    quota_used,
)
from tests.conftest import NOW, SEED, TLS, Gateway, Running, account_entry, clock, settings_for

ADMIN_KEY = "vt_demo_admin_key"  # alice: administrator of soc-team and legacy-lab
ANALYST_KEY = "vt_demo_analyst_key"  # bob: a member of soc-team, not an administrator
INACTIVE_KEY = "vt_demo_inactive_key"  # carol: deactivated
GROUP = "soc-team"
LEGACY = "legacy-lab"  # answers as older VirusTotal versions: no envelope, bare endpoint names
GROUP_ACCOUNT = "vt-soc"  # the demo account of the spec: ADMIN_KEY on soc-team
USER_ACCOUNT = "vt-alice"
LEGACY_ACCOUNT = "vt-legacy"
SCALE = {u.id: u.scale for u in DEFAULT_USERS} | {g.id: g.scale for g in DEFAULT_GROUPS}
TODAY = NOW.date()
RETENTION_START = TODAY - timedelta(days=DEFAULT_RETENTION_DAYS - 1)  # 2026-01-18
FORBIDDEN = "You are not authorized to perform the requested operation"  # the vendor's words
MAPS = (
    ("daily", "total"),
    ("daily_endpoints_not_consuming_quota", "total_endpoints_not_consuming_quota"),
)
"""(per-day map, its total) of the consuming and the not-consuming endpoints."""
USAGE_KEYS = {key for pair in MAPS for key in pair}
GROUP_USAGE = f"/api/v3/groups/{GROUP}/api_usage"
GROUP_OBJECT = f"/api/v3/groups/{GROUP}"
ALICE_QUOTAS = "/api/v3/users/alice/overall_quotas"
WINDOWS = {"_hourly": "HOUR", "_daily": "DAY", "_monthly": "MONTH"}
RESETS = {
    "HOUR": "2026-03-18T15:00:00Z",
    "DAY": "2026-03-19T00:00:00Z",
    "MONTH": "2026-04-01T00:00:00Z",
    "FIXED_TERM": None,
}
BUCKETS: dict[str, Callable[[date], date]] = {
    "DAY": lambda d: d,
    "WEEK": lambda d: d - timedelta(days=d.weekday()),
    "MONTH": lambda d: d.replace(day=1),
}


# -- helpers ----------------------------------------------------------------------------------


def ymd(day: date) -> str:
    """A request date as the vendor wants it: ``YYYYMMDD``."""
    return day.strftime("%Y%m%d")


def days(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def api_name(name: str) -> str:
    return f"/api/v3/({name})"


def bare(name: str) -> str:
    return name


def usage_on(
    data: VirusTotalData, entity: str, day: date
) -> tuple[dict[str, int], dict[str, int], bool]:
    """The data model's (consuming, not consuming, listed) for ``entity`` on ``day``."""
    return data.day(entity, day, SCALE[entity])


def used_now(data: VirusTotalData, entity: str, rule: str | int) -> int:
    """A quota's ``used`` for ``entity`` at NOW (the rules are documented with QUOTAS)."""
    return quota_used(data, entity, SCALE[entity], rule, TODAY)


def expected_body(
    data: VirusTotalData,
    entity: str,
    first: date,
    last: date,
    name: Callable[[str], str] = api_name,
) -> dict[str, Any]:
    """The ``api_usage`` payload for the retained days ``first``..``last``, from the data model.

    A day without use is ``{}`` or absent as the data model's ``listed`` flag says.
    """
    body: dict[str, Any] = {}
    for day_key, total_key in MAPS:
        body[day_key], body[total_key] = {}, Counter()
    for day in days(first, last):
        *maps, listed = usage_on(data, entity, day)
        for (day_key, total_key), counts in zip(MAPS, maps, strict=True):
            if counts or listed:
                body[day_key][day.isoformat()] = {name(n): c for n, c in counts.items()}
            body[total_key].update({name(n): c for n, c in counts.items()})
    return {key: dict(value) for key, value in body.items()}


def summed(by_day: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """The per-endpoint sums of an answer's days."""
    total: Counter[str] = Counter()
    for counts in by_day.values():
        total.update(counts)
    return dict(total)


async def get(
    client: httpx.AsyncClient,
    path: str,
    params: Mapping[str, str] | None = None,
    key: str | None = ADMIN_KEY,
) -> httpx.Response:
    headers = {} if key is None else {"x-apikey": key}
    return await client.get(path, params=dict(params or {}), headers=headers)


async def payload(
    client: httpx.AsyncClient,
    path: str,
    params: Mapping[str, str] | None = None,
    key: str = ADMIN_KEY,
) -> dict[str, Any]:
    """The answer inside VirusTotal's ``{"data": ...}`` envelope (asserted)."""
    response = await get(client, path, params, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data"}, body
    data: dict[str, Any] = body["data"]
    return data


def assert_error(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> None:
    """VirusTotal's error form: ``{"error": {"code", "message"}}``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message


def fresh(seed: int = SEED, **options: Any) -> VirusTotalEmulator:
    """A new emulator on the suite's clock."""
    return VirusTotalEmulator(seed=seed, clock=clock, **options)


@asynccontextmanager
async def in_process(emulator: VirusTotalEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """A client served by ``emulator`` in-process (no socket)."""
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://virustotal") as http:
        yield http


def expected_quotas(data: VirusTotalData, entity: str, column: int) -> dict[str, dict[str, Any]]:
    """The graph's quotas of ``entity`` (``column`` 0: a group's allowance, 1: a user's)."""
    result = {}
    for name, (group_allowed, user_allowed, rule) in QUOTAS.items():
        limit = (group_allowed, user_allowed)[column]
        used = used_now(data, entity, rule)
        window = next((w for suffix, w in WINDOWS.items() if name.endswith(suffix)), "FIXED_TERM")
        result[name] = {
            "name": name,
            "window": window,
            "unit": "BYTES" if name == "monitor_storage_bytes" else "REQUESTS",
            "limit": limit,
            "used": used,
            "remaining": max(limit - used, 0),
            "utilization": used / limit,
            "exceeded": used >= limit,
            "resetsAt": RESETS[window],
        }
    return result


def expected_usage(
    data: VirusTotalData, entity: str, first: date, last: date, granularity: str
) -> dict[str, Any]:
    """The graph's usage of ``entity`` for ``first``..``last`` (up to today), from the data model.

    Days before the retention window are missing; the rest are known, zero or not.
    """
    period = days(first, min(last, TODAY))
    buckets: dict[date, list[int]] = {}
    endpoints: Counter[tuple[str, bool]] = Counter()
    for day in (d for d in period if d >= RETENTION_START):
        consuming, not_consuming, _ = usage_on(data, entity, day)
        bucket = buckets.setdefault(BUCKETS[granularity](day), [0, 0])
        bucket[0] += sum(consuming.values()) + sum(not_consuming.values())
        bucket[1] += sum(consuming.values())
        for counts, quota in ((consuming, True), (not_consuming, False)):
            endpoints.update({(api_name(n), quota): c for n, c in counts.items()})
    return {
        "granularity": granularity,
        "requests": sum(b[0] for b in buckets.values()),
        "quotaRequests": sum(b[1] for b in buckets.values()),
        "missingDays": [d.isoformat() for d in period if d < RETENTION_START],
        "series": [
            {"start": f"{start.isoformat()}T00:00:00Z", "requests": r, "quotaRequests": q}
            for start, (r, q) in sorted(buckets.items())
        ],
        "endpoints": dict(endpoints),
    }


def assert_usage(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    """The graph's usage equals the expectation; endpoints come by requests, descending."""
    endpoints = usage.pop("endpoints")
    assert {(e["endpoint"], e["consumesQuota"]): e["requests"] for e in endpoints} == expected[
        "endpoints"
    ]
    assert len(endpoints) == len(expected["endpoints"])
    counts = [e["requests"] for e in endpoints]
    assert counts == sorted(counts, reverse=True)
    assert usage == {k: v for k, v in expected.items() if k != "endpoints"}


def parse_ymd(value: str | None) -> date:
    """A request date the client sent, which must be ``YYYYMMDD``."""
    assert value is not None and re.fullmatch(r"[0-9]{8}", value), value
    return date(int(value[:4]), int(value[4:6]), int(value[6:]))


def served_ranges(emulator: VirusTotalEmulator, path: str) -> list[tuple[date, date]]:
    """The (start_date, end_date) of every ``path`` request the emulator served, by start."""
    return sorted(
        (parse_ymd(r.param("start_date")), parse_ymd(r.param("end_date")))
        for r in emulator.served
        if r.path == path
    )


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def vt(emulators: dict[str, Running]) -> Running:
    return emulators["virustotal"]


@pytest.fixture
def emulator(vt: Running) -> VirusTotalEmulator:
    assert isinstance(vt.emulator, VirusTotalEmulator)
    return vt.emulator


@pytest.fixture
def data(emulator: VirusTotalEmulator) -> VirusTotalData:
    return emulator.data


@pytest.fixture
async def client(vt: Running) -> AsyncIterator[httpx.AsyncClient]:
    # The shared TLS context spares each client loading the CA bundle (~0.1 s).
    async with httpx.AsyncClient(base_url=vt.url, verify=TLS) as http:
        yield http


# -- 1. auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [GROUP_USAGE, GROUP_OBJECT, ALICE_QUOTAS])
@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        (None, "AuthenticationRequiredError", "X-Apikey header is missing"),
        ("", "AuthenticationRequiredError", "X-Apikey header is missing"),
        ("vt_not_a_key", "WrongCredentialsError", None),
        (INACTIVE_KEY, "UserNotActiveError", None),
    ],
    ids=["missing", "blank", "unknown", "inactive"],
)
async def test_rejected_keys_are_401_with_the_vendor_code(
    client: httpx.AsyncClient,
    emulator: VirusTotalEmulator,
    path: str,
    key: str | None,
    code: str,
    message: str | None,
) -> None:
    assert not emulator.keys[INACTIVE_KEY].active
    assert_error(await get(client, path, key=key), 401, code, message)


@pytest.mark.parametrize("header", ["x-apikey", "X-Apikey", "X-APIKEY"])
async def test_header_name_is_case_insensitive(
    client: httpx.AsyncClient, data: VirusTotalData, header: str
) -> None:
    response = await client.get(GROUP_USAGE, headers={header: ADMIN_KEY})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": expected_body(data, GROUP, TODAY - timedelta(days=29), TODAY)
    }


# -- 2. group and user access -----------------------------------------------------------------


@pytest.mark.parametrize("path", [GROUP_USAGE, GROUP_OBJECT])
async def test_group_member_who_is_not_an_admin_is_forbidden(
    client: httpx.AsyncClient, emulator: VirusTotalEmulator, path: str
) -> None:
    bob = emulator.keys[ANALYST_KEY]
    assert bob.group == GROUP and bob.id not in emulator.groups[GROUP].admins
    assert_error(await get(client, path, key=ANALYST_KEY), 403, "ForbiddenError", FORBIDDEN)


@pytest.mark.parametrize("path", ["/api/v3/groups/no-such-group/api_usage", "/api/v3/groups/nope"])
async def test_unknown_group_is_a_404(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await get(client, path), 404, "NotFoundError")


@pytest.mark.parametrize(
    ("key", "path"),
    [
        (ADMIN_KEY, "/api/v3/users/bob/api_usage"),
        (ADMIN_KEY, f"/api/v3/users/{ANALYST_KEY}/api_usage"),
        (ADMIN_KEY, "/api/v3/users/bob/overall_quotas"),
        (ANALYST_KEY, "/api/v3/users/alice/api_usage"),
    ],
)
async def test_a_user_may_not_read_another_users_usage(
    client: httpx.AsyncClient, key: str, path: str
) -> None:
    assert_error(await get(client, path, key=key), 403, "ForbiddenError", FORBIDDEN)


@pytest.mark.parametrize("user_id", ["alice", ADMIN_KEY])
async def test_user_paths_take_the_user_id_or_its_api_key(
    client: httpx.AsyncClient, data: VirusTotalData, user_id: str
) -> None:
    params = {"start_date": "20260301", "end_date": "20260318"}
    usage = await payload(client, f"/api/v3/users/{user_id}/api_usage", params)
    assert usage == expected_body(data, "alice", date(2026, 3, 1), TODAY)
    quotas = await payload(client, f"/api/v3/users/{user_id}/overall_quotas")
    assert {name: entry["user"]["used"] for name, entry in quotas.items()} == {
        name: used_now(data, "alice", rule) for name, (_, _, rule) in QUOTAS.items()
    }


# -- 3. dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "first", "last"),
    [
        pytest.param({}, TODAY - timedelta(days=29), TODAY, id="default-30-days-to-today"),
        pytest.param({"end_date": "20260301"}, date(2026, 1, 31), date(2026, 3, 1), id="only-end"),
        pytest.param({"start_date": "20260301"}, date(2026, 3, 1), TODAY, id="only-start"),
        pytest.param(
            {"start_date": "20260217", "end_date": "20260318"},
            date(2026, 2, 17),
            TODAY,
            id="exactly-30-days",
        ),
        pytest.param(
            {"start_date": "20260310", "end_date": "20260310"},
            date(2026, 3, 10),
            date(2026, 3, 10),
            id="one-day",
        ),
    ],
)
async def test_dates_in_yyyymmdd_out_iso_and_defaults(
    client: httpx.AsyncClient,
    data: VirusTotalData,
    params: dict[str, str],
    first: date,
    last: date,
) -> None:
    body = await payload(client, GROUP_USAGE, params)
    assert body == expected_body(data, GROUP, first, last)
    for day_key, _ in MAPS:
        assert body[day_key], "a range with work days lists days"
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) for day in body[day_key])
        assert min(body[day_key]) >= first.isoformat() and max(body[day_key]) <= last.isoformat()


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-01",
        "20261301",
        "abc",
        pytest.param(
            "\uff12\uff10\uff12\uff16\uff10\uff13\uff10\uff11",  # 20260301 in fullwidth digits
            id="fullwidth-digits",
        ),
    ],
)
@pytest.mark.parametrize("name", ["start_date", "end_date"])
async def test_malformed_date_is_a_400(client: httpx.AsyncClient, name: str, value: str) -> None:
    assert_error(await get(client, GROUP_USAGE, {name: value}), 400, "InvalidArgumentError")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"start_date": "20260310", "end_date": "20260309"}, id="end-before-start"),
        pytest.param({"start_date": "20260216", "end_date": "20260318"}, id="31-days"),
        pytest.param({"start_date": ymd(TODAY - timedelta(days=30))}, id="31-days-to-today"),
        pytest.param({"end_date": "20260401", "start_date": "20260302"}, id="31-days-future"),
    ],
)
async def test_bad_range_is_a_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    assert_error(await get(client, GROUP_USAGE, params), 400, "InvalidArgumentError")


# -- 4. retention -----------------------------------------------------------------------------


@asynccontextmanager
async def usage_client(
    client: httpx.AsyncClient, retention_days: int
) -> AsyncIterator[httpx.AsyncClient]:
    """The suite's emulator for the default retention, else a fresh one served in-process."""
    if retention_days == DEFAULT_RETENTION_DAYS:
        yield client
    else:
        async with in_process(fresh(retention_days=retention_days)) as http:
            yield http


@pytest.mark.parametrize("retention_days", [DEFAULT_RETENTION_DAYS, 30])
async def test_days_before_the_retention_window_are_absent(
    client: httpx.AsyncClient, data: VirusTotalData, retention_days: int
) -> None:
    oldest = TODAY - timedelta(days=retention_days - 1)
    first, last = oldest - timedelta(days=10), oldest + timedelta(days=19)
    gone = days(first, oldest - timedelta(days=1))
    assert any(usage_on(data, GROUP, d)[0] for d in gone), "the data model has use to hide"
    params = {"start_date": ymd(first), "end_date": ymd(last)}
    async with usage_client(client, retention_days) as http:
        body = await payload(http, GROUP_USAGE, params)
    assert body == expected_body(data, GROUP, oldest, last)
    for day_key, _ in MAPS:
        assert min(body[day_key]) >= oldest.isoformat()


# -- 5. the answer's shape --------------------------------------------------------------------


async def test_answer_has_four_maps_totals_are_sums_and_names_are_wrapped(
    client: httpx.AsyncClient, data: VirusTotalData
) -> None:
    first = TODAY - timedelta(days=29)
    body = await payload(client, GROUP_USAGE)
    assert set(body) == USAGE_KEYS
    assert body == expected_body(data, GROUP, first, TODAY)
    for day_key, total_key in MAPS:
        assert body[total_key] == summed(body[day_key])
        names = set(body[total_key]).union(*body[day_key].values())
        assert all(re.fullmatch(r"/api/v3/\([a-z_]+\)", name) for name in names), names
    both = [
        d.isoformat()
        for d in days(first, TODAY)
        if all("domain_comments" in counts for counts in usage_on(data, GROUP, d)[:2])
    ]
    assert both, "the data model has days where domain_comments is in both maps"
    for day_key, total_key in MAPS:
        assert all(api_name("domain_comments") in body[day_key][d] for d in both)
        assert api_name("domain_comments") in body[total_key]


async def test_days_without_use_are_empty_or_absent_as_the_data_model_says(
    client: httpx.AsyncClient, data: VirusTotalData
) -> None:
    second_half = RETENTION_START + timedelta(days=30)
    halves = [(RETENTION_START, second_half - timedelta(days=1)), (second_half, TODAY)]
    bodies = [
        await payload(client, GROUP_USAGE, {"start_date": ymd(a), "end_date": ymd(b)})
        for a, b in halves
    ]
    idle: dict[str, bool] = {}  # day -> listed
    for day in days(RETENTION_START, TODAY):
        consuming, not_consuming, listed = usage_on(data, GROUP, day)
        if not consuming and not not_consuming:
            idle[day.isoformat()] = listed
    assert set(idle.values()) == {True, False}, "the retention window has both kinds of idle day"
    for day_key, _ in MAPS:
        answered = {day: counts for body in bodies for day, counts in body[day_key].items()}
        assert {day: answered.get(day, "absent") for day in idle} == {
            day: {} if listed else "absent" for day, listed in idle.items()
        }


async def test_legacy_group_answers_unwrapped_with_bare_names(
    client: httpx.AsyncClient, emulator: VirusTotalEmulator, data: VirusTotalData
) -> None:
    assert emulator.groups[LEGACY].legacy
    response = await get(client, f"/api/v3/groups/{LEGACY}/api_usage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == USAGE_KEYS
    assert body == expected_body(data, LEGACY, TODAY - timedelta(days=29), TODAY, name=bare)
    assert "files" in body["total_endpoints_not_consuming_quota"]


# -- 6. quotas --------------------------------------------------------------------------------


async def test_group_object_has_every_quota_with_allowed_and_used(
    client: httpx.AsyncClient, data: VirusTotalData
) -> None:
    group = await payload(client, GROUP_OBJECT)
    assert (group["id"], group["type"]) == (GROUP, "group")
    quotas = group["attributes"]["quotas"]
    assert quotas == {
        name: {"allowed": allowed, "used": used_now(data, GROUP, rule)}
        for name, (allowed, _, rule) in QUOTAS.items()
    }
    # The request quotas count the same requests api_usage reports as consuming quota.
    month = days(TODAY.replace(day=1), TODAY)
    assert quotas["api_requests_daily"]["used"] == sum(usage_on(data, GROUP, TODAY)[0].values())
    assert quotas["api_requests_monthly"]["used"] == sum(
        sum(usage_on(data, GROUP, d)[0].values()) for d in month
    )
    downloads = quotas["intelligence_downloads_monthly"]
    assert downloads["used"] > downloads["allowed"]  # the vendor lets `used` pass `allowed`


async def test_overall_quotas_have_user_and_inherited_group_parts(
    client: httpx.AsyncClient, data: VirusTotalData
) -> None:
    quotas = await payload(client, ALICE_QUOTAS)
    assert quotas == {
        name: {
            "user": {
                "allowed": user_allowed,
                "used": used_now(data, "alice", rule),
            },
            "group": {
                "allowed": group_allowed,
                "used": used_now(data, GROUP, rule),
                "inherited_from": GROUP,
            },
        }
        for name, (group_allowed, user_allowed, rule) in QUOTAS.items()
    }


# -- 7. determinism ---------------------------------------------------------------------------

DETERMINISM_PATHS = [GROUP_USAGE, GROUP_OBJECT, ALICE_QUOTAS, f"/api/v3/groups/{LEGACY}/api_usage"]


async def answers_of(http: httpx.AsyncClient) -> list[Any]:
    responses = [await get(http, path) for path in DETERMINISM_PATHS]
    assert all(r.status_code == 200 for r in responses)
    return [r.json() for r in responses]


async def test_same_seed_same_answers_other_seed_other_answers(
    client: httpx.AsyncClient,
) -> None:
    answers = []
    for seed in (SEED, SEED, SEED + 1):
        async with in_process(fresh(seed)) as http:
            answers.append(await answers_of(http))
    first, second, other = answers
    assert first == second
    assert await answers_of(client) == first  # the suite's emulator has the same seed
    for mine, theirs in zip(first, other, strict=True):
        assert mine != theirs


# -- 8. fault modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "retry_after"),
    [
        (Fault(status=503, times=1), "TransientError", "30"),
        (Fault(status=429, retry_after=12, times=1), "QuotaExceededError", "12"),
        (Fault(status=504, times=1), "DeadlineExceededError", None),
    ],
    ids=["503", "429", "504"],
)
async def test_status_faults_use_the_vendor_error_form(
    client: httpx.AsyncClient,
    emulator: VirusTotalEmulator,
    data: VirusTotalData,
    fault: Fault,
    code: str,
    retry_after: str | None,
) -> None:
    status = fault.status
    assert status is not None
    emulator.set_fault(fault)
    failed = await get(client, GROUP_USAGE)
    assert_error(failed, status, code, "Emulated failure")
    assert failed.headers.get("Retry-After") == retry_after
    # One call only: the next one answers the data model's numbers.
    body = await payload(client, GROUP_USAGE)
    assert body == expected_body(data, GROUP, TODAY - timedelta(days=29), TODAY)
    assert emulator.calls == Counter({GROUP_USAGE: 2})


# -- the client through the gateway -----------------------------------------------------------


@pytest.fixture
def gateway(make_gateway: Callable[[Settings], Gateway], vt: Running) -> Gateway:
    user = {
        "id": USER_ACCOUNT,
        "provider": "virustotal",
        "base_url": vt.url,
        "api_key": ADMIN_KEY,
        "user": "alice",
    }
    legacy = account_entry("virustotal", vt.url, id=LEGACY_ACCOUNT, group=LEGACY)
    return make_gateway(settings_for(account_entry("virustotal", vt.url), user, legacy))


QUOTAS_QUERY = """
query ($id: ID!) {
  account(id: $id) {
    source { state }
    quotas { name window unit limit used remaining utilization exceeded resetsAt }
  }
}
"""

USAGE_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      granularity requests quotaRequests missingDays
      series { start requests quotaRequests }
      endpoints { endpoint requests consumesQuota }
    }
  }
}
"""


async def usage_of(
    gateway: Gateway, account: str, first: date, last: date, granularity: str = "DAY"
) -> dict[str, Any]:
    variables = {
        "id": account,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "granularity": granularity,
    }
    usage: dict[str, Any] = (await gateway.data(USAGE_QUERY, variables))["account"]["usage"]
    return usage


# -- 9. scope and configuration ---------------------------------------------------------------


async def test_scope_is_group_or_user(gateway: Gateway, emulator: VirusTotalEmulator) -> None:
    answer = await gateway.data("{ accounts(provider: VIRUSTOTAL) { id scope } }")
    assert {a["id"]: a["scope"] for a in answer["accounts"]} == {
        GROUP_ACCOUNT: "GROUP",
        USER_ACCOUNT: "USER",
        LEGACY_ACCOUNT: "GROUP",
    }
    assert emulator.total_calls() == 0  # the scope is configuration, not a vendor call


@pytest.mark.parametrize(
    "fields",
    [{"group": GROUP, "user": "alice"}, {}],
    ids=["both-group-and-user", "neither"],
)
def test_group_and_user_together_or_neither_is_refused(vt: Running, fields: dict[str, str]) -> None:
    entry = {"id": "vt-x", "provider": "virustotal", "base_url": vt.url, "api_key": ADMIN_KEY}
    with pytest.raises(ConfigError) as caught:
        settings_for({**entry, **fields})
    assert (caught.value.account, caught.value.field) == ("vt-x", "group")
    assert "field 'group'" in str(caught.value)


# -- 10. quotas through the graph -------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "entity", "column"),
    [(GROUP_ACCOUNT, GROUP, 0), (USER_ACCOUNT, "alice", 1)],
    ids=["group", "user"],
)
async def test_every_virustotal_quota_is_mapped(
    gateway: Gateway,
    emulator: VirusTotalEmulator,
    data: VirusTotalData,
    account: str,
    entity: str,
    column: int,
) -> None:
    answer = (await gateway.data(QUOTAS_QUERY, {"id": account}))["account"]
    assert answer["source"] == {"state": "FRESH"}
    quotas = {q["name"]: q for q in answer["quotas"]}
    assert len(answer["quotas"]) == len(quotas) == len(QUOTAS)
    assert quotas == expected_quotas(data, entity, column)
    path = GROUP_OBJECT if column == 0 else ALICE_QUOTAS
    assert emulator.calls == Counter({path: 1})


async def test_group_quotas_exceeded_and_in_bytes_arrive_exactly(gateway: Gateway) -> None:
    response = await gateway.post(QUOTAS_QUERY, {"id": GROUP_ACCOUNT})
    quotas = {q["name"]: q for q in response.json()["data"]["account"]["quotas"]}
    storage = quotas["monitor_storage_bytes"]
    assert (storage["unit"], storage["window"], storage["resetsAt"]) == (
        "BYTES",
        "FIXED_TERM",
        None,
    )
    assert storage["limit"] == 1_000_000_000_000 and type(storage["limit"]) is int
    assert storage["used"] == 412_345_678_901 and type(storage["used"]) is int
    assert storage["remaining"] == 1_000_000_000_000 - 412_345_678_901
    assert re.search(r'"used":\s*412345678901\b', response.text)  # an integer literal, exactly
    downloads = quotas["intelligence_downloads_monthly"]
    assert downloads["exceeded"] is True and downloads["remaining"] == 0
    assert downloads["utilization"] == downloads["used"] / downloads["limit"] > 1  # not clipped


# -- 11. usage through the graph --------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["DAY", "WEEK", "MONTH"])
async def test_usage_per_day_and_rolled_up(
    gateway: Gateway, emulator: VirusTotalEmulator, data: VirusTotalData, granularity: str
) -> None:
    first, last = date(2026, 2, 17), TODAY  # 30 days: one call
    usage = await usage_of(gateway, GROUP_ACCOUNT, first, last, granularity)
    expected = expected_usage(data, GROUP, first, last, granularity)
    assert {(api_name("domain_comments"), True), (api_name("domain_comments"), False)} <= set(
        expected["endpoints"]
    ), "an endpoint in both maps gives two entries"
    assert_usage(usage, expected)
    assert len(usage["series"]) == {"DAY": 30, "WEEK": 5, "MONTH": 2}[granularity]
    assert served_ranges(emulator, GROUP_USAGE) == [(first, last)]


BUCKETS_QUERY = """
query ($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      missingDays
      series { start requests missingDays endpoints { endpoint requests consumesQuota bytes } }
      endpoints { endpoint requests consumesQuota }
    }
  }
}
"""


def expected_buckets(
    data: VirusTotalData, entity: str, first: date, last: date, granularity: str
) -> list[dict[str, Any]]:
    """Each bucket with a retained day: its endpoints (requests descending, then by name,
    consuming first) and how many of its days are before the retention window."""
    split: dict[date, Counter[tuple[str, bool]]] = {}
    missing: Counter[date] = Counter()
    for day in days(first, min(last, TODAY)):
        bucket = BUCKETS[granularity](day)
        if day < RETENTION_START:
            missing[bucket] += 1
            continue
        consuming, not_consuming, _ = usage_on(data, entity, day)
        counts = split.setdefault(bucket, Counter())
        for per_endpoint, quota in ((consuming, True), (not_consuming, False)):
            counts.update({(api_name(n), quota): c for n, c in per_endpoint.items()})
    return [
        {
            "start": f"{bucket.isoformat()}T00:00:00Z",
            "missingDays": missing[bucket],
            "endpoints": [
                {"endpoint": name, "requests": n, "consumesQuota": quota, "bytes": None}
                for (name, quota), n in sorted(
                    counts.items(), key=lambda item: (-item[1], item[0][0], not item[0][1])
                )
            ],
        }
        for bucket, counts in sorted(split.items())
    ]


@pytest.mark.parametrize("granularity", ["DAY", "WEEK", "MONTH"])
async def test_each_bucket_has_its_endpoints_and_missing_days(
    gateway: Gateway, data: VirusTotalData, granularity: str
) -> None:
    """From 2026-01-01, before the retention window (2026-01-18): a week or month known in part
    says how many of its days are missing, and lists the endpoints of its retained days."""
    first = date(2026, 1, 1)
    variables = {
        "id": GROUP_ACCOUNT,
        "from": first.isoformat(),
        "to": TODAY.isoformat(),
        "granularity": granularity,
    }
    usage = (await gateway.data(BUCKETS_QUERY, variables))["account"]["usage"]
    expected = expected_buckets(data, GROUP, first, TODAY, granularity)
    assert [{k: p[k] for k in ("start", "missingDays", "endpoints")} for p in usage["series"]] == (
        expected
    )
    partly_known = {"DAY": [], "WEEK": [("2026-01-12", 6)], "MONTH": [("2026-01-01", 17)]}
    assert [(p["start"][:10], p["missingDays"]) for p in usage["series"] if p["missingDays"]] == (
        partly_known[granularity]  # buckets with no retained day are left out, as before
    )
    assert len(usage["missingDays"]) == 17
    totals: Counter[tuple[str, bool]] = Counter()
    for point in usage["series"]:
        assert sum(e["requests"] for e in point["endpoints"]) == point["requests"]
        totals.update(
            {(e["endpoint"], e["consumesQuota"]): e["requests"] for e in point["endpoints"]}
        )
    assert dict(totals) == {
        (e["endpoint"], e["consumesQuota"]): e["requests"] for e in usage["endpoints"]
    }


@pytest.mark.parametrize("granularity", ["HOUR", "MINUTE"])
async def test_sub_day_usage_is_refused_because_virustotal_reports_days(
    gateway: Gateway, emulator: VirusTotalEmulator, granularity: str
) -> None:
    variables = {"id": GROUP_ACCOUNT, "from": "2026-03-18", "to": "2026-03-18"}
    result = await gateway.query(USAGE_QUERY, {**variables, "granularity": granularity})
    assert result["data"] == {"account": None}
    (error,) = result["errors"]
    assert error["path"] == ["account", "usage"]
    assert "VirusTotal reports usage per day" in error["message"]
    assert emulator.total_calls() == 0


# -- 12. long ranges are split ----------------------------------------------------------------


async def test_45_day_range_is_two_calls_merged_exactly(
    gateway: Gateway, emulator: VirusTotalEmulator, data: VirusTotalData
) -> None:
    first, last = date(2026, 2, 2), TODAY
    usage = await usage_of(gateway, GROUP_ACCOUNT, first, last)
    assert emulator.calls == Counter({GROUP_USAGE: 2})
    ranges = served_ranges(emulator, GROUP_USAGE)
    assert all((b - a).days + 1 <= 30 for a, b in ranges)
    assert [d for a, b in ranges for d in days(a, b)] == days(first, last)  # contiguous, covering
    assert_usage(usage, expected_usage(data, GROUP, first, last, "DAY"))
    assert len(usage["series"]) == 45 and usage["missingDays"] == []


# -- 13. retention through the graph ----------------------------------------------------------


async def test_90_day_range_asks_only_for_retained_days_and_lists_the_rest_missing(
    gateway: Gateway, emulator: VirusTotalEmulator, data: VirusTotalData
) -> None:
    first, last = date(2025, 12, 19), TODAY
    usage = await usage_of(gateway, GROUP_ACCOUNT, first, last)
    ranges = served_ranges(emulator, GROUP_USAGE)
    assert all((b - a).days + 1 <= 30 for a, b in ranges)
    assert [d for a, b in ranges for d in days(a, b)] == days(RETENTION_START, TODAY)
    assert usage["missingDays"] == [d.isoformat() for d in days(first, date(2026, 1, 17))]
    assert usage["series"][0]["start"] == "2026-01-18T00:00:00Z" and len(usage["series"]) == 60
    assert_usage(usage, expected_usage(data, GROUP, first, last, "DAY"))


async def test_range_entirely_before_retention_makes_no_call(
    gateway: Gateway, emulator: VirusTotalEmulator, data: VirusTotalData
) -> None:
    first, last = date(2025, 11, 1), date(2025, 12, 31)
    usage = await usage_of(gateway, GROUP_ACCOUNT, first, last)
    assert emulator.total_calls() == 0
    assert usage["missingDays"] == [d.isoformat() for d in days(first, last)]
    assert_usage(usage, expected_usage(data, GROUP, first, last, "DAY"))
    assert usage["requests"] == 0 and usage["series"] == []


# -- 14. the legacy answer style --------------------------------------------------------------


async def test_legacy_group_maps_to_the_normalised_endpoints(
    gateway: Gateway, emulator: VirusTotalEmulator, data: VirusTotalData
) -> None:
    assert emulator.groups[LEGACY].legacy  # no envelope, bare names (see the emulator test above)
    first, last = date(2026, 2, 17), TODAY
    usage = await usage_of(gateway, LEGACY_ACCOUNT, first, last)
    assert all(re.fullmatch(r"/api/v3/\([a-z_]+\)", e["endpoint"]) for e in usage["endpoints"])
    assert_usage(usage, expected_usage(data, LEGACY, first, last, "DAY"))
    assert served_ranges(emulator, f"/api/v3/groups/{LEGACY}/api_usage") == [(first, last)]
