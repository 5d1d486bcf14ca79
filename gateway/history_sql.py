"""The history store's SQL, one set for SQLite and PostgreSQL: the connection both speak, the
migrations, and the tables as ``history copy`` moves them.

Every statement is written once, in the SQL the two engines share: ``?`` placeholders,
``INSERT … ON CONFLICT (key) DO UPDATE`` upserts, ``IS DISTINCT FROM``, ``RETURNING``, sums
cast to ``BIGINT``. A PostgreSQL connection (:mod:`gateway.history_pg`) rewrites the
placeholders as it runs them, and the migrations' types with :func:`gateway.history_pg.ddl`:
SQLite's ``INTEGER`` (64 bits there) becomes ``BIGINT``, an ``INTEGER PRIMARY KEY`` an identity
column, ``TEXT`` is compared byte by byte (``COLLATE "C"``, as SQLite does). Days and moments
are ISO 8601 text in UTC on both engines (``2026-03-18``, ``2026-03-18T14:25:00+00:00``), which
compare and sort as the moments do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Cursor(Protocol):
    """What the store reads back from a statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """A connection to the store, as its queries use it (sqlite-utils' ``Database`` is one)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Any: ...


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE snapshot_runs (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL,"
        " started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT NOT NULL, error TEXT,"
        " days INTEGER, changed INTEGER, owner TEXT)",
        "CREATE INDEX idx_snapshot_runs_account_id_started_at"
        " ON snapshot_runs (account_id, started_at)",
        "CREATE TABLE usage_days (account_id TEXT NOT NULL, day TEXT NOT NULL,"
        " requests INTEGER NOT NULL, quota_requests INTEGER NOT NULL, bytes INTEGER,"
        " failed_requests INTEGER, run_id INTEGER, updated_at TEXT,"
        " PRIMARY KEY (account_id, day))",
        "CREATE TABLE usage_endpoints (account_id TEXT NOT NULL, day TEXT NOT NULL,"
        " endpoint TEXT NOT NULL, consumes_quota INTEGER NOT NULL, requests INTEGER NOT NULL,"
        " run_id INTEGER, PRIMARY KEY (account_id, day, endpoint, consumes_quota))",
        "CREATE TABLE usage_changes (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL,"
        " day TEXT NOT NULL, what TEXT NOT NULL, old_value INTEGER, new_value INTEGER,"
        " run_id INTEGER, changed_at TEXT)",
        "CREATE TABLE quota_samples (account_id TEXT NOT NULL, quota_id TEXT NOT NULL,"
        " sampled_at TEXT NOT NULL, used INTEGER, quota_limit INTEGER, run_id INTEGER,"
        " PRIMARY KEY (quota_id, sampled_at))",
        "CREATE TABLE rate_limit_samples (account_id TEXT NOT NULL, name TEXT NOT NULL,"
        " sampled_at TEXT NOT NULL, used INTEGER, quota_limit INTEGER, run_id INTEGER,"
        " PRIMARY KEY (account_id, name, sampled_at))",
    ),
    # Endpoint bytes, so usage merged from history keeps them (ReversingLabs meters bytes),
    # and whether a day's endpoint split was stored (a day without use has no endpoint rows).
    (
        "ALTER TABLE usage_endpoints ADD COLUMN bytes INTEGER",
        "ALTER TABLE usage_days ADD COLUMN split INTEGER",
    ),
    # Alerts: each rule's state per quota and window, the events it made (an outbox), their
    # delivery per webhook, and which process delivers to a webhook now.
    (
        "CREATE TABLE alert_states (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL,"
        " subject TEXT NOT NULL, rule TEXT NOT NULL, level TEXT NOT NULL,"
        " window_key TEXT NOT NULL, window_start TEXT, window_end TEXT, state TEXT NOT NULL,"
        " since TEXT NOT NULL, fired_at TEXT, resolved_at TEXT, facts TEXT NOT NULL,"
        " UNIQUE (subject, rule, level, window_key))",
        "CREATE INDEX alert_states_account ON alert_states (account_id, state)",
        "CREATE TABLE alert_events (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE,"
        " account_id TEXT NOT NULL, rule TEXT NOT NULL, event TEXT NOT NULL,"
        " at TEXT NOT NULL, data TEXT NOT NULL)",
        "CREATE INDEX alert_events_at ON alert_events (at)",
        "CREATE INDEX alert_events_account ON alert_events (account_id, at)",
        "CREATE TABLE alert_deliveries (event_id INTEGER NOT NULL REFERENCES alert_events (id),"
        " webhook TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " runs INTEGER NOT NULL DEFAULT 0, rejected_runs INTEGER NOT NULL DEFAULT 0,"
        " last_status INTEGER, last_error TEXT, delivered_at TEXT,"
        " PRIMARY KEY (event_id, webhook))",
        "CREATE INDEX alert_deliveries_pending ON alert_deliveries (webhook, state)",
        "CREATE TABLE alert_leases (webhook TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " token TEXT NOT NULL, until TEXT NOT NULL)",
    ),
)
"""Each migration's statements, in order; a store's schema version is how many have run."""


@dataclass(frozen=True)
class Table:
    """A table as ``history copy`` moves it: by its key, in batches."""

    name: str
    key: tuple[str, ...]
    identity: bool = False
    """Whether ``key`` is an ``INTEGER PRIMARY KEY`` (an identity column on PostgreSQL, whose
    sequence must move past the copied ids)."""


TABLES: tuple[Table, ...] = (
    Table("snapshot_runs", ("id",), identity=True),
    Table("usage_days", ("account_id", "day")),
    Table("usage_endpoints", ("account_id", "day", "endpoint", "consumes_quota")),
    Table("usage_changes", ("id",), identity=True),
    Table("quota_samples", ("quota_id", "sampled_at")),
    Table("rate_limit_samples", ("account_id", "name", "sampled_at")),
    Table("alert_states", ("id",), identity=True),
    Table("alert_events", ("id",), identity=True),
    Table("alert_deliveries", ("event_id", "webhook")),
)
"""What ``history copy`` moves, in an order that keeps references whole (events before their
deliveries). ``alert_leases`` stays behind: a lease is a running process's claim on a webhook,
meaningless to another store."""
