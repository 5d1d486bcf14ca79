"""The gateway's executor (gateway.graphql.executor) answers exactly as Strawberry's own
(graphql-core's path for every field), errors included, while answering plain objects in one
pass; and the data a request already holds is answered without awaiting anything."""

from __future__ import annotations

import asyncio
import enum
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import strawberry
from graphql import DocumentNode, ExecutionResult, execute, parse
from hypothesis import HealthCheck, given, settings
from hypothesis_graphql import queries
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.graphql.executor import GatewayExecutor
from gateway.graphql.schema import schema
from gateway.graphql.types import SCALARS, BigInt, GatewayContext
from gateway.graphql.yielding import SLICE
from tests.conftest import account_entry, settings_for
from tests.test_validation import SCALARS as GENERATED_SCALARS
from tests.test_validation import SDL

# -- a small schema of awkward values ------------------------------------------------------


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    name: str
    size: BigInt
    small: int
    color: Color | None
    at: datetime | None
    must: str
    tags: list[str]


def item(n: int, **changes: Any) -> Item:
    fields: dict[str, Any] = {
        "name": f"item {n} ✓ grüße \u2028",
        "size": BigInt(2**53 + n),
        "small": n,
        "color": Color.RED if n % 2 else None,
        "at": datetime(2026, 3, 18, 14, n % 60, tzinfo=UTC) if n % 3 else None,
        "must": "yes",
        "tags": ["a", "b"][: n % 3],
    }
    return Item(**{**fields, **changes})


ITEMS: dict[str, list[Any]] = {
    "clean": [item(n) for n in range(5)],
    "null in a non-null field": [item(0), item(1, must=None)],
    "a number past 32 bits in an Int": [item(0), item(1, small=2**40)],
    "not an enum member": [item(0), item(1, color="green")],
    "null item": [item(0), None, item(2)],
    "not an object": [item(0), 7],
    "long": [item(n) for n in range(3 * SLICE)],
}


@strawberry.type
class Query:
    @strawberry.field
    def items(self, kind: str) -> list[Item]:
        return ITEMS[kind]

    @strawberry.field
    def maybe_items(self, kind: str) -> list[Item | None] | None:
        return ITEMS[kind]

    @strawberry.field
    def one(self, kind: str) -> Item | None:
        return ITEMS[kind][-1]


SMALL = strawberry.Schema(query=Query, config=StrawberryConfig(scalar_map=SCALARS))  # type: ignore[arg-type]

DOCUMENTS = [
    "query($k: String!) { items(kind: $k) { name size small color at must } }",
    "query($k: String!) { maybeItems(kind: $k) { name size small color at must } }",
    "query($k: String!) { one(kind: $k) { __typename name must } }",
    "query($k: String!) { items(kind: $k) { a: name b: name size ...F } } "
    "fragment F on Item { name small }",
    "query($k: String!, $no: Boolean!) { maybeItems(kind: $k) { name @skip(if: $no) "
    "size @include(if: $no) ... on Item { color } } }",
    "query($k: String!) { items(kind: $k) { name tags } }",  # a list field: not plain
    "query($k: String!) { maybeItems(kind: $k) { __typename } }",
]


def run(executor: type[StrawberryGraphQLCoreExecutionContext], *args: Any, **kwargs: Any) -> Any:
    return execute(*args, executor_class=executor, is_awaitable=optimized_is_awaitable, **kwargs)


def answer(result: ExecutionResult) -> tuple[Any, list[tuple[Any, ...]]]:
    errors = [(e.message, e.path, e.locations) for e in result.errors or []]
    return result.data, sorted(errors, key=repr)


async def settled(result: Any) -> ExecutionResult:
    return await result if not isinstance(result, ExecutionResult) else result


