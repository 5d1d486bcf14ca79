"""What a query asks of each account, read from its document (variables, fragments and
``@skip``/``@include`` applied), so ``Account.source`` covers exactly the payloads the request
reads for that account, wherever in the query they are selected, and the root fields that list
accounts start exactly those reads at once (``RequestScope.prefetch``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import strawberry
from strawberry.types.nodes import convert_selections

from gateway import domain
from gateway.domain import Granularity
from gateway.graphql.selected import fields as _fields
from gateway.graphql.selected import wants_splits
from gateway.graphql.types import ACCOUNT_FIELDS_READING_LIMITS, operation_memo
from gateway.service import UsageArgs


@dataclass(frozen=True)
class UsagePlan:
    """Every ``usage`` field of an operation, with the root field that leads to its account."""

    entries: tuple[tuple[str | None, str | None, UsageArgs], ...] = ()
    """(account id of ``account(id:)``, provider of ``accounts(provider:)``, the arguments)."""
    limits: tuple[tuple[str | None, str | None], ...] = ()
    """The root fields (account id, provider, as in ``entries``) under which a field that
    reads the account's limits is selected (:data:`ACCOUNT_FIELDS_READING_LIMITS`)."""

    def for_account(self, account: domain.Account) -> tuple[UsageArgs, ...]:
        """The usage arguments the operation selects on ``account``, each once."""
        return tuple(
            dict.fromkeys(
                args
                for account_id, provider, args in self.entries
                if _covers(account_id, provider, account)
            )
        )

    def reads_limits(self, account: domain.Account) -> bool:
        """Whether the operation selects a field that reads ``account``'s limits."""
        return any(_covers(account_id, provider, account) for account_id, provider in self.limits)


def _covers(account_id: str | None, provider: str | None, account: domain.Account) -> bool:
    return (account_id is None or account_id == account.id) and (
        provider is None or provider == account.provider
    )


def usage_plan(info: strawberry.Info) -> UsagePlan:
    """The operation's plan (every ``account``/``accounts`` field needs the whole
    operation's), read from the document by the first root field that asks, once per
    operation and variable values (:mod:`gateway.graphql.memo`)."""
    memo = operation_memo(info)
    plan = memo.plan
    if not isinstance(plan, UsagePlan):
        plan = memo.plan = _read_plan(info)
    return plan


def _read_plan(info: strawberry.Info) -> UsagePlan:
    raw = info._raw_info
    entries: list[tuple[str | None, str | None, UsageArgs]] = []
    limits: list[tuple[str | None, str | None]] = []
    roots = raw.operation.selection_set.selections
    # convert_selections handles fragment nodes too; its annotation names only FieldNode.
    for root in _fields(convert_selections(raw, roots)):  # type: ignore[arg-type]
        if root.name == "account":
            account_id, provider = str(root.arguments.get("id")), None
        elif root.name == "accounts":
            account_id, provider = None, _provider(root.arguments.get("provider"))
        else:
            continue
        for field in _fields(root.selections):
            if field.name == "usage":
                args = _usage_args(field.arguments, wants_splits(field))
                if args is not None:
                    entries.append((account_id, provider, args))
            elif field.name in ACCOUNT_FIELDS_READING_LIMITS:
                limits.append((account_id, provider))
    return UsagePlan(tuple(entries), tuple(dict.fromkeys(limits)))


def _usage_args(arguments: Mapping[str, Any], splits: bool) -> UsageArgs | None:
    """The arguments as the resolver will see them; ``None`` where they cannot be read (the
    field itself then answers with the error)."""
    try:
        start, end = _day(arguments["from"]), _day(arguments["to"])
        granularity = _granularity(arguments.get("granularity"))
    except (KeyError, TypeError, ValueError):
        return None
    return UsageArgs(start, end, granularity, arguments.get("recheck") is True, splits)


def _day(value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError("not a day")


def _granularity(value: object) -> Granularity:
    if value is None:
        return Granularity.DAY
    if isinstance(value, enum.Enum):
        return Granularity[value.name]
    if isinstance(value, str):
        return Granularity[value] if value in Granularity.__members__ else Granularity(value)
    raise TypeError("not a granularity")


def _provider(value: object) -> str | None:
    """A ``Provider`` argument as a provider id: an enum member (from a variable) has the id
    as its value; a literal is the member's name, the id upper-cased."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value).lower()
