"""After a snapshot run: evaluate every account's rules, store what changed, deliver it.

Quota rules use the quotas the run just read (an account whose read failed keeps its quota
alerts as they are) and the forecast from the quota's stored samples; the ``unreadable`` rule
uses the account's stored runs. Evaluation is one transaction per account; delivery then sends
whatever is pending, this run's events and those earlier runs could not deliver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from gateway.alerts.config import AlertSettings
from gateway.alerts.delivery import Deliverer, WebhookRun
from gateway.alerts.model import AlertEvent
from gateway.alerts.rules import quota_verdicts
from gateway.alerts.store import AccountPlan, AlertStore
from gateway.domain import AccountConfig, Quota, utc_now
from gateway.forecast import Forecast, forecast, window_of
from gateway.history import HistoryStore
from gateway.snapshot import AccountOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertRun:
    """What one evaluation and delivery did."""

    events: tuple[AlertEvent, ...]
    webhooks: tuple[WebhookRun, ...]

    def summary(self) -> str:
        """One line: ``alerts: 2 fired, 1 resolved; delivered 3, 0 waiting``."""
        fired = sum(e.event.value == "firing" for e in self.events)
        resolved = len(self.events) - fired
        delivered = sum(w.delivered for w in self.webhooks)
        problems = [w.webhook for w in self.webhooks if w.stopped or w.refused]
        tail = f"; not all delivered to {', '.join(problems)} (see the log)" if problems else ""
        return f"alerts: {fired} fired, {resolved} resolved; {delivered} deliveries{tail}"


class Alerting:
    """The rules of ``settings`` over ``accounts``, stored in ``history``."""

    def __init__(
        self,
        settings: AlertSettings,
        accounts: Sequence[AccountConfig],
        history: HistoryStore,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.accounts = tuple(accounts)
        self.history = history
        self.store = AlertStore(history)
        self.clock = clock
        self.deliverer = Deliverer(self.store, http, settings, clock=clock, sleep=sleep)

    async def after_snapshot(self, outcomes: Sequence[AccountOutcome]) -> AlertRun:
        """Evaluate, then deliver."""
        events = await self.evaluate(outcomes)
        webhooks = await self.deliverer.run()
        return AlertRun(tuple(events), tuple(webhooks))

    async def evaluate(self, outcomes: Sequence[AccountOutcome]) -> list[AlertEvent]:
        """Every configured account's rules, one transaction each."""
        by_id = {o.account_id: o for o in outcomes}
        events: list[AlertEvent] = []
        names = [w.name for w in self.settings.webhooks]
        for account in self.accounts:
            outcome = by_id.get(account.id)
            rules = self.settings.rules_for(account)
            now = self.clock()
            verdicts = []
            read = outcome is not None and outcome.ok
            quotas = outcome.quotas if outcome is not None and read else ()
            for quota in quotas:
                projection = await self._forecast(quota, now)
                verdicts += quota_verdicts(rules, quota, account.provider, projection, now)
            plan = AccountPlan(
                account_id=account.id,
                provider=account.provider,
                rules=rules,
                verdicts=tuple(verdicts),
                quotas_read=read,
                quota_ids=frozenset(q.id for q in quotas),
            )
            events += await self.store.apply(plan, now=now, webhooks=names)
        for event in events:
            log.info("alert %s: %s", event.event.value, event.message)
        return events

    async def _forecast(self, quota: Quota, now: datetime) -> Forecast | None:
        window = window_of(quota, now)
        if window is None:
            return None
        samples = await self.history.quota_samples(quota.id, window[0], now)
        return forecast(quota, [(s.at, s.used) for s in samples if s.used is not None], now)
