"""The gateway's validation (gateway.graphql.validation) reports exactly what graphql-core's
``validate`` (as Strawberry calls it) reports, error for error, with the gateway's rules: for
documents hypothesis-graphql generates from the schema (valid ones, and ones with a schema
violation) and for hand-written documents that break each kind of rule, fragments and variables
included."""

from __future__ import annotations

from typing import Any

import graphql.validation as V
import pytest
from graphql import GraphQLError, ValuesOfCorrectTypeRule, build_schema, parse, specified_rules
from graphql import validate as graphql_validate
from graphql.language.visitor import EnterLeaveVisitor
from graphql.validation import ASTValidationRule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, nodes, queries
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.schema import validate_document as strawberry_validate

from benchmarks.bench import DASHBOARD
from gateway.graphql import validation
from gateway.graphql.requests import ArgumentValuesRule
from gateway.graphql.schema import _LIMIT_RULES, MAX_ALIASES, MAX_DEPTH, schema
from gateway.graphql.validation import MAX_ERRORS, MAX_KIND_METHODS, validate_document

SDL = schema.as_str()
DAY = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
SCALARS = {
    "Date": st.from_regex(rf"\A{DAY}\Z").map(nodes.String),
    "DateTime": st.from_regex(rf"\A{DAY}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}Z\Z").map(nodes.String),
    "BigInt": st.integers().map(nodes.Int),
}
RULES = (
    *(ArgumentValuesRule if r is ValuesOfCorrectTypeRule else r for r in specified_rules),
    *_LIMIT_RULES,
)
"""The rules a request is validated with (see gateway.graphql.schema and RequestChecks)."""


def reported(errors: list[GraphQLError]) -> list[tuple[Any, ...]]:
    return [(e.message, e.locations, e.path, e.extensions) for e in errors]


def same_errors(text: str) -> list[tuple[Any, ...]]:
    document = parse(text)
    ours = reported(validate_document(schema._schema, document, RULES))
    theirs = reported(strawberry_validate(schema._schema, document, RULES))
    assert ours == theirs, text
    return ours


INCREMENTAL = build_schema(
    """
    directive @defer(if: Boolean! = true, label: String) on FRAGMENT_SPREAD | INLINE_FRAGMENT
    directive @stream(if: Boolean! = true, label: String, initialCount: Int = 0) on FIELD
    type Query { name: String, names: [String], pet: Pet }
    type Mutation { rename: String }
    type Subscription { news: String, more: String }
    type Pet { name: String }
    """
)
"""A schema with @defer and @stream, a mutation and a subscription: for the examples of
MISTAKES (the gateway's schema has none of those)."""

MISTAKES = {
    V.KnownDirectivesRule: "{ name @unknown }",
    V.UniqueDirectivesPerLocationRule: "{ name @include(if: true) @include(if: false) }",
    V.DeferStreamDirectiveOnRootField: "mutation { ... @defer { rename } }",
    V.DeferStreamDirectiveOnValidOperationsRule: "subscription { ... @defer { news } }",
    V.DeferStreamDirectiveLabel: '{ names @stream(label: "a") pet { ... @defer(label: "a") '
    "{ name } } }",
    V.StreamDirectiveOnListField: "{ name @stream }",
    V.UniqueVariableNamesRule: "query($a: Int, $a: Int) { name }",
    V.VariablesAreInputTypesRule: "query($a: Pet) { name }",
    V.NoUndefinedVariablesRule: "{ name @include(if: $nope) }",
    V.NoUnusedVariablesRule: "query($a: Int) { name }",
    V.VariablesInAllowedPositionRule: "query($a: Boolean) { name @include(if: $a) }",
    V.KnownTypeNamesRule: "{ ... on Nope { name } }",
    V.FragmentsOnCompositeTypesRule: "{ ... on String { name } }",
    V.UniqueFragmentNamesRule: "{ ...F } fragment F on Query { name } fragment F on Query { name }",
    V.KnownFragmentNamesRule: "{ ...Nope }",
    V.NoUnusedFragmentsRule: "{ name } fragment F on Query { name }",
    V.PossibleFragmentSpreadsRule: "{ pet { ... on Query { name } } }",
    V.NoFragmentCyclesRule: "{ ...F } fragment F on Query { ...F }",
    V.LoneAnonymousOperationRule: "{ name } query A { name }",
    V.UniqueOperationNamesRule: "query A { name } query A { name }",
    V.KnownOperationTypesRule: "mutation { rename }",
    V.SingleFieldSubscriptionsRule: "subscription { news more }",
    V.MaxIntrospectionDepthRule: (
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    ),
}
"""A document in which each rule of NEEDS reports a mistake."""

NESTING = 210
"""Fragments spread one inside the next: past graphql-core's guard (MAX_NESTING_DEPTH, 200)."""

