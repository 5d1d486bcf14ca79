"""What resolvers and the executor read from a document is kept per operation node and
variable values (gateway.graphql.memo), and never found for another: other variable values,
another document (even of the same text), the same operation with other fragments. The store
is bounded and keeps no syntax tree alive. Through the gateway, a known document answers by
the variables of each request, not by those its memo was first worked out with."""

from __future__ import annotations

import gc
import weakref

import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from gateway.graphql.memo import MEMOS, OperationMemos
from providers.emulation import Fault
from tests.conftest import account_entry, settings_for

TEXT = "query Q($a: Int) { accounts { id } } fragment F on Account { id }"


def parts(text: str = TEXT) -> tuple[OperationDefinitionNode, dict[str, FragmentDefinitionNode]]:
    document = parse(text)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return operation, fragments


def test_one_memo_per_operation_and_variable_values() -> None:
    memos = OperationMemos()
    operation, fragments = parts()
    first = memos.of(operation, fragments, {"a": 1})
    assert memos.of(operation, fragments, {"a": 1}) is first
    assert memos.of(operation, fragments, {"a": 2}) is not first
    assert memos.of(operation, fragments, {"a": True}) is not first  # equal to 1, not the same
    assert memos.of(operation, fragments, {"a": 1.0}) is not first
    zero = memos.of(operation, fragments, {"a": 0.0})
    assert memos.of(operation, fragments, {"a": -0.0}) is not zero  # equal, not the same
    assert memos.of(operation, fragments, {"a": 0.0}) is zero
    assert memos.of(operation, fragments, {}) is not first
    assert memos.of(operation, fragments, {"a": 1}) is first
    assert len(memos) == 1 and memos.memos() == 7


def test_variable_values_that_cannot_be_hashed_find_no_memo() -> None:
    memos = OperationMemos()
    operation, fragments = parts()
    first = memos.of(operation, fragments, {"a": [1]})
    assert memos.of(operation, fragments, {"a": [1]}) is not first
    assert memos.of(operation, fragments, {"a": {"b": 1}}) is not first
    assert len(memos) == 0


def test_another_document_of_the_same_text_has_its_own_memo() -> None:
    memos = OperationMemos()
    one, two = parts(), parts()
    assert memos.of(*one, {}) is not memos.of(*two, {})
    assert memos.of(*one, {}) is memos.of(*one, {})


def test_the_same_operation_with_other_fragments_has_its_own_memo() -> None:
    memos = OperationMemos()
    operation, fragments = parts()
    _, others = parts()  # a fragment F of the same text, another node
    first = memos.of(operation, fragments, {})
    assert memos.of(operation, others, {}) is not first
    assert memos.of(operation, {}, {}) is not first


def test_the_store_is_bounded() -> None:
    memos = OperationMemos(max_operations=3, max_variable_sets=2)
    documents = [parts() for _ in range(5)]
    memos_of = [memos.of(*document, {}) for document in documents]
    assert len(memos) == 3
    assert memos.of(*documents[0], {}) is not memos_of[0]  # the oldest went first
    assert memos.of(*documents[4], {}) is memos_of[4]
    operation, fragments = documents[4]
    by_value = [memos.of(operation, fragments, {"a": a}) for a in range(5)]
    assert memos.memos() == 1 + 1 + 2  # documents 2 and 3 one each, 4 its last two
    assert memos.of(operation, fragments, {"a": 4}) is by_value[4]
    assert len(memos) == 3


def test_no_syntax_tree_is_kept_alive() -> None:
    memos = OperationMemos()
    operation, fragments = parts()
    memos.of(operation, fragments, {"a": 1})
    nodes = [weakref.ref(operation), *(weakref.ref(f) for f in fragments.values())]
    del operation, fragments
    gc.collect()
    assert all(node() is None for node in nodes)
    assert len(memos) == 0  # its memos went with it


def test_a_node_where_a_gone_one_lived_finds_a_memo_of_its_own() -> None:
    """Nodes of new documents, one after another, each gone before the next (CPython may put
    one where the first node lived, the same id): none finds the first node's memo."""
    memos = OperationMemos()
    operation, fragments = parts()
    first, memo = id(operation), memos.of(operation, fragments, {"a": 1})
    del operation, fragments
    gc.collect()
    for _ in range(2_000):
        operation, fragments = parts()
        assert memos.of(operation, fragments, {"a": 1}) is not memo
        if id(operation) == first:
            break
        del operation, fragments


