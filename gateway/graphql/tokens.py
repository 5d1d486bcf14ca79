"""Counting a document's tokens cheaply, before parsing it.

graphql-core's parser stops at ``max_tokens`` only after lexing that far, building tokens as it
goes; a document over the limit is refused much more cheaply by counting first with one regular
expression. The count equals graphql-core's lexer's for every document it can lex (a property
test holds the two together); for one it cannot, the count may be higher, and such a document is
refused either way.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    [ \t\n\r,\ufeff]*                      # separators before a token, skipped in the match
    (?:
      \#[^\n\r]*                           # comment: not a token, matched outside the group
    | (
      "{3}(?:\\"{3}|[^"]|"(?!""))*"{3}     # block string
    | "(?:\\.|[^"\\\n\r])*"                # string
    | \.\.\.                               # spread
    | [!$&()\[\]{}:=@|]                    # punctuators
    | -?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?     # int or float
    | [_A-Za-z][_0-9A-Za-z]*               # name
    ))""",
    re.VERBOSE,
)


_NAME_CHARACTERS = b"_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CLASSES = bytes(
    ord("a") if c in _NAME_CHARACTERS else ord("p") if c in b"!$&()[]{}:=@|" else ord(" ")
    for c in range(256)
)
"""Name characters become ``a``, punctuators ``p``, every other byte a space: each name or
number is then one run of ``a`` after a space, a ``p`` or the start, and each ``p`` a token."""
_INSIDE_TOKENS = ('"', "#", ".", "-", "+")
"""Characters that start or sit inside strings, comments, spreads, signed or decimal numbers."""


def _plain_count(text: str) -> int | None:
    """The tokens of an ASCII ``text`` with no string, comment, spread, sign or decimal point
    (most documents, and a flood of names): its names and unsigned integers (the runs left
    between punctuators, commas and whitespace) plus its punctuators, found by a few passes in
    C that make no object per token. ``None`` for any other text."""
    if not text.isascii() or any(mark in text for mark in _INSIDE_TOKENS):
        return None
    classes = text.encode("ascii").translate(_CLASSES)
    runs = classes.count(b" a") + classes.count(b"pa") + classes.startswith(b"a")
    return runs + classes.count(b"p")


def over_token_limit(text: str, limit: int) -> bool:
    """Whether ``text`` holds more than ``limit`` tokens. A text of at most ``limit`` characters
    cannot; a plain one is counted by :func:`_plain_count`; otherwise every match is found in
    one C call (the request body is bounded, so is the list) and the comments, matched outside
    the group as empty strings, are left out."""
    if len(text) <= limit:
        return False
    plain = _plain_count(text)
    if plain is not None:
        return plain > limit
    found = _TOKEN.findall(text)
    return len(found) - found.count("") > limit
