"""What one GraphQL answer was built from: the data it read, their versions, and how long they hold.

The answer cache (:mod:`gateway.response_cache`) opens a :class:`Reads` around each execution of
``POST /graphql`` (a context variable, so every task the request starts reports into it too).
The parts that hold data report each read into it, and nothing else changes for them:

- :meth:`gateway.upstream.Upstream.fetch`: a vendor payload, by its cache key, with the version
  that key had when the payload was read and the moment the payload stops being what a new
  execution would show (its TTL, the earliest quota or rate-limit reset in it, a retry time);
- :class:`gateway.history.HistoryStore` reads: the history store, with its version (its own
  writes, and the file's signature for writes by other processes); on PostgreSQL the version
  is the store's write counter as last read, with a :func:`refresh` that reads it again before
  a kept answer is reused (other gateways write there too);
- :class:`AnswerClock`, the service's clock: reading the moment itself makes an answer hold
  for that moment only (it is never kept); reading today's date makes it hold until the next
  UTC midnight; :attr:`AnswerClock.read` reads it unreported, for what depends on data only;
- the schema (:meth:`gateway.graphql.requests.GatewaySchema.process_errors`): an answer with
  an error raised while its fields were resolved (a bad argument, a history store that cannot
  be used, a fault of the gateway's own) is never kept. A refusal of the whole request (syntax,
  validation, cost) reads no data and is kept like any answer.

A kept answer holds while ``now`` is before its :attr:`Reads.deadline` and every version it
recorded is still the current one (:meth:`Reads.checks`): a dictionary lookup and a comparison
per datum, nothing executed. Outside an execution (snapshot runs, ``/metrics``, exports,
background refreshes once their answer is out) every report goes nowhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from typing import Any

from gateway.domain import Limits

Check = tuple[Callable[[Any], Hashable], Any, Hashable]
"""``(version_of, key, version)``: the datum ``key`` holds while ``version_of(key) == version``."""


class Reads:
    """What one execution read: each datum's version and the earliest moment any of it ends."""

    __slots__ = ("_checks", "deadline", "errors", "open", "refreshes", "unsettled")

    def __init__(self) -> None:
        self._checks: dict[tuple[Callable[[Any], Hashable], Any], Hashable] = {}
        self.refreshes: dict[Callable[[], Awaitable[None]], None] = {}
        """What to await before the versions are compared again (each once, in order)."""
        self.deadline: datetime | None = None
        """The earliest moment any datum read stops holding (``None``: none ends by itself)."""
        self.errors = False
        """Whether a field's resolution raised an error (the answer is then never kept)."""
        self.unsettled = False
        """Whether a datum could not be given a version that later changes would alter."""
        self.open = True

    def datum(self, version_of: Callable[[Any], Hashable], key: Any, version: Hashable) -> None:
        """``key`` was read at ``version``; a second read of it keeps the first version (an
        answer that saw a datum change while it was built then no longer holds)."""
        if self.open:
            self._checks.setdefault((version_of, key), version)

    def until(self, moment: datetime | None) -> None:
        """What was read stops holding at ``moment`` (``None``: no end of its own)."""
        if self.open and moment is not None and (self.deadline is None or moment < self.deadline):
            self.deadline = moment

    def checks(self) -> tuple[Check, ...]:
        """Every datum read, with the version it had."""
        return tuple((fn, key, version) for (fn, key), version in self._checks.items())

    def current(self) -> bool:
        """Whether every datum read still has the version it had."""
        return all(fn(key) == version for (fn, key), version in self._checks.items())

    def close(self) -> None:
        """The answer is out: later reports (from tasks it left running) go nowhere."""
        self.open = False


_current: ContextVar[Reads | None] = ContextVar("answer_reads", default=None)


def begin() -> tuple[Reads, object]:
    """Start recording an execution's reads (in this task and the tasks it starts); give the
    token to :func:`end`."""
    reads = Reads()
    return reads, _current.set(reads)


def end(reads: Reads, token: object) -> None:
    reads.close()
    _current.reset(token)  # type: ignore[arg-type]  # the token begin() made


def datum(version_of: Callable[[Any], Hashable], key: Any, version: Hashable) -> None:
    """Report a read of ``key`` at ``version`` to the execution under way, if any."""
    reads = _current.get()
    if reads is not None:
        reads.datum(version_of, key, version)


def refresh(bring_up_to_date: Callable[[], Awaitable[None]]) -> None:
    """Report that a datum's version is only as new as ``bring_up_to_date`` makes it: a kept
    answer awaits it before its versions are compared."""
    reads = _current.get()
    if reads is not None and reads.open:
        reads.refreshes.setdefault(bring_up_to_date)


def until(moment: datetime | None) -> None:
    """Report that what was just read stops holding at ``moment``."""
    reads = _current.get()
    if reads is not None:
        reads.until(moment)


def unsettled() -> None:
    """Report a read whose version could not be pinned: the answer is not kept."""
    reads = _current.get()
    if reads is not None and reads.open:
        reads.unsettled = True


def errors() -> None:
    """Report that resolving the answer's fields raised errors: it is not kept."""
    reads = _current.get()
    if reads is not None and reads.open:
        reads.errors = True


def next_midnight(now: datetime) -> datetime:
    """The next UTC day change after ``now``."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)


def resets_after(value: object, now: datetime) -> datetime | None:
    """The earliest quota or rate-limit reset in ``value`` after ``now`` (``None``: none)."""
    if not isinstance(value, Limits):
        return None
    resets = [q.resets_at for q in value.quotas] + [r.resets_at for r in value.rate_limits]
    return min((r for r in resets if r is not None and r > now), default=None)


class AnswerClock:
    """The service's clock, as answers read it: what a reading shows decides how long the
    answer built from it holds (see the module docstring)."""

    __slots__ = ("read",)

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.read = clock
        """The clock itself: readings through it are not reported."""

    @classmethod
    def of(cls, clock: Callable[[], datetime]) -> AnswerClock:
        return clock if isinstance(clock, AnswerClock) else cls(clock)

    def __call__(self) -> datetime:
        """The moment: an answer that shows something derived from it holds at that moment
        only."""
        now = self.read()
        until(now)
        return now

    def today(self) -> date:
        """Today's UTC date: an answer that reads it holds until the next UTC midnight."""
        now = self.read()
        until(next_midnight(now))
        return now.date()
