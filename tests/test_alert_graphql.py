"""The graph's view of alerts: ``alertEvents`` (filters, bounds, scoping) and each rule's
state on ``Quota.alertStates`` and ``Account.alertStates``, after a snapshot run over the
emulators. Expected values come from the emulators' seeded data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.alerts.config import MAX_WEBHOOKS
from gateway.alerts.engine import Alerting
from gateway.app import build_service
from gateway.settings import Settings, parse_settings
from gateway.snapshot import run_snapshot
from providers.reputeapi.emulator import DEFAULT_KEYS, ReputeData
from providers.virustotal.emulator import QUOTAS, quota_used
from tests.conftest import NOW, SEED, TLS, account_entry, clock
from tests.receiver import Receiver, serving

STEPS = (0.2, 0.5, 1.0)
WINDOWS = {"hourly": "HOUR", "daily": "DAY", "monthly": "MONTH"}
MONTH_START = NOW.replace(day=1, hour=0, minute=0)
ELAPSED = (NOW - MONTH_START) / (NOW.replace(month=4, day=1, hour=0, minute=0) - MONTH_START)


def settings_with_alerts(tmp_path: Path, emulators, hook: str | None = None) -> Settings:
    alerts: dict[str, Any] = {"thresholds": list(STEPS)}
    if hook is not None:
        alerts["webhooks"] = [{"url": hook, "name": "ops"}]
    return parse_settings(
        {
            "gateway": {"history_path": str(tmp_path / "history.sqlite")},
            "cache": {"limits_ttl": 0, "response_ttl": 0},
            "accounts": [
                account_entry("virustotal", emulators["virustotal"].url),
                account_entry("reputeapi", emulators["reputeapi"].url),
            ],
            "alerts": alerts,
        },
        env={},
    )


async def snapshot(settings: Settings) -> None:
    async with httpx.AsyncClient(verify=TLS) as http, httpx.AsyncClient() as hooks:
        service = build_service(settings, http, clock=clock)
        try:
            assert service.history is not None and settings.alerts is not None
            outcomes = await run_snapshot(service, service.history)
            await Alerting(
                settings.alerts, settings.accounts, service.history, hooks, clock=clock
            ).after_snapshot(outcomes)
        finally:
            await service.upstream.close()
            await service.history.close()


def vt_expected(emulators) -> dict[str, tuple[float, str]]:
    """Each VirusTotal quota's utilization and window, from the emulator's data."""
    data = emulators["virustotal"].emulator.data
    found = {}
    for name, (allowed, _, rule) in QUOTAS.items():
        used = quota_used(data, "soc-team", 1.0, rule, NOW.date())
        window = next((w for suffix, w in WINDOWS.items() if name.endswith(suffix)), "FIXED_TERM")
        found[f"vt-soc:{name}"] = (used / allowed, window)
    return found


def expected_firings(emulators) -> set[tuple[str, str, float | None]]:
    """Thresholds reached, and the monthly quotas used faster than the month goes by (with one
    sample, the forecast is the straight line from the window's start: it runs out before the
    reset exactly when the share used is past the share of the month gone)."""
    firings = set()
    for quota, (share, window) in vt_expected(emulators).items():
        firings |= {(quota, "THRESHOLD", step) for step in STEPS if share >= step}
        if window == "MONTH" and share > ELAPSED:
            firings.add((quota, "PREDICTIVE", None))
    premium = next(k for k in DEFAULT_KEYS if k.key == "ra_live_premium_demo")
    share = ReputeData(SEED).month_to_date(premium, NOW).requests / premium.monthly_limit
    firings |= {("repute-premium:monthly-requests", "THRESHOLD", s) for s in STEPS if share >= s}
    return firings


EVENTS = """
query Events($account: ID, $rule: AlertRule, $event: AlertEventKind, $since: DateTime,
             $limit: Int! = 100) {
  alertEvents(accountId: $account, rule: $rule, event: $event, since: $since, limit: $limit) {
    id event rule threshold reason at firedAt windowStart message
    accountId provider quotaId quotaName window unit used limit utilization resetsAt
    runsOutEarliest runsOutLatest lastReadAt
    deliveries { webhook state attempts deliveredAt lastStatus lastError }
  }
}
"""


async def test_alert_events_after_a_snapshot_run(tmp_path, emulators, make_gateway) -> None:
    with serving(Receiver()) as receiver:
        settings = settings_with_alerts(tmp_path, emulators, f"{receiver.url}/hook")
        await snapshot(settings)
    gateway = make_gateway(settings)
    events = (await gateway.data(EVENTS))["alertEvents"]
    firings = {(e["quotaId"], e["rule"], e["threshold"]) for e in events}
    assert firings == expected_firings(emulators)
    assert len(events) == len(firings) == len(receiver.accepted())
    assert {e["event"] for e in events} == {"FIRING"}
    shares = vt_expected(emulators)
    for event in events:
        assert event["at"] == event["firedAt"] == "2026-03-18T14:25:00Z"
        assert event["deliveries"] == [
            {
                "webhook": "ops",
                "state": "DELIVERED",
                "attempts": 1,
                "deliveredAt": "2026-03-18T14:25:00Z",
                "lastStatus": 200,
                "lastError": None,
            }
        ]
        if event["accountId"] == "vt-soc":
            share, window = shares[event["quotaId"]]
            assert event["utilization"] == pytest.approx(share)
            assert event["window"] == window and event["provider"] == "VIRUSTOTAL"
            assert event["windowStart"] == (
                None if window == "FIXED_TERM" else event["windowStart"]
            )
    by_id = {r.json()["id"]: r.json() for r in receiver.accepted()}
    assert set(by_id) == {e["id"] for e in events}  # the graph's ids are the bodies' ids

    async def ids(**variables: Any) -> list[str]:
        return [e["id"] for e in (await gateway.data(EVENTS, variables))["alertEvents"]]

    every = await ids()
    assert await ids(limit=2) == every[:2]  # newest first
    assert set(await ids(account="repute-premium")) == {
        e["id"] for e in events if e["accountId"] == "repute-premium"
    }
    assert set(await ids(rule="PREDICTIVE")) == {
        e["id"] for e in events if e["rule"] == "PREDICTIVE"
    }
    assert await ids(event="RESOLVED") == []
    assert await ids(since=(NOW + timedelta(seconds=1)).isoformat()) == []
    assert await ids(since=NOW.isoformat()) == every
    assert await ids(account="not-an-account") == []  # as for any account not configured


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_alert_events_limit_is_bounded(tmp_path, emulators, make_gateway, limit) -> None:
    gateway = make_gateway(settings_with_alerts(tmp_path, emulators))
    answer = await gateway.query(EVENTS, {"limit": limit})
    (error,) = answer["errors"]
    assert error["message"] == f"limit must be from 1 to 1000, not {limit}"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


STATES = """
{ accounts {
    id
    alertStates { rule threshold state since windowStart firedAt resolvedAt }
    quotas { id window alertStates { rule threshold state since windowStart firedAt } }
} }
"""


async def test_each_rule_state_on_its_quota(tmp_path, emulators, make_gateway) -> None:
    settings = settings_with_alerts(tmp_path, emulators)
    gateway = make_gateway(settings)
    before = (await gateway.data(STATES))["accounts"]
    assert {s["state"] for a in before for q in a["quotas"] for s in q["alertStates"]} == {"OK"}
    await snapshot(settings)
    accounts = (await gateway.data(STATES))["accounts"]
    firing = expected_firings(emulators)
    for account in accounts:
        assert account["alertStates"] == [
            {
                "rule": "UNREADABLE",
                "threshold": None,
                "state": "OK",
                "since": None,
                "windowStart": None,
                "firedAt": None,
                "resolvedAt": None,
            }
        ]
        for quota in account["quotas"]:
            rules = [(s["rule"], s["threshold"]) for s in quota["alertStates"]]
            assert rules == [("THRESHOLD", s) for s in STEPS] + [("PREDICTIVE", None)]
            for state in quota["alertStates"]:
                fired = (quota["id"], state["rule"], state["threshold"]) in firing
                assert state["state"] == ("FIRING" if fired else "OK"), (quota["id"], state)
                assert state["firedAt"] == ("2026-03-18T14:25:00Z" if fired else None)
                assert state["since"] == state["firedAt"]
                if quota["window"] == "MONTH":
                    assert state["windowStart"] == "2026-03-01T00:00:00Z"
                if quota["window"] == "FIXED_TERM":
                    assert state["windowStart"] is None  # VirusTotal gives no term


async def test_without_alerts_the_states_are_empty(emulators, make_gateway) -> None:
    from tests.conftest import settings_for

    gateway = make_gateway(settings_for(account_entry("reputeapi", emulators["reputeapi"].url)))
    data = await gateway.data(STATES)
    assert [a["alertStates"] for a in data["accounts"]] == [[]]
    assert [q["alertStates"] for q in data["accounts"][0]["quotas"]] == [[]]
    assert (await gateway.data(EVENTS))["alertEvents"] == []


async def test_a_broken_store_makes_alert_fields_null_with_its_error(
    tmp_path, emulators, make_gateway
) -> None:
    settings = settings_with_alerts(tmp_path, emulators)
    (tmp_path / "history.sqlite").write_bytes(b"not a database, not at all" * 100)
    gateway = make_gateway(settings)
    answer = await gateway.query(EVENTS)
    assert answer["data"] == {"alertEvents": None}
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "HISTORY_UNAVAILABLE"
    answer = await gateway.query(STATES)
    assert all(q["alertStates"] is None for a in answer["data"]["accounts"] for q in a["quotas"])
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"HISTORY_UNAVAILABLE"}


def test_alert_lists_are_priced_by_their_bounds() -> None:
    from graphql import parse

    from gateway.graphql.cost import Sizes, operation_cost
    from gateway.graphql.schema import schema

    sizes = Sizes((("virustotal", 1),), NOW.date())
    one = operation_cost(schema._schema, parse("{ alertEvents(limit: 1) { id } }"), None, {}, sizes)
    many = operation_cost(
        schema._schema,
        parse("{ alertEvents(limit: 1000) { id deliveries { webhook } } }"),
        None,
        {},
        sizes,
    )
    assert one is not None and many is not None
    assert one.total == 1 * (1 + 1)  # the event, its id
    assert many.total == 1000 * (1 + 1 + MAX_WEBHOOKS * (1 + 1))


async def test_a_tokens_alert_events_are_its_accounts_only(tmp_path, emulators) -> None:
    """With gateway tokens, ``alertEvents`` lists the events of the token's accounts only, as
    every other root field does (an event of another account is as absent as its account)."""
    from dataclasses import replace

    from gateway.access import GatewayToken, digest
    from gateway.app import create_app
    from gateway.servers import ServerThread

    settings = settings_with_alerts(tmp_path, emulators)
    await snapshot(settings)
    secret = "t" * 16 + "0123456789abcdef"
    token = GatewayToken(name="repute", digest=digest(secret), accounts=("repute*",))
    query = {"query": "{ alertEvents(limit: 1000) { accountId } }"}

    def accounts_seen(config: Settings, headers: dict[str, str]) -> set[str]:
        with ServerThread(create_app(config, clock=clock)) as server:
            answer = httpx.post(
                f"{server.urls[0]}/graphql", json=query, headers=headers, timeout=60
            ).json()
        return {e["accountId"] for e in answer["data"]["alertEvents"]}

    every = accounts_seen(settings, {})
    seen = accounts_seen(replace(settings, tokens=(token,)), {"Authorization": f"Bearer {secret}"})
    assert "vt-soc" in every  # the other account has events of its own
    assert seen == {a for a in every if a.startswith("repute")} != set()
