"""The static query cost limit: hostile documents are refused before any resolver runs (no
vendor call), realistic ones pass, and the cost counts variables, fragments and aliases."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from graphql import parse

from benchmarks.bench import DASHBOARD, QUOTAS, YEAR
from gateway.errors import ConfigError
from gateway.graphql import cost as cost_module
from gateway.graphql.cost import ENDPOINTS_PER_USAGE, MAX_VISITS, Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.graphql.yielding import SLICE, TURN_BUDGET, in_slices
from gateway.service import BUILDS, OFF_LOOP_DAYS
from gateway.settings import DEFAULT_MAX_QUERY_COST, parse_settings
from providers.emulation import Fault
from tests.conftest import NOW, account_entry, settings_for

README = Path(__file__).resolve().parent.parent / "README.md"
USAGE = 'usage(from: "2000-01-01", to: "2027-03-18") { series { start requests } missingDays }'
ATTACK = "{ " + " ".join(f"a{i}: accounts {{ {USAGE} }}" for i in range(30)) + " }"
"""30 aliases x every account's daily usage since 2000: within the token, depth and alias
limits (it took 14 s and answered 28 MB before the cost limit)."""


@pytest.fixture
def repute(emulators):
    return emulators["reputeapi"]


def accounts(url: str, count: int = 3) -> list[dict[str, str]]:
    return [account_entry("reputeapi", url, 0, id=f"repute-{n}") for n in range(count)]


def cost(query: str, variables: dict | None = None, count: int = 5) -> int:
    found = operation_cost(
        schema._schema, parse(query), None, variables, Sizes((("reputeapi", count),), NOW.date())
    )
    assert found is not None
    return found.total


async def test_the_attack_is_refused_before_any_vendor_call(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*accounts(repute.url)))
    response = await gateway.post(ATTACK)
    assert response.status_code == 200
    answer = response.json()
    assert answer["data"] is None
    [error] = answer["errors"]
    extensions = error["extensions"]
    assert extensions["code"] == "QUERY_TOO_COSTLY"
    assert extensions["limit"] == DEFAULT_MAX_QUERY_COST == 100_000
    assert extensions["cost"] == cost(ATTACK, count=3) > 100_000
    message = error["message"]
    assert f"its cost is {extensions['cost']:,}, over the limit of 100,000" in message
    days = (NOW.date() - date(2000, 1, 1)).days + 1
    assert "Account.usage: 30 response keys" in message
    assert f"answered 90 times in all, each over up to {days:,} days" in message
    assert repute.emulator.total_calls() == 0


async def test_a_fragment_bomb_is_refused_without_walking_it_all(repute, make_gateway) -> None:
    """Fragments spread under many aliases repeat their fields: the walk stops early."""
    query = (
        "{ " + " ".join(f"a{i}: accounts {{ ...A }}" for i in range(30)) + " }"
        " fragment A on Account { " + " ".join(f"q{i}: quotas {{ ...Q }}" for i in range(30)) + " }"
        " fragment Q on Quota { " + " ".join(f"n{i}: name" for i in range(30)) + " }"
    )
    gateway = make_gateway(settings_for(*accounts(repute.url)))
    [error] = (await gateway.query(query))["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert f"it selects more than {MAX_VISITS:,} fields" in error["message"]
    assert repute.emulator.total_calls() == 0


def readme_queries() -> list[str]:
    return re.findall(r"```graphql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("count", [5, 20])
def test_realistic_queries_cost_less_than_the_default_limit(count: int) -> None:
    """README's examples, the bench's dashboard, and a year of daily usage for every account
    (with endpoints and missing days) next to every quota, for 5 and 20 accounts."""
    year = """{ quotas { accountId name used limit utilization } accounts { id source { state }
      usage(from: "2025-03-19", to: "2026-03-18") { requests series { start requests }
        endpoints { endpoint requests } missingDays } } }"""
    queries = [*readme_queries(), DASHBOARD, QUOTAS, year]
    assert len(queries) == 7
    costs = [cost(q, count=count) for q in queries]
    costs.append(cost(YEAR, {"from": "2025-03-19", "to": "2026-03-18"}, count))
    assert max(costs) < DEFAULT_MAX_QUERY_COST
    assert cost(year, count=count) > 2_000 * count  # a year per account is not nearly free


@pytest.mark.parametrize(("granularity", "buckets"), [("DAY", 18), ("WEEK", 4), ("MONTH", 2)])
def test_each_buckets_endpoints_are_counted(granularity: str, buckets: int) -> None:
    """``series { endpoints }`` costs, per bucket, ENDPOINTS_PER_USAGE items and what they
    select (18 days from 2026-03-01: 18 days, 4 weeks at most, 2 months at most)."""
    query = """{ account(id: "repute-0") { usage(from: "2026-03-01", to: "2026-03-18",
      granularity: %s) { series { start %s } } } }"""
    without = cost(query % (granularity, ""))
    with_endpoints = cost(query % (granularity, "endpoints { endpoint requests }"))
    assert with_endpoints - without == buckets * ENDPOINTS_PER_USAGE * (1 + 2)


async def test_endpoints_per_bucket_can_make_a_query_too_costly(repute, make_gateway) -> None:
    """Two years of daily per-endpoint series are refused before any vendor call, the message
    naming UsagePoint.endpoints; the same without the endpoints is answered."""
    gateway = make_gateway(settings_for(*accounts(repute.url, 1)))
    query = """query($endpoints: Boolean!) { account(id: "repute-0") {
      usage(from: "2024-03-19", to: "2026-03-18") {
        series { start requests endpoints @include(if: $endpoints) { endpoint requests } } } } }"""
    [error] = (await gateway.query(query, {"endpoints": True}))["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > 730 * ENDPOINTS_PER_USAGE * 3
    assert "of it is UsagePoint.endpoints: 1 response key" in error["message"]
    assert repute.emulator.total_calls() == 0
    answered = await gateway.data(query, {"endpoints": False})
    assert len(answered["account"]["usage"]["series"]) == 730


async def test_readme_and_dashboard_queries_are_answered(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*accounts(repute.url)))
    for query in [readme_queries()[0], DASHBOARD]:
        answer = await gateway.query(query)
        assert "QUERY_TOO_COSTLY" not in str(answer.get("errors")), answer["errors"]
        assert answer["data"]["accounts"]


async def test_variables_are_counted(repute, make_gateway) -> None:
    query = """query($from: Date!, $to: Date!, $g: Granularity!) {
      a: accounts { usage(from: $from, to: $to, granularity: $g) { series { start } } }
      b: accounts { usage(from: $from, to: $to, granularity: $g) { series { start } } } }"""
    short = {"from": "2026-03-01", "to": "2026-03-18", "g": "DAY"}
    long = {"from": "2000-01-01", "to": "2026-03-18", "g": "DAY"}
    literal = query.split("{", 1)[1].replace("$from", '"2000-01-01"')
    literal = "{" + literal.replace("$to", '"2026-03-18"').replace("$g", "DAY")
    assert cost(query, long) == cost(literal) > 50 * cost(query, short)
    assert cost(query, {**long, "g": "MONTH"}) < cost(query, long) / 2  # the days still count
    gateway = make_gateway(
        settings_for(*accounts(repute.url), max_query_cost=cost(query, long, count=3) - 1)
    )
    refused = await gateway.query(query, long)
    assert refused["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert repute.emulator.total_calls() == 0
    answered = await gateway.data(query, short)
    assert len(answered["a"]) == 3


def test_fragments_and_skip_are_counted() -> None:
    inline = f"{{ accounts {{ {USAGE} }} }}"
    spread = f"{{ accounts {{ ...U }} }} fragment U on Account {{ {USAGE} }}"
    inline_fragment = f"{{ accounts {{ ... on Account {{ {USAGE} }} }} }}"
    assert cost(spread) == cost(inline) == cost(inline_fragment) > 5 * 9_000
    fragment = spread[spread.index("fragment") :]
    skipped = f"query($s: Boolean!) {{ accounts {{ id ...U @skip(if: $s) }} }} {fragment}"
    assert cost(skipped, {"s": True}) == 5 * 2
    assert cost(skipped, {"s": False}) == cost(inline) + 5


def test_aliases_multiply() -> None:
    one = f"{{ a0: accounts {{ {USAGE} }} }}"
    assert cost(ATTACK) == 30 * cost(one)
    assert cost(ATTACK, count=10) == 2 * cost(ATTACK, count=5)  # and accounts too


async def test_max_query_cost_setting(repute, make_gateway) -> None:
    gateway = make_gateway(settings_for(*accounts(repute.url), max_query_cost=10))
    [error] = (await gateway.query("{ accounts { id name provider scope } }"))["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 15, "limit": 10}
    assert (
        "Query.accounts: 1 response key (aliases count apart), answered 1 times"
        in (error["message"])
    )
    for bad in (0, -5, 1.5, "100", True):
        with pytest.raises(ConfigError, match="'max_query_cost' must be a whole number >= 1"):
            parse_settings({"gateway": {"max_query_cost": bad}}, env={})
    assert parse_settings({"gateway": {"max_query_cost": 7}}, env={}).max_query_cost == 7


# -- large answers: the same, built off the event loop and completed in slices -------------


async def test_a_long_range_answers_as_its_halves_do(repute, make_gateway) -> None:
    """700 days are rolled up in a worker thread (OFF_LOOP_DAYS) and their 700 points completed
    in slices (SLICE); the answer equals that of its two halves, each built on the loop."""
    assert 350 < OFF_LOOP_DAYS <= 700 and SLICE < 700
    gateway = make_gateway(settings_for(*accounts(repute.url, 1)))
    query = """query($from: Date!, $to: Date!) { account(id: "repute-0") {
      usage(from: $from, to: $to) { requests series { start requests } missingDays } } }"""
    end = NOW.date()
    middle = end - timedelta(days=350)
    start = middle - timedelta(days=349)

    async def usage(first: date, last: date) -> dict:
        variables = {"from": first.isoformat(), "to": last.isoformat()}
        return (await gateway.data(query, variables))["account"]["usage"]

    whole = await usage(start, end)
    halves = [await usage(start, middle), await usage(middle + timedelta(days=1), end)]
    assert len(whole["series"]) + len(whole["missingDays"]) == 700
    assert whole["requests"] == sum(h["requests"] for h in halves) > 0
    assert whole["series"] == halves[0]["series"] + halves[1]["series"]
    assert whole["missingDays"] == halves[0]["missingDays"] + halves[1]["missingDays"]


async def test_long_ranges_asked_at_once_are_built_on_one_thread(repute, make_gateway) -> None:
    """Three accounts' 700 days asked at once are each rolled up off the loop, on the one
    thread of ``BUILDS`` (several threads would only take turns with the event loop for the
    interpreter, and stalled it): that thread is there afterwards, and no other of its name."""
    gateway = make_gateway(settings_for(*accounts(repute.url, 3)))
    end = NOW.date()
    start = end - timedelta(days=699)
    query = """query($from: Date!, $to: Date!) { accounts {
      usage(from: $from, to: $to) { requests series { start } missingDays } } }"""
    answers = await asyncio.gather(
        *(gateway.data(query, {"from": start.isoformat(), "to": end.isoformat()}) for _ in range(2))
    )
    for answer in answers:
        assert [
            len(a["usage"]["series"]) + len(a["usage"]["missingDays"]) for a in answer["accounts"]
        ] == [700] * 3
    builders = [t for t in threading.enumerate() if t.name.startswith("usage-build")]
    assert len(builders) == 1 and BUILDS._max_workers == 1
    assert set(BUILDS._threads) == set(builders)


def _busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def test_in_slices_lets_other_tasks_run() -> None:
    """Lists completed at once share one budget per loop turn: between two turns of another
    task, at most the budget's worth of items (each taking a quarter of it here) plus one per
    list."""
    item = TURN_BUDGET / 4
    per_turn: list[int] = []
    done = 0

    async def other() -> None:
        last = 0
        while True:
            per_turn.append(done - last)
            last = done
            await asyncio.sleep(0)

    async def consume(items: list[int]) -> list[int]:
        nonlocal done
        seen = []
        async for value in in_slices(items):
            _busy(item)
            done += 1
            seen.append(value)
        return seen

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    lists = [list(range(60)), list(range(60, 100))]
    seen = await asyncio.gather(*(consume(items) for items in lists))
    task.cancel()
    assert seen == lists
    assert len(per_turn) >= 100 * item / TURN_BUDGET  # the other task ran all along
    assert max(per_turn) <= TURN_BUDGET / item + 1 + len(lists)
    assert TURN_BUDGET == 0.001  # the README says 1 ms


HEAVY = """query($id: ID!, $from: Date!) { account(id: $id) {
  usage(from: $from, to: "2026-03-18") { requests missingDays series { start } } } }"""


@pytest.mark.parametrize(("first", "in_flight"), [("2001-01-01", 1), ("2026-01-01", 2)])
async def test_heavy_queries_run_one_at_a_time(emulators, make_gateway, first, in_flight) -> None:
    """Two concurrent operations over 25 years (each costing over HEAVY_COST) reach the vendor
    one after the other; two over 11 weeks (light) at once."""
    repute = emulators["reputeapi"]
    repute.emulator.set_fault(Fault(delay_ms=300))
    entries = [
        account_entry("reputeapi", repute.url, id="one"),
        account_entry("reputeapi", repute.url, index=1, id="two"),
    ]
    gateway = make_gateway(settings_for(*entries))
    answers = await asyncio.gather(
        *(gateway.query(HEAVY, {"id": name, "from": first}) for name in ("one", "two"))
    )
    assert all("errors" not in answer for answer in answers), answers
    assert repute.emulator.total_calls() == 2
    assert repute.emulator.max_in_flight == in_flight


def test_every_field_sized_by_its_arguments_is_named_in_sized() -> None:
    """The walk tries its cases (sizes from arguments) only for the fields of ``_SIZED``: a
    case for a field missing there would never be reached."""
    source = textwrap.dedent(inspect.getsource(cost_module._Walk._list_size))
    cases = {
        tuple(ast.literal_eval(p.value) for p in node.pattern.patterns)  # type: ignore[attr-defined]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.match_case)
    }
    assert cases == set(cost_module._SIZED)
    for type_name, field_name in cost_module._SIZED:  # each names a field of the schema
        assert field_name in schema._schema.get_type(type_name).fields  # type: ignore[union-attr]
