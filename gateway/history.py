"""The history store: what vendors forget, kept (SQLite by default, one owned thread; the same
store on PostgreSQL is :mod:`gateway.history_pg`, and the SQL both run :mod:`gateway.history_sql`).

Tables (migrations are numbered; on SQLite ``PRAGMA user_version`` says which have run):

* ``snapshot_runs``: one row per account per snapshot run (started, finished, outcome, error);
* ``usage_days``: per account and day, the day's totals; a row means the day is known;
* ``usage_endpoints``: per account, day and endpoint (and quota flag), where vendors say;
* ``usage_changes``: every stored day or endpoint count that a later snapshot changed;
* ``quota_samples`` and ``rate_limit_samples``: used and limit over time;
* ``alert_states``, ``alert_events``, ``alert_deliveries`` and ``alert_leases``: the alert
  rules' state machine, its events (an outbox) and their delivery to each webhook
  (:mod:`gateway.alerts.store` reads and writes them).

Writes take the lock up front (``BEGIN IMMEDIATE``) and store one account's whole snapshot in one
transaction, so a run killed halfway leaves no partial day and two runs at once wait for each
other (WAL mode, busy timeout) instead of failing. All SQLite work happens in one thread owned by
the store, off the event loop.

Every read made for a GraphQL answer is reported to it (:mod:`gateway.answer_reads`) with the
store's version (:meth:`HistoryStore.version_of`), taken before the read: the number of writes
this store made, and the signature (inode, size, modification time) of the file and of its
write-ahead log, which a write by another process (a ``snapshot`` from cron, another gateway)
changes. A signature younger than :data:`SETTLE_SECONDS` is not trusted (a file system may give
two writes that close together the same time and size): an answer that read it is not kept.

A file that cannot be used (corrupt, read-only, on a full disk, or written by a newer gateway:
``PRAGMA user_version`` past the migrations known here) raises :class:`HistoryUnavailable`,
naming the file and the cause, from every call; a newer store is never written to.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from gateway import answer_reads
from gateway.domain import EndpointUsage, Quota, RateLimit
from gateway.errors import GatewayError
from gateway.history_sql import MIGRATIONS, Conn

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
SETTLE_SECONDS = 0.05
"""How old a file's modification time must be before its signature is trusted to change with
the next write (file systems keep a coarse clock: a few milliseconds per tick)."""


@dataclass(frozen=True)
class DayRecord:
    """One account's usage on one day, with its per-endpoint split where the vendor gives it."""

    day: date
    requests: int
    quota_requests: int
    bytes: int | None = None
    failed_requests: int | None = None
    endpoints: tuple[EndpointUsage, ...] | None = None
    absent: bool = False
    """The vendor's answer left the day out (zero use, or a day it no longer keeps): stored as
    zero only where the store holds nothing for it, never over a day it knows."""


@dataclass(frozen=True)
class StoredDays:
    """What one read of the store gives of an account's days over a range."""

    days: tuple[DayRecord, ...] = ()
    """Each stored day's totals, ascending; with its endpoint split where one is stored,
    unless the read summed the splits into ``totals``."""
    totals: tuple[EndpointUsage, ...] | None = None
    """Where the read summed them: the endpoint totals over every day of ``days`` (which then
    carry no split), as :func:`gateway.usage.add_endpoint` adds them up day by day."""


Plan = tuple[date, date] | None
"""The days a usage answer asks the vendor for (first, last), or ``None`` for none."""


@dataclass(frozen=True)
class Sweep:
    """One read of an account's stored days that first plans the vendor call
    (:meth:`HistoryStore.sweep`)."""

    planned: asyncio.Future[Plan]
    """The vendor's days, as soon as the store has said which closed days it holds; never
    fails (a store that cannot be used holds nothing)."""
    stored: asyncio.Future[StoredDays]
    """The stored days the vendor is not asked for; :class:`HistoryUnavailable` when the
    store cannot be used."""


