"""The graph's ``headroom`` answer: GraphQL types mirroring :mod:`gateway.headroom`, and the
resolver's work (arguments checked before any vendor read)."""

from __future__ import annotations

import asyncio
import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from gateway import domain
from gateway import headroom as model
from gateway.errors import InputError
from gateway.graphql.types import BigInt, QuotaWindow, SourceStatus, _enum, _shown, scope_of

if TYPE_CHECKING:
    from gateway.graphql.types import Provider


@strawberry.enum(description="What kind of limit a headroom constraint is.")
class ConstraintKind(enum.Enum):
    QUOTA = strawberry.enum_value("quota", description="A quota (Quota).")
    RATE_LIMIT = strawberry.enum_value("rate_limit", description="A rate limit (RateLimit).")


@strawberry.type(description="One limit that covers the requests, and what it says about them.")
class HeadroomConstraint:
    kind: ConstraintKind = strawberry.field(description="A quota or a rate limit.")
    quota_id: strawberry.ID | None = strawberry.field(
        description="The quota's id (Quota.id), for a quota; null for a rate limit."
    )
    name: str = strawberry.field(description="The quota's or rate limit's name.")
    window: QuotaWindow = strawberry.field(description="When it starts again.")
    limit: BigInt = strawberry.field(description="Requests it allows per window.")
    used: BigInt | None = strawberry.field(
        description="Requests spent in its current window, as the vendor said; null if unknown."
    )
    available: BigInt | None = strawberry.field(
        description="Requests it admits now: limit - used, never below 0 (the whole limit once "
        "its reset has passed since the vendor was read); null when its use is unknown."
    )
    resets_at: datetime | None = strawberry.field(
        description="Its next reset, as the vendor said; null for a fixed term."
    )
    fits: bool = strawberry.field(description="Whether all the requests fit in it now.")
    fits_at: datetime | None = strawberry.field(
        description="The earliest moment it admits all the requests, nothing else spending it "
        "meanwhile: now, or its reset (when they are at most its limit); null when never within "
        "what is known (more than its limit, or a fixed term without room)."
    )

    @classmethod
    def from_domain(cls, item: model.Constraint) -> HeadroomConstraint:
        return cls(
            kind=_enum(ConstraintKind, item.kind),
            quota_id=None if item.quota_id is None else strawberry.ID(item.quota_id),
            name=item.name,
            window=_enum(QuotaWindow, item.window),
            limit=BigInt(item.limit),
            used=None if item.used is None else BigInt(item.used),
            available=None if item.available is None else BigInt(item.available),
            resets_at=item.resets_at,
            fits=item.fits,
            fits_at=item.fits_at,
        )


@strawberry.type(
    description="Whether N more requests of an account fit before the resets of every quota "
    "and rate limit that covers them, which one binds, and from when they would all fit."
)
class AccountHeadroom:
    account_id: strawberry.ID = strawberry.field(description="The account.")
    requests: BigInt = strawberry.field(description="The requests asked about.")
    fits: bool = strawberry.field(
        description="Whether all of them can be sent now without any limit refusing one; false "
        "when the account's limits could not be read (see source)."
    )
    earliest_fit: datetime | None = strawberry.field(
        description="The earliest moment all of them fit, nothing else spending the limits "
        "meanwhile: now when they fit, else the latest of the constraints' fitsAt (the binding "
        "one's); null when some constraint never admits them within what is known."
    )
    available: BigInt | None = strawberry.field(
        description="The most requests that fit now: the least available over the "
        "constraints; null when one of them is unknown, when no limit covers the requests, or "
        "when the limits could not be read."
    )
    binding: HeadroomConstraint | None = strawberry.field(
        description="The limit that admits them last (one that never does first), and among "
        "equals the one with the least available: when they fit, the one that runs out first. "
        "Null when no limit covers the requests."
    )
    constraints: list[HeadroomConstraint] = strawberry.field(
        description="Every quota in requests and every rate limit of the account that counts "
        "(quotas in bytes and rate limits of single endpoints are left out), binding first."
    )
    source: SourceStatus = strawberry.field(
        description="How fresh the limits are: the status of the read of the account's quotas."
    )

    @classmethod
    def from_domain(cls, item: model.Headroom, source: domain.SourceStatus) -> AccountHeadroom:
        return cls(
            account_id=strawberry.ID(item.account_id),
            requests=BigInt(item.requests),
            fits=item.fits,
            earliest_fit=item.earliest_fit,
            available=None if item.available is None else BigInt(item.available),
            binding=None if item.binding is None else HeadroomConstraint.from_domain(item.binding),
            constraints=[HeadroomConstraint.from_domain(c) for c in item.constraints],
            source=SourceStatus.from_domain(source),
        )


async def resolve_headroom(
    info: strawberry.Info,
    requests: int,
    account_id: strawberry.ID | None,
    provider: Provider | None,
) -> list[AccountHeadroom]:
    """The answer for one account (``account_id``) or every account of ``provider``."""
    problem = model.check_requests(requests)
    if problem is not None:
        raise InputError(problem, argument="requests")
    if (account_id is None) == (provider is None):
        raise InputError(
            "headroom needs exactly one of accountId (one account) and provider (each of its "
            "accounts)",
            argument="accountId",
        )
    scope = scope_of(info)
    service = scope.service
    if account_id is not None:
        found = scope.account(str(account_id))
        if found is None:
            raise InputError(f"there is no account {_shown(str(account_id))}", argument="accountId")
        accounts = [found]
    else:
        assert provider is not None
        accounts = scope.accounts(domain.ProviderId(provider.value))
    payloads = await asyncio.gather(*(scope.limits_payload(a.id) for a in accounts))
    now = service.clock()
    return [
        AccountHeadroom.from_domain(
            model.headroom(
                account.id,
                payload.value if isinstance(payload.value, domain.Limits) else None,
                requests,
                now,
            ),
            payload.status,
        )
        for account, payload in zip(accounts, payloads, strict=True)
    ]
