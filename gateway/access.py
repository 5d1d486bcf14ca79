"""Who may read what: gateway tokens (``[[tokens]]``) and the accounts each one may read.

A :class:`GatewayToken` is a name, the SHA-256 of its secret (the gateway never needs the
secret itself) and the account ids or glob patterns it may read. :class:`Access` turns a
request's ``Authorization: Bearer <token>`` into a :class:`Grant`: the token's name and the
configured accounts its patterns match, worked out once at start-up. Every comparison of a
presented token is made in constant time over SHA-256 digests (``hmac.compare_digest``), and
every token is compared, whichever matches.

With no token configured the gateway is open: every request gets :data:`Access.anonymous`'s
grant, which reads every configured account.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TOKEN_MIN_LENGTH = 32
"""Characters a token given in the config (``token = ...``) has at least."""
TOKEN_MAX_LENGTH = 512
"""Characters a token has at most (in the config, or presented by a client)."""
TOKEN_MIN_DISTINCT = 8
"""Different characters a configured token has at least (``aaaa...`` is no secret)."""
MAX_TOKENS = 1000
"""``[[tokens]]`` entries at most: every request compares its token with each of them."""
MAX_PATTERNS = 256
"""Account ids or patterns one token lists at most."""
MAX_AUTHORIZATION = 16 + TOKEN_MAX_LENGTH
"""Bytes of an ``Authorization`` header read at most; a longer one is refused unread."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A token's name: what log lines call it (the rule of account ids)."""
PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]!-]{1,64}$")
"""An account id, or a glob pattern of them (``*``, ``?``, ``[...]``)."""
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")
"""Visible ASCII: what an HTTP header carries unchanged."""
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class GatewayToken:
    """One ``[[tokens]]`` entry."""

    name: str
    digest: bytes = field(repr=False)
    """SHA-256 of the token's secret."""
    accounts: tuple[str, ...] = ("*",)
    """Account ids or glob patterns (``fnmatch``, case-sensitive) the token may read."""


@dataclass(frozen=True)
class Grant:
    """What one request may read: the accounts, and which token says so (``None``: no token is
    configured, the gateway is open)."""

    name: str | None
    accounts: frozenset[str]

    @functools.cached_property
    def key(self) -> str:
        """What tells this grant's answers apart from every other grant's (in a cache): the
        token's name and the accounts it reads."""
        return json.dumps([self.name, sorted(self.accounts)])


NOBODY = Grant(None, frozenset())
"""Reads nothing: what a request is granted when no grant was attached to it."""


def digest(token: str) -> bytes:
    """The SHA-256 of a token's secret."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def token_problem(token: str) -> str | None:
    """What makes ``token`` unfit as a gateway token given in the config, or ``None``."""
    if not TOKEN_MIN_LENGTH <= len(token) <= TOKEN_MAX_LENGTH:
        return (
            f"must be {TOKEN_MIN_LENGTH} to {TOKEN_MAX_LENGTH} characters long, not {len(token)} "
            "(usage-gateway token new NAME makes one)"
        )
    if not _TOKEN_CHARS.match(token):
        return "must be visible ASCII characters only (no spaces or control characters)"
    if len(set(token)) < TOKEN_MIN_DISTINCT:
        return (
            f"has fewer than {TOKEN_MIN_DISTINCT} different characters: it is guessable "
            "(usage-gateway token new NAME makes one)"
        )
    return None


def sha256_problem(value: str) -> str | None:
    """What makes ``value`` unfit as a token's ``sha256``, or ``None``."""
    if not _SHA256_HEX.match(value):
        return "must be 64 hexadecimal digits (the SHA-256 of the token)"
    return None


def pattern_problem(pattern: object) -> str | None:
    """What makes ``pattern`` unfit as an account id or pattern, or ``None``."""
    if not isinstance(pattern, str) or not PATTERN.match(pattern):
        return (
            "each entry must be an account id or a glob pattern of 1-64 letters, digits, "
            "'.', '_', '-', '*', '?', '[', ']' or '!'"
        )
    return None


def matches(patterns: Iterable[str], account_id: str) -> bool:
    """Whether any of ``patterns`` names ``account_id`` (an id, or a glob pattern of ids)."""
    return any(fnmatch.fnmatchcase(account_id, pattern) for pattern in patterns)


def toml_block(name: str, token_digest: bytes, accounts: Sequence[str]) -> str:
    """The ``[[tokens]]`` entry of a token, as it goes into the config file."""
    listed = ", ".join(f'"{pattern}"' for pattern in accounts)
    return f'[[tokens]]\nname = "{name}"\nsha256 = "{token_digest.hex()}"\naccounts = [{listed}]\n'


class Access:
    """The configured tokens over the configured accounts."""

    def __init__(self, tokens: Sequence[GatewayToken], account_ids: Sequence[str]) -> None:
        self.tokens = tuple(tokens)
        self.anonymous = Grant(None, frozenset(account_ids))
        self._grants = [
            (
                token.digest,
                Grant(token.name, frozenset(a for a in account_ids if matches(token.accounts, a))),
            )
            for token in self.tokens
        ]
        self.unmatched = [
            (token.name, pattern)
            for token in self.tokens
            for pattern in token.accounts
            if not any(fnmatch.fnmatchcase(a, pattern) for a in account_ids)
        ]
        """(token name, pattern) of every pattern that names no configured account."""

    @property
    def required(self) -> bool:
        """Whether a request needs a token (at least one is configured)."""
        return bool(self.tokens)

    def authenticate(self, authorization: bytes | None) -> Grant | None:
        """The grant of a request with this ``Authorization`` header value; ``None`` when a
        token is required and this is not a valid one.

        The presented token's SHA-256 is compared with every configured token's in constant
        time, all of them whichever matches, so the time taken says nothing of which (if any)
        was close.
        """
        if not self.required:
            return self.anonymous
        presented = bearer(authorization)
        if presented is None:
            return None
        seen = hashlib.sha256(presented).digest()
        found: Grant | None = None
        for wanted, grant in self._grants:
            if hmac.compare_digest(seen, wanted):
                found = grant
        return found


def bearer(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value (the scheme in any
    case, RFC 7235), or ``None`` when there is none or the value is past
    :data:`MAX_AUTHORIZATION` bytes."""
    if authorization is None or len(authorization) > MAX_AUTHORIZATION:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token or b" " in token:
        return None
    return token
