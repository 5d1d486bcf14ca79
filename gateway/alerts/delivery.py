"""Delivering stored events to the webhooks, each webhook by one process at a time.

Per webhook and run: take its lease (:meth:`AlertStore.take_lease`; another process holding it
delivers instead), then send the pending events oldest first. Each event gets up to
:data:`TRIES` tries, :data:`BACKOFF` seconds apart and doubling, each bounded by the webhook's
``timeout``, all within :data:`RUN_DEADLINE` for the webhook's whole run. A 2xx answer marks it
delivered: it is never sent again. No answer, a 5xx, 408 or 429 after the last try leaves it
pending and stops the webhook's run (the rest wait too, in order): the next run tries again. Any
other answer (a 4xx, a redirect) is a refusal: not tried again in this run, and after
:data:`~gateway.alerts.store.MAX_REJECTED_RUNS` runs marked failed, with a log line. At most
:data:`RESPONSE_CAP` bytes of an answer are read. Logs name a webhook by its name and host only.

A receiver can tell repeats by the event's ``id`` (also in the ``X-Usage-Gateway-Event``
header): an event is sent again only when a process stops between the receiver's 2xx and
recording it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from gateway.alerts.config import AlertSettings, Webhook
from gateway.alerts.formats import EVENT_HEADER, SIGNATURE_HEADER, render, signature
from gateway.alerts.store import MAX_REJECTED_RUNS, AlertStore
from gateway.domain import utc_now

log = logging.getLogger(__name__)

TRIES = 3
BACKOFF = 0.5
"""Seconds before the second try; each further try waits twice as long."""
RUN_DEADLINE = 60.0
"""Seconds one run may spend delivering to one webhook, tries and waits included."""
MAX_PER_RUN = 200
"""Events sent to one webhook in one run at most (the rest wait for the next)."""
RESPONSE_CAP = 4096
"""Bytes of a webhook's answer read at most (the answer's content is not used)."""
LEASE_MARGIN = 60.0
"""Seconds a lease outlives its run's deadline (a process that died holding it is seen as dead
at once on the same host; elsewhere its lease runs out)."""
_BATCH = 20
_RETRYABLE = {408, 425, 429}


@dataclass(frozen=True)
class Attempt:
    """How sending one event to one webhook went in this run."""

    delivered: bool
    rejected: bool
    status: int | None
    error: str | None
    tries: int


@dataclass
class WebhookRun:
    """What one run did for one webhook."""

    webhook: str
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    """Events marked failed in this run."""
    stopped: str | None = None
    """Why the run stopped before the end of the outbox (no answer, deadline)."""
    skipped: bool = False
    """Another process was delivering to this webhook."""
    events: list[str] = field(default_factory=list)
    """Ids of the events delivered."""


class Deliverer:
    """Sends pending events to every configured webhook."""

    def __init__(
        self,
        store: AlertStore,
        http: httpx.AsyncClient,
        settings: AlertSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        deadline: float = RUN_DEADLINE,
    ) -> None:
        self.store = store
        self.http = http
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.deadline = deadline

    async def run(self) -> list[WebhookRun]:
        """One run over every webhook, concurrently (each in order)."""
        return list(await asyncio.gather(*(self._webhook(h) for h in self.settings.webhooks)))

    async def _webhook(self, hook: Webhook) -> WebhookRun:
        report = WebhookRun(hook.name)
        token = uuid.uuid4().hex
        wall = utc_now()
        until = wall + timedelta(seconds=self.deadline + LEASE_MARGIN)
        if not await self.store.take_lease(hook.name, token, wall, until):
            report.skipped = True
            return report
        deadline = self.monotonic() + self.deadline
        tried: list[int] = []
        try:
            while report.stopped is None:
                room = MAX_PER_RUN - len(tried)
                batch = (
                    await self.store.pending(hook.name, tried, min(_BATCH, room)) if room else []
                )
                if not batch:
                    if await self.store.release_if_done(hook.name, token, tried):
                        return report
                    if not room:
                        report.stopped = f"{MAX_PER_RUN} events sent in this run"
                    continue
                for item in batch:
                    if self.monotonic() >= deadline:
                        report.stopped = f"the run's {self.deadline:g} s for it are over"
                        break
                    tried.append(item.row)
                    body = render(item.event, hook.format, self.settings.dashboard_url)
                    attempt = await self._send(hook, item.event.id, body, deadline)
                    await self._record(hook, item.row, item.event.id, attempt, report)
                    if not attempt.delivered and not attempt.rejected:
                        report.stopped = attempt.error or "not delivered"
                        break
            waiting = len(await self.store.pending(hook.name, (), MAX_PER_RUN))
            log.warning(
                "alert webhook %s: %s; %d event%s wait for the next run",
                hook.label,
                report.stopped,
                waiting,
                "" if waiting == 1 else "s",
            )
        finally:
            await self.store.release(hook.name, token)
        return report

    async def _record(
        self, hook: Webhook, row: int, event_id: str, attempt: Attempt, report: WebhookRun
    ) -> None:
        if attempt.delivered:
            assert attempt.status is not None
            await self.store.delivered(hook.name, row, attempt.tries, attempt.status, self.clock())
            report.delivered += 1
            report.events.append(event_id)
            return
        failed = await self.store.not_delivered(
            hook.name,
            row,
            attempt.tries,
            attempt.status,
            attempt.error or "not delivered",
            rejected=attempt.rejected,
        )
        if attempt.rejected:
            report.refused += 1
            if failed:
                report.failed += 1
                log.error(
                    "alert webhook %s refused event %s (%s) in %d runs: marked failed, not "
                    "sent again",
                    hook.label,
                    event_id,
                    attempt.error,
                    MAX_REJECTED_RUNS,
                )
            else:
                log.warning(
                    "alert webhook %s refused event %s (%s); tried again on the next run",
                    hook.label,
                    event_id,
                    attempt.error,
                )

    async def _send(self, hook: Webhook, event_id: str, body: bytes, deadline: float) -> Attempt:
        headers = {"Content-Type": "application/json", EVENT_HEADER: event_id}
        if hook.secret is not None:
            headers[SIGNATURE_HEADER] = signature(body, hook.secret.reveal())
        status: int | None = None
        error: str | None = None
        tries = 0
        for number in range(TRIES):
            if number:
                pause = BACKOFF * 2 ** (number - 1)
                if self.monotonic() + pause >= deadline:
                    break
                await self.sleep(pause)
            left = deadline - self.monotonic()
            if left <= 0:
                break
            tries += 1
            limit = min(hook.timeout, left)
            status, error = await self._post(hook, body, headers, limit)
            if status is not None and 200 <= status < 300:
                return Attempt(True, False, status, None, tries)
            if status is not None and status < 500 and status not in _RETRYABLE:
                return Attempt(False, True, status, error, tries)
        return Attempt(False, False, status, error or "the run's deadline passed", tries)

    async def _post(
        self, hook: Webhook, body: bytes, headers: dict[str, str], limit: float
    ) -> tuple[int | None, str | None]:
        """One POST: (status, None) when it answered, (status or None, why) otherwise."""
        try:
            async with asyncio.timeout(limit):
                async with self.http.stream(
                    "POST", hook.url.reveal(), content=body, headers=headers, timeout=limit
                ) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= RESPONSE_CAP:
                            break
                    status = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {limit:g} s"
        except httpx.ConnectError:
            return None, "connection failed"
        except httpx.HTTPError as exc:
            return None, f"the exchange failed ({type(exc).__name__})"
        if 200 <= status < 300:
            return status, None
        return status, f"HTTP {status}"
