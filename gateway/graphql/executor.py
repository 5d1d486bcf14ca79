"""How an operation is executed: graphql-core's executor (as Strawberry sets it up), with the
gateway's changes to how values are completed and resolvers called.

* **Plain objects in one pass.** An object whose selected fields are all plain (the value is
  an attribute of the object, a scalar or an enum, with no arguments and no resolver of its
  own: a quota's figures, a usage point, a status) is answered by reading those attributes and
  coercing them as graphql-core does, without building a resolve info, calling a resolver and
  completing a value per field (some 230 fields in a dashboard query). A list of such objects is
  answered in one pass. Where anything is not as expected (an attribute missing, ``None`` for a
  non-null field, a value its scalar or enum refuses), the object or list is completed again
  by graphql-core's own path, which reports the error exactly as it always does: the answer,
  errors included, is the same (tests/test_executor.py compares them).
* **Resolvers called directly.** A field with a resolver of its own (``accounts``, an account's
  ``source`` and ``usage``) goes through Strawberry's glue on every call: its arguments
  converted from graphql-core's values (each argument's GraphQL name worked out again), an
  ``Info`` made, the resolver called through a chain of closures; and graphql-core works out the
  argument values from the field node before that. The arguments depend only on the field node,
  its type and the variable values, so they are worked out once per operation and variable
  values, by those libraries' own functions (``get_argument_values``, Strawberry's
  ``convert_arguments``), kept in the operation's memo (:mod:`gateway.graphql.memo`, by the
  parent type and the field's first node), and the resolver is called with them as Strawberry
  calls it (``StrawberryField.get_result``, with the ``Info`` of
  ``StrawberryConfig.info_class``); what comes back is completed, and errors are located, by
  graphql-core's own methods, as in its ``execute_field``. Only where Strawberry's glue would
  do nothing more: a synchronous resolver, no field extensions (permission classes are
  some), no directives, no exception handlers on the schema, no middleware, arguments of scalar
  and enum types (or lists of them) whose values a resolver cannot change (a list argument
  given goes the usual way: each call gets its own copy); a field node with fragment variables
  goes the usual way too, and so does a field whose arguments raise (graphql-core reports it).
* **Long lists in slices.** A list longer than :data:`~gateway.graphql.yielding.SLICE` is
  completed item by item on the shared budget of :mod:`gateway.graphql.yielding`, the event
  loop running in between; that is done here, where every list is completed, rather than by a
  resolver hook, which would wrap every field of every answer (a few microseconds each).

And one change to what it leaves behind: graphql-core's executor keeps the helpers it gives
resolvers (``info.async_helpers``, its own bound methods) on itself, a reference cycle holding
the executor, the request's context and the document until the garbage collector came by; this
one lets go of them once the answer is built, and the request is freed as soon as it ends.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import AsyncIterable, Awaitable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.execution.values import get_argument_values
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import Schema, StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

from gateway.graphql.memo import OperationMemo
from gateway.graphql.types import memo_of
from gateway.graphql.yielding import SLICE, in_slices

_DEFINITION = "strawberry-definition"
"""Where Strawberry keeps a GraphQL field's own definition (``GraphQLField.extensions``)."""

Plain = tuple[tuple[str, str | None, GraphQLLeafType | None, bool], ...]
"""How to answer an object of plain fields: per response key, the attribute to read (``None``
for ``__typename``), its leaf type (``None``: the type's name) and whether it is non-null."""


_STRAWBERRY_RESOLVER = "GraphQLCoreConverter.from_resolver.<locals>._resolver"
"""The qualified name of the function Strawberry makes to call a field's synchronous resolver
(``strawberry.schema.schema_converter``): the glue a direct call stands in for."""

_FIXED = frozenset(
    {type(None), bool, int, float, str, date, datetime, time, timedelta, Decimal, UUID}
)
"""Types of argument values a resolver cannot change, which can be handed to every call."""


class _Direct:
    """How to call a field's resolver as Strawberry does, without its per-call glue."""

    __slots__ = ("field", "info_class", "info_name", "pass_self", "source_names")

    def __init__(self, field: StrawberryField, info_class: type[Info]) -> None:
        resolver = field.base_resolver
        assert resolver is not None
        self.field = field
        self.info_class = info_class
        self.pass_self = resolver.self_parameter is not None
        self.source_names = tuple(
            p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None
        )
        info = resolver.info_parameter
        self.info_name = info.name if info is not None else None


_DIRECT: weakref.WeakKeyDictionary[GraphQLObjectType, dict[str, _Direct | None]] = (
    weakref.WeakKeyDictionary()
)
"""Which fields of a type (by name) are called directly, and how: worked out once per type."""


