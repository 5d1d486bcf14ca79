"""What an export asks for, checked before any work is done: ``usage-gateway export``'s options
and ``GET /export/usage``'s query parameters alike (``account``, ``from``, ``to``,
``granularity``, ``format``).

A wrong value raises :class:`ExportRefused` naming the parameter and what is wrong with it, in
words meant for the caller (a value of theirs is echoed shortened and printable).

The range is bounded by the limit the GraphQL cost check implies: an export is priced as the
GraphQL query that asks for the same rows (:data:`EXPORT_QUERY`), by the same cost function and
against the same ``max_query_cost``, so one setting bounds both ways of reading usage and the
two cannot drift apart. With the default limit a DAY export spans a year and some weeks, WEEK
and MONTH exports years (their buckets are fewer; every day is still read and checked).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from graphql import parse

from gateway.domain import Granularity
from gateway.errors import GatewayError
from gateway.export import ExportFormat
from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.service import EARLIEST_DAY, MAX_FUTURE_DAYS

PARAMETERS = ("account", "from", "to", "granularity", "format")
GRANULARITIES = (Granularity.DAY, Granularity.WEEK, Granularity.MONTH)
"""An export's buckets: days or longer (a day's endpoint split cannot be cut into hours)."""
DATE_FORM = "YYYY-MM-DD, e.g. 2026-01-31"
EXPORT_QUERY = """query Export($id: ID!, $from: Date!, $to: Date!, $granularity: Granularity!) {
  account(id: $id) {
    usage(from: $from, to: $to, granularity: $granularity) {
      source { state fetchedAt message cause retryAt }
      missingDays
      series {
        start requests quotaRequests bytes missingDays
        endpoints { endpoint requests consumesQuota bytes }
      }
    }
  }
}"""
"""The GraphQL query for an export's rows: what an export is priced as."""
_DOCUMENT = parse(EXPORT_QUERY)
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_SHOWN = 40


class ExportRefused(GatewayError):
    """An export parameter that cannot be answered: ``parameter`` names it, ``reason`` says
    why; ``status`` is the HTTP status (404 for an unknown account, else 400) and ``known`` the
    accounts there are, for an unknown one."""

    def __init__(
        self, parameter: str, reason: str, *, status: int = 400, known: Collection[str] = ()
    ) -> None:
        self.parameter = parameter
        self.reason = reason
        self.status = status
        self.known = tuple(known)
        super().__init__(f"{parameter}: {reason}")


@dataclass(frozen=True)
class ExportRequest:
    """A checked export: whose usage, which days, in which buckets, written how, and its cost
    (as the GraphQL query for the same rows)."""

    account_id: str
    start: date
    end: date
    granularity: Granularity
    form: ExportFormat
    cost: int

    @property
    def filename(self) -> str:
        """``usage-<account>-<from>-<to>.csv`` (account ids are ``[A-Za-z0-9._-]``)."""
        return f"usage-{self.account_id}-{self.start}-{self.end}.{self.form.value}"


def shown(value: str) -> str:
    """A caller's value quoted for a message, shortened and printable: echoed, never trusted."""
    text = value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"
    return '"' + "".join(ch if ch.isprintable() else "?" for ch in text) + '"'


def parse_day(parameter: str, value: str) -> date:
    """``YYYY-MM-DD`` as a day of the calendar, or :class:`ExportRefused` saying why not."""
    match = _DAY.fullmatch(value)
    if match is None:
        raise ExportRefused(parameter, f"{shown(value)} is not a date of the form {DATE_FORM}")
    year, month, day = (int(part) for part in match.groups())
    problem = None
    if not year >= 1:
        problem = "there is no year 0"
    elif not 1 <= month <= 12:
        problem = f"there is no month {month}"
    elif not 1 <= day <= (days := calendar.monthrange(year, month)[1]):
        problem = f"{calendar.month_name[month]} {year} has {days} days, not {day}"
    if problem is not None:
        raise ExportRefused(
            parameter, f"{shown(value)} is not a date: {problem} (expected {DATE_FORM})"
        )
    return date(year, month, day)


def _choice(parameter: str, value: str, choices: Collection[str]) -> str:
    if value.lower() not in {c.lower() for c in choices}:
        raise ExportRefused(parameter, f"{shown(value)} is not one of {', '.join(choices)}")
    return value.lower()


def export_cost(start: date, end: date, granularity: Granularity, today: date) -> int:
    """What the GraphQL query for this export's rows (:data:`EXPORT_QUERY`) costs today."""
    variables = {
        "id": "export",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": granularity.name,
    }
    cost = operation_cost(schema._schema, _DOCUMENT, None, variables, Sizes((), today))
    assert cost is not None, "the export query is a valid operation"
    return cost.total


def longest_export(granularity: Granularity, today: date, max_cost: int) -> int:
    """The most days up to today an export at ``granularity`` may span within ``max_cost``."""
    low, high = 0, (today - EARLIEST_DAY).days + 1
    while low < high:  # the cost grows with the days: the last span within the limit
        middle = (low + high + 1) // 2
        first = today - timedelta(days=middle - 1)
        if export_cost(first, today, granularity, today) <= max_cost:
            low = middle
        else:
            high = middle - 1
    return low


def parse_export(
    values: Mapping[str, str | None],
    accounts: Collection[str],
    today: date,
    max_cost: int,
) -> ExportRequest:
    """``values`` (by parameter name; ``None``: not given) as a checked request.

    ``accounts`` are the account ids the caller may read (an unknown one is a 404 that names no
    other); ``today`` and ``max_cost`` bound the range.
    """
    for parameter in ("account", "from", "to"):
        if not values.get(parameter):
            expected = "an account id" if parameter == "account" else DATE_FORM
            raise ExportRefused(parameter, f"missing; expected {expected}")
    account = values["account"] or ""
    if account not in accounts:
        raise ExportRefused("account", f"no account {shown(account)}", status=404, known=accounts)
    start = parse_day("from", values["from"] or "")
    end = parse_day("to", values["to"] or "")
    wanted = values.get("granularity") or Granularity.DAY.name
    granularity = Granularity[
        _choice("granularity", wanted, [g.name for g in GRANULARITIES]).upper()
    ]
    form = ExportFormat(
        _choice("format", values.get("format") or "csv", [f.value for f in ExportFormat])
    )
    if start > end:
        raise ExportRefused("from", f"{start} is after `to` ({end})")
    if start < EARLIEST_DAY:
        raise ExportRefused("from", f"{start} is before {EARLIEST_DAY}, the first day answered")
    if end > today + timedelta(days=MAX_FUTURE_DAYS):
        raise ExportRefused("to", f"{end} is more than {MAX_FUTURE_DAYS} days in the future")
    cost = export_cost(start, end, granularity, today)
    if cost > max_cost:
        days = (min(end, today) - start).days + 1
        spans = {g: longest_export(g, today, max_cost) for g in GRANULARITIES}
        others = ", ".join(f"{g.name} {spans[g]:,}" for g in GRANULARITIES if g is not granularity)
        raise ExportRefused(
            "from",
            f"the range {start}..{end} has {days:,} days up to today, and a {granularity.name} "
            f"export spans at most {spans[granularity]:,} (what max_query_cost = {max_cost:,} "
            f"allows the GraphQL query for the same rows); ask for fewer days or a coarser "
            f"granularity (at most: {others})",
        )
    return ExportRequest(account, start, end, granularity, form, cost)
