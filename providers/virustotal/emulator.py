"""The VirusTotal emulator: group and user API usage and quotas (see shared/upstream/virustotal.md).

Paths: ``GET /api/v3/groups/{id}/api_usage``, ``/api/v3/users/{id}/api_usage``,
``/api/v3/users/{id}/overall_quotas`` and ``/api/v3/groups/{id}``.

Data is generated per entity (a group or a user id), day and endpoint from the seed
(:class:`VirusTotalData`); totals are the sums of the days, and the quotas' ``used`` figures are
sums of the same data (``api_requests_daily``: today's consuming requests; ``..._monthly``: the
month's), so tests can recompute every number.

Decisions where the documents are silent:

* 401 ``WrongCredentialsError`` (``Wrong API key``) for an unknown key and ``UserNotActiveError``
  (``User is not active``) for a deactivated user.
* A group's usage is its own series (not the sum of its members'); a user may read only its own
  usage and quotas (403 otherwise), and ``{id}`` may be its id or its API key.
* The group ``legacy-lab`` answers as older VirusTotal versions did: no ``data`` envelope and bare
  endpoint names (``files`` rather than ``/api/v3/(files)``).
* A day without usage maps to ``{}`` or is absent, by the seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from gateway.domain import days_between, utc_now
from providers.emulation import Emulator, EmulatorSpec, Request, Response

MAX_RANGE_DAYS = 30
DEFAULT_RETENTION_DAYS = 60

# endpoint name: (mean per weekday, consumes quota)
CONSUMING = {
    "file_relationships": 180,
    "intelligence_search": 12,
    "file_behaviours": 9,
    "file_graphs": 8,
    "domain_relationships": 40,
    "domain_comments": 3,
    "domain_graphs": 2,
    "domains": 10,
    "file_download": 38,
    "ip_addresses": 4,
    "ip_addresses_relationships": 9,
    "ip_addresses_graphs": 1,
    "url_relationships": 12,
    "url_graphs": 2,
    "urls": 11,
    "graphs": 1,
    "retrohunt_jobs": 1,
}
NOT_CONSUMING = {
    "files": 25,
    "file_comments": 4,
    "item_vote": 5,
    "url_submission": 2,
    "search": 3,
    "analyses": 3,
    "url_comments": 1,
    "domain_comments": 2,
    "ip_addresses_comments": 1,
    "file_upload_url": 1,
}
FORBIDDEN = "You are not authorized to perform the requested operation"
_PATH = re.compile(r"^/api/v3/(groups|users)/([^/]+)/(api_usage|overall_quotas)$")
_GROUP = re.compile(r"^/api/v3/groups/([^/]+)$")


@dataclass(frozen=True)
class User:
    id: str
    api_key: str
    active: bool = True
    group: str | None = None
    scale: float = 0.15  # a user's usage relative to a busy group's


@dataclass(frozen=True)
class Group:
    id: str
    admins: frozenset[str]
    scale: float = 1.0
    legacy: bool = False  # older answer style: no envelope, bare endpoint names


DEFAULT_USERS = (
    User("alice", "vt_demo_admin_key", group="soc-team"),
    User("bob", "vt_demo_analyst_key", group="soc-team", scale=0.3),
    User("carol", "vt_demo_inactive_key", active=False, group="soc-team"),
)
DEFAULT_GROUPS = (
    Group("soc-team", frozenset({"alice"})),
    Group("legacy-lab", frozenset({"alice"}), scale=0.2, legacy=True),
)

# Quotas: name -> (allowed for a group, allowed for a user, what ``used`` counts)
# "consuming:day" = today's consuming requests, "consuming:month" = the month's, "endpoint:X" =
# the month's calls of endpoint X, an int = a constant.
QUOTAS: dict[str, tuple[int, int, str | int]] = {
    "api_requests_hourly": (200, 40, 41),
    "api_requests_daily": (800, 150, "consuming:day"),
    "api_requests_monthly": (12_000, 2_000, "consuming:month"),
    "intelligence_searches_monthly": (600, 100, "endpoint:intelligence_search"),
    "intelligence_downloads_monthly": (250, 60, "endpoint:file_download"),
    "intelligence_retrohunt_jobs_monthly": (20, 5, "endpoint:retrohunt_jobs"),
    "intelligence_hunting_rules": (200, 25, 137),
    "private_scans_monthly": (1_000, 100, 240),
    "monitor_storage_bytes": (1_000_000_000_000, 100_000_000_000, 412_345_678_901),
}


class VirusTotalData:
    """Deterministic usage per entity, day and endpoint."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.day = lru_cache(maxsize=100_000)(self._day)

    def _day(
        self, entity: str, day: date, scale: float
    ) -> tuple[dict[str, int], dict[str, int], bool]:
        """(consuming map, not-consuming map, listed) for ``entity`` on ``day``.

        ``listed`` says whether an empty day appears as ``{}`` (True) or is absent.
        """
        rng = random.Random(f"virustotal:{self.seed}:{entity}:{day.isoformat()}")
        weekly = 1.0 if day.weekday() < 5 else 0.25
        quiet = rng.random() < 0.08  # some days nobody works
        maps: list[dict[str, int]] = []
        for table in (CONSUMING, NOT_CONSUMING):
            counts: dict[str, int] = {}
            for name, mean in table.items():
                if quiet or rng.random() < 0.25:
                    continue
                count = round(mean * scale * weekly * rng.uniform(0.3, 1.7))
                if count > 0:
                    counts[name] = count
            maps.append(counts)
        return maps[0], maps[1], rng.random() < 0.5

    def consuming_sum(self, entity: str, days: Iterable[date], scale: float) -> int:
        return sum(sum(self.day(entity, d, scale)[0].values()) for d in days)

    def endpoint_sum(self, entity: str, endpoint: str, days: Iterable[date], scale: float) -> int:
        return sum(self.day(entity, d, scale)[0].get(endpoint, 0) for d in days)