CASES = {
    "valid": "{ accounts { id quotas { name used limit } } }",
    "unknown field": "{ accounts { id nope } }",
    "unknown argument": "{ accounts(nope: 1) { id } }",
    "wrong argument type": '{ quotas(minUtilization: "high") { name } }',
    "missing argument": "{ account { id } }",
    "bad enum": "{ accounts(provider: NOPE) { id } }",
    "bad date": '{ accounts { usage(from: "2026-02-30", to: "2026-03-01") { requests } } }',
    "leaf with selection": "{ accounts { id { x } } }",
    "object without selection": "{ accounts }",
    "unused variable": "query($a: Int) { accounts { id } }",
    "undefined variable": "{ quotas(minUtilization: $u) { name } }",
    "variable in wrong place": "query($p: String) { accounts(provider: $p) { id } }",
    "variable of unknown type": "query($p: Nope) { accounts { id } }",
    "duplicate variable": "query($a: Int, $a: Int) { accounts { id } }",
    "duplicate operations": "query A { accounts { id } } query A { accounts { name } }",
    "anonymous and named": "{ accounts { id } } query B { accounts { id } }",
    "unknown fragment": "{ accounts { ...Nope } }",
    "unused fragment": "{ accounts { id } } fragment F on Account { id }",
    "fragment cycle": (
        "{ accounts { ...A } } fragment A on Account { ...B } fragment B on Account { ...A }"
    ),
    "fragment on scalar": "{ accounts { ...F } } fragment F on String { length }",
    "fragment on wrong type": "{ accounts { ...F } } fragment F on Quota { name }",
    "duplicate fragment": (
        "{ accounts { ...F } } fragment F on Account { id } fragment F on Account { name }"
    ),
    "conflicting fields": "{ accounts { id: name id } }",
    "conflicting arguments": (
        '{ accounts { u: usage(from: "2026-03-01", to: "2026-03-02") { requests } '
        'u: usage(from: "2026-03-01", to: "2026-03-03") { requests } } }'
    ),
    "unknown directive": "{ accounts @nope { id } }",
    "duplicate directive": "{ accounts @skip(if: true) @skip(if: false) { id } }",
    "directive in wrong place": "query @skip(if: true) { accounts { id } }",
    "too deep": "{ " + " ".join("a {" for _ in range(12)) + " b " + "} " * 12 + "}",
    "too many aliases": "{ " + " ".join(f"a{i}: accounts {{ id }}" for i in range(40)) + " }",
    "variables and fragments": (
        "query($from: Date!, $to: Date!, $g: Granularity = WEEK) { accounts { ...U } } "
        "fragment U on Account { usage(from: $from, to: $to, granularity: $g) { requests } }"
    ),
    "fragment using an undefined variable": (
        "query { accounts { ...U } } "
        'fragment U on Account { usage(from: $from, to: "2026-03-01") { requests } }'
    ),
    "subscription": "subscription { accounts { id } }",
    "mutation": "mutation { accounts { id } }",
    "introspection": "{ __schema { types { name fields { name } } } __typename }",
    "introspection too deep": (
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    ),
    "type introspection too deep": (
        '{ __type(name: "Account") { fields { type { fields { type { fields { name } } } } } } }'
    ),
    "fragment on unknown type": "{ accounts { ...F } } fragment F on Nope { id }",
    "inline fragment on unknown type": "{ accounts { ... on Nope { id } } }",
    "inline fragment on scalar": "{ accounts { id { ... on String { length } } } }",
    "directive in a string only": '{ account(id: "@$...") { id nope } }',
    "over the error limit": (
        "{ accounts { " + " ".join(f"n{i}: nope{i}" for i in range(MAX_ERRORS + 10)) + " } }"
    ),
}


@pytest.mark.parametrize("text", CASES.values(), ids=list(CASES))
def test_each_kind_of_mistake_is_reported_as_graphql_core_reports_it(text: str) -> None:
    errors = same_errors(text)
    valid = text in (CASES["valid"], CASES["variables and fragments"], CASES["introspection"])
    assert bool(errors) != valid, errors


def test_the_gateways_own_rules_are_among_them() -> None:
    """The depth and alias limits and the argument messages speak through this validation too:
    the comparison is not between two silences."""
    too_deep = same_errors(CASES["too deep"])
    assert any(f"exceeds maximum operation depth of {MAX_DEPTH}" in e[0] for e in too_deep)
    too_many = same_errors(CASES["too many aliases"])
    assert any(f"Allowed: {MAX_ALIASES}" in e[0] for e in too_many), too_many
    [wrong] = same_errors(CASES["wrong argument type"])
    assert wrong[0].startswith("Argument 'minUtilization' of field 'quotas': ")
    limit = same_errors(CASES["over the error limit"])
    assert len(limit) == MAX_ERRORS + 1 and "Validation aborted" in limit[-1][0]


