"""Validating a document: graphql-core's ``validate``, the same rules in the same order with
the same errors, at some 25-45 % of the cost (a dashboard's query, with no directive, variable
or fragment: 25-30 %).

A document the gateway has not seen yet is validated before it runs, against some 35 rules,
and that took longer than executing it. What graphql-core's way of running the rules costs
besides the rules themselves, this module does differently:

* **Dispatch.** graphql-core walks the document once, calling every rule at every node, each
  rule finding its method for that kind of node anew in every validation (a name built and
  looked up on the rule, mostly missing). Here each node goes only to the rules that handle its
  kind, and which rules handle which kind (and by which method) is worked out once per
  sequence of rule classes, not in every validation.
* **Keys.** The validation context keeps what it found (variable usages, fragment spreads) in
  dictionaries keyed by syntax-tree nodes, and a node hashes as its whole subtree does (they
  are frozen dataclasses): every look-up hashed the operation again. Here those dictionaries
  are keyed by the nodes' identity (graphql-core's own ``RefMap``).
* **No variables, no search for them.** Three rules ask which variables each definition uses,
  which graphql-core answers by walking the definition a second time; in a document without a
  ``$`` the answer is none, given at once.
* **No rule where it can find nothing.** A document without directives, variables or fragments
  (a dashboard's query, most often) holds nothing for some twenty of graphql-core's rules to
  look at, yet each was made and called at its nodes: about a quarter of a new document's
  validation. Such a rule (:data:`NEEDS`: graphql-core's own rule classes, not subclasses) is
  left out of a validation when its source text shows the document has none of what the rule
  checks (no ``@``: no directive; no ``$``: no variable; no ``...`` and no fragment definition:
  no fragment; one operation, only queries, no introspection field). A rule left out would have
  reported nothing and spent none of graphql-core's budget of fragment work, so the errors
  (and where validation aborts) are the same.

And it leaves no reference cycle behind: a graphql-core visitor keeps the methods it found for
each kind of node on itself, bound to itself, and so kept itself, the rules, their context and
the document for the garbage collector after every validation. Here those are emptied when a
walk is over (the rules', and the walks for variable usages): once validation has returned,
nothing it made keeps the document alive.

Everything else is graphql-core's: its rules, its ``TypeInfo``, its traversal, its error limit
and its guard against fragments nested too deeply. tests/test_validation.py checks that the
errors (messages and locations) are those of ``graphql.validate`` for generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, cast

from graphql import (
    BREAK,
    SKIP,
    DeferStreamDirectiveLabel,
    DeferStreamDirectiveOnRootField,
    DeferStreamDirectiveOnValidOperationsRule,
    DocumentNode,
    FragmentDefinitionNode,
    FragmentsOnCompositeTypesRule,
    GraphQLError,
    GraphQLSchema,
    KnownDirectivesRule,
    KnownFragmentNamesRule,
    KnownOperationTypesRule,
    KnownTypeNamesRule,
    LoneAnonymousOperationRule,
    MaxIntrospectionDepthRule,
    NoFragmentCyclesRule,
    NoUndefinedVariablesRule,
    NoUnusedFragmentsRule,
    NoUnusedVariablesRule,
    OperationDefinitionNode,
    OperationType,
    ParallelVisitor,
    PossibleFragmentSpreadsRule,
    SingleFieldSubscriptionsRule,
    StreamDirectiveOnListField,
    TypeInfo,
    TypeInfoVisitor,
    UniqueDirectivesPerLocationRule,
    UniqueFragmentNamesRule,
    UniqueOperationNamesRule,
    UniqueVariableNamesRule,
    ValidationContext,
    VariablesAreInputTypesRule,
    VariablesInAllowedPositionRule,
    Visitor,
    assert_valid_schema,
    visit,
)
from graphql.language.visitor import EnterLeaveVisitor
from graphql.pyutils import RefMap
from graphql.validation import ASTValidationRule
from graphql.validation.validate import (
    FragmentNestingVisitor,
    ValidationAbortedError,
    query_document_keys_to_validate,
)
from graphql.validation.validation_context import VariableUsage, VariableUsageVisitor
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

MAX_ERRORS = 100
"""Errors after which validation stops (graphql-core's default)."""

_Handler = Callable[..., Any]
_METHODS: dict[tuple[type[Visitor], str], tuple[str | None, str | None]] = {}
"""The names of a visitor class's enter and leave methods for a kind of node (emptied with
:data:`_KIND_METHODS`)."""


def _method_names(cls: type[Visitor], kind: str) -> tuple[str | None, str | None]:
    """As ``Visitor.get_enter_leave_for_kind`` finds them: ``enter_<kind>`` else ``enter``,
    ``leave_<kind>`` else ``leave``, by name."""
    found = _METHODS.get((cls, kind))
    if found is None:
        enter = next((n for n in (f"enter_{kind}", "enter") if getattr(cls, n, None)), None)
        leave = next((n for n in (f"leave_{kind}", "leave") if getattr(cls, n, None)), None)
        found = _METHODS[(cls, kind)] = (enter, leave)
    return found


_Names = tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str | None], ...]]
_OWN_LOOKUP: Any = object()
"""A visitor class finds its methods itself: asked anew in each validation."""
_KIND_METHODS: dict[tuple[tuple[type[Visitor], ...], str], _Names] = {}
"""For a sequence of visitor classes and a kind of node: the visitors (by position) with an
enter method for it, and those to ask on leaving it (a leave method, or an enter method: one
that skipped the node's subtree stops skipping there), with the methods' names. A schema's rule
classes are made once, so this holds a few dozen entries; it is emptied past
:data:`MAX_KIND_METHODS` (rule classes made per request would otherwise fill it)."""
MAX_KIND_METHODS = 4096


