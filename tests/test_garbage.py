"""A GraphQL request leaves no reference cycle behind: what it made (its parsed document, the
validation rules, the executor, the request's context and scope, its errors) is freed by
reference counting when it ends, not left to the cyclic garbage collector, whether its document
is known or new, has variables or fragments, or ends in an error."""

from __future__ import annotations

import gc
import itertools
import json
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import ExecutionResult, parse, specified_rules
from graphql import validate as validate_graphql

from benchmarks.bench import asgi_call
from gateway.graphql.documents import parse_document
from gateway.graphql.executor import GatewayExecutor
from gateway.graphql.memo import MEMOS
from gateway.graphql.requests import expanded_fields
from gateway.graphql.schema import _LIMIT_RULES, schema
from gateway.graphql.validation import validate
from tests.conftest import account_entry, settings_for

DASHBOARD = """{ quotas(minUtilization: 0) { accountId name used limit utilization resetsAt }
  accounts { id name source { state fetchedAt }
    usage(from: "2026-03-01", to: "2026-03-18") { requests series { start requests } } } }"""

NUMBERS = itertools.count()
"""Aliases never used before in this process: each makes a document never seen before."""

KINDS = {
    "known": lambda n: {"query": DASHBOARD},
    "new": lambda n: {"query": DASHBOARD.replace("{ quotas(", f"{{ q{n}: quotas(", 1)},
    "variables": lambda n: {
        "query": f"query($p: Provider) {{ a{n}: accounts(provider: $p) {{ id name }} }}",
        "variables": {"p": "VIRUSTOTAL"},
    },
    "fragments": lambda n: {
        "query": f"{{ ...F }} fragment F on Query {{ a{n}: accounts {{ ...A }} }} "
        "fragment A on Account { id quotas { name used } }"
    },
    "invalid": lambda n: {"query": f"{{ accounts {{ nope{n} }} }}"},
    "bad argument": lambda n: {"query": f"{{ q{n}: quotas(minUtilization: 99) {{ name }} }}"},
}

PER_REQUEST = 5
"""Objects a request may leave to the collector at most (none, here; before this bound some
100 for a known document and 730 for a new one)."""


async def post(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One ``POST /graphql`` straight into the ASGI app (no client, no sockets, nothing of
    their own in the count): the answer's JSON."""
    status, answer = await asgi_call(app, json.dumps(body).encode())
    assert status == 200
    found: dict[str, Any] = json.loads(answer)
    return found


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector off for the test (what a test counts is what it left),
    on again afterwards."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(params=[0, 30], ids=["no answer cache", "answer cache"])
def app(request, emulators, make_gateway) -> Any:
    running = emulators["virustotal"]
    settings = settings_for(
        account_entry("virustotal", running.url, 0, id="vt"),
        cache={"response_ttl": request.param},
    )
    return make_gateway(settings).app


@pytest.mark.parametrize("kind", KINDS)
async def test_requests_leave_nothing_to_the_garbage_collector(app, kind, collector_off) -> None:
    make = KINDS[kind]
    for _ in range(3):  # the vendor's data read, the document known, the first alias parsed
        await post(app, make(next(NUMBERS)))
    gc.collect()
    requests = 10
    for _ in range(requests):
        answer = await post(app, make(next(NUMBERS)))
        assert ("errors" in answer) == (kind in ("invalid", "bad argument")), answer
    left = gc.collect()
    assert left <= PER_REQUEST * requests, f"{left / requests:.0f} objects per request"


async def test_a_new_document_is_gone_when_its_request_ends(app, collector_off) -> None:
    """An operation's memo goes when its node does (gateway.graphql.memo): after a request of
    a document never seen before, with the collector off, it is gone, so the syntax tree is."""
    await post(app, KINDS["new"](next(NUMBERS)))
    before = len(MEMOS)
    for _ in range(5):
        answer = await post(app, KINDS["new"](next(NUMBERS)))
        assert "errors" not in answer
    assert len(MEMOS) == before


def test_a_parsed_document_is_freed_by_reference_counting(collector_off) -> None:
    """Its tokens too (graphql-core links them both ways: a cycle through all of them)."""
    assert parse_document(DASHBOARD) == parse(DASHBOARD)
    gc.collect()  # graphql-core's tokens are a cycle
    document = parse_document(DASHBOARD)
    freed = weakref.ref(document)
    del document
    assert freed() is None
    assert gc.collect() == 0


def test_validating_keeps_nothing_alive(collector_off) -> None:
    rules = [*specified_rules, *_LIMIT_RULES]  # the limits' guards count fragments too
    for text in (
        DASHBOARD,
        "query($p: Provider) { accounts(provider: $p) { ...A } } fragment A on Account { id }",
        "{ accounts { nope } }",
    ):
        document = parse_document(text)
        gc.collect()
        assert validate(schema._schema, document, rules) == validate_graphql(
            schema._schema, document, rules
        )
        gc.collect()  # graphql-core's validation leaves cycles of its own
        validate(schema._schema, document, rules)
        assert expanded_fields(document) is not None
        freed = weakref.ref(document)
        del document
        assert freed() is None, text
        assert gc.collect() == 0, text


def test_an_executor_is_freed_by_reference_counting_once_it_answered(collector_off) -> None:
    executor = GatewayExecutor.build(schema._schema, parse_document("{ __typename }"))
    assert isinstance(executor, GatewayExecutor)
    assert executor.execute_operation() == ExecutionResult({"__typename": "Query"}, None)
    freed = weakref.ref(executor)
    del executor
    assert freed() is None
    assert gc.collect() == 0


def test_an_executor_still_gives_resolvers_its_helpers_after_it_answered() -> None:
    """A field of an answer nulled by another's error may still be resolved after the answer
    is built (graphql-core settles it in the background): its resolve info has the helpers."""
    executor = GatewayExecutor.build(schema._schema, parse_document("{ __typename }"))
    assert isinstance(executor, GatewayExecutor)
    helpers = executor.async_helpers
    executor.execute_operation()
    again = executor.async_helpers
    assert again is not helpers
    assert again.track == executor.track_async_work
    assert again.gather == executor.gather_async_work
