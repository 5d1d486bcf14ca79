"""The schema: the ``Query`` root, hostile-query limits and error masking.

``schema`` at module level is what ``make schema`` exports to ``schema.graphql``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from datetime import datetime
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError, parse, specified_rules, validate
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig

from gateway import domain
from gateway.alerts import model as alert_model
from gateway.alerts.store import MAX_EVENTS_READ as MAX_ALERT_EVENTS
from gateway.errors import InputError
from gateway.graphql.cost import HeavyQueriesInTurn, QueryCostLimit
from gateway.graphql.documents import KNOWN, KnownDocuments, known_documents
from gateway.graphql.executor import GatewayExecutor
from gateway.graphql.headroom import AccountHeadroom, resolve_headroom
from gateway.graphql.introspection import NoIntrospection
from gateway.graphql.persisted import PersistedDocuments
from gateway.graphql.requests import GatewaySchema, RequestChecks, after_known_fragments
from gateway.graphql.selection import usage_plan
from gateway.graphql.types import (
    SCALARS,
    Account,
    AlertEvent,
    AlertEventKind,
    AlertKind,
    AlertRule,
    BigInt,
    GatewayContext,
    Provider,
    Quota,
    QuotaAlert,
    QuotaForecast,
    SnapshotRun,
    scope_of,
)
from gateway.history import HistoryUnavailable
from gateway.service import MAX_ACCOUNT_IDS, Soon, then
from gateway.service import AlertKind as AlertKindData
from gateway.service import QuotaAlert as QuotaAlertData
from gateway.trusted_documents import TrustedDocuments

MAX_TOKENS = 2_000
MAX_DEPTH = 10
MAX_ALIASES = 30


def _provider(value: Provider | None) -> domain.ProviderId | None:
    return None if value is None else domain.ProviderId(value.value)


@strawberry.type(description="Usage, quotas and rate limits of every configured vendor account.")
class Query:
    @strawberry.field(
        description="Every configured account, optionally of one provider, or only those of "
        "some ids (a page of them: the query's cost counts only those).",
        graphql_type=list[Account],
    )
    def accounts(
        self,
        info: strawberry.Info,
        provider: Annotated[
            Provider | None, strawberry.argument(description="Only this provider's accounts.")
        ] = None,
        ids: Annotated[
            list[strawberry.ID] | None,
            strawberry.argument(
                description=f"Only the accounts of these ids, in config order (at most "
                f"{MAX_ACCOUNT_IDS:,}; an id of no account is left out)."
            ),
        ] = None,
    ) -> Soon[list[Account]]:
        wanted = _ids(ids, "ids")
        return _listed(info, scope_of(info).accounts(_provider(provider), wanted))

    @strawberry.field(
        description="One account by its config id; null when there is none.",
        graphql_type=Account | None,
    )
    def account(
        self,
        info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The account's id.")],
    ) -> Soon[Account | None]:
        found = scope_of(info).account(str(id))
        return None if found is None else then(_listed(info, [found]), lambda listed: listed[0])

    @strawberry.field(
        description="Every account's quotas, highest utilization first.",
        graphql_type=list[Quota],
    )
    def quotas(
        self,
        info: strawberry.Info,
        provider: Annotated[
            Provider | None, strawberry.argument(description="Only this provider's quotas.")
        ] = None,
        min_utilization: Annotated[
            float | None,
            strawberry.argument(description="Only quotas used at least this much (0.8 = 80%)."),
        ] = None,
    ) -> Soon[list[Quota]]:
        if min_utilization is not None and not 0 <= min_utilization <= 10:
            raise InputError(
                f"minUtilization must be a fraction such as 0.8, not {min_utilization}",
                argument="minUtilization",
            )
        quotas = scope_of(info).quotas_soon(_provider(provider), min_utilization)
        return then(quotas, lambda found: [Quota.from_domain(q) for q in found])

    @strawberry.field(
        description="Quotas used past a threshold, and quotas projected to run out before "
        "their reset, from every account; null (with an error naming the file and the cause) "
        "when the history store the projections rest on cannot be used."
    )
    async def alerts(
        self,
        info: strawberry.Info,
        threshold: Annotated[
            float, strawberry.argument(description="Share of a limit that raises an alert.")
        ] = 0.8,
        account_ids: Annotated[
            list[strawberry.ID] | None,
            strawberry.argument(
                description=f"Only the quotas of the accounts of these ids (at most "
                f"{MAX_ACCOUNT_IDS:,}; an id of no account is left out)."
            ),
        ] = None,
    ) -> list[QuotaAlert] | None:
        if not 0 < threshold <= 10:
            raise InputError(
                f"threshold must be a fraction such as 0.8, not {threshold}", argument="threshold"
            )
        found = await scope_of(info).alerts(threshold, _ids(account_ids, "accountIds"))
        return [
            QuotaAlert(
                kind=AlertKind[a.kind.name],
                quota=Quota.from_domain(a.quota),
                forecast=QuotaForecast.from_domain(a.forecast) if a.forecast else None,
                message=_alert_message(a),
            )
            for a in found
        ]

    @strawberry.field(
        description="Whether N more requests fit now, for one account or each account of a "
        "provider: every quota in requests and every rate limit that covers them (hourly, "
        "daily, monthly, fixed term), which one binds, and the earliest moment they would all "
        "fit. Give exactly one of accountId and provider; null, with an error naming the "
        "argument, for arguments it cannot answer."
    )
    async def headroom(
        self,
        info: strawberry.Info,
        requests: Annotated[
            BigInt,
            strawberry.argument(description="How many requests (1 to 10^18)."),
        ],
        account_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="This account.")
        ] = None,
        provider: Annotated[
            Provider | None, strawberry.argument(description="Each account of this provider.")
        ] = None,
    ) -> list[AccountHeadroom] | None:
        return await resolve_headroom(info, requests, account_id, provider)

    @strawberry.field(
        description="Snapshot runs in the history store, newest first; null (with an error "
        "naming the file and the cause) when the store cannot be used."
    )
    async def snapshots(
        self,
        info: strawberry.Info,
        account_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this account's runs.")
        ] = None,
        limit: Annotated[int, strawberry.argument(description="At most this many (1-1000).")] = 50,
    ) -> list[SnapshotRun] | None:
        if not 1 <= limit <= 1000:
            raise InputError(f"limit must be from 1 to 1000, not {limit}", argument="limit")
        runs = await scope_of(info).snapshots(str(account_id) if account_id else None, limit)
        return [SnapshotRun.from_domain(r) for r in runs]

    @strawberry.field(
        description="Alert firings and resolutions stored after snapshot runs, newest first; "
        "null (with an error naming the file and the cause) when the history store cannot be "
        "used."
    )
    async def alert_events(
        self,
        info: strawberry.Info,
        account_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this account's events.")
        ] = None,
        rule: Annotated[
            AlertRule | None, strawberry.argument(description="Only this rule's events.")
        ] = None,
        event: Annotated[
            AlertEventKind | None,
            strawberry.argument(description="Only firings, or only resolutions."),
        ] = None,
        since: Annotated[
            datetime | None, strawberry.argument(description="Only events at or after this.")
        ] = None,
        limit: Annotated[
            int, strawberry.argument(description=f"At most this many (1-{MAX_ALERT_EVENTS}).")
        ] = 100,
    ) -> list[AlertEvent] | None:
        if not 1 <= limit <= MAX_ALERT_EVENTS:
            raise InputError(
                f"limit must be from 1 to {MAX_ALERT_EVENTS}, not {limit}", argument="limit"
            )
        found = await scope_of(info).alert_events(
            str(account_id) if account_id is not None else None,
            alert_model.Rule[rule.name] if rule is not None else None,
            alert_model.EventKind[event.name] if event is not None else None,
            since,
            limit,
        )
        return [AlertEvent.from_domain(e) for e in found]


def _ids(ids: list[strawberry.ID] | None, argument: str) -> set[str] | None:
    """An argument listing account ids, checked against :data:`MAX_ACCOUNT_IDS`."""
    if ids is None:
        return None
    if len(ids) > MAX_ACCOUNT_IDS:
        raise InputError(
            f"{argument} names {len(ids):,} accounts; at most {MAX_ACCOUNT_IDS:,} are allowed "
            f"(ask for the rest in another request)",
            argument=argument,
        )
    return {str(i) for i in ids}


def _listed(info: strawberry.Info, accounts: list[domain.Account]) -> Soon[list[Account]]:
    """``accounts`` as the graph's, once every read the operation selects on them (their
    limits, each ``usage``) has ended: all started together here, so that their fields find
    them at hand (and are completed without awaiting anything) rather than each starting its
    own read later."""
    plan = usage_plan(info)
    listed = [Account.from_domain(a, plan.for_account(a)) for a in accounts]
    reads = scope_of(info).prefetch(
        (a.id, plan.reads_limits(a), usages)
        for a, usages in zip(accounts, (item._usages for item in listed), strict=True)
    )
    return listed if reads is None else _after(reads, listed)


async def _after(reads: Coroutine[Any, Any, None], listed: list[Account]) -> list[Account]:
    await reads
    return listed


_LIMIT_RULES = after_known_fragments(
    [
        *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    ]
)
"""Built once: the limiters make new rule classes per instance, and the validation cache keys
on the rules, so per-request instances would never hit it."""


class ReleaseRequestScope(SchemaExtension):
    """Clears the request's memo of vendor reads when the operation is over
    (:meth:`~gateway.service.RequestScope.release`), and lets go of its operation's memo
    (:mod:`gateway.graphql.memo`: a next operation on the same context has its own)."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        if isinstance(context, GatewayContext):
            context.scope.release()
            context.operation_memo = None