def _kind_methods(classes: tuple[type[Visitor], ...], kind: str) -> _Names:
    if any(cls.get_enter_leave_for_kind is not Visitor.get_enter_leave_for_kind for cls in classes):
        return _OWN_LOOKUP  # type: ignore[no-any-return]
    enters: list[tuple[int, str]] = []
    leaves: list[tuple[int, str | None]] = []
    for index, cls in enumerate(classes):
        enter, leave = _method_names(cls, kind)
        if enter:
            enters.append((index, enter))
        if enter or leave:
            leaves.append((index, leave))
    return tuple(enters), tuple(leaves)


class _Rules(ParallelVisitor):
    """graphql-core's ``ParallelVisitor``, calling at each node only the visitors that handle
    its kind (which those are is worked out once per sequence of rule classes)."""

    def __init__(self, visitors: Sequence[Visitor]) -> None:
        super().__init__(visitors)
        self._classes = tuple(type(visitor) for visitor in visitors)

    def get_enter_leave_for_kind(self, kind: str) -> EnterLeaveVisitor:
        found = self.enter_leave_map.get(kind)
        if found is not None:
            return found
        visitors = cast("Sequence[Visitor]", self.visitors)  # graphql-core passes a list
        classes = self._classes
        names = _KIND_METHODS.get((classes, kind))
        if names is None:
            if len(_KIND_METHODS) >= MAX_KIND_METHODS:
                _KIND_METHODS.clear()
                _METHODS.clear()
            names = _KIND_METHODS[(classes, kind)] = _kind_methods(classes, kind)
        if names is _OWN_LOOKUP:  # a visitor finds its methods itself: graphql-core's way
            return super().get_enter_leave_for_kind(kind)
        enter_names, leave_names = names
        enters = tuple((index, getattr(visitors[index], name)) for index, name in enter_names)
        leaves = tuple(
            (index, getattr(visitors[index], name) if name else None) for index, name in leave_names
        )
        found = self.enter_leave_map[kind] = (
            EnterLeaveVisitor(self._enter(enters), self._leave(leaves))
            if enters or leaves
            else EnterLeaveVisitor(None, None)
        )
        return found

    def _enter(self, handlers: Sequence[tuple[int, _Handler]]) -> _Handler:
        skipping = self.skipping

        def enter(node: Any, *args: Any) -> Any:
            args = (node, *args)
            for index, handler in handlers:
                if not skipping[index]:
                    result = handler(*args)
                    if result is None:
                        continue
                    if result is SKIP or result is False:
                        skipping[index] = node
                    elif result is BREAK or result is True:
                        skipping[index] = BREAK
                    else:
                        return result
            return None

        return enter

    def _leave(self, handlers: Sequence[tuple[int, _Handler | None]]) -> _Handler:
        skipping = self.skipping

        def leave(node: Any, *args: Any) -> Any:
            args = (node, *args)
            for index, handler in handlers:
                if not skipping[index]:
                    if handler:
                        result = handler(*args)
                        if result is None:
                            continue
                        if result is BREAK or result is True:
                            skipping[index] = BREAK
                        elif result is not SKIP and result is not False:
                            return result
                elif skipping[index] is node:
                    skipping[index] = None
            return None

        return leave


