"""What alert rules talk about: rules, events, states and deliveries (frozen values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.domain import ProviderId, QuotaUnit, QuotaWindow


class Rule(enum.Enum):
    """What makes an alert."""

    THRESHOLD = "threshold"
    """A quota used at least a share of its limit."""
    PREDICTIVE = "predictive"
    """A quota projected to run out before its window ends."""
    UNREADABLE = "unreadable"
    """An account not read successfully for longer than ``unreadable_after``."""


class EventKind(enum.Enum):
    """What an event announces."""

    FIRING = "firing"
    RESOLVED = "resolved"


class StateName(enum.Enum):
    """Where one rule of one quota (or account) stands in its current window."""

    OK = "ok"
    """Nothing to say: the condition does not hold (or it resolved in an earlier window)."""
    PENDING = "pending"
    """The condition holds, but the rule resolved less than the cooldown ago: it waits."""
    FIRING = "firing"
    RESOLVED = "resolved"
    """It fired in this window and the condition cleared; it stays quiet until the window
    resets."""


class Reason(enum.Enum):
    """Why an alert resolved."""

    CLEARED = "cleared"
    """The condition no longer holds (use fell, the limit rose, the account was read)."""
    WINDOW_RESET = "window_reset"
    """The quota's window ended: a new one starts from zero."""
    RULE_REMOVED = "rule_removed"
    """The config no longer has the rule (a threshold removed, predictive turned off)."""
    QUOTA_GONE = "quota_gone"
    """The vendor no longer reports the quota."""


class DeliveryState(enum.Enum):
    """Where an event stands with one webhook."""

    PENDING = "pending"
    """Not acknowledged yet: tried again on the next run."""
    DELIVERED = "delivered"
    """The webhook answered 2xx; never sent again."""
    FAILED = "failed"
    """The webhook refused it (4xx) in ``MAX_REJECTED_RUNS`` runs; not tried again."""


@dataclass(frozen=True)
class Facts:
    """What an alert says about its subject: a quota as read, or an account."""

    account_id: str
    provider: ProviderId
    quota_id: str | None = None
    quota_name: str | None = None
    window: QuotaWindow | None = None
    unit: QuotaUnit | None = None
    used: int | None = None
    limit: int | None = None
    utilization: float | None = None
    resets_at: datetime | None = None
    runs_out_earliest: datetime | None = None
    runs_out_latest: datetime | None = None
    last_read_at: datetime | None = None
    """Unreadable rule: when the account was last read successfully (None: never)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "provider": str(self.provider),
            "quota_id": self.quota_id,
            "quota_name": self.quota_name,
            "window": self.window.value if self.window else None,
            "unit": self.unit.value if self.unit else None,
            "used": self.used,
            "limit": self.limit,
            "utilization": self.utilization,
            "resets_at": _iso(self.resets_at),
            "runs_out_earliest": _iso(self.runs_out_earliest),
            "runs_out_latest": _iso(self.runs_out_latest),
            "last_read_at": _iso(self.last_read_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Facts:
        return cls(
            account_id=data["account_id"],
            provider=ProviderId(data["provider"]),
            quota_id=data.get("quota_id"),
            quota_name=data.get("quota_name"),
            window=QuotaWindow(data["window"]) if data.get("window") else None,
            unit=QuotaUnit(data["unit"]) if data.get("unit") else None,
            used=data.get("used"),
            limit=data.get("limit"),
            utilization=data.get("utilization"),
            resets_at=_moment(data.get("resets_at")),
            runs_out_earliest=_moment(data.get("runs_out_earliest")),
            runs_out_latest=_moment(data.get("runs_out_latest")),
            last_read_at=_moment(data.get("last_read_at")),
        )


@dataclass(frozen=True)
class Delivery:
    """One event's delivery to one webhook."""

    webhook: str
    state: DeliveryState
    attempts: int
    """HTTP requests made for it, over every run."""
    delivered_at: datetime | None
    last_status: int | None
    """The webhook's HTTP status on the last try (None: no answer)."""
    last_error: str | None
    """Why the last try failed, in words (never the URL or a secret)."""


@dataclass(frozen=True)
class AlertEvent:
    """One firing or resolution: what every webhook format is rendered from."""

    id: str
    """Stable and unique (a UUID): the same on every try, so a receiver can drop repeats."""
    event: EventKind
    rule: Rule
    threshold: float | None
    reason: Reason | None
    at: datetime
    fired_at: datetime | None
    """When the alert fired (for a firing event, ``at``)."""
    window_start: datetime | None
    """The start of the quota window the alert belongs to (for ``unreadable``: the last
    successful read, the start of the outage); None for a quota without a known window."""
    facts: Facts
    message: str
    deliveries: tuple[Delivery, ...] = ()


@dataclass(frozen=True)
class AlertState:
    """One rule's current state on one quota (or, for ``unreadable``, account)."""

    rule: Rule
    threshold: float | None
    state: StateName
    since: datetime | None
    """When it entered this state (None for OK)."""
    window_start: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
