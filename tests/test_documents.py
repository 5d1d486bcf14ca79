"""Known documents: kept parsed and validated once they passed twice; refused, invalid and
unparsable documents are never kept, nor ones seen once. And what a request read is freed when
its answer is built, with no garbage collection needed."""

from __future__ import annotations

import gc
from datetime import date

import pytest
from graphql import parse

from gateway import domain
from gateway.graphql.documents import (
    KNOWN,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    MAX_SIGHTINGS,
    KnownStore,
)
from gateway.service import OFF_LOOP_DAYS
from tests.conftest import account_entry, settings_for
from tests.test_cost import ATTACK

VALID = "{ accounts { id quotas { name used limit } } }"


@pytest.fixture
def gateway(emulators, make_gateway):
    repute = emulators["reputeapi"]
    entry = account_entry("reputeapi", repute.url, 0, id="repute")
    # Every request executes: no whole answer is served from the response cache.
    return make_gateway(settings_for(entry, cache={"response_ttl": 0}))


async def test_only_documents_that_pass_are_kept(gateway) -> None:
    refused = ATTACK.replace("a0:", "refused0:")
    invalid = "{ accounts { id nope } }"
    unparsable = "{ accounts { id "
    for text, code in (
        (refused, "QUERY_TOO_COSTLY"),
        (invalid, "GRAPHQL_VALIDATION_FAILED"),
        (unparsable, "GRAPHQL_PARSE_FAILED"),
    ):
        answer = (await gateway.post(text)).json()
        assert answer["errors"], text
        assert text not in KNOWN
        assert answer["errors"][0].get("extensions", {}).get("code") == code or (
            code != "QUERY_TOO_COSTLY"
            and answer["errors"][0]["locations"] == [{"line": 1, "column": 17}]
        ), answer
    first = (await gateway.post(VALID)).json()
    assert "errors" not in first
    assert VALID not in KNOWN  # passed once: only noted
    second = (await gateway.post(VALID)).json()
    assert VALID in KNOWN
    again = (await gateway.post(VALID)).json()  # parsed and validated no more: same answer
    assert again == first == second


async def test_documents_made_up_one_after_another_are_never_kept(gateway) -> None:
    """A new alias in every request (each document passing once): none is kept parsed, and
    the ones that were known stay known."""
    for _ in range(2):
        await gateway.post(VALID)
    assert VALID in KNOWN
    kept = len(KNOWN)
    for n in range(20):
        text = VALID.replace("accounts", f"a{n}: accounts")
        assert "errors" not in (await gateway.post(text)).json()
        assert text not in KNOWN
    assert len(KNOWN) == kept and VALID in KNOWN


def test_sightings_are_bounded_oldest_forgotten_first() -> None:
    store = KnownStore()
    document = parse("{ accounts { id } }")
    texts = [f"{{ a{n}: accounts {{ id }} }}" for n in range(MAX_SIGHTINGS + 1)]
    for text in texts:
        store.passed(text, document)
    assert len(store) == 0
    store.passed(texts[0], document)  # forgotten (the oldest): noted again, not kept
    assert texts[0] not in store
    store.passed(texts[-1], document)  # remembered: kept
    assert texts[-1] in store
    store.passed(texts[0], document)  # noted a moment ago: kept
    assert texts[0] in store


async def test_a_known_document_is_still_priced_with_its_variables(gateway) -> None:
    """Known documents skip validation, never the cost limit: the cost depends on variables."""
    usage = 'usage(from: $from, to: "2026-03-18") { series { start } missingDays }'
    query = (
        "query($from: Date!) { "
        + " ".join(f"a{i}: accounts {{ {usage} }}" for i in range(30))
        + " }"
    )
    for _ in range(2):
        cheap = (await gateway.post(query, {"from": "2026-03-01"})).json()
        assert "errors" not in cheap
    assert query in KNOWN
    dear = (await gateway.post(query, {"from": "2000-01-01"})).json()
    assert dear["data"] is None
    assert dear["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def test_the_known_documents_are_bounded() -> None:
    assert KNOWN.max_entries == MAX_DOCUMENTS == 512
    assert KNOWN.max_bytes == MAX_DOCUMENT_BYTES == 4 * 1024 * 1024


async def test_what_a_request_read_is_freed_without_a_garbage_collection(gateway) -> None:
    """A year of daily usage: once the answer is out, none of its Usage objects is alive, with
    the garbage collector off (before the request scope was released they lived until the next
    full collection). Under OFF_LOOP_DAYS, so no worker thread still holds the result."""
    assert (date(2026, 3, 18) - date(2025, 4, 1)).days < OFF_LOOP_DAYS
    query = """{ accounts { source { state } usage(from: "2025-04-01", to: "2026-03-18") {
      requests series { start } } } }"""
    await gateway.post(query)  # warm: the vendor's answer is in the data cache

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is domain.Usage)

    gc.collect()
    gc.disable()
    try:
        before = alive()
        answer = (await gateway.post(query)).json()
        after = alive()
    finally:
        gc.enable()
    assert answer["data"]["accounts"][0]["usage"]["requests"] > 0
    assert after == before
