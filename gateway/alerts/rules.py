"""Rule evaluation, pure: a quota (or an account's read history) and the rules in force ->
one :class:`Verdict` per rule, saying whether its condition holds and in which window.

A verdict's ``holds`` is ``None`` when there is nothing to judge by (a quota without a limit, no
forecast yet): the rule's state is then left as it is. Windows come from the quota itself
(:func:`gateway.forecast.window_of`): a threshold fires at most once per window. A quota without
a known window (a fixed allowance with no term) has ``window`` None: its alerts can fire again
after they resolved, once the cooldown is over. The ``unreadable`` rule's window is the outage:
it starts at the account's last successful read, so each outage fires at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.alerts.config import RuleSet
from gateway.alerts.model import Facts, Rule
from gateway.domain import ProviderId, Quota
from gateway.forecast import Forecast, window_of


@dataclass(frozen=True)
class Track:
    """One rule on one subject: a quota id (or an account id, for ``unreadable``), the rule,
    and its threshold (None for the other rules)."""

    subject: str
    rule: Rule
    threshold: float | None = None

    @property
    def level(self) -> str:
        """The threshold as the store keys it ("" for rules without one)."""
        return "" if self.threshold is None else repr(float(self.threshold))


@dataclass(frozen=True)
class Window:
    """Where a rule may fire once: its start (the key) and its end, where known."""

    start: datetime
    end: datetime | None = None

    @property
    def key(self) -> str:
        return self.start.isoformat()


@dataclass(frozen=True)
class Verdict:
    """One rule's condition now."""

    track: Track
    holds: bool | None
    window: Window | None
    facts: Facts


def quota_facts(quota: Quota, provider: ProviderId, projection: Forecast | None) -> Facts:
    """What an alert about ``quota`` says, with its projected run-out range where known."""
    return Facts(
        account_id=quota.account_id,
        provider=provider,
        quota_id=quota.id,
        quota_name=quota.name,
        window=quota.window,
        unit=quota.unit,
        used=quota.used,
        limit=quota.limit,
        utilization=quota.utilization,
        resets_at=quota.resets_at,
        runs_out_earliest=projection.runs_out_earliest if projection else None,
        runs_out_latest=projection.runs_out_latest if projection else None,
    )


def quota_verdicts(
    rules: RuleSet,
    quota: Quota,
    provider: ProviderId,
    projection: Forecast | None,
    now: datetime,
) -> list[Verdict]:
    """Every threshold of ``rules`` on ``quota``, and the predictive rule where it is on."""
    span = window_of(quota, now)
    window = Window(span[0], span[1]) if span is not None else None
    facts = quota_facts(quota, provider, projection)
    utilization = quota.utilization
    verdicts = [
        Verdict(
            Track(quota.id, Rule.THRESHOLD, step),
            None if utilization is None else utilization >= step,
            window,
            facts,
        )
        for step in rules.thresholds
    ]
    if rules.predictive:
        runs_out = None if projection is None else projection.runs_out_earliest is not None
        verdicts.append(Verdict(Track(quota.id, Rule.PREDICTIVE), runs_out, window, facts))
    return verdicts


def unreadable_verdict(
    rules: RuleSet,
    account_id: str,
    provider: ProviderId,
    last_read: datetime | None,
    first_try: datetime | None,
    now: datetime,
) -> Verdict | None:
    """Whether ``account_id`` has gone unread longer than ``rules.unreadable_after``: since
    ``last_read`` (its last successful read), or, never read, since ``first_try`` (its first
    snapshot). None when the rule is off."""
    if rules.unreadable_after is None:
        return None
    since = last_read or first_try
    track = Track(account_id, Rule.UNREADABLE)
    facts = Facts(account_id=account_id, provider=provider, last_read_at=last_read)
    if since is None:
        return Verdict(track, None, None, facts)
    holds = (now - since).total_seconds() > rules.unreadable_after
    return Verdict(track, holds, Window(since), facts)
