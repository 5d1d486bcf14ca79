"""Headroom: whether N more requests fit now, and from when they would, across every limit that
covers an account's requests. Pure functions over an account's :class:`~gateway.domain.Limits`.

**What counts.** Every quota in requests with a known limit (hourly, daily, monthly, fixed term),
and every rate limit of the account. The requests' endpoint or product is not asked, so every
request quota of the account counts, whichever products it names (VirusTotal's
``intelligence_downloads_monthly`` too, and ReversingLabs' per-product limits): the answer is the
cautious one, for requests that would spend all of them. Two kinds are left out:

- quotas in bytes (ReversingLabs' sample submission bytes, VirusTotal's monitor storage): how
  many bytes a request carries is not known;
- rate limits that count only some endpoints (:attr:`~gateway.domain.RateLimit.endpoints`:
  ReputeAPI's ``/v1/usage``, which the gateway's own reads spend).

**The model.** Each limit is a window: ``limit`` requests in it, ``used`` spent so far, and a
reset at ``resets_at`` after which the whole ``limit`` is available again. Nothing else is
assumed to spend the limits meanwhile, so each one's availability only grows with time. A limit
admits the N requests

- now, when ``available = limit - used`` is at least N;
- else at its reset, when N is at most its ``limit``;
- else never within what is known (N is over its whole limit, or it has no reset, as a fixed
  term, or its use is unknown and it has no reset either).

A window whose reset has passed since the vendor was read (stale data) counts as reset: its whole
limit is available. ``fits`` says all N can be sent now without any limit refusing one;
``earliest_fit`` is the latest of the limits' moments (``None`` if any is never); the **binding**
limit is the one that admits the N last (never counting as the latest) and, among equals, the one
with the least available: when the N fit, the one that runs out first. ``available`` is the most
requests that fit now.

A rate limit is a window like any other: N requests over a rate limit's ``limit`` never fit it in
one window (a batch that large goes in parts: ``available`` now, then the binding limit's
``limit`` per window).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from gateway.domain import Limits, Quota, QuotaUnit, QuotaWindow, RateLimit

MAX_REQUESTS = 10**18
"""The most requests a headroom question may ask about."""
_WINDOW_ORDER = list(QuotaWindow)


class ConstraintKind(enum.Enum):
    """What kind of limit a headroom constraint is."""

    QUOTA = "quota"
    RATE_LIMIT = "rate_limit"


@dataclass(frozen=True)
class Constraint:
    """One limit that covers the requests, and what it says about N of them."""

    kind: ConstraintKind
    name: str
    window: QuotaWindow
    limit: int
    used: int | None
    available: int | None
    """What the limit admits now (``limit - used``, never below 0; the whole limit once its
    reset has passed); ``None`` when its use is unknown."""
    resets_at: datetime | None
    fits: bool
    """Whether the N requests are known to fit in it now."""
    fits_at: datetime | None
    """The earliest moment it admits all N: now, its reset, or ``None`` (never within what is
    known)."""
    quota_id: str | None = None
    """The quota's id, for a quota."""


@dataclass(frozen=True)
class Headroom:
    """An account's answer to "do N more requests fit?"."""

    account_id: str
    requests: int
    fits: bool
    earliest_fit: datetime | None
    available: int | None
    """The most requests that fit now: the least ``available`` over the constraints; ``None``
    when one of them is unknown, when no limit covers the requests, or when the limits could
    not be read."""
    binding: Constraint | None
    """The limit that admits the N last (see the module docstring); ``None`` without limits."""
    constraints: tuple[Constraint, ...]
    """Every limit that counts, binding first, then by when it admits the N."""


def check_requests(requests: int) -> str | None:
    """Why ``requests`` is not a number of requests to ask about, or ``None``."""
    if not 1 <= requests <= MAX_REQUESTS:
        return f"requests must be from 1 to {MAX_REQUESTS}, not {requests}"
    return None


def counts(item: Quota | RateLimit) -> bool:
    """Whether a quota or rate limit covers the requests a headroom question asks about."""
    if isinstance(item, Quota):
        return item.unit is QuotaUnit.REQUESTS and item.limit is not None
    return not item.endpoints


def constraint(item: Quota | RateLimit, requests: int, now: datetime) -> Constraint:
    """What one quota (in requests, with a limit) or rate limit says about ``requests``."""
    limit = item.limit
    assert limit is not None
    reset = item.resets_at
    passed = reset is not None and reset <= now
    if passed:
        available: int | None = limit
    elif item.used is None:
        available = None
    else:
        available = max(limit - item.used, 0)
    fits = available is not None and requests <= available
    if fits:
        fits_at: datetime | None = now
    elif reset is not None and not passed and requests <= limit:
        fits_at = reset
    else:
        fits_at = None
    quota = isinstance(item, Quota)
    return Constraint(
        kind=ConstraintKind.QUOTA if quota else ConstraintKind.RATE_LIMIT,
        name=item.name,
        window=item.window,
        limit=limit,
        used=item.used,
        available=available,
        resets_at=reset,
        fits=fits,
        fits_at=fits_at,
        quota_id=item.id if isinstance(item, Quota) else None,
    )


def _binding_first(item: Constraint) -> tuple[bool, float, int, int, str]:
    """Sort key: the limits that admit the N never, then the latest, then the least available
    (unknown as less than any), then the longest window, then by name."""
    moment = item.fits_at.timestamp() if item.fits_at is not None else 0.0
    available = item.available if item.available is not None else -1
    return (
        item.fits_at is not None,
        -moment,
        available,
        -_WINDOW_ORDER.index(item.window),
        item.name,
    )


def headroom(account_id: str, limits: Limits | None, requests: int, now: datetime) -> Headroom:
    """Whether ``requests`` more requests fit the account's ``limits`` at ``now``, and from
    when they would (see the module docstring). ``limits`` is ``None`` when the vendor could not
    be read: nothing is known to fit."""
    if limits is None:
        return Headroom(account_id, requests, False, None, None, None, ())
    items: list[Quota | RateLimit] = [*limits.quotas, *limits.rate_limits]
    found = sorted((constraint(i, requests, now) for i in items if counts(i)), key=_binding_first)
    if not found:
        return Headroom(account_id, requests, True, now, None, None, ())
    moments = [c.fits_at for c in found]
    earliest = None if any(m is None for m in moments) else max(m for m in moments if m)
    room = [c.available for c in found]
    return Headroom(
        account_id=account_id,
        requests=requests,
        fits=all(c.fits for c in found),
        earliest_fit=earliest,
        available=None if any(r is None for r in room) else min(r for r in room if r is not None),
        binding=found[0],
        constraints=tuple(found),
    )
