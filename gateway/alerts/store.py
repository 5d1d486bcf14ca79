"""The alert tables of the history store: states, events (an outbox), deliveries and leases.

Every write is one transaction that holds the store's write lock from its start
(:meth:`HistoryStore.transaction`: ``BEGIN IMMEDIATE`` on SQLite, the ``history_meta`` row's
lock on PostgreSQL), so
processes sharing the store take turns: an account's rules are evaluated against the rows as the
previous process left them, which is what makes each event exist once however many snapshot
processes run. Deliveries to one webhook are made by one process at a time: it holds the
webhook's lease (``alert_leases``) for the run, and gives it back only when nothing it has not
tried is left pending, in the same transaction, so an event stored meanwhile by another process
is either seen by the holder or finds the lease free.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.alerts.config import RuleSet
from gateway.alerts.machine import Change, StateRow, step
from gateway.alerts.messages import message
from gateway.alerts.model import (
    AlertEvent,
    Delivery,
    DeliveryState,
    EventKind,
    Facts,
    Reason,
    Rule,
    StateName,
)
from gateway.alerts.rules import Track, Verdict, Window, unreadable_verdict
from gateway.domain import ProviderId
from gateway.history import OWNER, HistoryStore, owner_alive
from gateway.history_sql import Conn

MAX_EVENTS_READ = 1000
"""Events one read (``alertEvents``) returns at most."""
MAX_REJECTED_RUNS = 3
"""Runs in which a webhook refused an event (4xx) before the event is marked failed for it."""
_STATE_COLUMNS = (
    "id, subject, rule, level, window_key, window_start, window_end, state, since, fired_at,"
    " resolved_at, facts"
)


@dataclass(frozen=True)
class AccountPlan:
    """What one account's evaluation needs besides the stored rows."""

    account_id: str
    provider: ProviderId
    rules: RuleSet
    verdicts: tuple[Verdict, ...]
    """The quota rules' verdicts (empty when the account's quotas were not read)."""
    quotas_read: bool
    quota_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Pending:
    """A delivery waiting: the event's row id and the event."""

    row: int
    event: AlertEvent


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _row(values: Sequence[Any]) -> StateRow:
    (row_id, subject, rule, level, key, start, end, state, since, fired, resolved, facts) = values
    window = Window(datetime.fromisoformat(start), _moment(end)) if start else None
    return StateRow(
        track=Track(subject, Rule(rule), float(level) if level else None),
        window_key=key,
        window=window,
        state=StateName(state),
        since=datetime.fromisoformat(since),
        fired_at=_moment(fired),
        resolved_at=_moment(resolved),
        facts=Facts.from_json(json.loads(facts)),
        id=row_id,
    )


def _event_json(event: AlertEvent) -> str:
    return json.dumps(
        {
            "id": event.id,
            "event": event.event.value,
            "rule": event.rule.value,
            "threshold": event.threshold,
            "reason": event.reason.value if event.reason else None,
            "at": event.at.isoformat(),
            "fired_at": _iso(event.fired_at),
            "window_start": _iso(event.window_start),
            "message": event.message,
            "facts": event.facts.to_json(),
        }
    )


def _event(data: str, deliveries: tuple[Delivery, ...] = ()) -> AlertEvent:
    raw = json.loads(data)
    return AlertEvent(
        id=raw["id"],
        event=EventKind(raw["event"]),
        rule=Rule(raw["rule"]),
        threshold=raw["threshold"],
        reason=Reason(raw["reason"]) if raw["reason"] else None,
        at=datetime.fromisoformat(raw["at"]),
        fired_at=_moment(raw["fired_at"]),
        window_start=_moment(raw["window_start"]),
        message=raw["message"],
        facts=Facts.from_json(raw["facts"]),
        deliveries=deliveries,
    )