def quota_used(
    data: VirusTotalData, entity: str, scale: float, rule: str | int, today: date
) -> int:
    """What ``used`` shows for a quota of ``entity`` on ``today`` (see QUOTAS)."""
    if isinstance(rule, int):
        return rule if scale >= 1 else round(rule * scale)
    month = list(days_between(today.replace(day=1), today))
    if rule == "consuming:day":
        return data.consuming_sum(entity, [today], scale)
    if rule == "consuming:month":
        return data.consuming_sum(entity, month, scale)
    return data.endpoint_sum(entity, rule.split(":", 1)[1], month, scale)


class VirusTotalEmulator(Emulator):
    """VirusTotal's API usage and quota endpoints, with auth, validation and retention."""

    vendor = "VirusTotal"

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        users: Iterable[User] = DEFAULT_USERS,
        groups: Iterable[Group] = DEFAULT_GROUPS,
    ) -> None:
        super().__init__(seed=seed, clock=clock)
        self.retention_days = retention_days
        self.data = VirusTotalData(seed)
        self.users = {u.id: u for u in users}
        self.keys = {u.api_key: u for u in self.users.values()}
        self.groups = {g.id: g for g in groups}

    # -- answers ---------------------------------------------------------------------------

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        codes = {
            400: "BadRequestError",
            401: "AuthenticationRequiredError",
            403: "ForbiddenError",
            404: "NotFoundError",
            429: "QuotaExceededError",
            500: "InternalError",
            502: "TransientError",
            503: "TransientError",
            504: "DeadlineExceededError",
        }
        return self.fail(status, codes.get(status, "InternalError"), message, retry_after)

    @staticmethod
    def fail(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return Response.json({"error": {"code": code, "message": message}}, status, headers)

    def retention_start(self, today: date) -> date:
        """The oldest day the vendor still keeps."""
        return today - timedelta(days=self.retention_days - 1)

    async def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return self.fail(405, "MethodNotAllowedError", "Method not allowed")
        path_match = _PATH.match(request.path)
        group_match = _GROUP.match(request.path)
        if path_match is None and group_match is None:
            return self.fail(404, "NotFoundError", f"Resource not found: {request.path}")
        key = request.headers.get("x-apikey", "").strip()
        if not key:
            return self.fail(401, "AuthenticationRequiredError", "X-Apikey header is missing")
        user = self.keys.get(key)
        if user is None:
            return self.fail(401, "WrongCredentialsError", "Wrong API key")
        if not user.active:
            return self.fail(401, "UserNotActiveError", "User is not active")
        if group_match is not None:
            return self._group_object(user, group_match.group(1))
        assert path_match is not None
        kind, entity_id, resource = path_match.groups()
        if kind == "groups":
            group = self.groups.get(entity_id)
            if group is None:
                return self.fail(404, "NotFoundError", f'Group "{entity_id}" not found')
            if resource != "api_usage":
                return self.fail(404, "NotFoundError", f"Resource not found: {request.path}")
            if user.id not in group.admins:
                return self.fail(403, "ForbiddenError", FORBIDDEN)
            return self._api_usage(request, group.id, group.scale, group.legacy)
        target = self.users.get(entity_id) or self.keys.get(entity_id)
        if target is None:
            return self.fail(404, "NotFoundError", f'User "{entity_id}" not found')
        if target.id != user.id:
            return self.fail(403, "ForbiddenError", FORBIDDEN)
        if resource == "overall_quotas":
            return self._overall_quotas(target)
        return self._api_usage(request, target.id, target.scale, False)

    def _api_usage(self, request: Request, entity: str, scale: float, legacy: bool) -> Response:
        today = self.clock().date()
        try:
            end = _day(request.param("end_date")) or today
            start = _day(request.param("start_date")) or end - timedelta(days=MAX_RANGE_DAYS - 1)
        except ValueError as exc:
            return self.fail(400, "InvalidArgumentError", str(exc))
        if end < start:
            return self.fail(400, "InvalidArgumentError", "end_date must not be before start_date")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            return self.fail(
                400,
                "InvalidArgumentError",
                f"The maximum range of time allowed is {MAX_RANGE_DAYS} days",
            )
        first = max(start, self.retention_start(today))
        last = min(end, today)
        daily: dict[str, dict[str, int]] = {}
        free: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        free_totals: dict[str, int] = {}
        for day in days_between(first, last) if first <= last else ():
            consuming, not_consuming, listed = self.data.day(entity, day, scale)
            for counts, by_day, sums in (
                (consuming, daily, totals),
                (not_consuming, free, free_totals),
            ):
                if counts or listed:
                    by_day[day.isoformat()] = {
                        _name(n, legacy): c for n, c in sorted(counts.items())
                    }
                for name, count in counts.items():
                    sums[_name(name, legacy)] = sums.get(_name(name, legacy), 0) + count
        body = {
            "daily": daily,
            "daily_endpoints_not_consuming_quota": free,
            "total": dict(sorted(totals.items())),
            "total_endpoints_not_consuming_quota": dict(sorted(free_totals.items())),
        }
        return Response.json(body if legacy else {"data": body})

    def _group_object(self, user: User, group_id: str) -> Response:
        group = self.groups.get(group_id)
        if group is None:
            return self.fail(404, "NotFoundError", f'Group "{group_id}" not found')
        if user.id not in group.admins:
            return self.fail(403, "ForbiddenError", FORBIDDEN)
        today = self.clock().date()
        quotas = {
            name: {
                "allowed": allowed,
                "used": quota_used(self.data, group.id, group.scale, rule, today),
            }
            for name, (allowed, _, rule) in QUOTAS.items()
        }
        body = {
            "id": group.id,
            "type": "group",
            "links": {"self": f"https://www.virustotal.com/api/v3/groups/{group.id}"},
            "attributes": {
                "administrators": sorted(group.admins),
                "quotas": quotas,
            },
        }
        return Response.json(body if group.legacy else {"data": body})

    def _overall_quotas(self, user: User) -> Response:
        today = self.clock().date()
        group = self.groups.get(user.group) if user.group else None
        body: dict[str, Any] = {}
        for name, (group_allowed, user_allowed, rule) in QUOTAS.items():
            entry: dict[str, Any] = {
                "user": {
                    "allowed": user_allowed,
                    "used": quota_used(self.data, user.id, user.scale, rule, today),
                }
            }
            if group is not None:
                entry["group"] = {
                    "allowed": group_allowed,
                    "used": quota_used(self.data, group.id, group.scale, rule, today),
                    "inherited_from": group.id,
                }
            body[name] = entry
        return Response.json({"data": body})


def _name(endpoint: str, legacy: bool) -> str:
    return endpoint if legacy else f"/api/v3/({endpoint})"


def _day(value: str | None) -> date | None:
    """A ``YYYYMMDD`` request date."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{8}", value):
        raise ValueError(f"Invalid date {value!r}: expected format YYYYMMDD")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise ValueError(f"Invalid date {value!r}: expected format YYYYMMDD") from None


EMULATOR = EmulatorSpec(
    factory=VirusTotalEmulator,
    accounts=(
        {
            "id": "vt-soc",
            "name": "VirusTotal SOC group",
            "api_key": "vt_demo_admin_key",
            "group": "soc-team",
        },
    ),
    bad_credentials={"api_key": "vt_wrong_key"},
    first_day=None,  # usage is generated for any day; the vendor keeps only the last 60
)