class HostileQueryLimits(AddValidationRules):
    """Depth and alias limits, as validation rules shared by every request."""

    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)


def _alert_message(alert: QuotaAlertData) -> str:
    quota = alert.quota
    share = f"{quota.utilization:.0%}" if quota.utilization is not None else "?"
    if alert.kind is AlertKindData.OVER_THRESHOLD:
        return f"{quota.account_id}: {quota.name} is at {share} of its limit"
    moment = alert.forecast.runs_out_earliest if alert.forecast else None
    when = f"{moment:%Y-%m-%dT%H:%MZ}" if moment else "before its reset"
    return f"{quota.account_id}: {quota.name} may run out as early as {when}, before its reset"


def _should_mask(error: GraphQLError) -> bool:
    """Mask what resolvers raised by accident; input, variable and validation errors show, and
    so does a history store that cannot be used (the file and the cause)."""
    original = error.original_error
    return (
        error.path is not None
        and original is not None
        and not isinstance(original, (InputError, HistoryUnavailable))
    )


def build_schema(
    *, introspection: bool = True, trusted_documents: TrustedDocuments | None = None
) -> GatewaySchema:
    """The schema with its limits and error masking; ``introspection=False`` refuses
    ``__schema`` and ``__type``, and ``trusted_documents`` runs only those documents
    (:mod:`gateway.graphql.persisted`)."""
    known = KNOWN if introspection else known_documents()  # validation differs: its own store
    return GatewaySchema(
        query=Query,
        config=StrawberryConfig(scalar_map=SCALARS),  # type: ignore[arg-type]  # NewType keys
        # Long lists (years of days) are completed in slices, the event loop running between.
        execution_context_class=GatewayExecutor,
        extensions=[
            # First: settles which document runs (by hash, or trusted), before any other reads it.
            lambda: PersistedDocuments(trusted_documents),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            ReleaseRequestScope,
            HostileQueryLimits,
            *([] if introspection else [NoIntrospection]),
            # Refuses documents over the cost limit before they are validated.
            QueryCostLimit,
            # Dashboards send the same few documents again and again: parse and validate once.
            lambda: KnownDocuments(known),
            HeavyQueriesInTurn,
            RequestChecks,  # after the validation cache: adds to the errors it found
            lambda: MaskErrors(
                should_mask_error=_should_mask, error_message="Internal error; see the gateway log."
            ),
        ],
    )


schema = build_schema()
"""The default schema (introspection on, any document): what ``make schema`` exports."""


def document_problem(text: str) -> str | None:
    """What the gateway would refuse in the document ``text`` itself, whatever the request
    (its syntax, its validity against the schema, the token, depth and alias limits), in one
    line; ``None`` when there is nothing."""
    try:
        document = parse(text, max_tokens=MAX_TOKENS)
    except GraphQLSyntaxError as exc:
        where = f" at line {exc.locations[0].line}" if exc.locations else ""
        return f"not a GraphQL document{where}: {exc.message}"
    errors = validate(schema._schema, document, [*specified_rules, *_LIMIT_RULES])
    if errors:
        first = errors[0]
        where = f" (line {first.locations[0].line})" if first.locations else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{first.message}{where}{more}"
    return None
