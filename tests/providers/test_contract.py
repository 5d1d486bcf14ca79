"""One suite for every registered provider, run against its emulator over real HTTP.

Each vendor failure must end as that account's ``source`` state in a 200 answer, while a healthy
account of the same provider (on a second emulator instance) answers normally in the same query.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.domain import Granularity, ProviderId
from providers import registry
from providers.emulation import Fault
from tests.conftest import NOW, account_entry, settings_for

PROVIDERS = list(registry())
TESTS = Path(__file__).parent

QUERY = """
{
  accounts {
    id
    source { state message retryAt fetchedAt cause vendor httpStatus }
    quotas { id name limit used }
    rateLimits { window limit }
  }
}
"""


def test_every_provider_has_its_own_test_file() -> None:
    missing = [
        entry.package
        for entry in registry().values()
        if not (TESTS / f"test_{entry.package}.py").is_file()
    ]
    assert missing == [], f"providers without tests/providers/test_<vendor>.py: {missing}"


def test_every_provider_declares_demo_accounts_and_bad_credentials() -> None:
    for provider, entry in registry().items():
        assert entry.emulator.accounts, provider
        secret_fields = {f.name for f in entry.client.fields if f.secret}
        assert set(entry.emulator.bad_credentials) <= secret_fields, provider


DEADLINE = 5.0
"""Each vendor call's deadline here: far above what a loaded 2-core machine needs for a healthy
call and for a failing one's retries (up to 0.45 s of backoff), so only "slow" times out."""
SLOW_DEADLINE = 1.0


async def answer(
    make_gateway, broken: dict[str, str], healthy: dict[str, str], deadline: float = DEADLINE
) -> dict:
    gateway = make_gateway(
        settings_for(
            {"id": "broken", **broken}, {"id": "healthy", **healthy}, upstream_timeout=deadline
        )
    )
    data = await gateway.data(QUERY)
    return {a["id"]: a for a in data["accounts"]}


def entries(provider: str, emulators, twins) -> tuple[dict[str, str], dict[str, str]]:
    broken = account_entry(provider, emulators[provider].url)
    healthy = account_entry(provider, twins[provider].url)
    broken.pop("id", None)
    healthy.pop("id", None)
    return broken, healthy


