"""Hostile requests: every client mistake gets a clear error, never a 500 or Python's words.

* :func:`graphql_controller` is Strawberry's Litestar controller with a stricter body reader:
  a body that is not UTF-8, not JSON, nested too deeply, or JSON but not an object answers
  400 with ``{"errors": [{"message": ...}]}`` naming the problem, as do Strawberry's own
  request-level refusals (which it answers in plain text). A browser's GET gets the gateway's
  own GraphiQL page (:mod:`gateway.graphiql`, offline), not Strawberry's, which loads React and
  GraphiQL from a CDN; with GraphiQL turned off, a 404 saying so. A GET naming its document
  by hash (``extensions``, no ``query``) is a GraphQL request, whatever it accepts.
* :class:`GatewaySchema` logs what it shows a client (its mistakes) at INFO on one line, and
  only what it masks (the gateway's own faults) at ERROR with the traceback. Strawberry logs
  every GraphQL error at ERROR with a traceback by default. An answer with an error raised
  while its fields were resolved is never kept by the answer cache
  (:mod:`gateway.answer_reads`); a refusal of the whole request (its syntax, validity, cost)
  depends on the request alone and is kept as any answer is. Once logged, the errors'
  tracebacks are dropped (:func:`forget_tracebacks`): they held the request in a reference
  cycle, for the garbage collector.
* :class:`RequestChecks` names the argument (or variable default) a bad value was given for,
  and refuses a document of several operations without an ``operationName`` (Strawberry would
  run the first one).
* :func:`after_known_fragments` keeps the validation rules that walk fragments (Strawberry's
  depth and alias limits) from running on a document with an unknown fragment spread
  (graphql-core reports "Unknown fragment 'Nope'."; the depth limit would fail with a
  KeyError) or one whose fragments expand past a bound (they walk each spread anew:
  exponential time in nested spreads), which it refuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec
from cross_web import HTTPException
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    ValuesOfCorrectTypeRule,
)
from graphql.language import ArgumentNode, DirectiveNode, FieldNode, Node
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTasks
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException, ValidationException
from litestar.status_codes import HTTP_200_OK
from litestar.types import Scope
from strawberry import Schema
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.litestar import BaseContext, make_graphql_controller
from strawberry.types import ExecutionContext

from gateway import answer_reads
from gateway.errors import vendor_text
from gateway.graphiql import CONTENT_SECURITY_POLICY, graphiql_page

log = logging.getLogger("gateway.graphql")

__all__ = [
    "GatewaySchema",
    "RequestChecks",
    "after_known_fragments",
    "graphql_controller",
    "is_shown",
]


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


class _NotJson(ValueError):
    """A constant JSON does not have (NaN, Infinity), which Python's decoder would accept."""


def _no_constants(name: str) -> object:
    raise _NotJson(name)