@pytest.mark.parametrize("kind", list(ITEMS))
@pytest.mark.parametrize("text", DOCUMENTS)
async def test_awkward_values_are_answered_as_graphql_core_answers_them(text, kind) -> None:
    document = parse(text)
    for no in (True, False):
        variables = {"k": kind, "no": no}
        ours = await settled(run(GatewayExecutor, SMALL._schema, document, None, None, variables))
        theirs = await settled(
            run(
                StrawberryGraphQLCoreExecutionContext,
                SMALL._schema,
                document,
                None,
                None,
                variables,
            )
        )
        assert answer(ours) == answer(theirs)


def test_plain_objects_take_the_one_pass() -> None:
    """Not vacuous: a clean list of plain objects is answered in one pass (and one with a
    problem in it by graphql-core's path, which says where)."""
    text = '{ items(kind: "clean") { name size small color at must } }'
    executor = GatewayExecutor.build(
        SMALL._schema, parse(text), is_awaitable=optimized_is_awaitable
    )
    assert isinstance(executor, GatewayExecutor)
    result = executor.execute_operation()
    assert isinstance(result, ExecutionResult) and not result.errors
    assert executor.plain_objects == len(ITEMS["clean"])
    assert result.data == {
        "items": [
            {
                "name": i.name,
                "size": i.size,
                "small": i.small,
                "color": i.color.name if i.color else None,
                "at": i.at.isoformat().replace("+00:00", "Z") if i.at else None,
                "must": "yes",
            }
            for i in ITEMS["clean"]
        ]
    }
    broken = GatewayExecutor.build(
        SMALL._schema,
        parse(text.replace("clean", "null in a non-null field")),
        is_awaitable=optimized_is_awaitable,
    )
    assert isinstance(broken, GatewayExecutor)
    result = broken.execute_operation()
    assert isinstance(result, ExecutionResult)
    assert result.data is None and result.errors and result.errors[0].path == ["items", 1, "must"]
    assert broken.plain_objects == 1  # the list went graphql-core's way; its first item not


async def test_long_lists_are_completed_in_slices_letting_the_loop_run() -> None:
    """3 x SLICE plain items, each taking 0.1 ms to read: another task gets turns meanwhile."""

    class Slow:
        """An item whose every attribute takes 0.1 ms to read."""

        def __init__(self, base: Item) -> None:
            self.base = base

        def __getattr__(self, name: str) -> Any:
            until = time.perf_counter() + 0.0001
            while time.perf_counter() < until:
                pass
            return getattr(self.base, name)

    long = [Slow(i) for i in ITEMS["long"]]
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ITEMS["slow"] = long
    try:
        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        before = turns
        result = await settled(
            run(GatewayExecutor, SMALL._schema, parse('{ items(kind: "slow") { must } }'))
        )
        during = turns - before
        task.cancel()
    finally:
        del ITEMS["slow"]
    assert result.data == {"items": [{"must": "yes"}] * len(long)}
    assert during >= 3  # 30 ms of reading on a 4 ms budget per turn


# -- the gateway's own schema over the emulators' data ---------------------------------------

EVERYTHING = """query($from: Date!, $to: Date!) {
  quotas(minUtilization: 0) { id accountId name window unit limit used remaining utilization
    exceeded resetsAt startsOn endsOn products source { state fetchedAt message } }
  accounts { id provider name scope providerName plan activeRulesets
    source { state fetchedAt message retryAt cause vendor httpStatus }
    quotasSource { state fetchedAt }
    vendorAlerts { type message priority recommendation }
    quotas { ...Q freeFlex { limit unit startsOn endsOn } entitlements { name enabled amount }
      allocations { name limit used } }
    rateLimits { name window limit used resetsAt endpoints }
    usage(from: $from, to: $to) { from to granularity requests quotaRequests bytes
      series { start requests quotaRequests bytes failedRequests missingDays
        endpoints { endpoint requests consumesQuota errorRate averageLatencyMs bytes } }
      endpoints { endpoint requests consumesQuota errorRate averageLatencyMs bytes }
      failedRequests errorRate errorTypes { type requests description } averageLatencyMs
      peakLatencyMs keys { keyId name requests errorRate averageLatencyMs }
      breakdownPeriod { start end } missingDays source { state fetchedAt } }
    weeks: usage(from: $from, to: $to, granularity: WEEK) { series { start requests } } }
  one: account(id: "reputeapi") { id __typename quotas { __typename name } }
  bad: account(id: "zkscore") { id usage(from: $to, to: $from) { requests } }
  none: account(id: "nope") { id }
}
fragment Q on Quota { id name used limit utilization }"""