USAGE_VARIABLES = """query($from: Date!, $split: Boolean!, $used: Boolean!) {
  accounts { source { state } quotas { name used @include(if: $used) }
    usage(from: $from, to: "2026-03-18") {
      requests series { start endpoints @include(if: $split) { endpoint requests } } } } }"""


@pytest.fixture
def vt(emulators, make_gateway):
    running = emulators["virustotal"]
    settings = settings_for(
        account_entry("virustotal", running.url, 0, id="vt"), cache={"response_ttl": 0}
    )
    return running.emulator, make_gateway(settings)


def endpoints(data) -> int:
    return sum(
        len(point.get("endpoints", ()))
        for account in data["accounts"]
        for point in account["usage"]["series"]
    )


async def test_a_known_document_answers_by_each_request_s_variables(vt) -> None:
    """The same document (known after two requests, then run as the same syntax tree) with
    ``@include`` on a variable: the endpoint splits and a quota's figure are in the answer
    exactly when the request's variables include them, in whatever order they come."""
    _, gateway = vt
    base = {"from": "2026-03-01", "split": False, "used": False}
    for _ in range(4):
        data = await gateway.data(USAGE_VARIABLES, base)
        assert endpoints(data) == 0 and all("used" not in q for q in data["accounts"][0]["quotas"])
    split = await gateway.data(USAGE_VARIABLES, {**base, "split": True, "used": True})
    assert endpoints(split) > 0
    assert all("used" in q for q in split["accounts"][0]["quotas"])
    # As a document of another text (never seen, so nothing of it is kept) answers it.
    fresh = await gateway.data(USAGE_VARIABLES + " ", {**base, "split": True, "used": True})
    assert split == fresh
    again = await gateway.data(USAGE_VARIABLES, base)
    assert endpoints(again) == 0 and all("used" not in q for q in again["accounts"][0]["quotas"])


async def test_an_account_s_source_covers_the_usage_of_this_request_s_variables(vt) -> None:
    """``source`` covers the usage the request reads: after a known document read one range
    (fresh), the same document for another range the vendor fails on is not fresh."""
    emulator, gateway = vt
    base = {"from": "2026-03-01", "split": False, "used": False}
    for _ in range(4):
        data = await gateway.data(USAGE_VARIABLES, base)
        assert data["accounts"][0]["source"]["state"] == "FRESH"
    emulator.set_fault(Fault(status=503))
    answer = await gateway.query(USAGE_VARIABLES, {**base, "from": "2026-03-02"})
    assert answer["data"]["accounts"][0]["source"]["state"] != "FRESH"


async def test_new_documents_leave_no_memo_behind(vt) -> None:
    """Documents made up one per request (a new alias each) are not kept parsed, and their
    memos go with them: the store is no larger after a stream of them."""
    _, gateway = vt
    gc.collect()
    before = len(MEMOS)
    for n in range(20):
        await gateway.data(f"{{ a{n}: accounts {{ id quotas {{ name used }} }} }}")
    gc.collect()
    assert len(MEMOS) == before


async def test_a_document_seen_once_is_not_looked_up_in_the_store(vt) -> None:
    """A document parsed for its request and not kept parsed after it (its first request)
    enters nothing in the store, even while it runs: its memo is its request's own. On its
    second request it is kept, and its operation entered; from then on it is found there."""
    _, gateway = vt
    text = (
        '{ once: accounts { id quotas { name used } usage(from: "2026-03-01", to: '
        '"2026-03-02") { series { start requests } } } }'
    )
    made = MEMOS.entries_made
    first = await gateway.data(text)
    assert MEMOS.entries_made == made
    assert await gateway.data(text) == first
    assert MEMOS.entries_made == made + 1
    for _ in range(3):
        assert await gateway.data(text) == first
    assert MEMOS.entries_made == made + 1


MERGED = """{ accounts { id usage(from: "2026-03-01", to: "2026-03-18") { requests }
  usage(from: "2026-03-01", to: "2026-03-18") { series { start endpoints { endpoint requests } } }
} }"""
ALONE = """{ accounts { id usage(from: "2026-03-01", to: "2026-03-18") {
  requests series { start endpoints { endpoint requests } } } } }"""


async def test_a_usage_field_asked_twice_under_one_key_shows_the_splits_either_asks(vt) -> None:
    """Two selections of ``usage`` with the same arguments are one field (GraphQL merges
    them): the endpoint splits the second asks for are in the answer, as when one selection
    asks for everything, on the document's first requests and once it is known."""
    _, gateway = vt
    alone = await gateway.data(ALONE)
    assert endpoints(alone) > 0
    for _ in range(4):
        assert await gateway.data(MERGED) == alone
