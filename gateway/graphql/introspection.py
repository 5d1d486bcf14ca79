"""Introspection turned off (``[gateway] introspection = false``).

:class:`NoIntrospection` is Strawberry's ``DisableIntrospection`` with graphql-core's own rule
(``NoSchemaIntrospectionCustomRule``) made to answer as the gateway's other refusals do: one
error per ``__schema`` or ``__type`` field (not one more for every field under it), saying what
happened, with ``extensions.code = "INTROSPECTION_DISABLED"``. ``__typename`` is no
introspection type and still answers: clients such as Apollo's add it to every selection.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, get_named_type, is_introspection_type
from graphql.language import FieldNode
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules

__all__ = ["NoIntrospection", "NoIntrospectionRule"]


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """Refuses every field that enters an introspection type, with the gateway's code."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        entered = get_named_type(self.context.get_type())
        parent = self.context.get_parent_type()
        if (
            entered is not None
            and is_introspection_type(entered)
            and not (parent is not None and is_introspection_type(parent))
        ):
            self.report_error(
                GraphQLError(
                    f"Introspection is turned off on this gateway: '{node.name.value}' cannot "
                    "be queried",
                    node,
                    extensions={"code": "INTROSPECTION_DISABLED"},
                )
            )


class NoIntrospection(AddValidationRules):
    """The schema extension that adds :class:`NoIntrospectionRule` to every validation."""

    def __init__(self) -> None:
        super().__init__([NoIntrospectionRule])