def decode_request_json(data: str | bytes) -> object:
    """JSON from a request body (bytes) or a query parameter (str), or an ``HTTPException``
    400 saying what is wrong with it in words a client can act on."""
    where = "the request body" if isinstance(data, bytes) else "a query parameter"
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data  # a BOM may lead
    except UnicodeDecodeError as exc:
        raise HTTPException(
            400, f"{where} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})"
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            400, f"{where} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except _NotJson as exc:
        raise HTTPException(400, f"{where} is not JSON: {exc} is not a JSON value") from None
    except RecursionError:
        raise HTTPException(400, f"{where} is JSON nested too deeply") from None
    except ValueError:  # the only other one: an integer past Python's digit limit
        raise HTTPException(400, f"{where} holds a number with too many digits") from None
    if isinstance(data, bytes) and not isinstance(value, (dict, list)):
        raise HTTPException(
            400,
            'a GraphQL request is a JSON object such as {"query": "{ accounts { id } }"}, '
            f"not {_kind(value)}",
        )
    if isinstance(value, dict) and not isinstance(value.get("operationName"), (str, type(None))):
        raise HTTPException(
            400, f"operationName must be a string or null, not {_kind(value['operationName'])}"
        )
    return value


_REASONS = {
    "Unsupported content type": "a POST to /graphql needs Content-Type: application/json",
    "Batching is not enabled": "a JSON array (a batch) is not accepted: send one GraphQL "
    "request object per POST",
}
"""Strawberry's refusals that do not say what to do instead, reworded."""


GRAPHIQL_OFF = (
    "GraphiQL is turned off on this gateway. GraphQL requests go to this address: POST with a "
    'JSON body such as {"query": "{ accounts { id } }"}, or GET with a query parameter.\n'
)
"""The body of a browser's ``GET /graphql`` when GraphiQL is off (404, plain text)."""


def _empty_response() -> Response[Any]:
    """What Strawberry's ``_response_getter`` makes: an empty response with no background
    tasks, into which a resolver may put headers, cookies or a status."""
    return Response({}, background=BackgroundTasks([]))


def graphql_controller(
    schema: Schema,
    *,
    path: str,
    context_getter: Callable[[Scope], BaseContext],
    graphiql: bool = True,
    token_required: bool = False,
) -> type[Controller]:
    """Strawberry's Litestar controller for ``schema`` at ``path``, with the offline GraphiQL
    page (asking for a gateway token first when ``token_required``; with ``graphiql`` off, a
    404 saying it is off), reading request bodies strictly and answering every request-level
    refusal as GraphQL JSON.

    ``context_getter`` makes a request's context from its ASGI scope, a plain call: the GET and
    POST handlers ask Litestar for the request alone, where Strawberry's ask it for three
    dependencies (the context, the root value, an empty response), which Litestar resolves
    per request in a task group of its own (and the empty response in a worker thread). A
    websocket (graphql-transport-ws runs queries too) gets its context through Strawberry's
    dependencies, from the same ``context_getter``.
    """

    async def socket_context(scope: Scope) -> BaseContext:
        return context_getter(scope)

    base: Any = make_graphql_controller(
        schema, path=path, context_getter=socket_context, graphql_ide="graphiql"
    )

    def context_of(request: Request[Any, Any, Any]) -> tuple[BaseContext, Response[Any]]:
        """The request's context, and the empty response it carries: what Strawberry's
        ``_context_getter_http`` makes of a ``BaseContext`` and ``_response_getter``."""
        response = _empty_response()
        context = context_getter(request.scope)
        context.request = request
        context.response = response
        return context, response

    class GraphQLRequests(base):  # type: ignore[misc]  # a class made at runtime
        @get(raises=[ValidationException, NotFoundException])
        async def handle_http_get(self, request: Request[Any, Any, Any]) -> Response[Any]:
            context, self.temporal_response = context_of(request)
            return await self.execute_request(request=request, context=context, root_value=None)

        @post(status_code=HTTP_200_OK)
        async def handle_http_post(self, request: Request[Any, Any, Any]) -> Response[Any]:
            context, self.temporal_response = context_of(request)
            return await self.execute_request(request=request, context=context, root_value=None)

        def decode_json(self, data: str | bytes) -> object:
            return decode_request_json(data)

        def should_render_graphql_ide(self, request: Any) -> bool:
            return bool(
                super().should_render_graphql_ide(request)
                and request.query_params.get("extensions") is None
            )

        async def render_graphql_ide(self, request: Request[Any, Any, Any]) -> Response[str]:
            if not graphiql:
                return Response(
                    GRAPHIQL_OFF,
                    status_code=404,
                    media_type=MediaType.TEXT,
                    headers={"X-Content-Type-Options": "nosniff"},
                )
            return Response(
                graphiql_page(token_required),
                media_type=MediaType.HTML,
                headers={
                    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                    "Cache-Control": "no-cache",
                },
            )

        def encode_json(self, data: object) -> bytes:
            """msgspec: the same JSON as the standard module's (integers of any size exact),
            encoded in one fast pass instead of ``json.dumps``."""
            return msgspec.json.encode(data)

        async def execute_request(
            self, request: Request[Any, Any, Any], context: Any, root_value: Any
        ) -> Response[Any]:
            try:
                response: Response[Any] = await self.run(
                    request, context=context, root_value=root_value
                )
            except HTTPException as exc:
                reason = _REASONS.get(exc.reason, exc.reason)
                log.info("refused a GraphQL request: %s", vendor_text(reason))
                return Response(
                    {"errors": [{"message": reason}]},
                    status_code=exc.status_code,
                    media_type=MediaType.JSON,
                )
            return response

    controller: type[Controller] = GraphQLRequests
    return controller


def is_shown(error: GraphQLError) -> bool:
    """Whether ``error`` is shown as it is: the client's mistakes (a bad document, variable or
    argument: errors outside any field) and what a resolver raised on purpose (an error with a
    ``code`` in its ``extensions``: a bad argument, a history store that cannot be used). The
    rest, a resolver's accident, is masked and logged with its traceback.
    """
    if error.path is None or error.original_error is None:
        return True
    return "code" in (getattr(error.original_error, "extensions", None) or {})


class GatewaySchema(Schema):
    """The schema, logging what it shows at INFO on one line (a client's mistake; the service
    logs a broken history store itself) and only its own faults at ERROR with a traceback; the
    lines name the gateway token that asked, if any."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        if any(error.path is not None for error in errors):
            answer_reads.errors()  # raised while reading: an answer never kept
        caller = getattr(getattr(execution_context, "context", None), "scope", None)
        name = getattr(caller, "caller", None)
        who = f" (token {name})" if isinstance(name, str) else ""
        for error in errors:
            if is_shown(error):
                log.info("GraphQL error shown%s: %s", who, vendor_text(error.message))
            else:
                log.error("GraphQL error%s: %s", who, error.message, exc_info=error.original_error)
        forget_tracebacks(errors)


def forget_tracebacks(errors: Iterable[BaseException]) -> None:
    """Drops the tracebacks of ``errors``, of their original errors and of the exceptions they
    were raised from or while handling: once logged, nothing reads them (an answer shows an
    error's message, locations and path). A traceback holds the frames it passed through, and
    those the request (its execution context, which holds the errors): a reference cycle
    through every request that ended in an error, left to the garbage collector."""
    seen: set[int] = set()
    pending: list[BaseException | None] = list(errors)
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += (error.__cause__, error.__context__)
        if isinstance(error, GraphQLError):
            pending.append(error.original_error)


class ArgumentValuesRule(ValuesOfCorrectTypeRule):
    """graphql-core's check of literal values, its messages starting with where the value
    stands: ``Argument 'from' of field 'usage': ...``."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._fields: list[str] = []
        self._where: list[tuple[str, Node]] = []

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        self._fields.append(node.name.value)

    def leave_field(self, node: FieldNode, *_args: Any) -> None:
        self._fields.pop()

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        self._fields.append(f"@{node.name.value}")

    def leave_directive(self, node: DirectiveNode, *_args: Any) -> None:
        self._fields.pop()

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        owner = self._fields[-1] if self._fields else "?"
        kind = "directive" if owner.startswith("@") else "field"
        self._where.append(
            (f"Argument '{node.name.value}' of {kind} '{owner.lstrip('@')}'", node.value)
        )

    def leave_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self._where.pop()

    def enter_variable_definition(self, node: Any, *_args: Any) -> None:
        where = f"Default value of variable '${node.variable.name.value}'"
        self._where.append((where, node.default_value or node))

    def leave_variable_definition(self, node: Any, *_args: Any) -> None:
        self._where.pop()

    def report_error(self, error: GraphQLError) -> None:
        if self._where:
            where, value = self._where[-1]
            error = GraphQLError(
                f"{where}: {error.message}",
                error.nodes or value,
                original_error=error.original_error,
            )
        super().report_error(error)


class RequestChecks(SchemaExtension):
    """Checks graphql-core and Strawberry leave out or word poorly (see the module docstring).

    Put it after ``KnownDocuments`` in the schema's extensions: it adds to the validation
    errors that extension found.
    """

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = tuple(
            ArgumentValuesRule if rule is ValuesOfCorrectTypeRule else rule
            for rule in context.validation_rules
        )
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # Strawberry runs the first operation when the request names none; the spec says no.
        provided = getattr(context, "_provided_operation_name", None)
        if document is not None and provided is None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                error = StrawberryGraphQLError(
                    f"the document has {len(operations)} operations: say which to run with "
                    "operationName",
                    extensions={"code": "BAD_USER_INPUT", "argument": "operationName"},
                )
                context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield


MAX_EXPANDED_FIELDS = 10_000
"""Fields a document may select once every fragment spread is written out in place."""


def expanded_fields(document: DocumentNode) -> int | None:
    """How many fields ``document``'s operations select with every fragment spread written out
    in place (a spread counted each time it appears), or ``None`` when a spread names no
    fragment. Linear in the document: each fragment is counted once (a cycle counts as 0;
    ``NoFragmentCyclesRule`` reports it)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    sizes: dict[str, int | None] = {}
    total = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            part = _size(definition.selection_set, fragments, sizes)
            if part is None:
                return None
            total += part
    for name in fragments:  # an unused fragment with an unknown spread is no less unknown
        if _fragment(name, fragments, sizes) is None:
            return None
    return total


# Module functions rather than two closures calling each other: those would be a reference
# cycle, left (with the document they read) to the garbage collector after every count.
def _size(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    sizes: dict[str, int | None],
) -> int | None:
    """The fields ``selection_set`` selects, its spreads written out (``None``: an unknown
    spread)."""
    total = 0
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            inner = _size(selection.selection_set, fragments, sizes)
            part = None if inner is None else 1 + inner
        elif isinstance(selection, InlineFragmentNode):
            part = _size(selection.selection_set, fragments, sizes)
        else:
            assert isinstance(selection, FragmentSpreadNode)
            part = _fragment(selection.name.value, fragments, sizes)
        if part is None:
            return None
        total += part
    return total


def _fragment(
    name: str, fragments: dict[str, FragmentDefinitionNode], sizes: dict[str, int | None]
) -> int | None:
    """The fields fragment ``name`` selects, counted once (``None``: no such fragment, or an
    unknown spread in it)."""
    if name not in sizes:
        if name not in fragments:
            return None
        sizes[name] = 0  # while counting it: a cycle adds nothing
        sizes[name] = _size(fragments[name].selection_set, fragments, sizes)
    return sizes[name]


class ExpansionLimitRule(ValidationRule):
    """Refuses a document whose fragments expand past :data:`MAX_EXPANDED_FIELDS` fields; on a
    document within it whose spreads all name a fragment, then makes each rule of ``after``
    (rules that do their work when made), in turn."""

    after: tuple[type[ASTValidationRule], ...] = ()

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        count = expanded_fields(context.document)
        if count is None:
            return
        if count > MAX_EXPANDED_FIELDS:
            self.report_error(
                GraphQLError(
                    f"the query selects {count} fields once its fragments are spread out; "
                    f"at most {MAX_EXPANDED_FIELDS} are allowed"
                )
            )
            return
        for rule in self.after:
            rule(context)


def after_known_fragments(
    rules: Sequence[type[ASTValidationRule]],
) -> list[type[ASTValidationRule]]:
    """``rules`` (ones that do their work when made, as Strawberry's depth and alias limiters
    do) made to stand aside on documents with an unknown fragment spread (graphql-core's
    ``NoUndefinedFragmentsRule`` reports it; the depth limiter would fail with a KeyError) or
    whose fragments expand past :data:`MAX_EXPANDED_FIELDS` fields (those limiters walk each
    spread anew, exponential in nested spreads), which :class:`ExpansionLimitRule` refuses: one
    rule, counting the document's fields once for all of them."""
    limits = type(
        "ExpansionLimitThen" + "".join(rule.__name__ for rule in rules),
        (ExpansionLimitRule,),
        {"after": tuple(rules)},
    )
    return [limits]
