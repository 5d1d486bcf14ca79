"""A static cost limit: how much an operation would make the gateway build, known before any
resolver runs.

The cost is an upper estimate of the number of values in the answer: a scalar or an object
counts 1, and a list counts its items, each with what is selected under it. List sizes come
from the document (variables, fragments and ``@skip``/``@include`` applied) and the config:

- ``accounts`` lists the accounts the request may read (of its ``provider``; a gateway token
  reads only its own), at most as many as its ``ids`` name; ``account(id:)`` is one; so does
  ``headroom`` (one account with ``accountId``), each with its quotas and rate limits as
  ``constraints``;
- ``usage(from:, to:, granularity:)`` spans ``days``: the days of the range up to today (from
  2000-01-01 on, the first day the gateway answers). It costs those ``days`` itself (every day
  is rolled up and checked for data whatever is selected), ``missingDays`` up to ``days``
  items, ``series`` one per bucket (``days`` per day, a seventh of them per week, one per
  month, 24 per day per hour, 1,440 per day per minute);
- lists whose length the document cannot know are estimated by constants: quotas per account
  (also under the root ``quotas``, and ``alerts``: of the accounts its ``accountIds`` name),
  endpoints per usage and per series point (:data:`ENDPOINTS_PER_USAGE` each: a bucket lists
  at most the range's endpoints), breakdowns per usage, quota samples per day of ``history``,
  alert states per quota (the most thresholds plus the predictive rule), deliveries per alert
  event (the most webhooks), and :data:`OTHER_LIST` for any other list;
- ``alertEvents`` and ``snapshots`` list up to their ``limit``.

Aliases multiply: each response key is resolved and answered on its own. An operation over
``max_query_cost`` is refused before execution with ``extensions.code`` ``QUERY_TOO_COSTLY``
(:class:`QueryCostLimit`).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_argument_values,
    get_directive_values,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    get_variable_values,
    is_list_type,
)
from strawberry.extensions import SchemaExtension

from gateway.alerts.config import MAX_THRESHOLDS, MAX_WEBHOOKS
from gateway.alerts.store import MAX_EVENTS_READ
from gateway.domain import Granularity
from gateway.graphql.types import GatewayContext
from gateway.lru import BoundedLRU
from gateway.service import EARLIEST_DAY, MAX_RANGE_DAYS, RequestScope

QUOTAS_PER_ACCOUNT = 10
"""Quotas an account is assumed to have (VirusTotal groups have about 9)."""
RATE_LIMITS_PER_ACCOUNT = 5
ENDPOINTS_PER_USAGE = 50
"""Endpoints (or products) a usage answer is assumed to list (VirusTotal's have about 27)."""
BREAKDOWN_ITEMS = 20
"""Error types, API keys, vendor alerts, a quota's products, entitlements or allocations."""
SAMPLES_PER_DAY = 24
"""Quota samples a day of ``Quota.history`` is assumed to hold (an hourly snapshot)."""
OTHER_LIST = 20
"""The assumed length of any other list."""
_BUCKETS_PER_DAY = {"HOUR": 24, "MINUTE": 1440}
_FIXED = {
    ("Account", "quotas"): QUOTAS_PER_ACCOUNT,
    ("Account", "rateLimits"): RATE_LIMITS_PER_ACCOUNT,
    ("Account", "vendorAlerts"): BREAKDOWN_ITEMS,
    ("AccountHeadroom", "constraints"): QUOTAS_PER_ACCOUNT + RATE_LIMITS_PER_ACCOUNT,
    ("Usage", "endpoints"): ENDPOINTS_PER_USAGE,
    ("UsagePoint", "endpoints"): ENDPOINTS_PER_USAGE,
    ("Usage", "errorTypes"): BREAKDOWN_ITEMS,
    ("Usage", "keys"): BREAKDOWN_ITEMS,
    ("Quota", "alertStates"): MAX_THRESHOLDS + 1,
    ("Account", "alertStates"): 1,
    ("AlertEvent", "deliveries"): MAX_WEBHOOKS,
}
_SIZED = frozenset(
    {
        ("Query", "accounts"),
        ("Query", "quotas"),
        ("Query", "alerts"),
        ("Query", "headroom"),
        ("Query", "snapshots"),
        ("Query", "alertEvents"),
        ("Quota", "history"),
        ("Usage", "series"),
        ("Usage", "missingDays"),
    }
)
"""The fields :meth:`_Walk._list_size` sizes from their arguments or their usage field."""
CACHE_SIZE = 512
"""Costs kept at most."""
CACHE_BYTES = 4 * 1024 * 1024
"""Their keys' lengths (document text and variables) added up, at most."""
MAX_VISITS = 5_000
"""Fields the walk visits at most (fragments spread under many aliases repeat their fields;
each visit costs at least 1, so a document past this is far past any sensible limit)."""


@dataclass(frozen=True)
class Sizes:
    """What the cost depends on besides the document: the configured accounts and today."""

    accounts: tuple[tuple[str, int], ...]
    """Accounts per provider id."""
    today: date

    @classmethod
    def of(cls, scope: RequestScope) -> Sizes:
        """The sizes of a request: the accounts it may read (no others count), and today."""
        return cls(scope.provider_counts(), scope.service.clock.today())

    def accounts_of(self, provider: object) -> int:
        """Accounts of ``provider`` (a ``Provider`` member or its id), of all when ``None``."""
        if provider is None:
            return sum(n for _, n in self.accounts)
        wanted = str(getattr(provider, "value", provider)).lower()
        return sum(n for p, n in self.accounts if p == wanted)


@dataclass
class Share:
    """One field of the schema (``Type.field``) in an operation: its part of the cost."""

    coordinate: str
    depth: int
    cost: int = 0
    selections: int = 0
    """Response keys that select it (aliases count apart)."""
    answers: int = 0
    """How many times it is answered in all (a selection under a list is answered per item)."""
    size: int = 0
    """The largest list (or range of days) one answer holds."""
    unit: str = ""


@dataclass(frozen=True)
class Cost:
    """An operation's cost and the field that makes most of it."""

    total: int
    driver: Share | None = None
    exact: bool = True
    """False: the walk stopped at :data:`MAX_VISITS` fields and ``total`` is a lower bound."""

    def over(self, limit: int) -> bool:
        return self.total > limit or not self.exact

    def explain(self, limit: int) -> str:
        """Why an operation over ``limit`` is refused, in words a caller can act on."""
        if not self.exact:
            return (
                f"Query too costly: with its fragments spread it selects more than "
                f"{MAX_VISITS:,} fields (its cost is at least {self.total:,}; the limit is "
                f"{limit:,}). Select each field once, with fewer aliases."
            )
        text = (
            f"Query too costly: its cost is {self.total:,}, over the limit of {limit:,} (the "
            "cost estimates how many values the gateway builds for the answer; every list "
            "counts its items)."
        )
        driver = self.driver
        if driver is not None:
            share = driver.cost / self.total if self.total else 0.0
            keys = "response key" if driver.selections == 1 else "response keys"
            text += (
                f" {share:.0%} of it is {driver.coordinate}: {driver.selections} {keys}"
                f" (aliases count apart), answered {driver.answers:,} times in all, each over"
                f" up to {driver.size:,} {driver.unit}."
            )
        return text + " Ask for fewer days, accounts or aliases, or a coarser granularity."


def _chosen(readable: int, ids: object) -> int:
    """Accounts a list answers: the ``readable`` ones, or at most as many as ``ids`` names
    (each once) where the argument is given."""
    if isinstance(ids, list | tuple):
        return min(readable, len({str(i) for i in ids}))
    return readable


@dataclass(frozen=True)
class _Range:
    """The list sizes a ``usage`` field gives what is selected under it."""

    days: int
    buckets: int


class _Exhausted(Exception):
    """The walk visited :data:`MAX_VISITS` fields: the cost is past any sensible limit."""


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Any
    """What ``get_variable_values`` returned: the coerced variables."""
    sizes: Sizes
    shares: dict[str, Share] = field(default_factory=dict)
    floor: int = 0
    """A lower bound of the cost so far: what the fields visited cost at least."""
    visits: int = 0

    def selections(
        self,
        parent: GraphQLObjectType,
        sets: Sequence[SelectionSetNode | None],
        times: int,
        depth: int,
        usage: _Range | None,
    ) -> int:
        """The cost of one answer of ``parent`` with these selection sets merged (answered
        ``times`` times in all)."""
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in sets:
            if selection_set is not None:
                self._collect(parent, selection_set, grouped, visited)
        return sum(self.field(parent, group, times, depth, usage) for group in grouped.values())

    def _collect(
        self,
        parent: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        """Fields by response key, as the executor groups them."""
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or condition.name.value == parent.name:
                    self._collect(parent, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if fragment.type_condition.name.value == parent.name:
                    self._collect(parent, fragment.selection_set, grouped, visited)

    def _included(self, node: Any) -> bool:
        if not node.directives:
            return True
        try:
            skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
            include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        except GraphQLError:
            return True  # validation or execution says what is wrong with it
        if skip is not None and skip.get("if") is True:
            return False
        return include is None or include.get("if") is True

    def field(
        self,
        parent: GraphQLObjectType,
        group: list[FieldNode],
        times: int,
        depth: int,
        usage: _Range | None,
    ) -> int:
        """The cost of one answer of one response key of ``parent``."""
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise _Exhausted
        node = group[0]
        name = node.name.value
        definition = parent.fields.get(name)
        if name.startswith("__") or definition is None:
            # Introspection is bounded by the schema, not by data; an unknown field is an error.
            self.floor += times
            return 1
        try:
            args = get_argument_values(definition, node, self.variables) if node.arguments else {}
        except (GraphQLError, TypeError, ValueError):
            args = {}  # validation or execution says what is wrong with them
        coordinate = (parent.name, name)
        own = 0  # work per answer besides its values
        if coordinate == ("Account", "usage"):
            usage = _usage_range(args, self.sizes.today)
            size, own, unit, span = 1, usage.days, "days", usage.days
        else:
            size, unit = self._list_size(coordinate, args, usage, definition.type)
            span = size
        self.floor += times * (size + own)
        named = get_named_type(definition.type)
        per_item = 1
        if size and isinstance(named, GraphQLObjectType):
            sets = [n.selection_set for n in group]
            per_item += self.selections(named, sets, times * size, depth + 1, usage)
        cost = size * per_item + own
        if unit:
            share = self.shares.setdefault(
                ".".join(coordinate), Share(".".join(coordinate), depth, unit=unit)
            )
            share.cost += times * cost
            share.selections += 1
            share.answers += times
            share.size = max(share.size, span)
        return cost

    def _list_size(
        self, coordinate: tuple[str, str], args: Mapping[str, Any], usage: _Range | None, kind: Any
    ) -> tuple[int, str]:
        """Items per answer of a field, and what they are ("": not named in the explanation)."""
        if coordinate in _SIZED:  # the other fields: no case to try
            accounts = self.sizes.accounts_of
            match coordinate:
                case ("Query", "accounts"):
                    return _chosen(accounts(args.get("provider")), args.get("ids")), "accounts"
                case ("Query", "quotas"):
                    return accounts(args.get("provider")) * QUOTAS_PER_ACCOUNT, "quotas (estimated)"
                case ("Query", "alerts"):
                    chosen = _chosen(accounts(None), args.get("accountIds"))
                    return chosen * QUOTAS_PER_ACCOUNT, "quotas (estimated)"
                case ("Query", "headroom"):
                    if args.get("accountId") is not None:
                        return 1, "accounts"
                    return accounts(args.get("provider")), "accounts"
                case ("Query", "snapshots"):
                    return min(max(int(args.get("limit") or 1), 1), 1000), "runs"
                case ("Query", "alertEvents"):
                    return min(max(int(args.get("limit") or 1), 1), MAX_EVENTS_READ), "alert events"
                case ("Quota", "history"):
                    return _days(args.get("from"), args.get("to"), self.sizes.today) * (
                        SAMPLES_PER_DAY
                    ), "samples (estimated)"
                case ("Usage", "series") if usage is not None:
                    return usage.buckets, ""  # sized by its usage field, which the shares name
                case ("Usage", "missingDays") if usage is not None:
                    return usage.days, ""
        if not is_list_type(get_nullable_type(kind)):
            return 1, ""
        return _FIXED.get(coordinate, OTHER_LIST), "items (estimated)"

    def driver(self, total: int) -> Share | None:
        """The deepest field that makes at least half the cost (else the costliest)."""
        if not self.shares:
            return None
        heavy = [s for s in self.shares.values() if 2 * s.cost >= total]
        if heavy:
            return max(heavy, key=lambda s: (s.depth, s.cost))
        return max(self.shares.values(), key=lambda s: s.cost)


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def _days(start: object, end: object, today: date) -> int:
    """Days from ``start`` to ``end`` (both inclusive), counted from 2000-01-01 to today."""
    first, last = _day(start), _day(end)
    if first is None or last is None:
        return 1
    return max(0, (min(last, today) - max(first, EARLIEST_DAY)).days + 1)


def _usage_range(args: Mapping[str, Any], today: date) -> _Range:
    days = _days(args.get("from"), args.get("to"), today)
    granularity = str(getattr(args.get("granularity"), "name", args.get("granularity") or "DAY"))
    if granularity in _BUCKETS_PER_DAY:
        span = min(days, MAX_RANGE_DAYS[Granularity[granularity]])
        return _Range(days, span * _BUCKETS_PER_DAY[granularity])
    if granularity == "WEEK":
        return _Range(days, min(days, days // 7 + 2))
    if granularity == "MONTH":
        return _Range(days, min(days, math.ceil(days / 28) + 1))
    return _Range(days, days)


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    sizes: Sizes,
) -> Cost | None:
    """The cost of the operation, or ``None`` when it cannot run (no such operation, variables
    that do not fit: execution reports those before any resolver runs)."""
    operation = get_operation_ast(document, operation_name)
    query = schema.query_type
    if operation is None or query is None or operation.operation.value != "query":
        return None
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if isinstance(coerced, list):
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(schema, fragments, coerced, sizes)
    try:
        total = walk.selections(query, [operation.selection_set], 1, 1, None)
    except _Exhausted:
        return Cost(walk.floor, walk.driver(walk.floor), exact=False)
    return Cost(total, walk.driver(total))


_COSTS: BoundedLRU[tuple[Cost | None]] = BoundedLRU(CACHE_SIZE, CACHE_BYTES)
"""Costs by request (document text, operation, variables and sizes), least recently used out."""


def too_costly(cost: Cost, limit: int) -> GraphQLError:
    return GraphQLError(
        cost.explain(limit),
        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost.total, "limit": limit},
    )


class QueryCostLimit(SchemaExtension):
    """Refuses an operation whose cost is over the service's ``max_query_cost`` before it is
    validated (validating a large document costs more than pricing it: put this extension
    before the one that validates). Costs are cached per document text, operation, variables,
    accounts and day.

    The cost is only worked out for a request whose context is a ``GatewayContext``.
    """

    def on_validate(self) -> Iterator[None]:
        error = self._refusal()
        if error is not None:
            self.execution_context.pre_execution_errors = [error]
        yield

    def _refusal(self) -> GraphQLError | None:
        context = self.execution_context
        gateway = context.context
        document = context.graphql_document
        if document is None or not isinstance(gateway, GatewayContext):
            return None
        service = gateway.scope.service
        sizes = Sizes.of(gateway.scope)
        variables = json.dumps(context.variables, sort_keys=True, default=str)
        key = json.dumps([context.query, context.operation_name, variables, repr(sizes)])
        found = _COSTS.get(key)
        if found is None:
            schema = context.schema._schema
            found = (
                operation_cost(schema, document, context.operation_name, context.variables, sizes),
            )
            _COSTS.set(key, found, len(key))
        cost = found[0]
        limit = service.max_query_cost
        if cost is not None:
            gateway.cost = cost.total
        return too_costly(cost, limit) if cost is not None and cost.over(limit) else None


HEAVY_COST = 10_000
"""Operations costing more than this run one at a time in a process (see
:class:`HeavyQueriesInTurn`); a year of daily usage for a few accounts stays below it."""


class HeavyQueriesInTurn(SchemaExtension):
    """Heavy operations (cost over :data:`HEAVY_COST`) execute one at a time per process,
    the others waiting their turn without using the CPU: several large answers built at once
    would take the event loop in turns, each turn holding every other request up longer."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, GatewayContext) and context.cost > HEAVY_COST:
            async with context.scope.service.heavy_turn:
                yield
        else:
            yield