@pytest.fixture
def gateway(emulators, make_gateway):
    accounts = [
        account_entry(provider, running.url, 0, id=provider)
        for provider, running in emulators.items()
    ]
    return make_gateway(settings_for(*accounts))


@pytest.fixture
def service(gateway):
    return gateway.app.state.service


async def both(service, text: str, variables: dict[str, Any]) -> tuple[Any, Any]:
    document = parse(text)
    found = []
    for executor in (GatewayExecutor, StrawberryGraphQLCoreExecutionContext):
        context = GatewayContext(scope=service.request())
        result = run(executor, schema._schema, document, None, context, variables)
        found.append(answer(await settled(result)))
    return found[0], found[1]


@pytest.mark.parametrize(
    ("first", "last"), [("2026-03-01", "2026-03-18"), ("2025-12-01", "2026-03-18")]
)
async def test_every_field_of_the_graph_is_answered_as_graphql_core_answers_it(
    service, first, last
) -> None:
    variables = {"from": first, "to": last}
    cold = await both(service, EVERYTHING, variables)  # the first read fills the data cache
    warm = await both(service, EVERYTHING, variables)
    assert cold[0] == cold[1] and warm[0] == warm[1]
    data, errors = warm[0]
    assert len(data["accounts"]) == 4 and data["one"]["id"] == "reputeapi"
    assert data["none"] is None and data["bad"] is None
    assert [path for _, path, _ in errors] == [["bad", "usage"]]
    assert sum(len(a["usage"]["series"]) for a in data["accounts"]) > 0


async def test_data_at_hand_is_answered_without_awaiting(service) -> None:
    """Once the request holds what the operation reads (its first execution read it), the
    same operation in the same request completes without a single await: graphql-core
    returns the result itself, not an awaitable."""
    text = EVERYTHING
    variables = {"from": "2026-03-01", "to": "2026-03-18"}
    scope = service.request()
    first = run(
        GatewayExecutor, schema._schema, parse(text), None, GatewayContext(scope=scope), variables
    )
    assert not isinstance(first, ExecutionResult)  # it had to read
    first = await first
    again = run(
        GatewayExecutor, schema._schema, parse(text), None, GatewayContext(scope=scope), variables
    )
    assert isinstance(again, ExecutionResult)
    assert answer(again) == answer(first)
    assert [e.path for e in again.errors or []] == [["bad", "usage"]]  # a failed read too


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    text=queries(SDL, fields=["accounts", "account", "quotas"], custom_scalars=GENERATED_SCALARS)
)
async def test_generated_queries_are_answered_as_graphql_core_answers_them(service, text) -> None:
    ours, theirs = await both(service, text, {})
    assert ours == theirs


# -- the request around it -------------------------------------------------------------------


