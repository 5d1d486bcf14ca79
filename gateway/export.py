"""Usage as export rows, and the rows as CSV or JSON text (``usage-gateway export`` and
``GET /export/usage`` both use these; nothing here awaits, reads a clock or does I/O).

One row per bucket and endpoint, ascending by ``start`` (a bucket's endpoints in its own order:
requests descending, then by name):

* an endpoint of a bucket with a per-endpoint split: its ``requests``, ``quota_requests`` (all of
  them when it ``consumes_quota``, else 0) and ``bytes`` where metered;
* a bucket with data but no split: one row with an empty ``endpoint`` and the bucket's totals;
  a bucket whose split covers only some of its days gets such a row for the rest, so a bucket's
  rows always add up to its totals;
* a missing day (known to neither the vendor nor the history store): a row ``start`` = that day,
  every count empty, ``missing`` true; so are the missing days of a WEEK or MONTH bucket known
  in part. A day's rows come before a missing row with the same ``start``.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.domain import SourceStatus, Usage, UsagePoint, day_start

COLUMNS = ("start", "endpoint", "requests", "quota_requests", "consumes_quota", "bytes", "missing")
"""The CSV header, in order."""


class ExportFormat(enum.Enum):
    """What an export is written as."""

    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True)
class ExportRow:
    """One row: a bucket's endpoint (or its totals, ``endpoint`` None), or a missing day."""

    start: datetime
    endpoint: str | None
    requests: int | None
    quota_requests: int | None
    consumes_quota: bool | None
    bytes: int | None
    missing: bool


def export_rows(usage: Usage) -> list[ExportRow]:
    """The rows of ``usage`` (see the module's docstring)."""
    rows = [row for point in usage.series for row in _bucket_rows(point)]
    rows += [
        ExportRow(day_start(day), None, None, None, None, None, True) for day in usage.missing_days
    ]
    rows.sort(key=lambda row: (row.start, row.missing))  # stable: a bucket keeps its order
    return rows


def _bucket_rows(point: UsagePoint) -> list[ExportRow]:
    rows = [
        ExportRow(
            point.start,
            e.endpoint,
            e.requests,
            e.requests if e.consumes_quota else 0,
            e.consumes_quota,
            e.bytes,
            False,
        )
        for e in point.endpoints
    ]
    requests = point.requests - sum(e.requests for e in point.endpoints)
    quota = point.quota_requests - sum(e.requests for e in point.endpoints if e.consumes_quota)
    size = None if point.bytes is None else point.bytes - sum(e.bytes or 0 for e in point.endpoints)
    if not rows or requests or quota or size:
        rows.append(ExportRow(point.start, None, requests, quota, None, size, False))
    return rows


def moment_text(moment: datetime) -> str:
    """``2026-11-03T00:00:00Z``: ISO 8601 in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return moment_text(value)
    return str(value)


def to_csv(rows: Iterable[ExportRow]) -> str:
    """The rows as CSV: the :data:`COLUMNS` header, then one line per row (``\\n`` line ends,
    fields quoted only where needed); empty cells for unknown values, ``true``/``false``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            _cell(value)
            for value in (
                row.start,
                row.endpoint,
                row.requests,
                row.quota_requests,
                row.consumes_quota,
                row.bytes,
                row.missing,
            )
        )
    return out.getvalue()


def source_json(status: SourceStatus) -> dict[str, object]:
    """How fresh the export's data is, named as in the graph's ``SourceStatus``."""
    return {
        "state": status.state.name,
        "fetchedAt": None if status.fetched_at is None else moment_text(status.fetched_at),
        "message": status.message,
        "cause": None if status.cause is None else status.cause.name,
        "retryAt": None if status.retry_at is None else moment_text(status.retry_at),
    }


def to_json(account_id: str, usage: Usage, rows: Sequence[ExportRow]) -> str:
    """The export as one JSON object (integers exact at any size), with a final newline."""
    document = {
        "account": account_id,
        "from": usage.from_.isoformat(),
        "to": usage.to.isoformat(),
        "granularity": usage.granularity.name,
        "source": source_json(usage.source),
        "rows": [
            {
                "start": moment_text(row.start),
                "endpoint": row.endpoint,
                "requests": row.requests,
                "quotaRequests": row.quota_requests,
                "consumesQuota": row.consumes_quota,
                "bytes": row.bytes,
                "missing": row.missing,
            }
            for row in rows
        ],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def render(account_id: str, usage: Usage, form: ExportFormat) -> str:
    """``usage`` of ``account_id`` as the text of an export in ``form``."""
    rows = export_rows(usage)
    return to_csv(rows) if form is ExportFormat.CSV else to_json(account_id, usage, rows)
