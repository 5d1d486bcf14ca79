"""Documents known to be valid: parsed and validated once, kept only once they pass.

Dashboards send the same few documents again and again; those are parsed and validated once
and then taken from :data:`KNOWN`. A document that fails to parse, fails validation or is
refused (too costly) is never kept, so documents an attacker makes up one after another cost
their own parse and nothing after it: they neither push known documents out nor stay in memory,
where every full garbage collection would walk through their syntax trees again.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.graphql.tokens import over_token_limit
from gateway.lru import BoundedLRU

MAX_DOCUMENTS = 512
"""Known documents kept at most."""

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Their texts' lengths added up, at most (the syntax trees are some ten times larger)."""

KNOWN: BoundedLRU[DocumentNode] = BoundedLRU(MAX_DOCUMENTS, MAX_DOCUMENT_BYTES)
"""Parsed documents that passed validation, by their text (shared by every request to the
default schema; a schema with other validation rules keeps its own, :func:`known_documents`)."""


def known_documents() -> BoundedLRU[DocumentNode]:
    """An empty store of known documents, bounded as :data:`KNOWN` is."""
    return BoundedLRU(MAX_DOCUMENTS, MAX_DOCUMENT_BYTES)


class KnownDocuments(SchemaExtension):
    """Parses and validates a document the first time it passes, then reuses it.

    Put it after the cost limit in the schema's extensions: a refused document is neither
    validated nor kept. A known document is not validated again (validation depends only on the
    document and the schema's fixed rules): a schema whose rules differ from the default
    schema's (introspection off) passes a store of its own as ``store``.
    """

    def __init__(self, store: BoundedLRU[DocumentNode] = KNOWN) -> None:
        super().__init__()
        self.store = store
        self.known = False

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            document = self.store.get(context.query)
            self.known = document is not None
            limit = context.parse_options.get("max_tokens")
            if document is None and limit is not None and over_token_limit(context.query, limit):
                # graphql-core's own words, without lexing the first ``limit`` tokens first.
                raise GraphQLError(
                    f"Syntax Error: Document contains more than {limit} tokens. Parsing aborted."
                )
            context.graphql_document = document or parse(context.query, **context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors is None and document is not None:
            context.pre_execution_errors = (
                []
                if self.known
                else list(
                    validate_document(context.schema._schema, document, context.validation_rules)
                )
            )
        yield
        if not self.known and not context.pre_execution_errors and context.query is not None:
            assert document is not None
            self.store.set(context.query, document, len(context.query))