@dataclass(frozen=True)
class QuotaSample:
    """A quota's use at one moment."""

    at: datetime
    used: int | None
    limit: int | None


@dataclass(frozen=True)
class SnapshotRun:
    """One account's part of a snapshot run."""

    id: int
    account_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running | ok | failed | abandoned
    error: str | None
    days: int | None
    changed: int | None


@dataclass(frozen=True)
class RunSummary:
    """One account's snapshot runs, in brief (:meth:`HistoryStore.run_summary`)."""

    account_id: str
    recent: Mapping[str, int]
    """Runs started since the asked moment, by outcome (running, ok, failed, abandoned)."""
    last_started: datetime | None = None
    """The latest finished run (ok or failed): when it started, """
    last_finished: datetime | None = None
    """when it finished,"""
    last_outcome: str | None = None
    """and how."""
    last_ok: datetime | None = None
    """When the latest ``ok`` run finished."""


@dataclass(frozen=True)
class Stored:
    """What storing one account's snapshot did."""

    days: int
    changed: int


def _iso(moment: datetime) -> str:
    return moment.isoformat()


OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""Who runs a snapshot: host and process, so a later run can tell a dead run from a live one."""


def owner_alive(owner: str | None) -> bool:
    """Whether the process that owns a run may still be running (unknown owners count as alive)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HistoryUnavailable(GatewayError):
    """The history store cannot be used: a file that is corrupt, read-only, on a full disk;
    a PostgreSQL server that is down or refuses the credentials; a store from a newer gateway.
    ``str()`` is one line naming the store (a URL without its password) and the cause."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = path
        self.reason = reason
        self.extensions: dict[str, object] = {"code": "HISTORY_UNAVAILABLE"}
        super().__init__(f"history store {path}: {reason}")


def _split_days(db: Conn, account_id: str, start: date, end: date) -> frozenset[date]:
    """The days from ``start`` to ``end`` whose endpoint split is stored (as
    :meth:`HistoryStore.days` tells them: flagged so, or with endpoint rows)."""
    return frozenset(
        date.fromisoformat(day)
        for (day,) in db.execute(
            "SELECT day FROM usage_days AS d WHERE account_id = ? AND day BETWEEN ? AND ?"
            " AND (split = 1 OR EXISTS (SELECT 1 FROM usage_endpoints AS e"
            " WHERE e.account_id = d.account_id AND e.day = d.day))",
            [account_id, start.isoformat(), end.isoformat()],
        ).fetchall()
    )


def _day_records(db: Conn, account_id: str, start: date, end: date) -> list[DayRecord]:
    """Stored days of ``account_id`` from ``start`` to ``end``, each with its split."""
    args = [account_id, start.isoformat(), end.isoformat()]
    endpoints: dict[str, list[EndpointUsage]] = {}
    for day, endpoint, quota, requests, bytes_ in db.execute(
        "SELECT day, endpoint, consumes_quota, requests, bytes FROM usage_endpoints"
        " WHERE account_id = ? AND day BETWEEN ? AND ? ORDER BY day",
        args,
    ).fetchall():
        endpoints.setdefault(day, []).append(
            EndpointUsage(endpoint, requests, bool(quota), bytes=bytes_)
        )
    return [
        DayRecord(
            date.fromisoformat(day),
            requests,
            quota_requests,
            bytes_,
            failed,
            tuple(endpoints.get(day, ())) if split or day in endpoints else None,
        )
        for day, requests, quota_requests, bytes_, failed, split in db.execute(
            "SELECT day, requests, quota_requests, bytes, failed_requests, split"
            " FROM usage_days WHERE account_id = ? AND day BETWEEN ? AND ? ORDER BY day",
            args,
        ).fetchall()
    ]


def _stored_days(db: Conn, account_id: str, start: date, end: date, splits: bool) -> StoredDays:
    """The stored days from ``start`` to ``end``: each with its split, or (``splits`` false)
    their totals and the endpoint totals over all of them, summed by the database."""
    if splits:
        return StoredDays(tuple(_day_records(db, account_id, start, end)))
    args = [account_id, start.isoformat(), end.isoformat()]
    days = tuple(
        DayRecord(date.fromisoformat(day), requests, quota_requests, bytes_, failed)
        for day, requests, quota_requests, bytes_, failed in db.execute(
            "SELECT day, requests, quota_requests, bytes, failed_requests FROM usage_days"
            " WHERE account_id = ? AND day BETWEEN ? AND ? ORDER BY day",
            args,
        ).fetchall()
    )
    # Bytes as add_endpoint adds them day by day: unknown when a day with requests does not
    # know its bytes, or when no day does; otherwise the sum of the known ones.
    totals = tuple(
        EndpointUsage(endpoint, requests, bool(quota), bytes=bytes_)
        for endpoint, quota, requests, bytes_ in db.execute(
            "SELECT endpoint, consumes_quota, CAST(SUM(requests) AS BIGINT),"
            " CASE WHEN COUNT(bytes) = 0 OR COUNT(CASE WHEN bytes IS NULL AND requests > 0"
            " THEN 1 END) > 0 THEN NULL ELSE CAST(SUM(bytes) AS BIGINT) END"
            " FROM usage_endpoints WHERE account_id = ? AND day BETWEEN ? AND ?"
            " GROUP BY endpoint, consumes_quota ORDER BY endpoint, consumes_quota DESC",
            args,
        ).fetchall()
    )
    return StoredDays(days, totals)


UPSERT_ROWS = 256
"""Rows one upsert statement writes at most (9 values each at most: far under SQLite's and
PostgreSQL's limits on a statement's parameters)."""


def _upsert(db: Conn, head: str, row: str, tail: str, rows: Sequence[tuple[object, ...]]) -> None:
    """``head VALUES row, row, … tail`` over ``rows``, :data:`UPSERT_ROWS` at a time: one
    statement (and, on PostgreSQL, one server round) for many rows."""
    for start in range(0, len(rows), UPSERT_ROWS):
        chunk = rows[start : start + UPSERT_ROWS]
        db.execute(f"{head} {', '.join([row] * len(chunk))}{tail}", [v for r in chunk for v in r])


def _rollback(db: Database) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk and
    some I/O errors): a ROLLBACK without one would hide the real error behind its own."""
    if db.conn.in_transaction:
        db.execute("ROLLBACK")


