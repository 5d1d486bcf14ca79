"""How an operation is executed: graphql-core's executor (as Strawberry sets it up), with the
gateway's two changes to how values are completed.

* **Plain objects in one pass.** An object whose selected fields are all plain (the value is
  an attribute of the object, a scalar or an enum, with no arguments and no resolver of its
  own: a quota's figures, a usage point, a status) is answered by reading those attributes and
  coercing them as graphql-core does, without building a resolve info, calling a resolver and
  completing a value per field (some 230 fields in a dashboard query). A list of such objects is
  answered in one pass. Where anything is not as expected (an attribute missing, ``None`` for a
  non-null field, a value its scalar or enum refuses), the object or list is completed again
  by graphql-core's own path, which reports the error exactly as it always does: the answer,
  errors included, is the same (tests/test_executor.py compares them).
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

from collections.abc import AsyncIterable, Iterable
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from gateway.graphql.memo import MEMOS, OperationMemo, coerced
from gateway.graphql.yielding import SLICE, in_slices

_DEFINITION = "strawberry-definition"
"""Where Strawberry keeps a GraphQL field's own definition (``GraphQLField.extensions``)."""

Plain = tuple[tuple[str, str | None, GraphQLLeafType | None, bool], ...]
"""How to answer an object of plain fields: per response key, the attribute to read (``None``
for ``__typename``), its leaf type (``None``: the type's name) and whether it is non-null."""


class _NotPlain(Exception):
    """An object the one-pass reading cannot answer: graphql-core's path completes it."""


class GatewayExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, answering plain objects in one pass and long lists in slices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._helpers: GraphQLResolveInfoHelpers | None = None
        super().__init__(*args, **kwargs)
        self._plain: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, Plain | None]] = {}
        self._memo: OperationMemo | None = None
        self.plain_objects = 0
        """Objects this execution answered in one pass (a null item of their list counts too)."""

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
        variable values (:mod:`gateway.graphql.memo`), the selection told by its field nodes."""
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
        if self._memo is None:
            self._memo = MEMOS.of(
                self.operation, self.fragment_definitions, coerced(self.variable_values)
            )
        known = self._memo.plain
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
