"""What the resolvers and the executor read from an operation's document alone, worked out
once per operation and set of variable values rather than on every request.

Known documents come back parsed (:mod:`gateway.graphql.documents`): every request of one
runs the same syntax-tree objects, so what is derived from those nodes, the fragments and the
variable values only (never from the data) is the same on each, and is kept in an
:class:`OperationMemo`: the operation's usage plan (:func:`gateway.graphql.selection.usage_plan`),
whether each ``usage`` field shows its buckets' endpoint splits, how the executor answers
each selection of plain fields in one pass, and the arguments it calls resolvers with
(:mod:`gateway.graphql.executor`).

A memo is found by the operation node's identity, and only while that very node is alive and
the request's fragments are the very fragment nodes it was worked out with; within that, by the
operation's variable values (``@skip``/``@include`` and arguments may read them): values
unequal, of another type, or written otherwise (``-0.0`` and ``0.0``) find another memo, and
values that cannot be hashed (a list, an input object) find none (everything is worked out
anew, as before). The store holds only weak references to syntax-tree nodes, so it keeps no
document alive, and an operation's memos go when its node does (a document made up for one
request leaves nothing behind); it is bounded: :data:`MAX_OPERATIONS` operations,
:data:`MAX_VARIABLE_SETS` memos each, least recently used dropped first.

A document parsed for its request and not kept parsed after it (one seen for the first time:
:mod:`gateway.graphql.documents`) cannot come back as the same nodes, so its operation is not
looked up in the store at all: it gets a memo of its own for that request (``kept`` false),
shared by its resolvers and the executor, which then keeps no one-pass selections in it (the
execution has its own) and builds no keys for them.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any

from graphql import FragmentDefinitionNode, OperationDefinitionNode

MAX_OPERATIONS = 1024
"""Operations memoized at most (twice the known documents kept)."""

MAX_VARIABLE_SETS = 16
"""Memos kept per operation at most, one per set of variable values."""


class OperationMemo:
    """What one operation, with one set of variable values, selects (worked out when first
    asked, by whoever asks)."""

    __slots__ = ("arguments", "kept", "plain", "plan", "splits")

    def __init__(self, *, kept: bool = True) -> None:
        self.kept = kept
        """Whether the memo is kept for the operation's next requests (false: this one's
        only, so not worth filling beyond what this request asks twice)."""
        self.plan: object = None
        """The operation's usage plan (``gateway.graphql.selection.UsagePlan``), once read."""
        self.splits: dict[int, bool] = {}
        """Whether a ``usage`` field shows its buckets' endpoint splits, by its first field
        node's id (the nodes live as long as the operation node does)."""
        self.plain: dict[Hashable, Any] = {}
        """How the executor answers an object type's selection in one pass (or ``None``), by
        the type and its field nodes' ids (``gateway.graphql.executor``)."""
        self.arguments: dict[Hashable, Any] = {}
        """A field's arguments as its resolver takes them (or ``None``: not called directly),
        by the parent type and the field's first field node's id (``gateway.graphql.executor``)."""


class _Entry:
    __slots__ = ("fragments", "memos", "operation")

    def __init__(
        self,
        operation: OperationDefinitionNode,
        fragments: tuple[FragmentDefinitionNode, ...],
        gone: Callable[[weakref.ref[OperationDefinitionNode]], None],
    ) -> None:
        self.operation = weakref.ref(operation, gone)
        self.fragments = tuple(weakref.ref(f) for f in fragments)
        self.memos: OrderedDict[Hashable, OperationMemo] = OrderedDict()

    def matches(
        self, operation: OperationDefinitionNode, fragments: tuple[FragmentDefinitionNode, ...]
    ) -> bool:
        return (
            self.operation() is operation
            and len(self.fragments) == len(fragments)
            and all(
                ref() is fragment for ref, fragment in zip(self.fragments, fragments, strict=True)
            )
        )


class OperationMemos:
    """Memos by operation node and variable values, bounded (see the module's docstring)."""

    def __init__(
        self, max_operations: int = MAX_OPERATIONS, max_variable_sets: int = MAX_VARIABLE_SETS
    ) -> None:
        self.max_operations = max_operations
        self.max_variable_sets = max_variable_sets
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.entries_made = 0
        """Operations entered into the store so far (each new one, or one back after its
        entry was dropped)."""

    def __len__(self) -> int:
        return len(self._entries)

    def memos(self) -> int:
        """Memos kept, over every operation."""
        return sum(len(entry.memos) for entry in list(self._entries.values()))

    def of(
        self,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variable_values: Mapping[str, Any],
    ) -> OperationMemo:
        """The memo of ``operation`` with the document's ``fragments`` and the coerced
        ``variable_values``; a new one, kept nowhere, where the values cannot be hashed."""
        variables = _variables_key(variable_values)
        if variables is None:
            return OperationMemo(kept=False)
        definitions = tuple(fragments.values())
        key = id(operation)
        entry = self._entries.get(key)
        if entry is None or not entry.matches(operation, definitions):
            # A node's id may be another's once it is gone (its entry went with it meanwhile).
            entry = _Entry(operation, definitions, partial(self._gone, key))
            self.entries_made += 1
            self._entries[key] = entry
            while len(self._entries) > self.max_operations:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        memo = entry.memos.get(variables)
        if memo is None:
            memo = entry.memos[variables] = OperationMemo()
            while len(entry.memos) > self.max_variable_sets:
                entry.memos.popitem(last=False)
        else:
            entry.memos.move_to_end(variables)
        return memo

    def _gone(self, key: int, operation: weakref.ref[OperationDefinitionNode]) -> None:
        """Drops the entry of an operation node that is gone (a new document's, at the end of
        its one request): a stream of new documents leaves nothing behind."""
        entry = self._entries.get(key)
        if entry is not None and entry.operation is operation:
            del self._entries[key]


def coerced(variable_values: object) -> Mapping[str, Any]:
    """The coerced variable values an executor or a resolve info holds: the values
    themselves, or graphql-core's container of them (as ``strawberry.types.nodes`` reads
    them)."""
    values = getattr(variable_values, "coerced", variable_values)
    return values if isinstance(values, Mapping) else {}


_SAME_WHEN_EQUAL = frozenset({str, int, bool, type(None)})
"""Types whose equal values of the same type are the same value (unlike ``-0.0`` and ``0.0``,
or one instant in two time zones)."""


def _variables_key(values: Mapping[str, Any]) -> Hashable | None:
    """Variable values as a key: names, types and values (``True`` and ``1`` differ), and the
    ``repr`` of values of other types than :data:`_SAME_WHEN_EQUAL` (``-0.0`` and ``0.0``
    differ: a resolver is handed the one its request gave); ``None`` where a value cannot be
    hashed."""
    if not values:
        return ()
    key = tuple(
        (name, type(value), value, None if type(value) in _SAME_WHEN_EQUAL else repr(value))
        for name, value in sorted(values.items())
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


MEMOS = OperationMemos()
"""The memos of every request's operation, whatever its schema (what they hold depends only on
the document and the variable values)."""