def _read_only(path: Path) -> bool:
    """Whether ``path`` (or, where it does not exist, its directory) cannot be written: a
    read-only file system refuses even root, as do file modes for anyone else."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    target = path if path.exists() else path.parent
    return not os.access(target, os.W_OK) or not os.access(path.parent, os.W_OK)


def _disk_full(path: Path) -> bool:
    """Whether the file system of ``path`` has no block left for an unprivileged writer."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return False
    return stats.f_bavail == 0


def _wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode. While another connection takes the file in or out of WAL
    mode (the last one to close a WAL file checkpoints it and removes the log), SQLite refuses
    at once ("database is locked") instead of waiting for the busy timeout: wait here too."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


FileState = tuple[int, int, int] | None
"""A file's inode, size and modification time (ns); ``None`` when there is no such file."""


def _file_state(path: str) -> FileState:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


class HistoryStore:
    """The history file, used from async code; every call runs in the store's own thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(path)
        """The store as messages name it."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._db: Conn | None = None
        self.days_read = 0
        """Stored days read for usage answers since the store was made (metrics): counted in
        the store's thread, read anywhere."""
        self._files = (str(self.path), f"{self.path}-wal")
        self.writes = 0
        """Writes (and closes) this store made, counted as each one ends."""
        self.read_jobs = 0
        """Reads handed to the store's thread (jobs, not rows), counted as each is handed."""
        self._queued = 0
        """Jobs handed to the store's thread that have not ended yet."""

    def version_of(self, _key: object = None) -> tuple[int, FileState, FileState]:
        """The store's version: this store's writes, and the signature of the file and of its
        write-ahead log (which other processes' writes change). Two ``os.stat`` calls."""
        return self.writes, _file_state(self._files[0]), _file_state(self._files[1])

    def _report_read(self) -> bool:
        """Tell the answer being built that it reads the store as it is now; whether there
        is no store to read (no file, none open, and nothing queued in the store's thread
        that could make one): the read then finds nothing without going to that thread."""
        version = self.version_of()
        answer_reads.datum(self.version_of, None, version)
        newest = max((state[2] for state in version[1:] if state is not None), default=0)
        if time.time_ns() - newest < SETTLE_SECONDS * 1e9:
            answer_reads.unsettled()
        return version[1] is None and self._db is None and self._queued == 0

    # -- plumbing --------------------------------------------------------------------------

    def _submit(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """``job`` in the store's thread, counted in :attr:`_queued` until it ends."""
        self._queued += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, job)

        def ended(_: object) -> None:
            self._queued -= 1

        future.add_done_callback(ended)
        return future

    async def _run(self, work: Callable[[Conn], T]) -> T:
        try:
            return await self._submit(lambda: self._guarded(work))
        finally:
            self.writes += 1  # once it is over: answers that read the store before no longer hold

    async def _read(self, work: Callable[[Conn], T], nothing: T) -> T:
        """``work`` on the store, or ``nothing`` when no snapshot ever made the file (reads
        never create it): at once when the file's signature just read for the answer cache
        says there is none, else checked again in the store's thread."""
        if self._report_read():
            return nothing

        def read() -> T:
            if not self._exists():
                return nothing
            return self._guarded(work)

        self.read_jobs += 1
        return await self._submit(read)

    def _exists(self) -> bool:
        """Whether there is a store to read (reads never create the file); in the store's
        thread."""
        return self._db is not None or self.path.exists()

    def _guarded(self, work: Callable[[Conn], T]) -> T:
        """``work`` on the open store; SQLite's refusals become :class:`HistoryUnavailable`."""
        try:
            return work(self._open())
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise  # our own mistake, not the file's
            raise HistoryUnavailable(self.path, self._reason(exc)) from exc

    def _reason(self, exc: sqlite3.DatabaseError) -> str:
        """Why SQLite refused the file, in words naming the cause."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR) and _disk_full(self.path):
            return "the disk it is on is full"
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) and _read_only(self.path):
            return "it is read-only (its file, directory or file system)"
        reasons = {
            sqlite3.SQLITE_NOTADB: "it is not a SQLite database (corrupt, or another kind of file)",
            sqlite3.SQLITE_CORRUPT: "it is corrupt (SQLite: database disk image is malformed)",
            sqlite3.SQLITE_READONLY: "it is read-only (its file, directory or file system)",
            sqlite3.SQLITE_FULL: "the disk it is on is full",
            sqlite3.SQLITE_CANTOPEN: "it cannot be opened (no such directory, or no permission)",
            sqlite3.SQLITE_PERM: "permission denied",
            sqlite3.SQLITE_IOERR: "the disk failed to read or write it (I/O error)",
            sqlite3.SQLITE_BUSY: "another process kept it locked past the busy timeout",
        }
        return reasons.get(code, f"SQLite refused it: {exc}")

    def _open(self) -> Conn:
        if self._db is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                # Before anything that writes (WAL mode rewrites the header): a store from a
                # newer gateway is refused untouched.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise HistoryUnavailable(
                        self.path,
                        f"it was written by a newer usage-gateway (schema version {version}; "
                        f"this one knows up to {len(MIGRATIONS)}); it is left untouched",
                    )
                _wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                db = Database(conn)
                self._migrate(db)
            except BaseException:
                conn.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _migrate(db: Database) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in migration:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def _write(self, db: Conn, work: Callable[[Conn], T]) -> T:
        """``work`` in one transaction that holds the write lock from its start."""
        assert isinstance(db, Database)
        db.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return result

    async def transaction(self, work: Callable[[Conn], T]) -> T:
        """``work`` in one write transaction, the write lock taken up front (``BEGIN
        IMMEDIATE``): another process's transaction waits for it, or it for that one."""
        return await self._run(lambda db: self._write(db, work))

    async def read(self, work: Callable[[Conn], T], nothing: T) -> T:
        """``work`` reading the store, or ``nothing`` when no snapshot ever made the file."""
        return await self._read(work, nothing)

    async def warm(self) -> None:
        """Open the file, if a snapshot made it, and prepare the usage reads once (on no
        account), so that the first answer after start-up does not pay for either."""

        def work(db: Conn) -> None:
            today = date.today()
            _split_days(db, "", today, today)
            _stored_days(db, "", today, today, splits=False)
            _stored_days(db, "", today, today, splits=True)

        await self._read(work, None)

    def _batched(self, db: Conn) -> AbstractContextManager[object]:
        """Statements whose results are not read go out without waiting for each (nothing
        to do for SQLite, in the same process)."""
        return nullcontext()

    async def move_identity(self, table: str) -> None:
        """After rows were copied in with their ids: let new rows of ``table`` take ids past
        them (SQLite does so by itself)."""

    async def close(self) -> None:
        def close(db: Conn) -> None:
            self._close(db)

        if self._db is not None:
            await self._run(close)
            self._db = None
        self._pool.shutdown(wait=True)

    @staticmethod
    def _close(db: Conn) -> None:
        assert isinstance(db, Database)
        db.conn.close()

    # -- writes ----------------------------------------------------------------------------

    async def start_run(self, account_id: str, started_at: datetime) -> int:
        def work(db: Conn) -> int:
            (run_id,) = db.execute(
                "INSERT INTO snapshot_runs (account_id, started_at, outcome, owner)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                [account_id, _iso(started_at), "running", OWNER],
            ).fetchone()
            return int(run_id)

        return await self._run(lambda db: self._write(db, work))

    async def abandon_stale_runs(self, started_before: datetime) -> int:
        """Mark as ``abandoned`` the runs still ``running`` whose process is gone: a process of
        this host that no longer exists, or any run started before the cut-off."""

        def work(db: Conn) -> int:
            running = db.execute(
                "SELECT id, owner, started_at FROM snapshot_runs WHERE outcome = 'running'"
            ).fetchall()
            dead = [
                run_id
                for run_id, owner, started in running
                if started < _iso(started_before) or not owner_alive(owner)
            ]
            for run_id in dead:
                db.execute(
                    "UPDATE snapshot_runs SET outcome = 'abandoned', error = ? WHERE id = ?",
                    ["the run stopped before it finished; nothing of it was stored", run_id],
                )
            return len(dead)

        return await self._run(lambda db: self._write(db, work))

    async def fail_run(self, run_id: int, finished_at: datetime, error: str) -> None:
        def work(db: Conn) -> None:
            db.execute(
                "UPDATE snapshot_runs SET finished_at = ?, outcome = 'failed', error = ? "
                "WHERE id = ?",
                [_iso(finished_at), error, run_id],
            )

        await self._run(lambda db: self._write(db, work))

    async def store(
        self,
        run_id: int,
        account_id: str,
        days: Sequence[DayRecord],
        quotas: Sequence[Quota],
        rate_limits: Sequence[RateLimit],
        sampled_at: datetime,
    ) -> Stored:
        """One account's snapshot, and its run marked ``ok``, in one transaction."""

        def work(db: Conn) -> Stored:
            with self._batched(db):
                return stored(db)

        def stored(db: Conn) -> Stored:
            changed = self._store_days(db, run_id, account_id, days, sampled_at)
            for quota in quotas:
                db.execute(
                    "INSERT INTO quota_samples (account_id, quota_id, sampled_at, used,"
                    " quota_limit, run_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [account_id, quota.id, _iso(sampled_at), quota.used, quota.limit, run_id],
                )
            for rate in rate_limits:
                db.execute(
                    "INSERT INTO rate_limit_samples (account_id, name, sampled_at, used,"
                    " quota_limit, run_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [account_id, rate.name, _iso(sampled_at), rate.used, rate.limit, run_id],
                )
            db.execute(
                "UPDATE snapshot_runs SET finished_at = ?, outcome = 'ok', days = ?, changed = ?"
                " WHERE id = ?",
                [_iso(sampled_at), len(days), changed, run_id],
            )
            return Stored(len(days), changed)

        return await self._run(lambda db: self._write(db, work))

    @staticmethod
    def _store_days(
        db: Conn,
        run_id: int,
        account_id: str,
        days: Sequence[DayRecord],
        now: datetime,
    ) -> int:
        if not days:
            return 0
        first, last = min(d.day for d in days).isoformat(), max(d.day for d in days).isoformat()
        old_days = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT day, requests, quota_requests, bytes FROM usage_days"
                " WHERE account_id = ? AND day BETWEEN ? AND ?",
                [account_id, first, last],
            ).fetchall()
        }
        old_endpoints = {
            (row[0], row[1], row[2]): row[3]
            for row in db.execute(
                "SELECT day, endpoint, consumes_quota, requests FROM usage_endpoints"
                " WHERE account_id = ? AND day BETWEEN ? AND ?",
                [account_id, first, last],
            ).fetchall()
        }
        changes: list[tuple[str, str, int | None, int]] = []
        absent: dict[str, tuple[object, ...]] = {}
        day_rows: dict[str, tuple[object, ...]] = {}
        endpoint_rows: dict[tuple[str, str, int], tuple[object, ...]] = {}
        for record in days:  # later rows of one key win, as one upsert after another would
            day = record.day.isoformat()
            if record.absent:
                absent[day] = (account_id, day, run_id, _iso(now))
                continue
            before = old_days.get(day)
            if before is not None and before[0] != record.requests:
                changes.append((day, "requests", before[0], record.requests))
            day_rows[day] = (
                account_id,
                day,
                record.requests,
                record.quota_requests,
                record.bytes,
                record.failed_requests,
                int(record.endpoints is not None),
                run_id,
                _iso(now),
            )
            for item in record.endpoints or ():
                key = (day, item.endpoint, int(item.consumes_quota))
                previous = old_endpoints.get(key)
                if previous is not None and previous != item.requests:
                    changes.append((day, f"endpoint {item.endpoint}", previous, item.requests))
                endpoint_rows[key] = (account_id, *key, item.requests, item.bytes, run_id)
        _upsert(
            db,
            "INSERT INTO usage_days (account_id, day, requests, quota_requests, bytes,"
            " failed_requests, split, run_id, updated_at) VALUES",
            "(?, ?, 0, 0, NULL, NULL, 1, ?, ?)",
            " ON CONFLICT (account_id, day) DO NOTHING",
            list(absent.values()),
        )
        _upsert(
            db,
            "INSERT INTO usage_days (account_id, day, requests, quota_requests, bytes,"
            " failed_requests, split, run_id, updated_at) VALUES",
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            " ON CONFLICT (account_id, day) DO UPDATE SET requests = excluded.requests,"
            " quota_requests = excluded.quota_requests, bytes = excluded.bytes,"
            " failed_requests = excluded.failed_requests, split = excluded.split,"
            " run_id = excluded.run_id, updated_at = excluded.updated_at"
            " WHERE usage_days.requests IS DISTINCT FROM excluded.requests"
            " OR usage_days.quota_requests IS DISTINCT FROM excluded.quota_requests"
            " OR usage_days.bytes IS DISTINCT FROM excluded.bytes"
            " OR usage_days.failed_requests IS DISTINCT FROM excluded.failed_requests"
            " OR usage_days.split IS DISTINCT FROM excluded.split",
            list(day_rows.values()),
        )
        _upsert(
            db,
            "INSERT INTO usage_endpoints (account_id, day, endpoint, consumes_quota,"
            " requests, bytes, run_id) VALUES",
            "(?, ?, ?, ?, ?, ?, ?)",
            " ON CONFLICT (account_id, day, endpoint, consumes_quota) DO UPDATE"
            " SET requests = excluded.requests, bytes = excluded.bytes,"
            " run_id = excluded.run_id"
            " WHERE usage_endpoints.requests IS DISTINCT FROM excluded.requests"
            " OR usage_endpoints.bytes IS DISTINCT FROM excluded.bytes",
            list(endpoint_rows.values()),
        )
        for day, what, old, new in changes:
            db.execute(
                "INSERT INTO usage_changes (account_id, day, what, old_value, new_value, run_id,"
                " changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [account_id, day, what, old, new, run_id, _iso(now)],
            )
        return len(changes)

    # -- reads -----------------------------------------------------------------------------

    async def days(self, account_id: str, start: date, end: date) -> list[DayRecord]:
        """Stored days of ``account_id`` from ``start`` to ``end``, with their endpoints."""

        def work(db: Conn) -> list[DayRecord]:
            found = _day_records(db, account_id, start, end)
            self.days_read += len(found)
            return found

        return await self._read(work, [])

    def sweep(
        self,
        account_id: str,
        start: date,
        end: date,
        probe: tuple[date, date] | None,
        plan: Callable[[frozenset[date]], Plan],
        *,
        splits: bool,
    ) -> Sweep:
        """Plan a usage answer's vendor call and read the stored days it leaves out, in one
        pass of the store's thread.

        First the days of ``probe`` whose endpoint split is stored (none when ``probe`` is
        ``None``: nothing to look up) go to ``plan``, a pure function giving the days to ask
        the vendor for; that plan is handed to the event loop at once (``Sweep.planned``), so
        the vendor call starts while the store goes on to read the days from ``start`` up to
        the first one asked (up to ``end`` when none is): ``Sweep.stored``. With ``splits``
        false the days' endpoint splits are summed by SQLite instead of read day by day.
        Reads never create the file; like every read, it is reported to the answer being built.
        When there is no file (and nothing queued could make one), both are settled at once.
        """
        absent = self._report_read()
        loop = asyncio.get_running_loop()
        planned: asyncio.Future[Plan] = loop.create_future()
        if probe is None or absent:  # nothing to look up first: the vendor is asked at once
            planned.set_result(plan(frozenset()))
        if absent:  # no store: nothing stored, and no hop to the store's thread to say so
            nothing: asyncio.Future[StoredDays] = loop.create_future()
            nothing.set_result(StoredDays())
            return Sweep(planned, nothing)

        def post(value: Plan) -> None:
            def settle() -> None:
                if not planned.done():
                    planned.set_result(value)

            loop.call_soon_threadsafe(settle)

        def run() -> StoredDays:
            exists = self._exists()
            held: frozenset[date] = frozenset()
            try:
                if exists and probe is not None:
                    held = self._guarded(lambda db: _split_days(db, account_id, *probe))
            except BaseException:
                post(plan(frozenset()))  # a store that cannot be used holds nothing
                raise
            asked = plan(held)
            post(asked)
            last = end if asked is None else min(end, asked[0] - timedelta(days=1))
            if not exists or last < start:
                return StoredDays()
            found = self._guarded(lambda db: _stored_days(db, account_id, start, last, splits))
            self.days_read += len(found.days)
            return found

        stored = self._submit(run)
        # A caller that fails before it awaits the read must not leave its error unretrieved.
        stored.add_done_callback(lambda done: done.cancelled() or done.exception())
        return Sweep(planned, stored)

    async def quota_samples(
        self, quota_id: str, start: datetime, end: datetime
    ) -> list[QuotaSample]:
        return await self._read(lambda db: _quota_samples(db, quota_id, start, end), [])

    async def quota_samples_of(
        self, wanted: Sequence[tuple[str, datetime, datetime]]
    ) -> list[list[QuotaSample]]:
        """:meth:`quota_samples` of each ``(quota id, start, end)`` of ``wanted``, in order,
        read in one job of the store's thread."""

        def work(db: Conn) -> list[list[QuotaSample]]:
            return [_quota_samples(db, quota, start, end) for quota, start, end in wanted]

        return await self._read(work, [[] for _ in wanted])

    async def runs(
        self, accounts: Sequence[str] | None = None, limit: int = 50
    ) -> list[SnapshotRun]:
        """Snapshot runs of ``accounts`` (of every account when ``None``), newest first."""

        def work(db: Conn) -> list[SnapshotRun]:
            where, args = "", list[object]()
            if accounts is not None:
                where = f"WHERE account_id IN ({', '.join('?' * len(accounts))})"
                args = list(accounts)
            rows = db.execute(
                "SELECT id, account_id, started_at, finished_at, outcome, error, days, changed"
                f" FROM snapshot_runs {where} ORDER BY started_at DESC, id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
            return [
                SnapshotRun(
                    row[0],
                    row[1],
                    datetime.fromisoformat(row[2]),
                    datetime.fromisoformat(row[3]) if row[3] else None,
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                )
                for row in rows
            ]

        return await self._read(work, [])

    async def run_summary(self, account_ids: Sequence[str], since: datetime) -> list[RunSummary]:
        """Per account (of ``account_ids``): its runs started since ``since`` by outcome, its
        latest finished run and when its latest ``ok`` run finished. Each is an indexed read
        of that account's runs, however many the store holds before ``since``."""

        def work(db: Conn) -> list[RunSummary]:
            found = []
            for account_id in account_ids:
                recent = dict(
                    db.execute(
                        "SELECT outcome, COUNT(*) FROM snapshot_runs"
                        " WHERE account_id = ? AND started_at >= ? GROUP BY outcome",
                        [account_id, _iso(since)],
                    ).fetchall()
                )
                last = db.execute(
                    "SELECT started_at, finished_at, outcome FROM snapshot_runs"
                    " WHERE account_id = ? AND finished_at IS NOT NULL"
                    " ORDER BY started_at DESC, id DESC LIMIT 1",
                    [account_id],
                ).fetchone()
                ok = db.execute(
                    "SELECT finished_at FROM snapshot_runs WHERE account_id = ? AND outcome = 'ok'"
                    " ORDER BY started_at DESC, id DESC LIMIT 1",
                    [account_id],
                ).fetchone()
                found.append(
                    RunSummary(
                        account_id,
                        recent,
                        None if last is None else datetime.fromisoformat(last[0]),
                        None if last is None else datetime.fromisoformat(last[1]),
                        None if last is None else last[2],
                        None if ok is None else datetime.fromisoformat(ok[0]),
                    )
                )
            return found

        return await self._read(work, [RunSummary(a, {}) for a in account_ids])


def _quota_samples(db: Conn, quota_id: str, start: datetime, end: datetime) -> list[QuotaSample]:
    return [
        QuotaSample(datetime.fromisoformat(at), used, limit)
        for at, used, limit in db.execute(
            "SELECT sampled_at, used, quota_limit FROM quota_samples"
            " WHERE quota_id = ? AND sampled_at BETWEEN ? AND ? ORDER BY sampled_at",
            [quota_id, _iso(start), _iso(end)],
        ).fetchall()
    ]
