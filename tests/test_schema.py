"""The exported schema: current, complete per the contract, described, mirroring the domain."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from graphql import GraphQLEnumType, GraphQLObjectType, GraphQLScalarType

from gateway import domain, headroom, history
from gateway.alerts import model as alerts
from gateway.forecast import Forecast
from gateway.graphql import headroom as graphql_headroom
from gateway.graphql import types
from gateway.graphql.schema import schema
from providers import registry
from tests.conftest import field_names

ROOT = Path(__file__).parent.parent
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"

CORE = """
scalar BigInt
scalar Date
scalar DateTime
enum Provider { VIRUSTOTAL REVERSINGLABS ZKSCORE REPUTEAPI }
enum AccountScope { USER GROUP COMPANY API_KEY }
enum Granularity { MINUTE HOUR DAY WEEK MONTH }
enum QuotaWindow { MINUTE HOUR DAY MONTH FIXED_TERM }
enum QuotaUnit { REQUESTS BYTES }
enum SourceState { FRESH STALE RATE_LIMITED AUTH_FAILED UNAVAILABLE }
type Query {
  accounts(provider: Provider): [Account!]!
  account(id: ID!): Account
  quotas(provider: Provider, minUtilization: Float): [Quota!]!
}
type Account {
  id: ID!  provider: Provider!  name: String!  scope: AccountScope!  source: SourceStatus!
  quotas: [Quota!]!  rateLimits: [RateLimit!]!
  usage(from: Date!, to: Date!, granularity: Granularity! = DAY): Usage!
}
type SourceStatus { state: SourceState!  fetchedAt: DateTime  message: String  retryAt: DateTime }
type Usage {
  from: Date!  to: Date!  granularity: Granularity!  requests: BigInt!  quotaRequests: BigInt!
  bytes: BigInt  series: [UsagePoint!]!  endpoints: [EndpointUsage!]!  missingDays: [Date!]!
}
type UsagePoint { start: DateTime!  requests: BigInt!  quotaRequests: BigInt!  bytes: BigInt }
type EndpointUsage { endpoint: String!  requests: BigInt!  consumesQuota: Boolean! }
type Quota {
  id: ID!  accountId: ID!  name: String!  window: QuotaWindow!  unit: QuotaUnit!
  limit: BigInt  used: BigInt  remaining: BigInt  utilization: Float  exceeded: Boolean!
  resetsAt: DateTime  startsOn: Date  endsOn: Date  products: [String!]!
}
type RateLimit { window: QuotaWindow!  limit: BigInt!  used: BigInt  resetsAt: DateTime }
"""


def test_schema_graphql_is_current() -> None:
    exported = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert exported.strip() == schema.as_str().strip(), "schema.graphql is stale: run make schema"


def real_contract(path: Path = CONTRACT, env: Mapping[str, str] = os.environ) -> str:
    """The graph block of CONTRACT.md (comments dropped).

    Where shared/ is not beside the repo the calling test is skipped, since there is nothing to
    compare with; under ``CI=true`` (where shared/ always is beside it) it fails instead.
    """
    if not path.is_file():
        reason = f"{path} is absent: the contract itself cannot be read"
        if env.get("CI") == "true":
            pytest.fail(f"{reason}, and under CI=true shared/ must be beside the repo")
        pytest.skip(reason)
    text = path.read_text(encoding="utf-8")
    block = text.split("```graphql", 1)[1].split("```", 1)[0]
    return "\n".join(line.split("#", 1)[0] for line in block.splitlines())


def contract_graph() -> str:
    """The real contract where shared/ is beside the repo, as in CI; else the copy above."""
    return real_contract() if CONTRACT.is_file() else CORE


def declarations(graph: str) -> list[tuple[str, str, str]]:
    return re.findall(r"(scalar|enum|type) (\w+)(?: \{(.*?)\})?", graph, re.S)


def test_the_copy_of_the_contract_is_current() -> None:
    copy = {(kind, name, " ".join(body.split())) for kind, name, body in declarations(CORE)}
    real = {
        (kind, name, " ".join(body.split())) for kind, name, body in declarations(real_contract())
    }
    assert copy == real


def test_without_the_contract_the_copy_check_skips_except_in_ci(tmp_path: Path) -> None:
    absent = tmp_path / "CONTRACT.md"
    with pytest.raises(pytest.skip.Exception, match=r"CONTRACT\.md is absent"):
        real_contract(absent, env={})
    with pytest.raises(pytest.fail.Exception, match="under CI=true shared/ must be beside"):
        real_contract(absent, env={"CI": "true"})


def test_core_names_match_the_contract() -> None:
    graph = schema._schema
    for kind, name, body in declarations(contract_graph()):
        gtype = graph.type_map.get(name)
        assert gtype is not None, name
        if kind == "scalar":
            assert isinstance(gtype, GraphQLScalarType), name
        elif kind == "enum":
            assert isinstance(gtype, GraphQLEnumType)
            assert set(body.split()) <= set(gtype.values), name
        else:
            assert isinstance(gtype, GraphQLObjectType)
            for field, args, of_type in re.findall(r"(\w+)(?:\((.*?)\))?: ([\w!\[\]]+)", body):
                assert field in gtype.fields, f"{name}.{field}"
                assert str(gtype.fields[field].type) == of_type, f"{name}.{field}"
                for arg, arg_type in re.findall(r"(\w+): ([\w!\[\]]+)", args):
                    assert str(gtype.fields[field].args[arg].type) == arg_type, (
                        f"{name}.{field}({arg})"
                    )


def test_every_type_field_argument_and_value_is_described() -> None:
    undescribed = []
    for name, gtype in schema._schema.type_map.items():
        if name.startswith("__") or name in ("String", "Boolean", "Int", "Float", "ID"):
            continue
        if not gtype.description:
            undescribed.append(name)
        if isinstance(gtype, GraphQLObjectType):
            for fname, field in gtype.fields.items():
                if not field.description:
                    undescribed.append(f"{name}.{fname}")
                undescribed += [
                    f"{name}.{fname}({a})" for a, arg in field.args.items() if not arg.description
                ]
        if isinstance(gtype, GraphQLEnumType):
            undescribed += [f"{name}.{v}" for v, val in gtype.values.items() if not val.description]
    assert undescribed == []


def snake_to_camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def test_graphql_types_mirror_the_domain() -> None:
    pairs = [
        (
            domain.Quota,
            "Quota",
            {"vendor_exceeded"},
            {"remaining", "utilization", "exceeded", "history", "forecast", "source"}
            | {"alertStates"},
        ),
        (history.QuotaSample, "QuotaSample", set(), set()),
        (history.SnapshotRun, "SnapshotRun", set(), set()),
        (Forecast, "QuotaForecast", set(), set()),
        (domain.RateLimit, "RateLimit", set(), set()),
        (domain.UsagePoint, "UsagePoint", set(), set()),
        (domain.EndpointUsage, "EndpointUsage", set(), set()),
        (
            domain.Usage,
            "Usage",
            {"details"},
            {"failedRequests", "errorRate"}
            | {snake_to_camel(f.name) for f in dataclasses.fields(domain.UsageDetails)},
        ),
        (domain.ErrorCount, "ErrorCount", set(), set()),
        (domain.KeyUsage, "KeyUsage", set(), set()),
        (domain.Period, "Period", set(), set()),
        (domain.VendorAlert, "VendorAlert", set(), set()),
        (domain.SourceStatus, "SourceStatus", set(), set()),
        (
            domain.Account,
            "Account",
            set(),
            {"source", "quotasSource", "plan", "activeRulesets", "vendorAlerts"}
            | {"quotas", "rateLimits", "usage", "providerName", "alertStates"},
        ),
        (
            alerts.AlertEvent,
            "AlertEvent",
            {"facts"},
            {snake_to_camel(n) for n in field_names(alerts.Facts)},
        ),
        (alerts.AlertState, "AlertState", set(), set()),
        (alerts.Delivery, "AlertDelivery", set(), set()),
        (domain.Allowance, "Allowance", set(), set()),
        (domain.Entitlement, "Entitlement", set(), set()),
        (domain.Allocation, "QuotaAllocation", set(), set()),
        (headroom.Headroom, "AccountHeadroom", set(), {"source"}),
        (headroom.Constraint, "HeadroomConstraint", set(), set()),
    ]
    for cls, name, internal, derived in pairs:
        fields = {snake_to_camel(n) for n in field_names(cls)} - {
            snake_to_camel(n) for n in internal
        }
        graph_fields = set(schema._schema.type_map[name].fields)
        assert graph_fields == fields | derived, name
    enums = [
        (domain.AccountScope, types.AccountScope),
        (domain.Granularity, types.Granularity),
        (domain.QuotaWindow, types.QuotaWindow),
        (domain.QuotaUnit, types.QuotaUnit),
        (domain.SourceState, types.SourceState),
        (domain.FailureCause, types.FailureCause),
        (headroom.ConstraintKind, graphql_headroom.ConstraintKind),
        (alerts.Rule, types.AlertRule),
        (alerts.EventKind, types.AlertEventKind),
        (alerts.StateName, types.AlertStateName),
        (alerts.Reason, types.AlertResolution),
        (alerts.DeliveryState, types.AlertDeliveryState),
    ]
    for ours, theirs in enums:
        assert [m.name for m in ours] == [m.name for m in theirs]
        assert [m.value for m in ours] == [m.value for m in theirs]


def test_the_provider_enum_is_the_registry() -> None:
    """One ``Provider`` value per registered provider: name ``ID``, value ``id``, described by
    the provider class; the same in the exported graph."""
    ids = list(registry())
    assert [m.name for m in types.Provider] == [pid.upper() for pid in ids]
    assert [m.value for m in types.Provider] == ids
    graph = schema._schema.type_map["Provider"]
    assert isinstance(graph, GraphQLEnumType)
    assert {name: value.description for name, value in graph.values.items()} == {
        pid.upper(): entry.client.description for pid, entry in registry().items()
    }