class AlertStore:
    """The alert tables, through the history store's thread and transactions."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history

    # -- evaluation --------------------------------------------------------------------------

    async def apply(
        self, plan: AccountPlan, *, now: datetime, webhooks: Sequence[str]
    ) -> list[AlertEvent]:
        """Evaluate one account against its stored rows and store the outcome: states, events
        and a pending delivery per event and webhook, in one transaction. The ``unreadable``
        rule is judged here, from the account's snapshot runs as stored."""

        def work(db: Conn) -> list[AlertEvent]:
            verdicts = list(plan.verdicts)
            last_read, first_try = self._reads(db, plan.account_id)
            unreadable = unreadable_verdict(
                plan.rules, plan.account_id, plan.provider, last_read, first_try, now
            )
            if unreadable is not None:
                verdicts.append(unreadable)
            rows = self._relevant_rows(db, plan.account_id, verdicts, now, plan.rules.cooldown)
            changes = step(
                rows,
                verdicts,
                now=now,
                cooldown=plan.rules.cooldown,
                quotas_read=plan.quotas_read,
                quota_ids=plan.quota_ids,
            )
            return [e for c in changes if (e := self._store(db, plan, c, now, webhooks))]

        return await self.history.transaction(work)

    @staticmethod
    def _reads(db: Conn, account_id: str) -> tuple[datetime | None, datetime | None]:
        """The account's last successful read, and the first try after it."""
        (last,) = db.execute(
            "SELECT max(finished_at) FROM snapshot_runs WHERE account_id = ? AND outcome = 'ok'",
            [account_id],
        ).fetchone()
        (first,) = db.execute(
            "SELECT min(started_at) FROM snapshot_runs WHERE account_id = ? AND started_at > ?",
            [account_id, last or ""],
        ).fetchone()
        return _moment(last), _moment(first)

    @staticmethod
    def _relevant_rows(
        db: Conn, account_id: str, verdicts: Sequence[Verdict], now: datetime, cooldown: float
    ) -> list[StateRow]:
        """Open rows, rows resolved within ``cooldown``, and the rows of the verdicts'
        current windows."""
        cutoff = datetime.fromtimestamp(now.timestamp() - cooldown, tz=now.tzinfo)
        found = {
            values[0]: values
            for values in db.execute(
                f"SELECT {_STATE_COLUMNS} FROM alert_states WHERE account_id = ?"
                " AND (state != 'resolved' OR resolved_at >= ?)",
                [account_id, cutoff.isoformat()],
            ).fetchall()
        }
        for verdict in verdicts:
            if verdict.window is None:
                continue
            track = verdict.track
            for values in db.execute(
                f"SELECT {_STATE_COLUMNS} FROM alert_states WHERE subject = ? AND rule = ?"
                " AND level = ? AND window_key = ?",
                [track.subject, track.rule.value, track.level, verdict.window.key],
            ).fetchall():
                found[values[0]] = values
        return [_row(values) for values in found.values()]

    @staticmethod
    def _store(
        db: Conn, plan: AccountPlan, change: Change, now: datetime, webhooks: Sequence[str]
    ) -> AlertEvent | None:
        row = change.row
        if change.drop:
            db.execute("DELETE FROM alert_states WHERE id = ?", [row.id])
            return None
        window = row.window
        values = [
            row.state.value,
            row.since.isoformat(),
            _iso(row.fired_at),
            _iso(row.resolved_at),
            json.dumps(row.facts.to_json()),
            _iso(window.start) if window else None,
            _iso(window.end) if window else None,
        ]
        if row.id is None:
            db.execute(
                "INSERT INTO alert_states (state, since, fired_at, resolved_at, facts,"
                " window_start, window_end, account_id, subject, rule, level, window_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    *values,
                    plan.account_id,
                    row.track.subject,
                    row.track.rule.value,
                    row.track.level,
                    row.window_key,
                ],
            )
        else:
            db.execute(
                "UPDATE alert_states SET state = ?, since = ?, fired_at = ?, resolved_at = ?,"
                " facts = ?, window_start = ?, window_end = ? WHERE id = ?",
                [*values, row.id],
            )
        if change.event is None:
            return None
        start = window.start if window else None
        event = AlertEvent(
            id=uuid.uuid4().hex,
            event=change.event,
            rule=row.track.rule,
            threshold=row.track.threshold,
            reason=change.reason,
            at=now,
            fired_at=row.fired_at,
            window_start=start,
            facts=row.facts,
            message=message(
                change.event, row.track.rule, row.track.threshold, change.reason, row.facts, start
            ),
        )
        (event_row,) = db.execute(
            "INSERT INTO alert_events (uid, account_id, rule, event, at, data)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [
                event.id,
                plan.account_id,
                event.rule.value,
                event.event.value,
                now.isoformat(),
                _event_json(event),
            ],
        ).fetchone()
        for webhook in webhooks:
            db.execute(
                "INSERT INTO alert_deliveries (event_id, webhook, state) VALUES (?, ?, 'pending')",
                [event_row, webhook],
            )
        return event

    # -- delivery ----------------------------------------------------------------------------

    async def take_lease(self, webhook: str, token: str, now: datetime, until: datetime) -> bool:
        """Whether this run may deliver to ``webhook``: nobody holds its lease, or the holder's
        lease ran out, or its process is gone."""

        def work(db: Conn) -> bool:
            held = db.execute(
                "SELECT owner, until FROM alert_leases WHERE webhook = ?", [webhook]
            ).fetchone()
            if held is not None and held[1] > now.isoformat() and owner_alive(held[0]):
                return False
            db.execute(
                "INSERT INTO alert_leases (webhook, owner, token, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (webhook) DO UPDATE SET owner = excluded.owner,"
                " token = excluded.token, until = excluded.until",
                [webhook, OWNER, token, until.isoformat()],
            )
            return True

        return await self.history.transaction(work)

    async def release_if_done(self, webhook: str, token: str, tried: Collection[int]) -> bool:
        """Give the lease back, unless a delivery this run has not tried is pending (another
        process stored it meanwhile): then keep it, and say so (False)."""

        def work(db: Conn) -> bool:
            if self._waiting(db, webhook, tried, 1):
                return False
            db.execute("DELETE FROM alert_leases WHERE webhook = ? AND token = ?", [webhook, token])
            return True

        return await self.history.transaction(work)

    async def release(self, webhook: str, token: str) -> None:
        """Give the lease back whatever is pending (a run that stops early)."""

        def work(db: Conn) -> None:
            db.execute("DELETE FROM alert_leases WHERE webhook = ? AND token = ?", [webhook, token])

        await self.history.transaction(work)

    async def pending(self, webhook: str, tried: Collection[int], limit: int) -> list[Pending]:
        """The oldest deliveries to ``webhook`` still pending, but those in ``tried``."""

        def work(db: Conn) -> list[Pending]:
            return [
                Pending(row, _event(data)) for row, data in self._waiting(db, webhook, tried, limit)
            ]

        return await self.history.read(work, [])

    @staticmethod
    def _waiting(
        db: Conn, webhook: str, tried: Collection[int], limit: int
    ) -> list[tuple[int, str]]:
        marks = ", ".join("?" * len(tried))
        skip = f" AND d.event_id NOT IN ({marks})" if tried else ""
        return [
            (row, data)
            for row, data in db.execute(
                "SELECT e.id, e.data FROM alert_deliveries d JOIN alert_events e"
                " ON e.id = d.event_id WHERE d.webhook = ? AND d.state = 'pending'"
                f"{skip} ORDER BY e.id LIMIT ?",
                [webhook, *tried, limit],
            ).fetchall()
        ]

    async def delivered(
        self, webhook: str, row: int, tries: int, status: int, now: datetime
    ) -> None:
        def work(db: Conn) -> None:
            db.execute(
                "UPDATE alert_deliveries SET state = 'delivered', attempts = attempts + ?,"
                " runs = runs + 1, last_status = ?, last_error = NULL, delivered_at = ?"
                " WHERE event_id = ? AND webhook = ? AND state = 'pending'",
                [tries, status, now.isoformat(), row, webhook],
            )

        await self.history.transaction(work)

    async def not_delivered(
        self,
        webhook: str,
        row: int,
        tries: int,
        status: int | None,
        error: str,
        *,
        rejected: bool,
    ) -> bool:
        """Record a run that did not deliver; True when the event is now marked failed (the
        webhook refused it in :data:`MAX_REJECTED_RUNS` runs)."""

        def work(db: Conn) -> bool:
            db.execute(
                "UPDATE alert_deliveries SET attempts = attempts + ?, runs = runs + 1,"
                " rejected_runs = rejected_runs + ?, last_status = ?, last_error = ?"
                " WHERE event_id = ? AND webhook = ? AND state = 'pending'",
                [tries, int(rejected), status, error, row, webhook],
            )
            cursor = db.execute(
                "UPDATE alert_deliveries SET state = 'failed' WHERE event_id = ? AND webhook = ?"
                " AND state = 'pending' AND rejected_runs >= ?",
                [row, webhook, MAX_REJECTED_RUNS],
            )
            return bool(cursor.rowcount > 0)

        return await self.history.transaction(work)

    # -- reads for the graph -----------------------------------------------------------------

    async def events(
        self,
        accounts: Collection[str],
        *,
        rule: Rule | None = None,
        event: EventKind | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        """Events of ``accounts``, newest first, with their deliveries."""
        if not accounts:
            return []

        def work(db: Conn) -> list[AlertEvent]:
            where = [f"account_id IN ({', '.join('?' * len(accounts))})"]
            args: list[object] = list(accounts)
            if rule is not None:
                where.append("rule = ?")
                args.append(rule.value)
            if event is not None:
                where.append("event = ?")
                args.append(event.value)
            if since is not None:
                where.append("at >= ?")
                args.append(since.isoformat())
            rows = db.execute(
                f"SELECT id, data FROM alert_events WHERE {' AND '.join(where)}"
                " ORDER BY at DESC, id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
            deliveries: dict[int, list[Delivery]] = {}
            ids = [row_id for row_id, _ in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for values in db.execute(
                    "SELECT event_id, webhook, state, attempts, delivered_at, last_status,"
                    f" last_error FROM alert_deliveries WHERE event_id IN"
                    f" ({', '.join('?' * len(chunk))}) ORDER BY webhook",
                    chunk,
                ).fetchall():
                    deliveries.setdefault(values[0], []).append(
                        Delivery(
                            webhook=values[1],
                            state=DeliveryState(values[2]),
                            attempts=values[3],
                            delivered_at=_moment(values[4]),
                            last_status=values[5],
                            last_error=values[6],
                        )
                    )
            return [_event(data, tuple(deliveries.get(row_id, ()))) for row_id, data in rows]

        return await self.history.read(work, [])

    async def latest_states(self, account_id: str) -> list[StateRow]:
        """The newest row of every track of ``account_id``."""

        def work(db: Conn) -> list[StateRow]:
            return [
                _row(values)
                for values in db.execute(
                    f"SELECT {_STATE_COLUMNS} FROM alert_states WHERE id IN (SELECT max(id)"
                    " FROM alert_states WHERE account_id = ? GROUP BY subject, rule, level)",
                    [account_id],
                ).fetchall()
            ]

        return await self.history.read(work, [])
