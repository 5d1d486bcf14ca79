"""The root fields that list accounts start every read the operation selects on them (their
limits, each usage) together, and only those: a field reading nothing from the vendor makes no
call, a field reading limits makes exactly the limits call, and the reads of one account run at
the same time."""

from __future__ import annotations

import pytest

from gateway.graphql.schema import schema
from gateway.graphql.types import ACCOUNT_FIELDS_READING_LIMITS
from providers.emulation import Fault
from tests.conftest import account_entry, settings_for

USAGE = '(from: "2026-03-01", to: "2026-03-18")'
"""A range the VirusTotal emulator still serves (its clock is 2026-03-18)."""
ARGUMENTS = {"usage": USAGE}
SELECTION = {
    "source": "{ state }",
    "quotasSource": "{ state }",
    "quotas": "{ name }",
    "rateLimits": "{ name }",
    "vendorAlerts": "{ type }",
    "usage": "{ requests }",
    "alertStates": "{ rule }",
}
ACCOUNT_FIELDS = sorted(schema._schema.type_map["Account"].fields)  # type: ignore[union-attr]


@pytest.fixture
def vt(emulators, make_gateway):
    running = emulators["virustotal"]
    gateway = make_gateway(settings_for(account_entry("virustotal", running.url, 0, id="vt")))
    return running.emulator, gateway


def limits_calls(emulator) -> int:
    return sum(n for path, n in emulator.calls.items() if not path.endswith("/api_usage"))


def usage_calls(emulator) -> int:
    return sum(n for path, n in emulator.calls.items() if path.endswith("/api_usage"))


@pytest.mark.parametrize("name", ACCOUNT_FIELDS)
@pytest.mark.parametrize("root", ["accounts", 'account(id: "vt")'])
async def test_a_field_reads_the_limits_exactly_when_it_is_said_to(vt, root, name) -> None:
    """ACCOUNT_FIELDS_READING_LIMITS is exact: each field of Account, selected alone on a cold
    gateway, calls the vendor for the limits if and only if it is listed (then once)."""
    emulator, gateway = vt
    field = f"{name}{ARGUMENTS.get(name, '')} {SELECTION.get(name, '')}"
    await gateway.data(f"{{ {root} {{ {field} }} }}")
    assert limits_calls(emulator) == (1 if name in ACCOUNT_FIELDS_READING_LIMITS else 0)
    assert usage_calls(emulator) == (1 if name == "usage" else 0)


async def test_names_nothing_the_graph_does_not_have() -> None:
    assert set(ACCOUNT_FIELDS) >= ACCOUNT_FIELDS_READING_LIMITS


async def test_one_call_per_read_wherever_it_is_selected(vt) -> None:
    """The limits and a usage selected under both root fields, in fragments and twice under
    aliases: one call each."""
    emulator, gateway = vt
    await gateway.data(
        f"""{{ accounts {{ ...A quotas {{ name }} }} account(id: "vt") {{ ...A plan }}
        quotas {{ name source {{ state }} }} }}
        fragment A on Account {{ source {{ state }} u1: usage{USAGE} {{ requests }}
          u2: usage{USAGE} {{ series {{ start }} }} }}"""
    )
    assert limits_calls(emulator) == 1
    assert usage_calls(emulator) == 1


async def test_skipped_selections_read_nothing(vt) -> None:
    emulator, gateway = vt
    await gateway.data(
        f"""query($no: Boolean = false) {{ accounts {{ id quotas @include(if: $no) {{ name }}
        usage{USAGE} @skip(if: true) {{ requests }} }} }}"""
    )
    assert emulator.total_calls() == 0


async def test_the_reads_of_an_account_run_at_the_same_time(vt) -> None:
    """Its limits and its usage are started together by the root field (not the usage first
    and the limits only once the account's fields are completed)."""
    emulator, gateway = vt
    emulator.set_fault(Fault(delay_ms=200))
    data = await gateway.data(
        f'{{ account(id: "vt") {{ quotas {{ name }} usage{USAGE} {{ requests }} }} }}'
    )
    assert data["account"]["quotas"] and data["account"]["usage"]["requests"] > 0
    assert emulator.max_in_flight >= 2
