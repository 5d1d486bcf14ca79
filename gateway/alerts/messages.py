"""An alert event in words: one line for people, the same in every format and in the graph."""

from __future__ import annotations

from datetime import datetime

from gateway.alerts.model import EventKind, Facts, Reason, Rule
from gateway.domain import QuotaUnit
from gateway.errors import vendor_text
from providers import registry

_REASONS = {
    Reason.CLEARED: "",
    Reason.WINDOW_RESET: "its window reset",
    Reason.RULE_REMOVED: "the rule is no longer configured",
    Reason.QUOTA_GONE: "the vendor no longer reports the quota",
}


def when(moment: datetime | None) -> str:
    """A moment as ``2026-03-18T14:25Z`` (UTC)."""
    return "?" if moment is None else f"{moment:%Y-%m-%dT%H:%MZ}"


def share(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def amount(value: int | None, unit: QuotaUnit | None) -> str:
    if value is None:
        return "?"
    return f"{value:,} bytes" if unit is QuotaUnit.BYTES else f"{value:,}"


def vendor_name(facts: Facts) -> str:
    entry = registry().get(facts.provider)
    return entry.client.display_name if entry is not None else str(facts.provider)


def message(
    event: EventKind,
    rule: Rule,
    threshold: float | None,
    reason: Reason | None,
    facts: Facts,
    window_start: datetime | None,
) -> str:
    """What happened, e.g. ``vt-soc: api_requests_monthly is at 83% of its limit (9,912 of
    12,000; threshold 80%), resets 2026-04-01T00:00Z``."""
    subject = f"{facts.account_id}: {vendor_text(facts.quota_name or '')}"
    now = f"{amount(facts.used, facts.unit)} of {amount(facts.limit, facts.unit)}"
    cause = _REASONS.get(reason, "") if reason else ""
    if rule is Rule.UNREADABLE:
        account = f"{facts.account_id} ({vendor_name(facts)})"
        if event is EventKind.RESOLVED:
            return f"{account} was read again" if not cause else f"{account}: {cause}"
        if facts.last_read_at is None:
            return f"{account} has not been read successfully since its first try at " + when(
                window_start
            )
        return f"{account} has not been read successfully since {when(facts.last_read_at)}"
    resets = f", resets {when(facts.resets_at)}" if facts.resets_at else ""
    if rule is Rule.THRESHOLD:
        if event is EventKind.FIRING:
            return (
                f"{subject} is at {share(facts.utilization)} of its limit ({now}; threshold "
                f"{share(threshold)}){resets}"
            )
        why = cause or f"back under {share(threshold)}"
        return f"{subject} is at {share(facts.utilization)} of its limit ({now}): {why}"
    spent = facts.used is not None and facts.limit is not None and facts.used >= facts.limit
    if event is EventKind.FIRING and spent:
        return f"{subject} has run out before its reset ({now}){resets}"
    if event is EventKind.FIRING:
        latest = (
            f" (at the slowest likely pace {when(facts.runs_out_latest)})"
            if facts.runs_out_latest
            else ""
        )
        return (
            f"{subject} may run out as early as {when(facts.runs_out_earliest)}{latest}, before "
            f"its reset ({now}){resets}"
        )
    why = cause or "no longer projected to run out before its reset"
    return f"{subject} ({now}): {why}"
