"""``serve --snapshot-every``: when this replica runs a snapshot, and what it counts of it.

- **Alone** (no :class:`~gateway.election.Election`: ``cache_url = "memory://"``): one run at a
  time, the next starting ``every`` seconds after the last one started, as in one process.
- **Elected** (``cache_url = "redis://…"``): at the start of each period by Redis's clock (plus
  a small random delay, so replicas do not all ask at once) this replica tries to take the
  period's lease. It runs the period when it gets it (renewing the lease while it runs, and
  marking the period done at the end), does nothing when the period is done, and while another
  replica holds the lease it checks again every half lease until the period is done or ends: a
  runner that died leaves its lease to expire, and one of the others takes the period over.
  A period is run by one replica: a done period is never taken, and a runner that lost its lease
  (paused or cut off longer than the lease) finishes its run without marking the period done.
  Its run is not wasted nor harmful: a snapshot run stores idempotent upserts.
- **Redis down**: a replica that cannot ask Redis runs the period itself (outcome ``local``);
  snapshots are idempotent upserts and reading usage spends no quota, so several replicas doing
  so lose nothing, where skipping would leave a hole in the history. The outage is logged once.

Every period this replica settles counts one outcome in :class:`PeriodCounts`
(``usage_gateway_snapshot_periods_total``), and every run ends with one log line saying it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from gateway.election import Done, Election, Lease, RedisUnreachable
from gateway.snapshot import AccountOutcome

log = logging.getLogger(__name__)

JITTER = 0.05
"""A replica wakes up to this fraction of a period after the period starts (at most 1 s)."""

Run = Callable[[], Awaitable[Sequence[AccountOutcome] | None]]
"""One snapshot run: its accounts' outcomes, or ``None`` when the run failed as a whole (the
run logs why)."""


class Outcome(enum.StrEnum):
    """How this replica settled a period (the ``outcome`` label)."""

    RAN = "ran"
    """It took the period's first lease and ran the period."""
    TAKEN_OVER = "taken_over"
    """It took the period over from a runner whose lease expired, and ran it."""
    SKIPPED = "skipped"
    """Another replica ran the period, or was still running it when the period ended."""
    LOST = "lost"
    """It ran the period but its lease expired before the run ended (it was paused or cut off
    from Redis longer than the lease): the period was not marked done by it."""
    LOCAL = "local"
    """It ran without an election: Redis could not be asked, or none is configured."""


class PeriodCounts:
    """Periods settled by this replica, by outcome (every outcome from 0)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(Outcome, 0)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1


def summary(outcomes: Sequence[AccountOutcome] | None) -> str:
    """What a run did, for its log line."""
    if outcomes is None:
        return "the run failed (see above)"
    stored = sum(1 for o in outcomes if o.ok)
    return f"{stored} of {len(outcomes)} accounts stored"


class SnapshotSchedule:
    """This replica's snapshot schedule; :meth:`run_forever` until cancelled."""

    def __init__(
        self,
        every: float,
        run: Run,
        election: Election | None = None,
        *,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.every = every
        self.run = run
        self.election = election
        self.counts = PeriodCounts()
        self.wall = wall
        self.jitter = jitter

    async def run_forever(self) -> None:
        if self.election is None:
            await self._alone()
        else:
            await self._elected(self.election)

    # -- alone -------------------------------------------------------------------------------

    async def _alone(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            outcomes = await self.run()
            self.counts.add(Outcome.LOCAL)
            log.info(
                "snapshot run (every %g s, this process alone): %s in %.2f s",
                self.every,
                summary(outcomes),
                loop.time() - started,
            )
            await asyncio.sleep(max(0.0, self.every - (loop.time() - started)))

    # -- elected -----------------------------------------------------------------------------

    def _delay(self) -> float:
        return self.jitter() * min(self.every * JITTER, 1.0)

    async def _now(self, election: Election) -> tuple[float, bool]:
        """Redis's clock and ``True``, or this host's and ``False`` when Redis cannot answer."""
        try:
            return await election.now(), True
        except RedisUnreachable:
            return self.wall(), False

    async def _elected(self, election: Election) -> None:
        periods = election.periods
        last: int | None = None
        while True:
            now, shared = await self._now(election)
            period = periods.number(now)
            if last is not None and period <= last:  # woke early: sleep to the next period
                await asyncio.sleep(periods.start(last + 1) - now + self._delay())
                continue
            last = period
            if shared:
                await self._settle(election, period, periods.end(period) - now)
            else:
                await self._local(period)

    async def _settle(self, election: Election, period: int, left: float) -> None:
        """Period ``period``, with ``left`` seconds of it left: run it, or see it run."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + left
        check = election.lease / 2
        while True:
            try:
                state = await election.take(period)
            except RedisUnreachable:
                await self._local(period)
                return
            if isinstance(state, Lease):
                await self._lead(election, state)
                return
            if isinstance(state, Done):
                self.counts.add(Outcome.SKIPPED)
                log.debug("snapshot period %d: run by %s", period, state.runner)
                return
            wait = min(check, ends - loop.time())
            if wait <= 0:
                self.counts.add(Outcome.SKIPPED)
                log.debug("snapshot period %d: still run by %s at its end", period, state.holder)
                return
            await asyncio.sleep(wait)

    async def _lead(self, election: Election, lease: Lease) -> None:
        """Run the period ``lease`` holds, renewing it, then mark the period done."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = Outcome.TAKEN_OVER if lease.taken_over else Outcome.RAN
        log.info(
            "snapshot period %d: this replica (%s) runs it%s",
            lease.period,
            lease.token,
            " (taken over: the previous runner's lease expired)" if lease.taken_over else "",
        )
        beat = asyncio.create_task(self._heartbeat(election, lease))
        try:
            outcomes = await self.run()
        except asyncio.CancelledError:
            beat.cancel()
            with contextlib.suppress(RedisUnreachable):  # shutting down: let another take it
                await election.release(lease)
            raise
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        try:
            marked = await election.complete(lease)
        except RedisUnreachable:
            marked = False
        if not marked:
            outcome = Outcome.LOST
        self.counts.add(outcome)
        log.info(
            "snapshot period %d (every %g s): %s by this replica (%s): %s in %.2f s%s",
            lease.period,
            self.every,
            outcome.value,
            lease.token,
            summary(outcomes),
            loop.time() - started,
            "" if marked else "; its lease was gone at the end, so it did not mark the period done",
        )

    async def _heartbeat(self, election: Election, lease: Lease) -> None:
        """Renew ``lease`` every third of a lease until it is found gone (or cancelled)."""
        while True:
            await asyncio.sleep(election.lease / 3)
            try:
                if not await election.renew(lease):
                    log.warning(
                        "snapshot period %d: this replica's lease expired before its run ended "
                        "(paused or cut off from Redis for over %g s); another replica may run "
                        "the period, and this run will not mark it done",
                        lease.period,
                        election.lease,
                    )
                    return
            except RedisUnreachable:
                continue  # said once by the health; renewed again if Redis answers in time

    async def _local(self, period: int) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await self.run()
        self.counts.add(Outcome.LOCAL)
        log.info(
            "snapshot period %d (every %g s): local, by this replica without an election "
            "(Redis cannot be asked): %s in %.2f s",
            period,
            self.every,
            summary(outcomes),
            loop.time() - started,
        )