def _direct_of(schema: Any, definition: GraphQLField) -> _Direct | None:
    """How to call ``definition``'s resolver directly; ``None`` where Strawberry's glue does
    more than convert the arguments and call it: an async resolver, field extensions
    (permission classes among them), exception handlers, directives, arguments of other than
    scalar or enum types (or lists of them), a resolve function Strawberry did not make."""
    own = definition.extensions.get(_DEFINITION)
    strawberry_schema = schema.extensions.get(_DEFINITION)
    if (
        not isinstance(own, StrawberryField)
        or not isinstance(strawberry_schema, Schema)
        or getattr(definition.resolve, "__qualname__", None) != _STRAWBERRY_RESOLVER
        or own.base_resolver is None
        or own.is_async
        or own.extensions
        or own.directives
        or strawberry_schema.exception_handlers
    ):
        return None
    for argument in definition.args.values():
        kind: Any = argument.type
        while isinstance(kind, (GraphQLNonNull, GraphQLList)):
            kind = kind.of_type
        if not isinstance(kind, (GraphQLScalarType, GraphQLEnumType)):
            return None  # an input object: Strawberry may build it with the request's info
    return _Direct(own, strawberry_schema.config.info_class)


class _NotPlain(Exception):
    """An object the one-pass reading cannot answer: graphql-core's path completes it."""


class GatewayExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, answering plain objects in one pass and long lists in slices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._helpers: GraphQLResolveInfoHelpers | None = None
        super().__init__(*args, **kwargs)
        self._plain: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, Plain | None]] = {}
        self._memo: OperationMemo | None = None
        self._direct = self.middleware_manager is None or not self.middleware_manager.middlewares
        self.plain_objects = 0
        """Objects this execution answered in one pass (a null item of their list counts too)."""
        self.direct_calls = 0
        """Resolvers this execution called directly, their arguments from the memo."""

    def operation_memo(self) -> OperationMemo:
        """The memo of this operation with its variable values, looked up once."""
        if self._memo is None:
            self._memo = memo_of(
                self.context_value, self.operation, self.fragment_definitions, self.variable_values
            )
        return self._memo

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        first = field_details_list[0]
        if self._direct and first.fragment_variable_values is None:
            known = self.operation_memo().arguments
            key = (parent_type, id(first.node))
            call = known.get(key, Undefined)
            if call is Undefined:
                call = known[key] = self._direct_call(parent_type, first.node)
            if call is not None:
                return self._call_directly(
                    parent_type, source, field_details_list, path, position_context, *call
                )
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _direct_call(
        self, parent_type: GraphQLObjectType, node: FieldNode
    ) -> tuple[GraphQLField, _Direct, dict[str, Any]] | None:
        """The field's definition, how to call its resolver and its arguments as the resolver
        takes them, where that can be done directly and the arguments can be handed to every
        call (``None`` otherwise): worked out with the libraries' own functions."""
        name = node.name.value
        definition = self.schema.get_field(parent_type, name)
        if definition is None:
            return None
        fields = _DIRECT.get(parent_type)
        if fields is None:
            fields = _DIRECT[parent_type] = {}
        if name in fields:
            direct = fields[name]
        else:
            direct = fields[name] = _direct_of(self.schema, definition)
        if direct is None:
            return None
        try:
            values = (
                get_argument_values(
                    definition, node, self.variable_values, None, self.hide_suggestions
                )
                if definition.args or node.arguments
                else {}
            )
            strawberry_schema = self.schema.extensions[_DEFINITION]
            kwargs = convert_arguments(
                values,
                direct.field.arguments,
                scalar_registry=strawberry_schema.schema_converter.scalar_registry,
                config=strawberry_schema.config,
            )
        except Exception:  # graphql-core's path reports it, located in the answer
            return None
        if not all(type(v) in _FIXED or isinstance(v, enum.Enum) for v in kwargs.values()):
            return None
        return definition, direct, kwargs

    def _call_directly(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
        definition: GraphQLField,
        direct: _Direct,
        arguments: dict[str, Any],
    ) -> Any:
        """What graphql-core's ``execute_field`` does, the resolver called as Strawberry calls
        it, with the arguments at hand."""
        self.direct_calls += 1
        return_type = definition.type
        info = self.build_resolve_info(
            definition, [d.node for d in field_details_list], parent_type, path
        )
        try:
            strawberry_info = direct.info_class(_raw_info=info, _field=direct.field)
            kwargs = dict(arguments)
            for name in direct.source_names:
                kwargs[name] = source
            if direct.info_name is not None:
                kwargs[direct.info_name] = strawberry_info
            result = direct.field.get_result(
                source, strawberry_info, [source] if direct.pass_self else [], kwargs
            )
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
            if self.is_awaitable(completed):
                return self._await_completed(completed, return_type, field_details_list, path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    async def _await_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    @property
    def async_helpers(self) -> GraphQLResolveInfoHelpers:
        """The helpers graphql-core gives resolvers in their resolve info: its own, until the
        answer is built, and then made again if a field is still resolved after it (a sibling
        of a field whose error nulled the whole answer, left to settle in the background)."""
        helpers = self._helpers
        if helpers is None:
            helpers = self._helpers = GraphQLResolveInfoHelpers(
                gather=self.gather_async_work, track=self.track_async_work
            )
        return helpers

    @async_helpers.setter
    def async_helpers(self, helpers: GraphQLResolveInfoHelpers | None) -> None:
        self._helpers = helpers

    def build_response(self, data: dict[str, Any] | None) -> Any:
        """graphql-core's answer, after which this executor lets go of its resolve-info
        helpers: they are its own bound methods, a reference cycle that kept the executor, the
        request's context and the document until the garbage collector came by."""
        response = super().build_response(data)
        self._helpers = None
        return response

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: Any,  # GraphQLResolveInfo, generic in some graphql-core versions only
        path: Path,
        result: AsyncIterable[Any] | Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if type(result) is list:
            if len(result) > SLICE:
                result = in_slices(result)
            else:
                item_type = return_type.of_type
                non_null = isinstance(item_type, GraphQLNonNull)
                named = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
                if isinstance(named, GraphQLObjectType):
                    plain = self.plain_fields(named, field_details_list)
                    if plain is not None:
                        try:
                            answer = [_item(plain, item, named.name, non_null) for item in result]
                        except _NotPlain:
                            pass
                        else:
                            self.plain_objects += len(answer)
                            return answer
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plain = self.plain_fields(return_type, field_details_list)
        if plain is not None:
            try:
                answer = _read(plain, result, return_type.name)
            except _NotPlain:
                pass
            else:
                self.plain_objects += 1
                return answer
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def plain_fields(
        self, parent: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plain | None:
        """How to answer ``parent`` with these selections in one pass; ``None`` when some
        selected field is not plain (or the operation has anything else to attend to: a
        middleware, a type check, deferred fragments). Worked out once per selection in an
        execution, and kept for the next executions of the same operation with the same
        variable values (:mod:`gateway.graphql.memo`), the selection told by its field nodes
        (not for a document seen once: it does not come back as the same nodes)."""
        key = (parent, id(field_details_list))  # as graphql-core keys collect_subfields
        found = self._plain.get(key)
        if found is None:
            found = (field_details_list, self._plain_of(parent, field_details_list))
            self._plain[key] = found  # the list is kept too: its id is not reused meanwhile
        return found[1]

    def _plain_of(
        self, parent: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plain | None:
        middleware = self.middleware_manager
        if middleware is not None and middleware.middlewares:
            return None
        if any(
            d.defer_usage is not None or d.fragment_variable_values is not None
            for d in field_details_list
        ):
            return self._plain_fields(parent, field_details_list)  # this execution's own
        memo = self.operation_memo()
        if not memo.kept:  # this request's only: kept per execution in ``_plain``
            return self._plain_fields(parent, field_details_list)
        known = memo.plain
        nodes = (parent, tuple(id(d.node) for d in field_details_list))
        if nodes in known:
            kept: Plain | None = known[nodes]
            return kept
        plain = known[nodes] = self._plain_fields(parent, field_details_list)
        return plain

    def _plain_fields(
        self, parent: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plain | None:
        if parent.is_type_of is not None:
            return None
        grouped, deferred, _ = self.collect_subfields(parent, field_details_list)
        if deferred:
            return None
        plain: list[tuple[str, str | None, GraphQLLeafType | None, bool]] = []
        for key, details in grouped.items():
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                plain.append((key, None, None, True))
                continue
            definition = parent.fields.get(name)
            if definition is None or definition.args or node.arguments:
                return None
            own = definition.extensions.get(_DEFINITION)
            if (
                not isinstance(own, StrawberryField)
                or not own.is_basic_field
                or own.default_resolver is not getattr
                or not getattr(definition.resolve, "_is_default", False)
            ):
                return None
            kind = definition.type
            leaf = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
            if not isinstance(leaf, (GraphQLScalarType, GraphQLEnumType)):
                return None
            plain.append((key, own.python_name, leaf, isinstance(kind, GraphQLNonNull)))
        if all(attribute is None for _, attribute, _, _ in plain):
            return None  # nothing read: the source itself may still need awaiting
        return tuple(plain)


def _item(plain: Plain, item: Any, type_name: str, non_null: bool) -> dict[str, Any] | None:
    if item is None:
        if non_null:
            raise _NotPlain
        return None
    return _read(plain, item, type_name)


def _read(plain: Plain, source: Any, type_name: str) -> dict[str, Any]:
    """One object's answer, or :class:`_NotPlain` where graphql-core's path must say more."""
    answer: dict[str, Any] = {}
    try:
        for key, attribute, leaf, non_null in plain:
            if attribute is None:
                answer[key] = type_name
                continue
            value = getattr(source, attribute)
            if value is None:
                if non_null:
                    raise _NotPlain
                answer[key] = None
                continue
            assert leaf is not None
            coerced = leaf.coerce_output_value(value)
            if coerced is None or coerced is Undefined:
                raise _NotPlain
            answer[key] = coerced
    except _NotPlain:
        raise
    except Exception as exc:  # graphql-core's path reports it, located in the answer
        raise _NotPlain from exc
    return answer