class CountingExecutor(ThreadPoolExecutor):
    """The event loop's default executor, counting the work handed to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        CountingExecutor.submitted += 1
        return super().submit(*args, **kwargs)


async def test_a_request_reading_nothing_runs_nothing_in_a_worker_thread(gateway) -> None:
    """Strawberry's Litestar controller made each request's empty response in a worker thread
    (one hop per request); the gateway's makes it on the loop. Nothing else hops either for a
    query that reads no vendor and no history."""
    loop = asyncio.get_running_loop()
    counting = CountingExecutor(max_workers=1)
    loop.set_default_executor(counting)
    try:
        for _ in range(3):
            answer = await gateway.post("{ __typename accounts { id name } }")
            assert answer.status_code == 200 and "errors" not in answer.json()
    finally:
        counting.shutdown()
    assert CountingExecutor.submitted == 0


async def test_answers_decode_to_exactly_what_was_answered(emulators, make_gateway) -> None:
    """The answer's bytes (msgspec) decode with the standard module to the values the standard
    module would have written: integers past 2^53 exact, text with quotes, accents, line
    separators and control characters intact, nulls nested in lists of objects."""
    name = 'SOC "✓" grüße \u2028\u2029 \x01 tab\there'
    entry = account_entry("reputeapi", emulators["reputeapi"].url, 0, id="repute", name=name)
    gateway = make_gateway(settings_for(entry))
    big = 10**18 - 1  # past 2^53 (headroom takes up to 10^18): a float would give 10^18
    answer = await gateway.post(
        f"""{{ accounts {{ name quotas {{ startsOn endsOn freeFlex {{ limit }} }} }}
        headroom(requests: {big}, accountId: "repute") {{ requests available }} }}"""
    )
    assert answer.status_code == 200
    decoded = json.loads(answer.content)
    assert decoded == json.loads(json.dumps(decoded))
    assert decoded["data"]["accounts"][0]["name"] == name
    assert decoded["data"]["headroom"][0]["requests"] == big
    quotas = decoded["data"]["accounts"][0]["quotas"]
    assert quotas and all(q["startsOn"] is None and q["freeFlex"] is None for q in quotas)
    assert answer.content == msgspec.json.encode(decoded)  # the same bytes, encoded again


# -- resolvers called directly, their arguments from the operation's memo -------------------

ARGUMENTS = """query($from: Date!, $to: Date!, $g: Granularity = DAY, $again: Boolean = false,
    $no: Boolean!, $min: Float, $p: Provider) {
  quotas(minUtilization: $min) { id used }
  some: quotas(provider: $p, minUtilization: 0.5) { id }
  accounts(provider: $p) { id
    usage(from: $from, to: $to, granularity: $g, recheck: $again) { from to granularity requests
      series { start requests } }
    fixed: usage(from: "2026-03-02", to: "2026-03-04") @skip(if: $no) { from to requests }
    weeks: usage(from: $from, to: $to, granularity: WEEK) @include(if: $no) {
      granularity series { start requests } }
    ...Later
  }
  listed: accounts(ids: ["zkscore", "virustotal"]) { id ...Later }
  one: account(id: "reputeapi") { id usage(from: $to, to: $to, granularity: HOUR) { requests } }
}
fragment Later on Account { later: usage(from: $to, to: $to) { from to requests } }"""

VARIABLES: list[dict[str, Any]] = [
    {"from": "2026-03-01", "to": "2026-03-18", "no": False},
    {"from": "2026-03-01", "to": "2026-03-18", "no": True, "g": "WEEK", "min": 0.0},
    {"from": "2026-02-01", "to": "2026-03-10", "no": False, "again": True, "p": "ZKSCORE"},
    {"from": "2026-03-10", "to": "2026-03-01", "no": False},  # from after to: InputErrors
    {"from": "2026-01-01", "to": "2026-03-18", "no": True, "g": "HOUR"},  # too long for hours
    {"from": "2026-03-01", "to": "2026-03-18", "no": False, "min": -0.0, "g": "MINUTE"},
    {"from": "2026-03-01", "to": "2026-03-18", "no": False, "p": None, "min": None},
]


async def both_formatted(
    service, document: DocumentNode, variables: dict[str, Any]
) -> tuple[tuple[Any, list[Any]], tuple[Any, list[Any]], int]:
    """The answer of the gateway's executor and of Strawberry's own, errors whole (message,
    path, locations, extensions) with the type of what was raised (what masking goes by); and
    how many resolvers the gateway's called directly."""
    found = []
    calls = 0
    for executor in (GatewayExecutor, StrawberryGraphQLCoreExecutionContext):
        context = GatewayContext(scope=service.request())
        built = executor.build(
            schema._schema,
            document,
            None,
            context,
            variables,
            is_awaitable=optimized_is_awaitable,
        )
        assert isinstance(built, executor)
        result = await settled(built.execute_operation())
        if isinstance(built, GatewayExecutor):
            calls = built.direct_calls
        errors = sorted(
            ((e.formatted, type(e.original_error)) for e in result.errors or []), key=repr
        )
        found.append((result.data, errors))
    return found[0], found[1], calls


