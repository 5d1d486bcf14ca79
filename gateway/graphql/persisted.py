"""Apollo's persisted-query protocol, and trusted-documents mode.

A request may name its document by hash instead of (or as well as) sending it, as Apollo's
clients do::

    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<64 hex>"}},
     "operationName": "Overview", "variables": {...}}

(over GET, the same ``extensions`` as a JSON query parameter). :class:`PersistedDocuments`
is a schema extension: Strawberry hands it the request's ``extensions`` (its
``operation_extensions``) before anything is parsed, and it fills in the document or refuses
the request, so every transport (POST, GET, and each request of a batch, were batches accepted)
goes through it.

* With trusted documents (``[gateway] trusted_documents``): a hash alone runs the manifest's
  document (``PERSISTED_QUERY_NOT_FOUND`` when it has none); a full ``query`` runs only when
  its SHA-256 is in the manifest (``DOCUMENT_NOT_TRUSTED`` otherwise), and must match a hash
  sent with it.
* Without: the gateway keeps no documents, so a hash alone is answered
  ``PERSISTED_QUERY_NOT_SUPPORTED`` (Apollo's clients then send the text); a request with a
  ``query`` runs as always.

Refusals are GraphQL errors (HTTP 200, no ``data``) with the code in ``extensions.code``, made
before the document is parsed: an untrusted document costs its hash and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gateway.trusted_documents import TrustedDocuments, document_hash, is_hash

__all__ = ["PersistedDocuments", "PersistedQueryRefused"]


class PersistedQueryRefused(GraphQLError):
    """A request the protocol (or the manifest) refuses, with its code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, extensions={"code": code})


def _requested_hash(extensions: object) -> str | None:
    """The ``sha256Hash`` a request's ``extensions`` name (lower case), ``None`` when they name
    none; refused when ``persistedQuery`` is there but malformed."""
    if not isinstance(extensions, dict) or extensions.get("persistedQuery") is None:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict):
        raise PersistedQueryRefused(
            "BAD_USER_INPUT",
            'extensions.persistedQuery must be an object: {"version": 1, "sha256Hash": "..."}',
        )
    if persisted.get("version") != 1:
        raise PersistedQueryRefused(
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
            "extensions.persistedQuery.version must be 1 (the only version there is)",
        )
    sha256 = persisted.get("sha256Hash")
    if not is_hash(sha256):
        raise PersistedQueryRefused(
            "BAD_USER_INPUT",
            "extensions.persistedQuery.sha256Hash must be 64 hex digits: the SHA-256 of the "
            "document's UTF-8 text",
        )
    assert isinstance(sha256, str)
    return sha256.lower()


class PersistedDocuments(SchemaExtension):
    """Resolves ``extensions.persistedQuery`` and, with ``trusted``, refuses every document
    not in it (see the module docstring).

    Put it first in the schema's extensions: it decides what the document is before any other
    extension reads it, and a refusal here is made before any other one has started.
    """

    def __init__(self, trusted: TrustedDocuments | None) -> None:
        super().__init__()
        self.trusted = trusted

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        sha256 = _requested_hash(context.operation_extensions)
        query = context.query
        trusted = self.trusted
        if trusted is None:
            if sha256 is not None and query is None:
                raise PersistedQueryRefused(
                    "PERSISTED_QUERY_NOT_SUPPORTED",
                    "PersistedQueryNotSupported: this gateway keeps no documents by hash; "
                    "send the document in 'query'",
                )
        elif query is None:
            if sha256 is not None:
                found = trusted.get(sha256)
                if found is None:
                    raise PersistedQueryRefused(
                        "PERSISTED_QUERY_NOT_FOUND",
                        f"PersistedQueryNotFound: no trusted document has the hash {sha256}",
                    )
                context.query = found
        else:
            actual = document_hash(query)
            if sha256 is not None and sha256 != actual:
                raise PersistedQueryRefused(
                    "BAD_USER_INPUT",
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of 'query' "
                    f"(that is {actual})",
                )
            if trusted.get(actual) is None:
                raise PersistedQueryRefused(
                    "DOCUMENT_NOT_TRUSTED",
                    "This gateway runs trusted documents only, and this one (SHA-256 "
                    f"{actual}) is not among them: send one of its documents, or only its "
                    "hash in extensions.persistedQuery",
                )
        yield
