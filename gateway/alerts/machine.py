"""The alert state machine, pure: stored rows and fresh verdicts -> the changes to store.

Each rule on each subject (a :class:`~gateway.alerts.rules.Track`) has at most one row per
window, and at most one open row (pending or firing) at a time::

    (none) --holds--> FIRING --clears / window resets--> RESOLVED   (stays so in its window)
       |                ^
       +--holds, but the track resolved less than `cooldown` ago--> PENDING --cooldown over--+

A pending row whose condition clears (or whose window resets) is dropped without a word: it was
never announced. A resolved row keeps its window quiet: the rule never fires twice in the same
window. Open rows of rules no longer in the config, and of quotas the vendor no longer reports,
resolve too (``rule_removed``, ``quota_gone``). A verdict that cannot judge (``holds`` None)
leaves its row alone, except that a window reset still resolves the old window's alert.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.alerts.model import EventKind, Facts, Reason, Rule, StateName
from gateway.alerts.rules import Track, Verdict, Window

OPEN = (StateName.PENDING, StateName.FIRING)


@dataclass(frozen=True)
class StateRow:
    """One track's state in one window (``window`` None: a quota without a known window, whose
    rows are keyed by when they opened)."""

    track: Track
    window_key: str
    window: Window | None
    state: StateName
    since: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    facts: Facts
    id: int | None = None
    """The store's row id (None: a row to insert)."""

    @property
    def open(self) -> bool:
        return self.state in OPEN


@dataclass(frozen=True)
class Change:
    """What to store: a row inserted, updated or dropped, and the event it announces."""

    row: StateRow
    event: EventKind | None = None
    reason: Reason | None = None
    drop: bool = False


def step(
    rows: Sequence[StateRow],
    verdicts: Sequence[Verdict],
    *,
    now: datetime,
    cooldown: float,
    quotas_read: bool,
    quota_ids: Collection[str] = (),
) -> list[Change]:
    """The changes ``verdicts`` make to ``rows``.

    ``rows`` are one account's rows that matter now: every open one, those of the verdicts'
    current windows, and those resolved within ``cooldown``. ``quotas_read`` says the account's
    quotas were read in this run (``quota_ids`` are theirs); when they were not, the quota rules'
    rows are left as they are.
    """
    changes: list[Change] = []
    judged = {v.track for v in verdicts}
    for verdict in verdicts:
        mine = [r for r in rows if r.track == verdict.track]
        changes += _track(mine, verdict, now, cooldown)
    for row in rows:
        if not row.open or row.track in judged:
            continue
        if row.track.rule is Rule.UNREADABLE:
            reason = Reason.RULE_REMOVED
        elif not quotas_read:
            continue
        else:
            gone = row.track.subject not in quota_ids
            reason = Reason.QUOTA_GONE if gone else Reason.RULE_REMOVED
        changes.append(_close(row, reason, now, row.facts))
    return changes


def _track(
    rows: Sequence[StateRow], verdict: Verdict, now: datetime, cooldown: float
) -> list[Change]:
    changes: list[Change] = []
    window = verdict.window
    # An outage (the unreadable rule's window) ends when the account is read: that clears it.
    ended = Reason.CLEARED if verdict.track.rule is Rule.UNREADABLE else Reason.WINDOW_RESET
    current: StateRow | None = None
    for row in rows:
        if window is not None and row.window_key == window.key:
            current = row
        elif row.open and window is not None:
            changes.append(_close(row, ended, now, verdict.facts))
        elif row.open:
            current = row  # no window: the open row is the current one
    if verdict.holds is None:
        return changes
    if not verdict.holds:
        if current is not None and current.open:
            changes.append(_close(current, Reason.CLEARED, now, verdict.facts))
        return changes
    if current is not None and current.state is StateName.RESOLVED:
        return changes  # never twice in the same window
    resolved = [r.resolved_at for r in rows if r.resolved_at is not None]
    resolved += [c.row.resolved_at for c in changes if c.row.resolved_at is not None]
    cooling = bool(resolved) and (now - max(resolved)).total_seconds() < cooldown
    if current is None:
        key = window.key if window is not None else f"opened:{now.isoformat()}"
        state = StateName.PENDING if cooling else StateName.FIRING
        row = StateRow(
            track=verdict.track,
            window_key=key,
            window=window,
            state=state,
            since=now,
            fired_at=None if cooling else now,
            resolved_at=None,
            facts=verdict.facts,
        )
        changes.append(Change(row, None if cooling else EventKind.FIRING))
    elif current.state is StateName.PENDING and not cooling:
        fired = replace(current, state=StateName.FIRING, since=now, fired_at=now)
        changes.append(Change(replace(fired, facts=verdict.facts), EventKind.FIRING))
    else:  # still firing, or still cooling down: keep what it says current
        changes.append(Change(replace(current, facts=verdict.facts, window=window)))
    return changes


def _close(row: StateRow, reason: Reason, now: datetime, facts: Facts) -> Change:
    """A firing row resolved (an event), or a pending one dropped (never announced)."""
    if row.state is StateName.PENDING:
        return Change(row, drop=True)
    closed = replace(row, state=StateName.RESOLVED, since=now, resolved_at=now, facts=facts)
    return Change(closed, EventKind.RESOLVED, reason)
