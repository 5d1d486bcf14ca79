"""Trusted documents: the GraphQL documents an operator ships, by their SHA-256.

With ``trusted_documents`` in ``[gateway]`` the gateway runs only these documents
(:mod:`gateway.graphql.persisted` does the checking). A manifest is a JSON file in one of the
two common forms:

* a JSON object of hash to document text, as Apollo's and Relay's tools write it::

      {"<sha256 hex>": "query Overview { accounts { id } }"}

* Apollo's persisted-query manifest::

      {"format": "apollo-persisted-query-manifest", "version": 1,
       "operations": [{"id": "<sha256 hex>", "body": "query ...", "name": "Overview",
                       "type": "query"}]}

Every hash is checked at load against the SHA-256 of its document's UTF-8 text, so a manifest
cannot let through a document other than the one it names. The file is read only up to
:data:`MAX_MANIFEST_BYTES`. :func:`manifest_json` writes the first form, for
``usage-gateway documents hash``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""The largest manifest file read."""
APOLLO_FORMAT = "apollo-persisted-query-manifest"
DASHBOARD_DOCUMENT = Path(__file__).resolve().parent / "static" / "dashboard" / "queries.graphql"
"""The document the dashboard sends, as it is (it names the operation to run)."""
_HASH = re.compile(r"[0-9a-fA-F]{64}")


class ManifestError(ValueError):
    """A manifest that cannot be used; ``str()`` names the entry and what is wrong with it."""


def document_hash(text: str) -> str:
    """The hash a client sends for ``text``: its UTF-8 bytes' SHA-256, 64 lower-case hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_hash(value: object) -> bool:
    """Whether ``value`` reads as a SHA-256: 64 hex digits."""
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


@dataclass(frozen=True)
class TrustedDocuments:
    """A loaded manifest: document texts by their hash."""

    path: str
    documents: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Document text by its SHA-256 (lower-case hex)."""

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, sha256: str) -> str | None:
        """The document with hash ``sha256`` (any case), or ``None``."""
        return self.documents.get(sha256.lower())

    def trusts(self, text: str) -> bool:
        """Whether the document ``text`` is in the manifest."""
        return document_hash(text) in self.documents


def load_manifest(path: Path, name: str | None = None) -> TrustedDocuments:
    """Read and check the manifest at ``path`` (named ``name`` in errors; ``path`` itself by
    default); :class:`ManifestError` for a file that is missing, too large, not JSON, of another
    form, empty, or holding an entry whose hash is not its document's."""
    shown = name or str(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(f"{shown}: no such file") from None
    except OSError as exc:
        raise ManifestError(f"{shown}: cannot read the file ({exc.strerror or exc})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{shown}: larger than {MAX_MANIFEST_BYTES:,} bytes, the most read")
    return TrustedDocuments(str(path), MappingProxyType(parse_manifest(data, shown)))


def parse_manifest(data: bytes, name: str) -> dict[str, str]:
    """The documents of a manifest's bytes, by hash (see the module docstring)."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ManifestError(f"{name}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{name}: not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ManifestError(f"{name}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ManifestError(
            f"{name}: a manifest is a JSON object (hash to document, or Apollo's "
            f'{{"format": "{APOLLO_FORMAT}", ...}}), not {type(value).__name__}'
        )
    entries = _apollo_entries(value, name) if "format" in value else _map_entries(value)
    documents: dict[str, str] = {}
    for label, sha256, body in entries:
        if not isinstance(sha256, str) or not is_hash(sha256):
            raise ManifestError(f"{name}: {label}: the hash is not 64 hex digits (a SHA-256)")
        if not isinstance(body, str) or not body.strip():
            raise ManifestError(f"{name}: {label}: the document must be a non-empty string")
        actual = document_hash(body)
        if actual != sha256.lower():
            raise ManifestError(
                f"{name}: {label}: the hash is not the SHA-256 of its document (that is {actual})"
            )
        documents[actual] = body
    if not documents:
        raise ManifestError(f"{name}: holds no documents, so no query could run")
    return documents


def _short(sha256: object) -> str:
    text = str(sha256)
    return f"{text[:12]}…" if len(text) > 12 else text


def _map_entries(value: dict[str, object]) -> list[tuple[str, object, object]]:
    return [(f"entry {_short(key)!r}", key, body) for key, body in value.items()]


def _apollo_entries(value: dict[str, object], name: str) -> list[tuple[str, object, object]]:
    if value.get("format") != APOLLO_FORMAT:
        raise ManifestError(
            f"{name}: format {str(value.get('format'))[:40]!r} is not {APOLLO_FORMAT!r}"
        )
    if value.get("version") != 1:
        raise ManifestError(f"{name}: version {value.get('version')!r} is not 1")
    operations = value.get("operations")
    if not isinstance(operations, list):
        raise ManifestError(f"{name}: 'operations' must be a list")
    entries: list[tuple[str, object, object]] = []
    for number, operation in enumerate(operations, start=1):
        if not isinstance(operation, dict):
            raise ManifestError(f"{name}: operation #{number}: must be an object")
        called = operation.get("name")
        label = f"operation #{number}" + (f" ({called!r})" if isinstance(called, str) else "")
        entries.append((label, operation.get("id"), operation.get("body")))
    return entries


def manifest_json(documents: Iterable[str]) -> str:
    """A manifest (hash to document text, sorted by hash) of ``documents``, as JSON text."""
    by_hash = {document_hash(text): text for text in documents}
    return json.dumps(dict(sorted(by_hash.items())), indent=2, ensure_ascii=False) + "\n"
