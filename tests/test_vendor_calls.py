"""Vendor calls in flight are bounded, per vendor host and in all, before they enter httpx.

The emulators stand behind :class:`tests.taps.InFlight`, which counts the requests each one
(each vendor host) has in flight, and those of every host together. Quotas are recomputed from
the emulators' seeded data (:mod:`benchmarks.fleet`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from benchmarks.fleet import (
    IDENTITIES,
    PROVIDERS,
    accounts,
    answered_quotas,
    emulators,
    expected_quotas,
)
from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.servers import ServerThread
from gateway.settings import Settings, parse_settings
from gateway.upstream import BREAKER_THRESHOLD
from providers.base import DEFAULT_CALLS, DEFAULT_CALLS_PER_HOST, CallGate
from providers.emulation import Fault
from tests.conftest import NO_CACHE, NO_HISTORY, NOW, SEED, Gateway, account_entry, clock
from tests.taps import InFlight

QUOTAS = "{ accounts { id source { state cause message } quotas { limit used } } }"


def fleet_settings(entries: list[dict[str, str]], **gateway: Any) -> Settings:
    data = {"gateway": {"history_path": NO_HISTORY, **gateway}, "accounts": entries}
    return parse_settings(data, env={})


async def ask(url: str, query: str = QUOTAS) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as client:
        answer = await client.post(url + "/graphql", json={"query": query})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


async def test_calls_in_flight_stay_within_both_bounds_and_reach_them() -> None:
    """200 accounts read cold at once through the gateway's own client: no host ever has more
    than ``max_vendor_calls_per_host`` calls in flight, nor all hosts more than
    ``max_vendor_calls``; both bounds are reached (the connection pool lets every call the
    gate admits through: it is no smaller than the bound)."""
    vendors = emulators(200, SEED, clock)
    tap = InFlight()
    for emulator in vendors.values():
        emulator.set_fault(Fault(delay_ms=30))  # every call overlaps others
    apps = [tap.wrap(name, emulator) for name, emulator in vendors.items()]
    with ServerThread(*apps) as servers:
        urls = dict(zip(vendors, servers.urls, strict=True))
        entries = accounts(200, urls)
        settings = fleet_settings(entries, max_vendor_calls=6, max_vendor_calls_per_host=4)
        with ServerThread(create_app(settings, clock=clock)) as gateway:
            answer = await ask(gateway.urls[0])
    assert {a["source"]["state"] for a in answer["accounts"]} == {"FRESH"}
    assert sum(tap.served.values()) == 50 * (1 + 5 + 1 + 1)  # a ReversingLabs read: 5 calls
    assert max(tap.peak.values()) == 4, tap.peak
    assert tap.total_peak == 6


async def test_one_host_is_served_over_as_many_connections_as_its_bound() -> None:
    """The pool keeps a connection alive for every call the gate admits: 25 accounts of one
    host (125 calls), 4 at a time, are served over 4 connections, opened once."""
    rl = emulators(0, SEED, clock)["reversinglabs"]
    rl.set_fault(Fault(delay_ms=20))
    tap = InFlight()
    with ServerThread(tap.wrap("rl", rl)) as server:
        identities = IDENTITIES["reversinglabs"]
        entries = [
            {"id": f"rl{n}", "provider": "reversinglabs", "base_url": server.urls[0]}
            | identities[n % len(identities)]
            for n in range(25)
        ]
        settings = fleet_settings(entries, max_vendor_calls=4, max_vendor_calls_per_host=4)
        with ServerThread(create_app(settings, clock=clock)) as gateway:
            answer = await ask(gateway.urls[0])
    assert len(answer["accounts"]) == 25
    assert {a["source"]["state"] for a in answer["accounts"]} == {"FRESH"}
    assert tap.served["rl"] == 25 * 5
    assert tap.peak["rl"] == 4
    assert len(tap.connections["rl"]) == 4, tap.connections


async def test_a_call_that_waits_for_a_slot_past_its_deadline_is_a_timeout_of_its_account(
    make_gateway: Callable[[Settings], Gateway], emulators: dict[str, Any]
) -> None:
    """Every slot of VirusTotal's host is taken (held here, as a long call would): its
    account's call waits until its deadline and ends as a timeout that never reached the
    vendor, on that account alone; waiting opens no circuit, however often it happens."""
    vt, rl = emulators["virustotal"], emulators["reversinglabs"]
    settings = parse_settings(
        {
            "gateway": {
                "history_path": NO_HISTORY,
                "upstream_timeout": 0.2,
                "max_vendor_calls": 2,
                "max_vendor_calls_per_host": 1,
            },
            "cache": NO_CACHE,
            "accounts": [
                account_entry("virustotal", vt.url),
                account_entry("reversinglabs", rl.url),
            ],
        },
        env={},
    )
    gateway = make_gateway(settings)
    provider = gateway.app.state.service.configured("vt-soc").provider
    async with provider.gate.slot(provider.host):
        for _ in range(BREAKER_THRESHOLD + 2):
            by_id = {a["id"]: a for a in (await gateway.data(QUOTAS))["accounts"]}
            source = by_id["vt-soc"]["source"]
            assert (source["state"], source["cause"]) == ("UNAVAILABLE", "TIMEOUT")
            assert "no call to VirusTotal could start within 0.2 s" in source["message"]
            assert by_id["rl-acme"]["source"]["state"] == "FRESH"
    assert vt.emulator.total_calls() == 0
    by_id = {a["id"]: a for a in (await gateway.data(QUOTAS))["accounts"]}
    assert by_id["vt-soc"]["source"]["state"] == "FRESH"  # no circuit was opened
    assert vt.emulator.total_calls() == 1


async def test_a_thousand_accounts_come_back_fresh_with_the_seeded_quotas() -> None:
    """1,000 accounts over the four emulators, one cold query, the default bounds: every
    account FRESH, each with the quotas its emulator's seeded data gives."""
    vendors = emulators(1000, SEED, clock)
    with ServerThread(*vendors.values()) as servers:
        urls = dict(zip(vendors, servers.urls, strict=True))
        entries = accounts(1000, urls)
        # Computed first, which also fills the emulators' own caches: the emulators share
        # this process with the gateway, and their first reads of 250 new keys are slow.
        expected = {entry["id"]: expected_quotas(vendors, entry, NOW) for entry in entries}
        # A generous deadline: this is about every value, not speed (``make bench`` 10).
        settings = fleet_settings(entries, upstream_timeout=120)
        with ServerThread(create_app(settings, clock=clock)) as gateway:
            answer = await ask(gateway.urls[0])
    found = {a["id"]: a for a in answer["accounts"]}
    assert len(found) == 1000
    assert {a["source"]["state"] for a in found.values()} == {"FRESH"}
    assert len({str(quotas) for quotas in expected.values()}) > 100  # accounts differ
    for entry in entries:
        assert answered_quotas(found[entry["id"]]) == expected[entry["id"]], entry


