"""Hostile HTTP requests to /graphql: each gets the status GraphQL-over-HTTP gives it and an
error naming the problem, never a 500, never Python's words, never a traceback or a warning in
the log.

A request that is not a GraphQL request (a body that is not UTF-8, not JSON, not an object; a
wrong method or content type) is refused with 400 (405, 413) and ``{"errors": [{"message"}]}``;
a GraphQL request whose document, variables or arguments are wrong answers 200 with ``errors``
and no data, as GraphQL-over-HTTP says for ``application/json``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import account_entry, settings_for

USAGE_FIELD = 'account(id: "repute-premium")'
PYTHON_TEXT = re.compile(
    r"Traceback|\b[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Exception)\b|object has no attribute"
    r"|out of range for month|must be in \d|invalid literal|NoneType|<class |\bline \d+, in "
    r"|set_int_max_str_digits|Internal error"
)
"""Python's own words in an answer: exception names and messages, tracebacks."""
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
"""A quoted value in an error message: the client's own text, echoed back."""


@dataclass(frozen=True)
class Case:
    """One hostile request and exactly what it gets."""

    id: str
    status: int
    message: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    params: dict[str, str] | None = None
    data: Any = None
    """The answer's ``data``: none where the request was refused before running, the fields
    answered where it ran (a field refusing its arguments is null)."""


def q(query: str, variables: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"query": query, **({"variables": variables} if variables is not None else {}), **extra}


JSON = {"content-type": "application/json"}
DATE_FORM = "(expected YYYY-MM-DD, e.g. 2026-01-31)"
MOMENT_FORM = "YYYY-MM-DDTHH:MM:SSZ (or an offset such as +02:00), e.g. 2026-01-31T23:59:59Z"
USAGE = f'{{ {USAGE_FIELD} {{ usage(from: %s, to: "2026-03-01") {{ requests }} }} }}'
HISTORY = (
    '{ account(id: "repute-premium") { quotas { history(from: %s, to: "2026-03-01T00:00:00Z")'
    " { at } } } }"
)
VAR_USAGE = f"query($f: Date!) {{ {USAGE_FIELD} {{ usage(from: $f, to: $f) {{ requests }} }} }}"
VAR_HISTORY = (
    'query($f: DateTime!) { account(id: "repute-premium") { quotas { history(from: $f, to: $f)'
    " { at } } } }"
)
BOMB = (
    "".join(f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }} " for i in range(1, 40))
    + "fragment F0 on Query { accounts { id } } { ...F39 }"
)
DEEP = '{"query": "{ accounts { id } }", "variables": {"v": ' + "[" * 30_000 + "]" * 30_000 + "}}"
"""30,000 levels: deep enough for a RecursionError, small enough for the 64 KiB body limit."""
DEEPER = DEEP.replace("[" * 30_000, "[" * 100_000).replace("]" * 30_000, "]" * 100_000)
REFUSED_BODY = 'a GraphQL request is a JSON object such as {"query": "{ accounts { id } }"}, not '
NEEDS_JSON = "a POST to /graphql needs Content-Type: application/json"

