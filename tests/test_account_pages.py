"""``accounts(ids:)`` and ``alerts(accountIds:)``: a page of accounts, answered exactly as the
same accounts within the whole list, bounded in length, and priced by the accounts it names
(so a client such as the dashboard can ask for many accounts a page at a time)."""

from __future__ import annotations

import pytest
from graphql import parse

from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.service import MAX_ACCOUNT_IDS
from tests.conftest import NOW, account_entry, settings_for

EVERY = (
    "query($ids: [ID!]) { accounts(ids: $ids) { id quotas { id limit } }"
    " alerts(threshold: 0.01, accountIds: $ids) { kind quota { id accountId } } }"
)


@pytest.fixture
def gateway(emulators, make_gateway):
    accounts = [
        account_entry("virustotal", emulators["virustotal"].url, id="vt"),
        account_entry("reputeapi", emulators["reputeapi"].url, id="repute"),
        account_entry("zkscore", emulators["zkscore"].url, id="zk"),
        account_entry("reversinglabs", emulators["reversinglabs"].url, id="rl"),
    ]
    return make_gateway(settings_for(*accounts))


async def test_a_page_of_ids_answers_those_accounts_as_the_whole_list_does(gateway) -> None:
    whole = await gateway.data(EVERY)
    assert [a["id"] for a in whole["accounts"]] == ["vt", "repute", "zk", "rl"]
    assert len({a["quota"]["accountId"] for a in whole["alerts"]}) >= 2
    for ids in (["rl", "vt"], ["zk"], ["rl", "nobody", "rl"], []):
        page = await gateway.data(EVERY, {"ids": ids})
        # In config order, each once; an id of no account is left out.
        assert page["accounts"] == [a for a in whole["accounts"] if a["id"] in ids]
        assert page["alerts"] == [a for a in whole["alerts"] if a["quota"]["accountId"] in ids]


async def test_too_many_ids_are_refused_with_the_argument_named(gateway) -> None:
    ids = [f"a{i}" for i in range(MAX_ACCOUNT_IDS + 1)]
    for field, argument in (
        ("accounts(ids: $ids) { id }", "ids"),
        ("alerts(accountIds: $ids) { kind }", "accountIds"),
    ):
        answer = (await gateway.post(f"query($ids: [ID!]) {{ {field} }}", {"ids": ids})).json()
        (error,) = answer["errors"]
        assert error["message"] == (
            f"{argument} names 1,001 accounts; at most 1,000 are allowed (ask for the rest in"
            " another request)"
        )
    answer = await gateway.data(
        "query($ids: [ID!]) { accounts(ids: $ids) { id } }", {"ids": ids[:-1]}
    )
    assert answer["accounts"] == []


def cost(query: str, accounts: int, variables: dict | None = None) -> int:
    sizes = Sizes((("reputeapi", accounts),), NOW.date())
    found = operation_cost(schema._schema, parse(query), None, variables or {}, sizes)
    assert found is not None
    return found.total


def test_a_page_is_priced_by_the_accounts_it_names() -> None:
    ids = [f"a{i}" for i in range(40)]
    assert cost(EVERY, 1000, {"ids": ids}) == cost(EVERY, 40)
    assert cost(EVERY, 1000, {"ids": ids + ids}) == cost(EVERY, 40)  # each id once
    assert cost(EVERY, 10, {"ids": ids}) == cost(EVERY, 10)  # never more than are readable
    assert cost(EVERY, 1000, {"ids": None}) == cost(EVERY, 1000) > cost(EVERY, 40) * 20
