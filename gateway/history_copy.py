"""``usage-gateway history copy``: every table of one history store into another.

The target is opened first, which migrates it (and refuses one written by a newer gateway);
the source must exist and be no newer either. Each table of :data:`gateway.history_sql.TABLES`
is read in key order, :data:`BATCH` rows at a time (a keyset read: each batch starts past the
previous one's last key, however large the table), and each batch is written in one transaction
as one multi-row upsert on the table's key: copying again gives the same store, with what the
source changed since brought over. Identity columns keep their ids; a PostgreSQL target's
sequences are moved past them, so the rows a gateway adds later do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from gateway.history import HistoryStore, HistoryUnavailable
from gateway.history_sql import TABLES, Conn, Table

BATCH = 500
"""Rows read and written per batch (13 columns at most: well under both engines' limits on
a statement's parameters)."""
_MISSING = object()


@dataclass(frozen=True)
class Copied:
    """One table's rows copied."""

    table: str
    rows: int


def _columns(db: Conn, table: str) -> list[str]:
    cursor = db.execute(f"SELECT * FROM {table} LIMIT 0")
    return [column[0] for column in cursor.description]


def _batch(
    db: Conn, table: Table, columns: Sequence[str], after: Sequence[Any] | None
) -> list[tuple[Any, ...]]:
    key = ", ".join(table.key)
    where = ""
    args: list[Any] = []
    if after is not None:
        where = f" WHERE ({key}) > ({', '.join('?' * len(after))})"
        args = list(after)
    return [
        tuple(row)
        for row in db.execute(
            f"SELECT {', '.join(columns)} FROM {table.name}{where} ORDER BY {key} LIMIT ?",
            [*args, BATCH],
        ).fetchall()
    ]


def _upsert(
    db: Conn, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    values = ", ".join("(" + ", ".join("?" * len(columns)) + ")" for _ in rows)
    rest = [c for c in columns if c not in table.key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
    )
    db.execute(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values}"
        f" ON CONFLICT ({', '.join(table.key)}) {action}",
        [value for row in rows for value in row],
    )


async def copy_history(
    source: HistoryStore,
    target: HistoryStore,
    *,
    progress: Callable[[Copied], None] | None = None,
) -> list[Copied]:
    """Copy every table of ``source`` into ``target`` (see the module docstring); the rows
    copied per table. :class:`HistoryUnavailable` when either store cannot be used, or the
    source does not exist."""
    found = await source.read(lambda db: True, _MISSING)  # opens it: refuses a newer one
    if found is _MISSING:
        raise HistoryUnavailable(source.where, "there is no such store to copy from")
    await target.transaction(lambda db: None)  # opens it: migrates, or refuses a newer one
    copied = []
    for table in TABLES:
        done = Copied(table.name, await _copy_table(source, target, table))
        copied.append(done)
        if progress is not None:
            progress(done)
    return copied


async def _copy_table(source: HistoryStore, target: HistoryStore, table: Table) -> int:
    """Copy one table in batches; the rows copied."""
    columns: list[str] = await source.read(partial(_columns, table=table.name), [])
    position = [columns.index(k) for k in table.key]
    count = 0
    after: tuple[Any, ...] | None = None
    while True:
        rows: list[tuple[Any, ...]] = await source.read(
            partial(_batch, table=table, columns=columns, after=after), []
        )
        if not rows:
            break
        await target.transaction(partial(_upsert, table=table, columns=columns, rows=rows))
        count += len(rows)
        after = tuple(rows[-1][i] for i in position)
    if table.identity:
        await target.move_identity(table.name)
    return count
