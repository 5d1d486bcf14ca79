"""The gateway's error tree.

::

    GatewayError                      anything the gateway raises on purpose
    ├── ConfigError                   a bad config file; names file, account and field
    ├── InputError                    a bad argument from a GraphQL caller; shown to the caller
    └── UpstreamError                 a vendor call that did not give usable data
        ├── AuthFailed                401/403: the vendor rejected the credentials  -> AUTH_FAILED
        ├── RateLimited               429: the vendor asks us to wait (retry_at)    -> RATE_LIMITED
        └── Unavailable               connection refused, deadline, 5xx             -> UNAVAILABLE
            ├── UpstreamRejected      another 4xx: the vendor refused our request
            ├── MalformedResponse     an answer we cannot read (bad JSON, wrong shape)
            └── CircuitOpen           we pause calls to a vendor that keeps failing

Expected upstream failures become a ``SourceStatus`` on the account (data, not exceptions, above
the service). Messages never contain secrets: they are built from status codes, vendor error
codes and our own words, and vendor text is shortened and stripped of control characters.
"""

from __future__ import annotations

from datetime import datetime

from gateway.domain import SourceState

_MAX_VENDOR_TEXT = 200


def vendor_text(text: object) -> str:
    """A vendor-supplied string made safe to show: printable, single-line, bounded."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    if len(cleaned) > _MAX_VENDOR_TEXT:
        cleaned = cleaned[: _MAX_VENDOR_TEXT - 1] + "…"
    return cleaned


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A config file that cannot be used. ``str()`` is the one line shown to the operator."""

    def __init__(
        self, file: str, message: str, *, account: str | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.account = account
        self.field = field
        self.message = message
        parts = [file]
        if account is not None:
            parts.append(f"account {account!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join([*parts, message]))


class InputError(GatewayError):
    """A GraphQL argument the gateway cannot answer; the message is shown to the caller.

    ``extensions`` is copied by graphql-core into the error's ``extensions``, so a frontend can
    tell which argument to point at without parsing the message.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        self.argument = argument
        self.extensions: dict[str, object] = {"code": "BAD_USER_INPUT"}
        if argument is not None:
            self.extensions["argument"] = argument
        super().__init__(message)


class UpstreamError(GatewayError):
    """A vendor call that did not give usable data."""

    state: SourceState = SourceState.UNAVAILABLE

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class AuthFailed(UpstreamError):
    """The vendor rejected the credentials (or the account lacks the right to read usage)."""

    state = SourceState.AUTH_FAILED


class RateLimited(UpstreamError):
    """The vendor answered 429; ``retry_at`` is when it allows the next call, if it said."""

    state = SourceState.RATE_LIMITED

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class Unavailable(UpstreamError):
    """The vendor could not be reached, was too slow, or failed on its side."""

    state = SourceState.UNAVAILABLE


class UpstreamRejected(Unavailable):
    """The vendor refused the request itself (a 4xx other than 401, 403 and 429)."""


class MalformedResponse(Unavailable):
    """The vendor answered something we cannot read."""


class CircuitOpen(Unavailable):
    """The gateway pauses calls to an account whose vendor failed repeatedly."""