def test_the_default_bounds() -> None:
    settings = parse_settings({}, env={})
    assert (settings.max_vendor_calls, settings.max_vendor_calls_per_host) == (
        DEFAULT_CALLS,
        DEFAULT_CALLS_PER_HOST,
    )
    assert DEFAULT_CALLS_PER_HOST <= DEFAULT_CALLS


@pytest.mark.parametrize("key", ["max_vendor_calls", "max_vendor_calls_per_host"])
@pytest.mark.parametrize("value", [0, -1, 10_001, 2.5, "8", True])
def test_a_bad_bound_is_a_config_error_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"gateway": {key: value}}, env={})
    assert f"[gateway] field {key!r} must be a whole number of calls in [1, 10000]" in str(
        caught.value
    )


def test_a_host_bound_above_the_total_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"gateway": {"max_vendor_calls": 8, "max_vendor_calls_per_host": 9}}, env={})
    assert "'max_vendor_calls_per_host' (9) is more than max_vendor_calls (8)" in str(caught.value)


async def test_callers_get_their_slots_first_come_first_served() -> None:
    gate = CallGate(total=2, per_host=1)
    order: list[int] = []
    release = asyncio.Event()

    async def call(n: int) -> None:
        async with gate.slot("vendor.example:443"):
            order.append(n)
            await release.wait()

    holder = asyncio.create_task(call(0))
    await asyncio.sleep(0)
    waiters = []
    for n in range(1, 6):
        waiters.append(asyncio.create_task(call(n)))
        await asyncio.sleep(0)  # each reaches the gate before the next starts
    release.set()
    await asyncio.gather(holder, *waiters)
    assert order == [0, 1, 2, 3, 4, 5]


async def test_a_request_looks_up_what_its_grant_may_read() -> None:
    """Worked out once per grant at the first request, not walked again for every request."""
    entries = accounts(40, dict.fromkeys(PROVIDERS, "http://127.0.0.1:9"))
    async with httpx.AsyncClient() as http:
        service = create_app(fleet_settings(entries), http_client=http).state.service
        grant = frozenset(e["id"] for e in entries[:7])
        first = service.request(grant)
        assert service.request(grant)._readable is first._readable
        assert first.account_ids() == [e["id"] for e in entries[:7]]
        counts = (("reputeapi", 1), ("reversinglabs", 2), ("virustotal", 2), ("zkscore", 2))
        assert first.provider_counts() == counts
        assert service.request().account_ids() == [e["id"] for e in entries]