async def test_arguments_are_those_of_each_request(service) -> None:
    """One document run with one set of variable values after another (and back): every
    answer is Strawberry's own, bad arguments' errors included, with resolvers called directly
    (not vacuous), never with the arguments worked out for other values: the same document
    (its syntax tree: what the memos go by) all along."""
    document = parse(ARGUMENTS)
    codes = set()
    for variables in [*VARIABLES, *reversed(VARIABLES), *VARIABLES]:
        ours, theirs, calls = await both_formatted(service, document, variables)
        assert ours == theirs, variables
        assert calls >= 5
        codes |= {e["extensions"]["code"] for e, _ in ours[1] if "extensions" in e}
    assert codes == {"BAD_USER_INPUT"}


async def test_a_known_document_is_answered_by_each_requests_variables(gateway) -> None:
    """Through the app (known documents, masking): the same text with other variable values
    answers by those values, bad ones with their input errors."""
    good = {"from": "2026-03-01", "to": "2026-03-03", "no": False}
    for variables in (good, VARIABLES[3], good, VARIABLES[4], good):
        answer = await gateway.post(ARGUMENTS, variables)
        body = answer.json()
        if variables is good:
            usages = [a["usage"] for a in body["data"]["accounts"]]
            assert all(u["from"] == "2026-03-01" and u["to"] == "2026-03-03" for u in usages)
            assert all(len(u["series"]) == 3 for u in usages)
            assert [e["path"] for e in body.get("errors", [])] == []
        else:  # a null usage nulls the whole answer (non-null all the way up)
            assert body["data"] is None
            (error,) = body["errors"]
            assert error["path"][-1] == "usage" and error["extensions"]["code"] == "BAD_USER_INPUT"
            assert error["message"] == (
                "`from` (2026-03-10) is after `to` (2026-03-01)"
                if variables is VARIABLES[3]
                else "granularity HOUR allows at most 62 days; this range has 77"
            )


# a field node run on two object types (a fragment on an interface): each type's resolver


@strawberry.interface
class Greeter:
    @strawberry.field
    def greet(self, times: int, loud: bool = False) -> str:
        raise NotImplementedError


@strawberry.type
class Hello(Greeter):
    @strawberry.field
    def greet(self, times: int, loud: bool = False) -> str:
        text = " ".join(["hello"] * times)
        return text.upper() if loud else text


@strawberry.type
class Bye(Greeter):
    @strawberry.field
    def greet(self, times: int, loud: bool = False) -> str:
        if times > 2:
            raise ValueError(f"{times} byes is too many")
        return ("BYE " if loud else "bye ") * times


@strawberry.type
class GreetQuery:
    @strawberry.field
    def greeters(self) -> list[Greeter]:
        return [Hello(), Bye(), Hello()]


GREETERS = strawberry.Schema(query=GreetQuery, types=[Hello, Bye])

GREET = """query($n: Int!, $loud: Boolean) {
  greeters { ... on Greeter { greet(times: $n, loud: $loud) } again: greet(times: 1) } }"""


async def test_a_field_node_on_two_types_calls_each_types_resolver() -> None:
    document = parse(GREET)
    for variables in ({"n": 1}, {"n": 2, "loud": True}, {"n": 3}, {"n": 1}, {"n": 2}):
        found = []
        for executor in (GatewayExecutor, StrawberryGraphQLCoreExecutionContext):
            built = executor.build(
                GREETERS._schema,
                document,
                None,
                None,
                variables,
                is_awaitable=optimized_is_awaitable,
            )
            assert isinstance(built, executor)
            result = await settled(built.execute_operation())
            found.append((result.data, [e.formatted for e in result.errors or []]))
            if isinstance(built, GatewayExecutor):
                # greeters, then two greet on each of three (till Bye refuses 3: all null)
                assert built.direct_calls == (4 if variables["n"] > 2 else 7)
        assert found[0] == found[1], variables
