"""Freshness is a property of each payload: usage and quotas carry their own status, and an
account's ``source`` is defined over exactly the payloads the request reads for it.

The gateway reads VirusTotal quotas from ``/api/v3/groups/{id}`` and usage from ``.../api_usage``:
warming the quota read first, then breaking the vendor, gives a request whose quotas are FRESH
(from the cache) and whose usage fails.
"""

from __future__ import annotations

import pytest

from providers.base import RETRIES
from providers.emulation import Fault
from tests.conftest import NOW, account_entry, settings_for

Z_NOW = NOW.isoformat().replace("+00:00", "Z")
DAYS = ["2026-03-10", "2026-03-11", "2026-03-12"]


@pytest.fixture
async def broken_usage(emulators, twins, make_gateway):
    """A gateway over vt (quotas cached, then the vendor fails) and a healthy twin vt-ok."""
    vt = account_entry("virustotal", emulators["virustotal"].url, id="vt")
    ok = account_entry("virustotal", twins["virustotal"].url, id="vt-ok")
    gateway = make_gateway(settings_for(vt, ok, cache={"response_ttl": 0}))
    await gateway.data("{ accounts { quotas { used } } }")  # quotas now cached, FRESH
    emulators["virustotal"].emulator.reset()  # count from here
    emulators["virustotal"].emulator.set_fault(Fault(status=503))
    return gateway, emulators["virustotal"].emulator


async def test_usage_and_quotas_carry_their_own_status(broken_usage) -> None:
    gateway, vendor = broken_usage
    data = await gateway.data(
        """{ account(id: "vt") {
              source { state fetchedAt }
              quotasSource { state fetchedAt message }
              quotas { name source { state fetchedAt } }
              usage(from: "2026-03-10", to: "2026-03-12") {
                requests missingDays source { state fetchedAt message } } } }"""
    )
    account = data["account"]
    assert account["quotasSource"] == {"state": "FRESH", "fetchedAt": Z_NOW, "message": None}
    assert account["quotas"] and all(
        q["source"] == {"state": "FRESH", "fetchedAt": Z_NOW} for q in account["quotas"]
    )
    usage = account["usage"]
    assert usage["source"]["state"] == "UNAVAILABLE"
    assert usage["source"]["fetchedAt"] is None
    assert "503" in usage["source"]["message"]
    assert usage["missingDays"] == DAYS and usage["requests"] == 0
    # the account is as fresh as its worst payload
    assert account["source"] == {"state": "UNAVAILABLE", "fetchedAt": None}
    assert vendor.total_calls() == 1 + RETRIES  # the usage read, retried; quotas from cache


ANYWHERE = """query($from: Date!, $s: Boolean!) {
  a: account(id: "vt") { source { state } }
  b: account(id: "vt") { ...Used }
  c: accounts(provider: VIRUSTOTAL) { id source { state } }
  d: account(id: "vt-ok") { source { state } usage(from: $from, to: "2026-03-12") { requests } }
  e: account(id: "vt") @skip(if: $s) { usage(from: "2026-03-01", to: "2026-03-02") { requests } }
}
fragment Used on Account { ... on Account { usage(from: $from, to: "2026-03-12") { requests } } }
"""


async def test_source_covers_usage_selected_anywhere_in_the_request(broken_usage) -> None:
    gateway, vendor = broken_usage
    data = await gateway.data(ANYWHERE, {"from": DAYS[0], "s": True})
    assert data["a"]["source"]["state"] == "UNAVAILABLE"  # b's usage of the same account counts
    states = {a["id"]: a["source"]["state"] for a in data["c"]}
    assert states == {"vt": "UNAVAILABLE", "vt-ok": "FRESH"}  # d's usage is not vt's
    assert data["d"]["source"]["state"] == "FRESH"
    assert "e" not in data
    # the skipped field's range was never read: one usage read of vt (with its retries)
    assert vendor.total_calls() == 1 + RETRIES


@pytest.mark.parametrize("order", range(6))
async def test_source_does_not_depend_on_the_order_of_fields(broken_usage, order) -> None:
    gateway, _ = broken_usage
    fields = [
        "source { state }",
        'usage(from: "2026-03-10", to: "2026-03-12") { requests }',
        "quotas { name }",
    ]
    fields = fields[order % 3 :] + fields[: order % 3]
    if order >= 3:
        fields.reverse()
    for _ in range(5):
        data = await gateway.data('{ account(id: "vt") { ' + " ".join(fields) + " } }")
        assert data["account"]["source"]["state"] == "UNAVAILABLE"


async def test_a_wrongly_asked_usage_has_no_say_and_does_not_hang(broken_usage) -> None:
    gateway, _ = broken_usage
    answer = await gateway.query(
        """{ a: account(id: "vt") { source { state } }
             b: account(id: "vt") { usage(from: "2026-03-12", to: "2026-03-10") { requests } } }"""
    )
    assert answer["data"] == {"a": {"source": {"state": "FRESH"}}, "b": None}
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "from"}


async def test_usage_answered_by_the_history_store_alone_needs_no_vendor(
    emulators, make_gateway, tmp_path
) -> None:
    """Days in the future make an empty, FRESH usage without a vendor call."""
    vt = account_entry("virustotal", emulators["virustotal"].url, id="vt")
    gateway = make_gateway(settings_for(vt))
    data = await gateway.data(
        """{ account(id: "vt") { usage(from: "2026-03-20", to: "2026-03-22") {
               requests missingDays source { state fetchedAt } } } }"""
    )
    assert data["account"]["usage"] == {
        "requests": 0,
        "missingDays": [],
        "source": {"state": "FRESH", "fetchedAt": None},
    }
    assert emulators["virustotal"].emulator.total_calls() == 0


async def test_the_accounts_a_usage_belongs_to_come_from_variables_too(broken_usage) -> None:
    gateway, _ = broken_usage
    data = await gateway.data(
        """query($p: Provider, $id: ID!, $g: Granularity!) {
             c: accounts(provider: $p) { id source { state } }
             b: account(id: $id) { usage(from: "2026-03-10", to: "2026-03-12", granularity: $g) {
                  requests } } }""",
        {"p": "VIRUSTOTAL", "id": "vt", "g": "WEEK"},
    )
    assert {a["id"]: a["source"]["state"] for a in data["c"]} == {
        "vt": "UNAVAILABLE",
        "vt-ok": "FRESH",
    }