def assert_healthy(account: dict) -> None:
    assert account["source"]["state"] == "FRESH", account["source"]
    assert account["source"]["fetchedAt"] == NOW.isoformat().replace("+00:00", "Z")
    assert account["quotas"], "a healthy account reports its quotas"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_healthy_accounts_answer(provider, emulators, twins, make_gateway) -> None:
    broken, healthy = entries(provider, emulators, twins)
    accounts = await answer(make_gateway, broken, healthy)
    assert_healthy(accounts["broken"])
    assert_healthy(accounts["healthy"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rejected_credentials(provider, emulators, twins, make_gateway) -> None:
    broken, healthy = entries(provider, emulators, twins)
    broken.update(registry()[ProviderId(provider)].emulator.bad_credentials)
    accounts = await answer(make_gateway, broken, healthy)
    source = accounts["broken"]["source"]
    assert (source["state"], source["cause"]) == ("AUTH_FAILED", "CREDENTIALS_REJECTED")
    assert source["httpStatus"] in (401, 403)
    assert source["vendor"] == registry()[ProviderId(provider)].client.display_name
    secrets = {f.name for f in registry()[ProviderId(provider)].client.fields if f.secret}
    shown = json.dumps(accounts)
    for name in secrets & broken.keys():  # the rejected credentials appear nowhere
        assert broken[name] not in shown, name
    assert accounts["broken"]["quotas"] == []
    assert_healthy(accounts["healthy"])


FAILURES = {
    "http-500": (Fault(status=500), "VENDOR_ERROR", 500),
    "http-502": (Fault(status=502), "VENDOR_ERROR", 502),
    "http-503": (Fault(status=503), "VENDOR_ERROR", 503),
    "slow": (Fault(delay_ms=int(SLOW_DEADLINE * 2500)), "TIMEOUT", None),
    "dropped": (Fault(drop=True), "CONNECTION", None),
    "not-json": (Fault(malformed="json"), "MALFORMED", 200),
    "wrong-shape": (Fault(malformed="shape"), "MALFORMED", 200),
    "refused": (None, "CONNECTION", None),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("failure", FAILURES)
async def test_unavailable_vendor(
    provider, failure, emulators, twins, closed_port_url, make_gateway
) -> None:
    fault, cause, status = FAILURES[failure]
    broken, healthy = entries(provider, emulators, twins)
    if fault is None:
        broken["base_url"] = closed_port_url
    else:
        emulators[provider].emulator.set_fault(fault)
    deadline = SLOW_DEADLINE if failure == "slow" else DEADLINE
    accounts = await answer(make_gateway, broken, healthy, deadline)
    source = accounts["broken"]["source"]
    assert (source["state"], source["cause"], source["httpStatus"]) == (
        "UNAVAILABLE",
        cause,
        status,
    )
    assert source["vendor"] == registry()[ProviderId(provider)].client.display_name
    assert source["message"]
    assert source["fetchedAt"] is None
    assert accounts["broken"]["quotas"] == []
    assert_healthy(accounts["healthy"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rate_limited(provider, emulators, twins, make_gateway) -> None:
    emulators[provider].emulator.set_fault(Fault(status=429, retry_after=45))
    broken, healthy = entries(provider, emulators, twins)
    accounts = await answer(make_gateway, broken, healthy)
    source = accounts["broken"]["source"]
    assert (source["state"], source["cause"], source["httpStatus"]) == (
        "RATE_LIMITED",
        "RATE_LIMITED",
        429,
    )
    expected = (NOW + timedelta(seconds=45)).isoformat().replace("+00:00", "Z")
    assert source["retryAt"] == expected
    assert_healthy(accounts["healthy"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_request_shows_the_vendors_own_words(
    provider, emulators, twins, make_gateway
) -> None:
    emulators[provider].emulator.set_fault(Fault(status=404))
    broken, healthy = entries(provider, emulators, twins)
    accounts = await answer(make_gateway, broken, healthy)
    source = accounts["broken"]["source"]
    assert (source["state"], source["cause"], source["httpStatus"]) == (
        "UNAVAILABLE",
        "REQUEST_REJECTED",
        404,
    )
    assert "Emulated failure" in source["message"]  # what the emulator said, in its error form
    assert_healthy(accounts["healthy"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_failed_usage_lists_every_day_as_missing(provider, emulators, make_gateway) -> None:
    emulators[provider].emulator.set_fault(Fault(status=503))
    entry = account_entry(provider, emulators[provider].url)
    gateway = make_gateway(settings_for(entry))
    data = await gateway.data(
        """{ accounts { source { state } usage(from: "2026-03-10", to: "2026-03-12") {
             requests series { start } missingDays } } }"""
    )
    account = data["accounts"][0]
    assert account["source"]["state"] == "UNAVAILABLE"
    assert account["usage"] == {
        "requests": 0,
        "series": [],
        "missingDays": ["2026-03-10", "2026-03-11", "2026-03-12"],
    }


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_answers_for_the_asked_days_only(provider, emulators, make_gateway) -> None:
    """The service reads the store for the days before those it asks a vendor for, summed by
    SQLite where no bucket shows its split: a vendor's answer covers only the days asked."""
    gateway = make_gateway(settings_for(account_entry(provider, emulators[provider].url)))
    [configured] = gateway.app.state.service.configured_accounts()
    client = configured.provider
    ranges = [(date(2026, 3, 2), date(2026, 3, 16)), (date(2026, 2, 20), date(2026, 3, 18))]
    for granularity in (Granularity.DAY, Granularity.MONTH):
        if granularity not in client.native_granularities:
            continue
        for first, last in [*ranges, (date(2026, 2, 1), date(2026, 2, 28))]:
            report = await client.usage(first, last, granularity)
            assert report.known_days, (granularity, first)
            assert all(first <= day <= last for day in report.known_days), (granularity, first)
            assert all(first <= p.start.date() <= last for p in report.points)
            assert all(first <= day <= last for day in report.day_endpoints or {})
