"""Documents known to be valid: kept parsed and validated once they passed twice.

Dashboards send the same few documents again and again; those are parsed and validated on
their first two requests and then taken from :data:`KNOWN`. A document that fails to parse,
fails validation or is refused (too costly) is never kept, and neither is one that passed only
once so far: only a short note that it was seen is (:data:`MAX_SIGHTINGS` at most, a number
each). So documents made up one after another (an attacker's, or a client that writes a new
alias into every request) cost their own parse and nothing after it: they neither push known
documents out nor stay in memory, where every full garbage collection would walk through their
syntax trees again (a store full of them made each full collection take some 70 ms). What the
executor and resolvers read from a document not kept is not memoized past its request either
(:func:`gateway.graphql.types.one_off`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension

from gateway.graphql.tokens import over_token_limit
from gateway.graphql.types import one_off
from gateway.graphql.validation import validate_document
from gateway.lru import BoundedLRU

MAX_DOCUMENTS = 512
"""Known documents kept at most."""

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Their texts' lengths added up, at most (the syntax trees are some ten times larger)."""

MAX_SIGHTINGS = 8 * MAX_DOCUMENTS
"""Documents that passed once, remembered at most (by their text's hash), oldest forgotten
first."""


def parse_document(text: str, **options: Any) -> DocumentNode:
    """graphql-core's ``parse``, its tokens linked forward only.

    The lexer links each token to the next and the previous one, a reference cycle through
    every token that kept the whole syntax tree (which holds the first and last token of each
    node) for the garbage collector; linked forward only, a document made up for one request
    is freed as soon as the request lets go of it. Nothing in graphql-core or Strawberry walks
    tokens backwards.
    """
    document = parse(text, **options)
    location = document.loc
    token = location.start_token if location is not None else None
    while token is not None:
        token.prev = None
        token = token.next
    return document


class KnownStore(BoundedLRU[DocumentNode]):
    """Parsed documents that passed validation twice, by their text, and the hashes of those
    that passed once."""

    def __init__(self) -> None:
        super().__init__(MAX_DOCUMENTS, MAX_DOCUMENT_BYTES)
        self._sightings: dict[int, None] = {}

    def passed(self, text: str, document: DocumentNode) -> bool:
        """``text`` (parsed as ``document``) passed: kept if it passed before (within the last
        :data:`MAX_SIGHTINGS` documents that passed once), else noted. Whether it is kept."""
        key = hash(text)
        if key in self._sightings:
            del self._sightings[key]
            self.set(text, document, len(text))
            return text in self
        self._sightings[key] = None
        if len(self._sightings) > MAX_SIGHTINGS:
            del self._sightings[next(iter(self._sightings))]
        return False


KNOWN = KnownStore()
"""The known documents of every request to the default schema (a schema with other validation
rules keeps its own, :func:`known_documents`)."""


def known_documents() -> KnownStore:
    """An empty store of known documents, bounded as :data:`KNOWN` is."""
    return KnownStore()


class KnownDocuments(SchemaExtension):
    """Parses and validates a document until it passed twice, then reuses it.

    Put it after the cost limit in the schema's extensions: a refused document is neither
    validated nor kept. A known document is not validated again (validation depends only on the
    document and the schema's fixed rules): a schema whose rules differ from the default
    schema's (introspection off) passes a store of its own as ``store``.
    """

    def __init__(self, store: KnownStore = KNOWN) -> None:
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
            context.graphql_document = document or parse_document(
                context.query, **context.parse_options
            )
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
            if not self.store.passed(context.query, document):
                one_off(context.context)
