"""The cheap token count that refuses oversized documents before parsing: equal to
graphql-core's lexer on whatever it lexes, and the refusal is graphql-core's own words."""

from __future__ import annotations

import pytest
from graphql.error import GraphQLSyntaxError
from graphql.language import Lexer, Source, TokenKind
from hypothesis import given
from hypothesis import strategies as st

from gateway.graphiql import EXAMPLES
from gateway.graphql.tokens import _plain_count, over_token_limit

PIECES = st.one_of(
    st.sampled_from([*"{}()[]:=@|!$&", "...", "query", "a_b9", "__typename", "on"]),
    st.from_regex(r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_characters='"\\\n\r'), max_size=8).map(
        lambda t: f'"{t}"'
    ),
    st.sampled_from(['"a\\"b"', '"\\\\"', '"""x"y""z"""', '"""a\\"""b"""', '""""""', '"\\u00e9"']),
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=10).map(
        lambda t: f"# {t}\n"
    ),
)
SEPARATORS = st.sampled_from([" ", ",", "\n", "\t", " , ", "\r\n", "\ufeff"])


def lexed(text: str) -> int | None:
    """graphql-core's count of ``text``'s tokens, or None when it cannot lex it."""
    lexer, count = Lexer(Source(text)), 0
    try:
        while lexer.advance().kind != TokenKind.EOF:
            count += 1
    except GraphQLSyntaxError:
        return None
    return count


def counted(text: str) -> int:
    limit = 0
    while over_token_limit(text, limit):
        limit += 1
    return limit


@given(st.lists(st.tuples(PIECES, SEPARATORS), max_size=40))
def test_the_count_is_graphql_cores_on_what_it_lexes(parts) -> None:
    text = "".join(piece + separator for piece, separator in parts)
    expected = lexed(text)
    if expected is not None:
        assert counted(text) == expected, text


PLAIN_PIECES = st.one_of(
    st.sampled_from([*"{}()[]:=@|!$&", "query", "a_b9", "__typename", "on", "_", "Z"]),
    st.from_regex(r"(0|[1-9][0-9]{0,5})([eE][0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True),
)
PLAIN_SEPARATORS = st.sampled_from(["", " ", ",", "\n", "\t", " , ", "\r\n", ",,"])


@given(st.lists(st.tuples(PLAIN_PIECES, PLAIN_SEPARATORS), max_size=60))
def test_the_plain_count_is_graphql_cores_on_what_it_lexes(parts) -> None:
    """Documents with no string, comment, spread, sign or decimal point (a flood of names is
    one) are counted without the regular expression, and the count is still the lexer's."""
    text = "".join(piece + separator for piece, separator in parts)
    expected = lexed(text)
    if expected is not None:
        assert _plain_count(text) == expected, text
        assert counted(text) == expected, text


@pytest.mark.parametrize("mark", ['"a"', "# c\n", "...", "-1", "1e+2", "1.5", "\ufeff"])
def test_a_document_with_strings_or_signs_is_left_to_the_full_count(mark) -> None:
    text = "{ a " + mark + " b }"
    assert _plain_count(text) is None
    assert counted(text) == lexed(text)


@pytest.mark.parametrize("text", EXAMPLES)
def test_the_readme_examples_count_as_graphql_core_counts_them(text) -> None:
    assert counted(text) == lexed(text) > 20


async def test_a_document_over_the_limit_is_refused_in_graphql_cores_words(make_gateway) -> None:
    from tests.conftest import settings_for

    gateway = make_gateway(settings_for())
    over = "{ " + " ".join(f"a{i}: __typename" for i in range(700)) + " }"  # 2,102 tokens
    assert lexed(over) == 2102
    answer = (await gateway.post(over)).json()
    [error] = answer["errors"]
    assert error["message"] == (
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    )
    under = "{ " + "__typename " * 1998 + "}"  # 2,000 tokens: past the token check
    assert lexed(under) == 2000
    errors = (await gateway.post(under)).json().get("errors", [])
    assert not any("tokens" in e["message"] for e in errors), errors


async def test_an_oversized_document_is_refused_before_graphql_core_lexes_it(
    make_gateway, monkeypatch
) -> None:
    """The refusal costs one regular-expression pass: graphql-core's lexer (watched, not
    changed) reads no token of a document over the limit, and every token of one under it."""
    from tests.conftest import settings_for

    read: list[int] = []
    advance = Lexer.advance

    def counted_advance(self: Lexer):  # type: ignore[no-untyped-def]
        read.append(1)
        return advance(self)

    monkeypatch.setattr(Lexer, "advance", counted_advance)
    gateway = make_gateway(settings_for())
    over = "{ " + " ".join(f"c{i}: __typename" for i in range(700)) + " }"
    assert (await gateway.post(over)).json()["errors"][0]["message"].endswith("Parsing aborted.")
    assert read == []
    await gateway.post("{ __typename }")
    assert len(read) >= 3  # the watch sees a document that is parsed