def test_fragments_nested_past_graphql_cores_guard_abort_alike() -> None:
    """graphql-core's own guard (its spec rules alone: the gateway's token limit refuses such a
    document long before, and Strawberry's depth limiter would recurse past Python's limit)."""
    text = (
        "{ accounts { ...F0 } } "
        + " ".join(
            f"fragment F{i} on Account {{ ... on Account {{ ...F{i + 1} }} }}"
            for i in range(NESTING)
        )
        + f" fragment F{NESTING} on Account {{ id }}"
    )
    document = parse(text)
    ours = reported(validate_document(schema._schema, document, specified_rules))
    assert ours == reported(strawberry_validate(schema._schema, document, specified_rules))
    assert ours == [("Validation aborted.", None, None, {})]


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    text=st.sampled_from(list(Mode)).flatmap(
        lambda mode: queries(SDL, mode=mode, custom_scalars=SCALARS)
    )
)
def test_generated_documents_are_reported_as_graphql_core_reports_them(text: str) -> None:
    same_errors(text)


def test_a_dashboard_query_is_validated_without_the_rules_that_can_find_nothing_in_it() -> None:
    """A document with no directive, variable or fragment, one query and no introspection runs
    none of the rules of NEEDS (some twenty of graphql-core's 32): the rules are made per
    validation, and those would look and find nothing."""
    document = parse(DASHBOARD)
    kept = validation.needed(document, RULES)
    assert set(RULES) - set(kept) == set(validation.NEEDS)
    assert len(validation.NEEDS) >= 20
    assert [rule for rule in RULES if rule in kept] == kept  # in their order


@pytest.mark.parametrize("rule", list(validation.NEEDS), ids=lambda rule: rule.__name__)
def test_a_rule_left_out_runs_where_it_has_something_to_report(rule: type) -> None:
    """Each rule of NEEDS reports a mistake in an example document (graphql-core's own check,
    the rule alone), and is kept for that document; a document of one plain query leaves it
    out."""
    example = parse(MISTAKES[rule])
    assert any(graphql_validate(s, example, [rule]) for s in (INCREMENTAL, schema._schema))
    assert validation.needed(example, [rule]) == [rule]
    assert validation.needed(parse("{ name }"), [rule]) == []


def test_a_document_without_its_source_or_with_type_definitions_runs_every_rule() -> None:
    bare = parse(CASES["valid"], no_location=True)
    assert validation.needed(bare, RULES) == list(RULES)
    typed = parse("type T { a: Int } { accounts { id } }")
    assert validation.needed(typed, RULES) == list(RULES)
    assert same_errors("type T { a: Int } { accounts { id } }")


class OwnLookup(ASTValidationRule):
    """A rule that finds its handlers itself (as graphql-core allows): reports every field."""

    def get_enter_leave_for_kind(self, kind: str) -> EnterLeaveVisitor:
        if kind == "field":
            return EnterLeaveVisitor(self.report, None)
        return EnterLeaveVisitor(None, None)

    def report(self, node: Any, *_args: Any) -> None:
        self.report_error(GraphQLError(f"field {node.name.value}", node))


def test_a_rule_that_finds_its_handlers_itself_is_run_as_graphql_core_runs_it() -> None:
    document = parse(CASES["variables and fragments"])
    rules = (*RULES, OwnLookup)
    ours = reported(validate_document(schema._schema, document, rules))
    assert ours == reported(strawberry_validate(schema._schema, document, rules))
    assert [message for message, *_ in ours] == ["field accounts", "field usage", "field requests"]


def test_rule_classes_made_per_request_do_not_grow_the_lookups_without_bound() -> None:
    """Strawberry's limiters make a new rule class per instance: made anew for each of many
    validations, the method lookups stay within their bound."""
    document = parse(CASES["valid"])
    for _ in range(MAX_KIND_METHODS // 4):
        fresh = type("Fresh", (OwnLookup,), {})
        validate_document(schema._schema, document, (*RULES, fresh))
    assert 0 < len(validation._KIND_METHODS) <= MAX_KIND_METHODS
    assert len(validation._METHODS) <= MAX_KIND_METHODS * len(RULES)


def test_the_limits_run_as_strawberrys_limiters_do_after_one_count_of_the_fragments() -> None:
    """The depth and alias limits stand behind one rule that counts the document's fields once
    (a spread counted where it appears): on a document whose spreads all name a fragment, their
    errors are those of Strawberry's limiters run on their own, in the same order."""
    [limits] = _LIMIT_RULES
    alone = (
        *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    )
    assert [r.__name__ for r in limits.after] == [r.__name__ for r in alone]
    spread = (
        "{ "
        + " ".join(f"a{i}: accounts {{ ...F }}" for i in range(40))
        + " } fragment F on Account { u: usage { series { start } } id }"
    )
    for text in (spread, CASES["too deep"], CASES["too many aliases"], CASES["valid"]):
        document = parse(text)
        ours = reported(graphql_validate(schema._schema, document, [limits]))
        assert ours == reported(graphql_validate(schema._schema, document, list(alone))), text
        assert bool(ours) == (text != CASES["valid"])