_DIRECTIVE, _VARIABLE, _FRAGMENT = "directive", "variable", "fragment"
_OPERATIONS, _NOT_QUERY, _SUBSCRIPTION = "operations", "mutation or subscription", "subscription"
_INTROSPECTION = "introspection"
NEEDS: dict[type[ASTValidationRule], frozenset[str]] = {
    rule: frozenset(needs)
    for rules, needs in (
        (
            (
                KnownDirectivesRule,
                UniqueDirectivesPerLocationRule,
                DeferStreamDirectiveOnRootField,
                DeferStreamDirectiveOnValidOperationsRule,
                DeferStreamDirectiveLabel,
                StreamDirectiveOnListField,
            ),
            {_DIRECTIVE},
        ),
        ((UniqueVariableNamesRule, VariablesAreInputTypesRule), {_VARIABLE}),
        # These ask for each operation's variables, fragments included: with fragments they
        # spend graphql-core's fragment work (past its budget, validation aborts).
        (
            (NoUndefinedVariablesRule, NoUnusedVariablesRule, VariablesInAllowedPositionRule),
            {_VARIABLE, _FRAGMENT},
        ),
        # A type is named in an executable document by a variable or a fragment only.
        ((KnownTypeNamesRule,), {_VARIABLE, _FRAGMENT}),
        (
            (
                FragmentsOnCompositeTypesRule,
                UniqueFragmentNamesRule,
                KnownFragmentNamesRule,
                NoUnusedFragmentsRule,
                PossibleFragmentSpreadsRule,
                NoFragmentCyclesRule,
            ),
            {_FRAGMENT},
        ),
        ((LoneAnonymousOperationRule, UniqueOperationNamesRule), {_OPERATIONS}),
        ((KnownOperationTypesRule,), {_NOT_QUERY}),  # every schema has a query type
        ((SingleFieldSubscriptionsRule,), {_SUBSCRIPTION}),
        ((MaxIntrospectionDepthRule,), {_INTROSPECTION}),
    )
    for rule in rules
}
"""graphql-core's rules that can report something only in a document holding one of these (a
directive, a variable, a fragment, several operations, a mutation or subscription, a
subscription, an introspection field ``__schema`` or ``__type``): left out of the validation of
a document that holds none of them (:func:`held`)."""

_INTROSPECTION_FIELD = re.compile(r"__schema|__type(?!name)")


def held(document: DocumentNode) -> frozenset[str] | None:
    """What of :data:`NEEDS` ``document`` may hold, read from its source text (a ``@`` in a
    string or a comment counts too: then a rule runs that finds nothing); ``None`` (anything)
    for a document without its source or with a definition that is not executable."""
    location = document.loc
    if location is None:
        return None
    body = location.source.body
    found: set[str] = set()
    operations = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations += 1
            kind = definition.operation
            if kind is not OperationType.QUERY:
                found.add(_NOT_QUERY)
                if kind is OperationType.SUBSCRIPTION:
                    found.add(_SUBSCRIPTION)
        elif isinstance(definition, FragmentDefinitionNode):
            found.add(_FRAGMENT)
        else:
            return None
    if operations > 1:
        found.add(_OPERATIONS)
    if "@" in body:
        found.add(_DIRECTIVE)
    if "$" in body:
        found.add(_VARIABLE)
    if "..." in body:
        found.add(_FRAGMENT)
    if _INTROSPECTION_FIELD.search(body):
        found.add(_INTROSPECTION)
    return frozenset(found)