CASES = [
    # -- bodies that are not GraphQL requests: 400 -------------------------------------------
    Case("invalid-utf8", 400, "the request body is not UTF-8 text (byte 0xff at 0)",
         content=b"\xff\xfe{", headers=JSON),
    Case("latin1-body", 400, "the request body is not UTF-8 text (byte 0xe9 at 54)",
         content=b'{"query": "{ accounts { id } }", "operationName": "caf\xe9"}', headers=JSON),
    Case("bare-string", 400, REFUSED_BODY + "a string", content=b'"hello"', headers=JSON),
    Case("null", 400, REFUSED_BODY + "null", content=b"null", headers=JSON),
    Case("number", 400, REFUSED_BODY + "a number", content=b"42", headers=JSON),
    Case("boolean", 400, REFUSED_BODY + "a boolean", content=b"true", headers=JSON),
    Case("batch", 400, "a JSON array (a batch) is not accepted: send one GraphQL request object "
         "per POST", json=[q("{ accounts { id } }")]),
    Case("empty-batch", 400, "a JSON array (a batch) is not accepted: send one GraphQL request "
         "object per POST", content=b"[]", headers=JSON),
    Case("truncated-json", 400, "the request body is not JSON: Expecting property name enclosed "
         "in double quotes at line 1, column 2", content=b"{", headers=JSON),
    Case("empty-body", 400, "the request body is not JSON: Expecting value at line 1, column 1",
         content=b"", headers=JSON),
    Case("nan", 400, "the request body is not JSON: NaN is not a JSON value",
         content=b'{"query": "{ accounts { id } }", "variables": {"x": NaN}}', headers=JSON),
    Case("infinity", 400, "the request body is not JSON: -Infinity is not a JSON value",
         content=b'{"query": "{ accounts { id } }", "variables": {"x": -Infinity}}',
         headers=JSON),
    Case("nested-30k", 400, "the request body is JSON nested too deeply",
         content=DEEP.encode(), headers=JSON),
    Case("nested-100k", 413, "The request body is larger than 65536 bytes, the most this "
         "gateway reads.", content=DEEPER.encode(), headers=JSON),
    Case("huge-number", 400, "the request body holds a number with too many digits",
         content=b'{"query": "{ accounts { id } }", "variables": {"x": ' + b"9" * 5000 + b"}}",
         headers=JSON),
    Case("query-not-string", 400,
         "The GraphQL operation's `query` must be a string or null, if provided.",
         json={"query": 5}),
    Case("variables-array", 400,
         "The GraphQL operation's `variables` must be an object or null, if provided.",
         json=q("{ accounts { id } }", [])),
    Case("variables-string", 400,
         "The GraphQL operation's `variables` must be an object or null, if provided.",
         json=q("{ accounts { id } }", "x")),  # type: ignore[arg-type]
    Case("extensions-number", 400,
         "The GraphQL operation's `extensions` must be an object or null, if provided.",
         json=q("{ accounts { id } }", extensions=5)),
    Case("operation-name-number", 400, "operationName must be a string or null, not a number",
         json=q("{ accounts { id } }", operationName=5)),
    Case("operation-name-array", 400, "operationName must be a string or null, not an array",
         json=q("query A { accounts { id } }", operationName=["A"])),
    Case("no-query", 400, "No GraphQL query found in the request", json={}),
    Case("empty-query", 400, "No GraphQL query found in the request", json=q("")),
    Case("null-query", 400, "No GraphQL query found in the request", json={"query": None}),
    Case("text-plain", 400, NEEDS_JSON, content=b"{ accounts { id } }",
         headers={"content-type": "text/plain"}),
    Case("no-content-type", 400, NEEDS_JSON, content=b'{"query": "{ accounts { id } }"}'),
    Case("form-encoded", 400, NEEDS_JSON, content=b"query=%7B+accounts+%7B+id+%7D+%7D",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("multipart", 400, NEEDS_JSON, content=b"--x\r\n\r\n--x--\r\n",
         headers={"content-type": "multipart/form-data; boundary=x"}),
    Case("put", 405, "Method Not Allowed (PUT /graphql)", method="PUT", json={}),
    Case("delete", 405, "Method Not Allowed (DELETE /graphql)", method="DELETE"),
    Case("eleven-megabytes", 413, "The request body is larger than 65536 bytes, the most this "
         "gateway reads.",
         content=b" " * (11 << 20), headers=JSON),
    Case("unknown-operation-name", 400, 'Unknown operation named "Nope".',
         json=q("query A { accounts { id } }", operationName="Nope")),
    # -- GET -----------------------------------------------------------------------------------
    Case("get-without-query", 400, "No GraphQL query found in the request", method="GET",
         headers={"accept": "application/json"}, params={}),
    Case("get-mutation", 400, "mutations are not allowed when using GET", method="GET",
         params={"query": "mutation { x }"}),
    Case("get-variables-not-json", 400,
         "a query parameter is not JSON: Expecting ',' delimiter at line 1, column 3",
         method="GET", params={"query": "{ accounts { id } }", "variables": "[1"}),
    Case("get-variables-string", 400,
         "The GraphQL operation's `variables` must be an object or null, if provided.",
         method="GET", params={"query": "{ accounts { id } }", "variables": '"s"'}),
    Case("get-extensions-nan", 400, "a query parameter is not JSON: NaN is not a JSON value",
         method="GET", params={"query": "{ accounts { id } }", "extensions": "NaN"}),
    Case("get-syntax-error", 200, "Syntax Error: Expected Name, found <EOF>.", method="GET",
         params={"query": "{"}),
    # -- documents: 200 with errors, no data ---------------------------------------------------
    Case("syntax-error", 200, "Syntax Error: Expected Name, found <EOF>.",
         json=q("{ accounts { id }")),
    Case("unknown-fragment", 200, "Unknown fragment 'Nope'.", json=q("{ ...Nope }")),
    Case("unknown-fragment-deep", 200, "Unknown fragment 'Nope'.",
         json=q("{ accounts { ...Nope } }")),
    Case("fragment-cycle", 200, "Cannot spread fragment 'A' within itself via 'B'.",
         json=q("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }")),
    Case("fragment-wrong-type", 200, "Fragment 'F' cannot be spread here as objects of type "
         "'Query' can never be of type 'Account'.",
         json=q("fragment F on Account { id } { ...F }")),
    Case("fragment-bomb", 200, "the query selects 1099511627776 fields once its fragments are "
         "spread out; at most 10000 are allowed", json=q(BOMB)),
    Case("two-operations-unnamed", 200,
         "the document has 2 operations: say which to run with operationName",
         json=q("query A { accounts { id } } query B { quotas { id } }")),
    Case("unknown-field", 200, "Cannot query field 'nope' on type 'Query'.", json=q("{ nope }")),
    Case("unknown-directive", 200, "Unknown directive '@nope'.",
         json=q("{ accounts @nope { id } }")),
    Case("unknown-argument", 200, "Unknown argument 'nope' on field 'Query.accounts'.",
         json=q("{ accounts(nope: 1) { id } }")),
    Case("missing-argument", 200, "Argument 'Query.account(id:)' of type 'ID!' is required, "
         "but it was not provided.", json=q("{ account { id } }")),
    Case("mutation", 200, "The mutation operation is not supported by the schema.",
         json=q("mutation { x }")),
    Case("subscription", 200, "The subscription operation is not supported by the schema.",
         json=q("subscription { x }")),
    Case("too-deep", 200, "'anonymous' exceeds maximum operation depth of 10",
         json=q("{ accounts { a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } } }")),
    Case("introspection-too-deep", 200, "Maximum introspection depth exceeded",
         json=q("{ __schema { types { fields { type { fields { type { fields { type { name } } }"
                " } } } } } }")),
    Case("too-many-aliases", 200, "31 aliases found. Allowed: 30",
         json=q("{ " + " ".join(f"a{i}: accounts {{ id }}" for i in range(31)) + " }")),
    Case("too-many-tokens", 200, "Syntax Error: Document contains more than 2000 tokens. "
         "Parsing aborted.", json=q("{ " + "accounts { id } " * 600 + "}")),
    Case("introspection-type-name", 200,
         "Argument 'name' of field '__type': String cannot represent a non string value: 5",
         json=q("{ __type(name: 5) { name } }")),
    Case("directive-wrong-type", 200,
         "Argument 'if' of directive 'include': Boolean cannot represent a non boolean value: "
         '"yes"', json=q('{ accounts @include(if: "yes") { id } }')),
    Case("variable-wrong-position", 200,
         "Variable '$l' of type 'String' used in position expecting type 'Int!'.",
         json=q("query($l: String) { snapshots(limit: $l) { id } }", {"l": "5"})),
    Case("variable-missing", 200, "Variable '$f' has invalid value: Expected a value of "
         "non-null type 'Date!' to be provided.",
         json=q(VAR_USAGE, {})),
    Case("variable-undeclared", 200, "Variable '$x' is not defined.",
         json=q("{ snapshots(limit: $x) { id } }")),
    # -- dates and moments -----------------------------------------------------------------------
    Case("date-feb-30", 200, "Argument 'from' of field 'usage': \"2026-02-30\" is not a Date: "
         f"February 2026 has 28 days, not 30 {DATE_FORM}", json=q(USAGE % '"2026-02-30"')),
    Case("date-month-13", 200, "Argument 'from' of field 'usage': \"2026-13-01\" is not a Date: "
         f"there is no month 13 {DATE_FORM}", json=q(USAGE % '"2026-13-01"')),
    Case("date-year-0", 200, "Argument 'from' of field 'usage': \"0000-01-01\" is not a Date: "
         f"there is no year 0 (years run from 0001 to 9999) {DATE_FORM}",
         json=q(USAGE % '"0000-01-01"')),
    Case("date-short-form", 200, "Argument 'from' of field 'usage': \"2026-1-1\" is not a Date "
         "of the form YYYY-MM-DD, e.g. 2026-01-31", json=q(USAGE % '"2026-1-1"')),
    Case("date-iso-basic", 200, "Argument 'from' of field 'usage': \"20260101\" is not a Date of "
         "the form YYYY-MM-DD, e.g. 2026-01-31", json=q(USAGE % '"20260101"')),
    Case("date-huge-string", 200, "Variable '$f' has invalid value: \"2026-01-01xxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxx…\" is not a Date of the form YYYY-MM-DD, e.g. 2026-01-31",
         json=q(VAR_USAGE, {"f": "2026-01-01" + "x" * 60_000})),
    Case("date-number", 200, "Argument 'from' of field 'usage': a Date is a string YYYY-MM-DD, "
         "e.g. 2026-01-31, not 20260101", json=q(USAGE % "20260101")),
    Case("date-variable-day-0", 200, "Variable '$f' has invalid value: \"2026-03-00\" is not a "
         f"Date: March 2026 has 31 days, not 0 {DATE_FORM}",
         json=q(VAR_USAGE, {"f": "2026-03-00"})),
    Case("date-default-value", 200, "Default value of variable '$f': \"2026-02-29\" is not a "
         f"Date: February 2026 has 28 days, not 29 {DATE_FORM}",
         json=q(VAR_USAGE.replace("Date!", 'Date! = "2026-02-29"'))),
    Case("moment-feb-30", 200, "Argument 'from' of field 'history': \"2026-02-30T00:00:00Z\" is "
         f"not a DateTime: February 2026 has 28 days, not 30 (expected {MOMENT_FORM})",
         json=q(HISTORY % '"2026-02-30T00:00:00Z"')),
    Case("moment-hour-25", 200, "Argument 'from' of field 'history': \"2026-03-01T25:00:00Z\" is "
         f"not a DateTime of the form {MOMENT_FORM}", json=q(HISTORY % '"2026-03-01T25:00:00Z"')),
    Case("moment-before-year-1", 200, "Variable '$f' has invalid value: \"0001-01-01T00:00:00+01"
         ":00\" is not a DateTime: in UTC it falls outside the years 0001-9999",
         json=q(VAR_HISTORY, {"f": "0001-01-01T00:00:00+01:00"})),
    Case("moment-after-9999", 200, "Variable '$f' has invalid value: \"9999-12-31T23:59:59-01:00"
         "\" is not a DateTime: in UTC it falls outside the years 0001-9999",
         json=q(VAR_HISTORY, {"f": "9999-12-31T23:59:59-01:00"})),
    Case("moment-week-date", 200, "Argument 'from' of field 'history': \"2026-W01-1\" is not a "
         f"DateTime of the form {MOMENT_FORM}", json=q(HISTORY % '"2026-W01-1"')),
    Case("moment-object", 200, "Variable '$f' has invalid value: a DateTime is a string "
         f"{MOMENT_FORM}, not {{\"at\": 1}}", json=q(VAR_HISTORY, {"f": {"at": 1}})),
    # -- numbers, ids, enums ---------------------------------------------------------------------
    Case("int-past-32-bits", 200, "Argument 'limit' of field 'snapshots': Int cannot represent "
         "non 32-bit signed integer value: 2147483648",
         json=q("{ snapshots(limit: 2147483648) { id } }")),
    Case("int-variable-past-32-bits", 200, "Variable '$l' has invalid value: Int cannot represent "
         "non 32-bit signed integer value: 99999999999",
         json=q("query($l: Int!) { snapshots(limit: $l) { id } }", {"l": 99_999_999_999})),
    Case("int-float", 200, "Argument 'limit' of field 'snapshots': Int cannot represent "
         "non-integer value: 1.5", json=q("{ snapshots(limit: 1.5) { id } }")),
    Case("float-infinite", 200, "minUtilization must be a fraction such as 0.8, not inf",
         json=q("{ quotas(minUtilization: 1e400) { id } }")),
    Case("float-string-nan", 200, "Variable '$m' has invalid value: Float cannot represent non "
         "numeric value: 'NaN'",
         json=q("query($m: Float) { quotas(minUtilization: $m) { id } }", {"m": "NaN"})),
    Case("float-negative", 200, "threshold must be a fraction such as 0.8, not -0.5",
         json=q("{ alerts(threshold: -0.5) { message } }"), data={"alerts": None}),
    Case("id-object", 200, "Argument 'accountId' of field 'snapshots': ID cannot represent a "
         "non-string and non-integer value: { a: 1 }",
         json=q("{ snapshots(accountId: {a: 1}) { id } }")),
    Case("id-float", 200, "Variable '$i' has invalid value: ID cannot represent value: 1.5",
         json=q("query($i: ID!) { account(id: $i) { id } }", {"i": 1.5})),
    Case("id-boolean", 200, "Variable '$i' has invalid value: ID cannot represent value: True",
         json=q("query($i: ID!) { account(id: $i) { id } }", {"i": True})),
    Case("id-huge-integer", 200, "", json=q("{ account(id: " + "9" * 3000 + ") { id } }"),
         data={"account": None}),
    Case("enum-unknown", 200, "Argument 'provider' of field 'accounts': Value 'NOPE' does not "
         "exist in 'Provider' enum.", json=q("{ accounts(provider: NOPE) { id } }")),
    Case("enum-as-string", 200, "Argument 'provider' of field 'accounts': Enum 'Provider' cannot "
         "represent non-enum value: \"VIRUSTOTAL\". Did you mean the enum value 'VIRUSTOTAL'?",
         json=q('{ accounts(provider: "VIRUSTOTAL") { id } }')),
    Case("granularity-unknown", 200, "Argument 'granularity' of field 'usage': Value 'YEAR' does "
         "not exist in 'Granularity' enum.",
         json=q(f'{{ {USAGE_FIELD} {{ usage(from: "2026-03-01", to: "2026-03-01", '
                "granularity: YEAR) { requests } } }")),
    Case("limit-zero", 200, "limit must be from 1 to 1000, not 0",
         json=q("{ snapshots(limit: 0) { id } }"), data={"snapshots": None}),
    # -- what still answers ----------------------------------------------------------------------
    Case("bom-prefixed-body", 200, "", content=b'\xef\xbb\xbf{"query": "{ accounts { id } }"}',
         headers=JSON, data={"accounts": [{"id": "repute-premium"}]}),
    Case("unused-variables", 200, "", json=q("{ accounts { id } }", {"x": [[[1]]], "y": None}),
         data={"accounts": [{"id": "repute-premium"}]}),
    Case("introspection-within-limits", 200, "",
         json=q('{ __type(name: "Granularity") { enumValues { name } } }'),
         data={"__type": {"enumValues": [{"name": n} for n in
                                         ("MINUTE", "HOUR", "DAY", "WEEK", "MONTH")]}}),
]  # fmt: skip

# Wrong JSON types, as variables, for every argument of every root field (and of the nested
# fields that take arguments): each answers 200 naming the variable and its type.
ARGUMENTS = [
    ("accounts", "provider", "Provider", "query($v: Provider) { accounts(provider: $v) { id } }"),
    ("account", "id", "ID", "query($v: ID!) { account(id: $v) { id } }"),
    ("quotas", "provider", "Provider", "query($v: Provider) { quotas(provider: $v) { id } }"),
    ("quotas", "minUtilization", "Float", "query($v: Float) { quotas(minUtilization: $v) { id } }"),
    ("alerts", "threshold", "Float", "query($v: Float!) { alerts(threshold: $v) { message } }"),
    ("snapshots", "accountId", "ID", "query($v: ID) { snapshots(accountId: $v) { id } }"),
    ("snapshots", "limit", "Int", "query($v: Int!) { snapshots(limit: $v) { id } }"),
    ("usage", "from", "Date", VAR_USAGE.replace("$f", "$v")),
    (
        "usage",
        "granularity",
        "Granularity",
        f'query($v: Granularity!) {{ {USAGE_FIELD} {{ usage(from: "2026-03-01", '
        'to: "2026-03-01", granularity: $v) { requests } } }',
    ),
    (
        "usage",
        "recheck",
        "Boolean",
        f'query($v: Boolean!) {{ {USAGE_FIELD} {{ usage(from: "2026-03-01", '
        'to: "2026-03-01", recheck: $v) { requests } } }',
    ),
    ("history", "from", "DateTime", VAR_HISTORY.replace("$f", "$v")),
]
WRONG = {"object": {"a": 1}, "array": [1, 2], "boolean": True, "number": 7.5, "string": "x7"}
RIGHT_KIND = {
    "Provider": "string",
    "ID": "string",
    "Float": "number",
    "Int": "number",
    "Date": "string",
    "DateTime": "string",
    "Granularity": "string",
    "Boolean": "boolean",
}


def wrong_type_cases() -> list[tuple[str, str, str, Any]]:
    cases = []
    for field_name, argument, type_name, query in ARGUMENTS:
        for kind, value in WRONG.items():
            if kind == RIGHT_KIND[type_name] or (type_name == "ID" and kind == "number"):
                continue
            if type_name == "Float" and kind == "number":
                continue
            cases.append((f"{field_name}.{argument}={kind}", type_name, query, value))
    return cases


def assert_no_python(text: str) -> None:
    """No Python text in an answer; quoted values in its error messages are the client's own
    and are left out (a fuzzer may well send the string "KeyError")."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("errors"), list):
        messages = [QUOTED.sub('""', str(e.get("message"))) for e in answer["errors"]]
        text = json.dumps({**answer, "errors": messages})
    found = PYTHON_TEXT.search(text)
    assert found is None, f"Python text {found.group(0)!r} in {text[:500]}"


@pytest.fixture
async def gateway(emulators, make_gateway, caplog):
    caplog.set_level(logging.DEBUG)
    return make_gateway(settings_for(account_entry("reputeapi", emulators["reputeapi"].url)))


def assert_quiet_log(caplog) -> None:
    """No warning, no error, no traceback: a client's mistake is worth an INFO line at most."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [(r.name, r.levelname, r.getMessage()) for r in loud]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_request(case: Case, gateway, caplog) -> None:
    response = await gateway.client.request(
        case.method,
        "/graphql",
        json=case.json,
        content=case.content,
        headers=case.headers,
        params=case.params,
    )
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert_no_python(response.text)
    if case.message:
        assert answer["errors"][0]["message"] == case.message
        assert answer.get("data") == case.data
        for error in answer["errors"]:  # every other error names its problem too
            assert_no_python(error["message"])
    else:
        assert "errors" not in answer, answer
        assert answer["data"] == case.data
    assert_quiet_log(caplog)


WRONG_TYPES = wrong_type_cases()


@pytest.mark.parametrize(
    ("type_name", "query", "value"),
    [c[1:] for c in WRONG_TYPES],
    ids=[c[0] for c in WRONG_TYPES],
)
async def test_wrong_json_type_for_every_argument(
    type_name: str, query: str, value: Any, gateway, caplog
) -> None:
    response = await gateway.client.post("/graphql", json=q(query, {"v": value}))
    assert response.status_code == 200
    answer = response.json()
    assert answer["data"] is None
    assert_no_python(response.text)
    [error] = answer["errors"]
    assert error["message"].startswith("Variable '$v' has invalid value: ")
    assert type_name in error["message"]
    assert_quiet_log(caplog)


def test_there_are_enough_hostile_requests() -> None:
    assert len(CASES) + len(WRONG_TYPES) >= 100
    assert {name for name, *_ in ARGUMENTS} >= {"accounts", "account", "quotas", "alerts"}
