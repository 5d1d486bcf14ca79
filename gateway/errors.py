"""The gateway's error tree.

::

    GatewayError                  anything the gateway raises on purpose
    ├── ConfigError               a bad config file; names file, account (or token) and field
    ├── InputError                a bad argument from a GraphQL caller; shown to the caller
    └── UpstreamError             a vendor call that gave no usable data   (state, cause)
        ├── AuthFailed            401 (403 unless the provider says otherwise)
        │                                               -> AUTH_FAILED, CREDENTIALS_REJECTED
        ├── RateLimited           429, or held back by us (retry_at)  -> RATE_LIMITED
        ├── RequestRejected       another 4xx: the account's config is wrong (unknown group,
        │                         not an administrator)          -> UNAVAILABLE, REQUEST_REJECTED
        ├── MalformedResponse     an answer we cannot read       -> UNAVAILABLE, MALFORMED
        ├── CircuitOpen           we pause calls to a vendor that kept failing (retry_at)
        │                                                         -> UNAVAILABLE, CIRCUIT_OPEN
        ├── NoFreeSlot            the deadline passed while the call waited for a slot among
        │                         the gateway's own calls in flight -> UNAVAILABLE, TIMEOUT
        ├── SharedFailure         another gateway's call of the same read failed (its status,
        │                         shared through Redis), or the wait for it ended -> its state
        └── Unavailable           the vendor itself is unwell: only these feed a circuit breaker
            ├── ConnectionFailed  refused, reset, broken off      -> UNAVAILABLE, CONNECTION
            ├── TimedOut          no answer within the deadline   -> UNAVAILABLE, TIMEOUT
            └── VendorFailed      5xx                             -> UNAVAILABLE, VENDOR_ERROR

An upstream error carries fields, not a formatted string: ``vendor`` (display name), ``status``
(the vendor's HTTP status, where it answered), ``detail`` (the vendor's own explanation, or what
was wrong with its answer), ``retry_at``, and the class attributes ``state`` and ``cause``.
``message`` is derived from them for people. Expected upstream failures become a
``SourceStatus`` on the account (data, not exceptions, above the service). Messages never contain
secrets: providers blank the account's secrets in vendor text (``BaseProvider.redact``) before it
becomes ``detail``, and ``detail`` is always shortened and stripped of control characters.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from gateway.domain import FailureCause, SourceState, SourceStatus

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
        self,
        file: str,
        message: str,
        *,
        account: str | None = None,
        field: str | None = None,
        token: str | None = None,
    ) -> None:
        self.file = file
        self.account = account
        self.token = token
        self.field = field
        self.message = message
        parts = [file]
        if account is not None:
            parts.append(f"account {account!r}")
        if token is not None:
            parts.append(f"token {token!r}")
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


def _moment(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M:%SZ}"


class UpstreamError(GatewayError):
    """A vendor call that did not give usable data.

    ``vendor`` is the vendor's display name, ``status`` its HTTP status (``None`` when it did not
    answer), ``detail`` its own explanation (made printable and bounded here), ``retry_at`` when
    a next call makes sense (``None``: nobody said).
    """

    state: ClassVar[SourceState] = SourceState.UNAVAILABLE
    cause: ClassVar[FailureCause] = FailureCause.INTERNAL

    def __init__(
        self,
        vendor: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        self.vendor = vendor
        self.status = status
        self.detail = (vendor_text(detail) or None) if detail is not None else None
        self.retry_at = retry_at
        super().__init__(self.message)

    def summary(self) -> str:
        """What happened, in our words (without the vendor's ``detail``)."""
        return f"{self.vendor} gave no usable answer{self._http()}"

    @property
    def message(self) -> str:
        """For people: our summary, then the vendor's own words."""
        return self.summary() + (f": {self.detail}" if self.detail else "")

    def _http(self) -> str:
        return "" if self.status is None else f" (HTTP {self.status})"


class AuthFailed(UpstreamError):
    """The vendor rejected the credentials (401; 403 where the provider says it means that)."""

    state = SourceState.AUTH_FAILED
    cause = FailureCause.CREDENTIALS_REJECTED

    def summary(self) -> str:
        return f"{self.vendor} rejected the credentials{self._http()}"


class RateLimited(UpstreamError):
    """The vendor answered 429, or the gateway holds back to respect its rate; see ``retry_at``.

    ``pacing`` is ``(calls, seconds)`` when the gateway itself refused the call to stay under the
    vendor's documented rate.
    """

    state = SourceState.RATE_LIMITED
    cause = FailureCause.RATE_LIMITED

    def __init__(
        self,
        vendor: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_at: datetime | None = None,
        pacing: tuple[int, float] | None = None,
    ) -> None:
        self.pacing = pacing
        super().__init__(vendor, status=status, detail=detail, retry_at=retry_at)

    def summary(self) -> str:
        if self.pacing is not None:
            calls, period = self.pacing
            text = (
                f"{self.vendor} allows {calls} calls per {period:g} s; "
                "the gateway holds back to stay under it"
            )
        elif self.status is not None:
            text = f"{self.vendor} is rate limiting{self._http()}"
        else:
            text = f"{self.vendor} asked us to wait"
        if self.retry_at is not None:
            text += f"; no call until {_moment(self.retry_at)}"
        return text


class RequestRejected(UpstreamError):
    """The vendor refused this request: a 4xx that means the account's config is wrong.

    Unknown group (404), not an administrator of it (VirusTotal's 403), a parameter it will not
    take (400). Retrying does not help and the vendor is healthy: it never opens a circuit, and
    the vendor's own words are shown every time, since they say what to fix. The state stays
    ``UNAVAILABLE`` (there is no data; ``AUTH_FAILED`` promises a credentials problem), and
    ``cause`` tells programs it is the config.
    """

    cause = FailureCause.REQUEST_REJECTED

    def summary(self) -> str:
        return f"{self.vendor} refused the request{self._http()}"


class MalformedResponse(UpstreamError):
    """The vendor answered something we cannot read; ``detail`` says what was wrong with it.

    A vendor's (or a proxy's) odd answer says nothing about its health: no circuit opens for it.
    """

    cause = FailureCause.MALFORMED

    def __init__(self, vendor: str, *, status: int | None = 200, detail: str | None = None) -> None:
        super().__init__(vendor, status=status, detail=detail)  # only 200 answers are read

    def summary(self) -> str:
        return f"{self.vendor} answered with something the gateway cannot read{self._http()}"


class CircuitOpen(UpstreamError):
    """The gateway pauses calls to an account whose vendor kept failing, until ``retry_at``."""

    cause = FailureCause.CIRCUIT_OPEN

    def __init__(self, vendor: str, *, failures: int, retry_at: datetime) -> None:
        self.failures = failures
        super().__init__(vendor, retry_at=retry_at)

    def summary(self) -> str:
        assert self.retry_at is not None
        return (
            f"{self.vendor} failed {self.failures} times in a row; the gateway pauses calls "
            f"until {_moment(self.retry_at)}"
        )


class NoFreeSlot(UpstreamError):
    """The call's deadline passed while it waited for a slot among the gateway's own vendor
    calls in flight (``max_vendor_calls_per_host`` to one host, ``max_vendor_calls`` in all).

    A timeout, as the account sees it, but one of the gateway's making: the vendor was never
    asked, so no circuit opens for it.
    """

    cause = FailureCause.TIMEOUT

    def __init__(self, vendor: str, *, deadline: float, per_host: int, total: int) -> None:
        self.deadline = deadline
        self.per_host = per_host
        self.total = total
        super().__init__(vendor)

    def summary(self) -> str:
        return (
            f"no call to {self.vendor} could start within {self.deadline:g} s: the gateway "
            f"had {self.per_host} calls in flight to its host (or {self.total} in all) "
            "all that time"
        )


class SharedFailure(UpstreamError):
    """Another gateway sharing this one's Redis made the call this read waited for, and it
    failed: ``shared`` is the status it shared (state, cause, message, retry time), shown as
    it is. Also a wait for that call that ended without an answer (``TIMEOUT``). This gateway
    did not call the vendor, so no circuit of its own counts it."""

    def __init__(self, shared: SourceStatus) -> None:
        self.shared = shared
        vendor = shared.vendor or "the vendor"
        super().__init__(vendor, status=shared.http_status, retry_at=shared.retry_at)

    def summary(self) -> str:
        return self.shared.message or f"{self.vendor} gave no usable answer"


class Unavailable(UpstreamError):
    """The vendor itself is unwell: unreachable, too slow, or failing on its side.

    Only these count toward an account's circuit breaker.
    """


class ConnectionFailed(Unavailable):
    """The vendor could not be reached (``broke_off`` False) or broke off the connection."""

    cause = FailureCause.CONNECTION

    def __init__(self, vendor: str, *, broke_off: bool = False) -> None:
        self.broke_off = broke_off
        super().__init__(vendor)

    def summary(self) -> str:
        if self.broke_off:
            return f"{self.vendor} broke off the connection"
        return f"{self.vendor} could not be reached (connection failed)"


class TimedOut(Unavailable):
    """The vendor did not answer within ``deadline`` seconds (retries included)."""

    cause = FailureCause.TIMEOUT

    def __init__(self, vendor: str, *, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(vendor)

    def summary(self) -> str:
        return f"{self.vendor} did not answer within {self.deadline:g} s"


class VendorFailed(Unavailable):
    """The vendor answered with a 5xx."""

    cause = FailureCause.VENDOR_ERROR

    def summary(self) -> str:
        return f"{self.vendor} failed{self._http()}"