def needed(
    document: DocumentNode, rules: Collection[type[ASTValidationRule]]
) -> list[type[ASTValidationRule]]:
    """``rules`` without those of :data:`NEEDS` that can find nothing in ``document``."""
    holds = held(document)
    if holds is None:
        return list(rules)
    return [rule for rule in rules if (needs := NEEDS.get(rule)) is None or holds & needs]


class _Context(ValidationContext):
    """graphql-core's ``ValidationContext``, its walks for variable usages leaving no
    reference cycle behind."""

    def get_variable_usages(self, node: Any) -> list[VariableUsage]:
        usages = self._variable_usages.get(node)
        if usages is None:
            fragment = node if isinstance(node, FragmentDefinitionNode) else None
            usage_visitor = VariableUsageVisitor(self._type_info, fragment)
            walker = TypeInfoVisitor(self._type_info, usage_visitor)
            try:
                visit(node, walker)
            finally:
                walker.enter_leave_map.clear()  # bound methods of its own: a cycle
                usage_visitor.enter_leave_map.clear()
            usages = self._variable_usages[node] = usage_visitor.usages
        return usages


def validate(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: Collection[type[ASTValidationRule]],
) -> list[GraphQLError]:
    """``graphql.validate(schema, document, rules)``: the same errors, in the same order."""
    assert_valid_schema(schema)
    errors: list[GraphQLError] = []
    type_info = TypeInfo(schema)

    def on_error(error: GraphQLError) -> None:
        if len(errors) >= MAX_ERRORS:
            msg = "Too many validation errors, error limit reached. Validation aborted."
            raise ValidationAbortedError(msg)
        errors.append(error)

    context = _Context(schema, document, type_info, on_error)
    # Keyed by identity: a frozen node hashes as its whole subtree does.
    context._variable_usages = RefMap()  # type: ignore[assignment]
    context._recursive_variable_usages = RefMap()  # type: ignore[assignment]
    context._fragment_spreads = RefMap()  # type: ignore[assignment]
    if _without_variables(document):
        # Three rules ask for the variables used in each definition, which graphql-core finds
        # by walking it again with type information; a document with no ``$`` has none.
        for definition in document.definitions:
            context._variable_usages[definition] = []  # type: ignore[index]
    visitors: list[Visitor] = [rule(context) for rule in needed(document, rules)]
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    if fragments:
        visitors.insert(0, FragmentNestingVisitor(fragments))
    rules_visitor = _Rules(visitors)
    type_info_visitor = TypeInfoVisitor(type_info, rules_visitor)
    try:
        visit(document, type_info_visitor, query_document_keys_to_validate)
    except ValidationAbortedError as error:
        error.__context__ = None
        errors.append(error.with_traceback(None))
    except RecursionError:
        errors.append(ValidationAbortedError("Validation aborted."))
    finally:
        # A visitor keeps its methods for each kind of node on itself, bound to itself: a
        # reference cycle, holding the rules, their context and the document until the
        # garbage collector came by. Emptied, they all go when validation returns.
        for visitor in (type_info_visitor, rules_visitor, *visitors):
            visitor.enter_leave_map.clear()
    return errors


def _without_variables(document: DocumentNode) -> bool:
    """Whether ``document`` has no variable anywhere: its source has no ``$`` (the token
    every variable starts with). ``False`` when there is no source to look at."""
    location = document.loc
    return location is not None and "$" not in location.source.body


def validate_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: Collection[type[ASTValidationRule]],
) -> list[GraphQLError]:
    """Strawberry's ``validate_document`` (``rules`` and Strawberry's own two) on
    :func:`validate`."""
    return validate(schema, document, (*rules, MaybeNullValidationRule, OneOfInputValidationRule))
