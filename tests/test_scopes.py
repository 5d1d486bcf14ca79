"""Gateway tokens over real HTTP: a gateway served by uvicorn on loopback, its vendors the
emulators, its history a real SQLite file filled by real snapshot runs.

An account outside a token's ``accounts`` does not exist for it: every root field (``accounts``,
``account``, ``quotas``, ``alerts``, ``snapshots``, and ``usage`` and ``Quota.history`` through
an account) and the export answer that token exactly as a gateway configured with only the
token's accounts answers anyone, and an out-of-scope id exactly as an unknown one, with no vendor
call and no history read for it. Whole answers kept by the answer cache never go to another
token, and a refusal is never kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse

from gateway.app import build_service, create_app
from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.servers import ServerThread
from gateway.settings import Settings, parse_settings
from gateway.snapshot import run_snapshot
from tests.conftest import NO_CACHE, NOW, TLS, account_entry, clock

TODAY = NOW.date()
SOC = "soc-token-k3V9xT2pLm8ZrW5yN1bC7dF4hJ6sA0q"
REPUTE = "repute-token-Zx9wV8uT7sR6qP5oN4mL3kJ2iH1gF0"
ALL = "all-token-Qa1Ws2Ed3Rf4Tg5Yh6Uj7Ik8Ol9P0zXc"
TOKENS = [
    {
        "name": "soc",
        "sha256": hashlib.sha256(SOC.encode()).hexdigest(),
        "accounts": ["vt-*", "repute-premium"],
    },
    {"name": "repute", "token": "${REPUTE_TOKEN}", "accounts": ["repute-*"]},
    {"name": "all", "token": ALL},
]
ENV = {"REPUTE_TOKEN": REPUTE}
SOC_SEES = ["vt-soc", "repute-premium"]
"""What ``soc`` reads, in config order (the config lists vt-soc before the ReputeAPI accounts)."""
EVERYTHING = """query Everything($since: DateTime!, $until: DateTime!) {
  accounts {
    id name provider scope
    source { state fetchedAt }
    quotas {
      id accountId name used limit utilization
      history(from: $since, to: $until) { at used limit }
      forecast { samples usedAtResetLow usedAtResetHigh }
    }
    rateLimits { window limit }
  }
  quotas { id accountId utilization }
  repute: quotas(provider: REPUTEAPI) { id }
  rl: quotas(provider: REVERSINGLABS) { id }
  alerts(threshold: 0.0001) { kind message quota { id accountId } }
  snapshots(limit: 1000) { id accountId outcome days }
  vt: account(id: "vt-soc") {
    id
    usage(from: "2026-02-01", to: "2026-03-18") { requests quotaRequests missingDays
      series { start requests } endpoints { endpoint requests } }
  }
  premium: account(id: "repute-premium") {
    id usage(from: "2026-03-01", to: "2026-03-18") { requests }
  }
  hidden: account(id: "rl-acme") { id usage(from: "2026-03-01", to: "2026-03-18") { requests } }
  nobody: account(id: "no-such") { id }
  vtRuns: snapshots(accountId: "vt-soc") { id accountId }
  rlRuns: snapshots(accountId: "rl-acme") { id accountId }
}"""
VARIABLES = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-19T00:00:00Z"}


def entries(emulators) -> list[dict[str, str]]:
    """Five accounts: VirusTotal, two ReputeAPI, ReversingLabs and ZKScore, in that order."""
    return [
        account_entry("virustotal", emulators["virustotal"].url),
        account_entry("reputeapi", emulators["reputeapi"].url, 0),
        account_entry("reputeapi", emulators["reputeapi"].url, 1),
        account_entry("reversinglabs", emulators["reversinglabs"].url),
        account_entry("zkscore", emulators["zkscore"].url),
    ]


def settings(
    accounts: list[Mapping[str, Any]],
    history: Path,
    tokens: list[dict[str, Any]] | None = None,
    *,
    cache: Mapping[str, Any] | None = None,
    **gateway: Any,
) -> Settings:
    data: dict[str, Any] = {
        "gateway": {"history_path": str(history), **gateway},
        "cache": dict(cache or {}),
        "accounts": accounts,
    }
    if tokens is not None:
        data["tokens"] = tokens
    return parse_settings(data, env=ENV)


@contextmanager
def served(config: Settings) -> Iterator[str]:
    """The gateway for ``config`` served by uvicorn on a free loopback port; its base URL."""
    with ServerThread(create_app(config, clock=clock)) as server:
        yield server.urls[0]


def post(base: str, token: str | None, query: str, variables: Mapping[str, Any] | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        headers=headers,
        timeout=60,
    )


def answer(base: str, token: str | None, query: str, variables=None) -> dict[str, Any]:
    response = post(base, token, query, variables)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert "errors" not in result, result["errors"]
    return result


async def fill_history(config: Settings) -> None:
    """Two snapshot runs of every account (yesterday and now), as ``snapshot`` stores them."""
    for moment in (NOW - timedelta(days=1), NOW):
        async with httpx.AsyncClient(verify=TLS) as http:
            service = build_service(config, http, clock=lambda moment=moment: moment)
            try:
                outcomes = await run_snapshot(service, service.history)
            finally:
                await service.upstream.close()
                await service.history.close()
        assert all(o.ok for o in outcomes), outcomes


@pytest.fixture
async def history(emulators, tmp_path) -> Path:
    path = tmp_path / "history.sqlite"
    await fill_history(settings(entries(emulators), path))
    return path


def calls(emulators, *providers: str) -> int:
    return sum(emulators[p].emulator.total_calls() for p in providers)


# -- scopes ------------------------------------------------------------------------------------


def test_a_token_sees_exactly_what_a_gateway_of_its_accounts_shows(emulators, history) -> None:
    """The same document, every root field in it: ``soc`` on the gateway of five accounts gets
    byte for byte what a token-less gateway configured with ``soc``'s two accounts (and the
    same history file) answers."""
    accounts = entries(emulators)
    with served(settings(accounts, history, TOKENS)) as gateway:
        before = calls(emulators, "reversinglabs", "zkscore")
        scoped = post(gateway, SOC, EVERYTHING, VARIABLES)
        assert calls(emulators, "reversinglabs", "zkscore") == before  # none for the others
    own = [a for a in accounts if a["id"] in SOC_SEES]
    with served(settings(own, history)) as reference:
        alone = post(reference, None, EVERYTHING, VARIABLES)
    assert scoped.status_code == alone.status_code == 200
    assert scoped.content == alone.content

    data = scoped.json()["data"]
    assert "errors" not in scoped.json()
    assert [a["id"] for a in data["accounts"]] == SOC_SEES
    quota_owners = {q["accountId"] for q in data["quotas"]}
    assert quota_owners == set(SOC_SEES)
    assert {q["quota"]["accountId"] for q in data["alerts"]} == set(SOC_SEES)
    assert {r["accountId"] for r in data["snapshots"]} == set(SOC_SEES)
    assert len(data["snapshots"]) == 2 * len(SOC_SEES)
    assert data["repute"] and data["rl"] == []
    assert data["vt"]["usage"]["requests"] > 0 and data["premium"]["usage"]["requests"] > 0
    assert data["hidden"] is None and data["nobody"] is None
    assert data["rlRuns"] == [] and [r["accountId"] for r in data["vtRuns"]] == ["vt-soc"] * 2
    samples = [s for a in data["accounts"] for q in a["quotas"] for s in q["history"]]
    assert samples and {len(q["history"]) for a in data["accounts"] for q in a["quotas"]} == {2}


def test_each_token_reads_its_own_accounts(emulators, history) -> None:
    with served(settings(entries(emulators), history, TOKENS)) as gateway:
        query = "{ accounts { id } quotas { accountId } snapshots(limit: 1000) { accountId } }"
        seen = {}
        for name, token in (("soc", SOC), ("repute", REPUTE), ("all", ALL)):
            data = answer(gateway, token, query)["data"]
            seen[name] = [a["id"] for a in data["accounts"]]
            assert {q["accountId"] for q in data["quotas"]} == set(seen[name])
            assert {r["accountId"] for r in data["snapshots"]} == set(seen[name])
    assert seen == {
        "soc": SOC_SEES,
        "repute": ["repute-premium", "repute-basic"],
        "all": ["vt-soc", "repute-premium", "repute-basic", "rl-acme", "zks-prod"],
    }


def export(base: str, token: str | None, account: str, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = {"account": account, "from": "2026-03-01", "to": "2026-03-18", **params}
    return httpx.get(f"{base}/export/usage", params=query, headers=headers, timeout=60)


def without_date(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
    return response.status_code, headers, response.content


def test_the_export_reads_the_tokens_accounts_only(emulators, history) -> None:
    accounts = entries(emulators)
    with served(settings(accounts, history, TOKENS)) as gateway:
        shown = export(gateway, SOC, "repute-premium")
        before = calls(emulators, "reversinglabs")
        hidden = export(gateway, SOC, "rl-acme")
        unknown = export(gateway, SOC, "rl-nope")  # as long as rl-acme: same length answer
        assert calls(emulators, "reversinglabs") == before
        full = export(gateway, ALL, "rl-acme")
    with served(settings([a for a in accounts if a["id"] in SOC_SEES], history)) as reference:
        alone = export(reference, None, "repute-premium")
    assert without_date(shown) == without_date(alone) and shown.status_code == 200
    assert full.status_code == 200
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["errors"][0]["message"] == "Parameter 'account': no account \"rl-acme\""
    status, headers, body = without_date(hidden)
    assert (status, headers, body.replace(b"rl-acme", b"rl-nope")) == without_date(unknown)


def test_an_out_of_scope_id_is_answered_as_an_unknown_one(emulators, history) -> None:
    """Full answers compared, for every field that takes an account id, with ids of the same
    length so that not even a Content-Length differs."""
    query = """query($id: ID!) {
      account(id: $id) {
        id name quotas { id } usage(from: "2026-03-10", to: "2026-03-01") { requests }
      }
      snapshots(accountId: $id) { id }
      quotas { accountId }
    }"""
    with served(settings(entries(emulators), history, TOKENS)) as gateway:
        before = calls(emulators, "reversinglabs", "zkscore")
        hidden = [post(gateway, SOC, query, {"id": i}) for i in ("rl-acme", "zks-prod")]
        unknown = [post(gateway, SOC, query, {"id": i}) for i in ("rl-nope", "zks-nope")]
        assert calls(emulators, "reversinglabs", "zkscore") == before
    for seen, absent in zip(hidden, unknown, strict=True):
        assert without_date(seen) == without_date(absent)
        assert seen.json()["data"]["account"] is None and seen.json()["data"]["snapshots"] == []


def test_no_history_is_read_for_an_out_of_scope_or_unknown_id(emulators, tmp_path) -> None:
    """With a history file that cannot be read, a readable account's snapshots say so; an id
    outside the token's accounts, or unknown, gets the same empty list, not the store's error:
    the store is never asked."""
    broken = tmp_path / "history.sqlite"
    broken.write_bytes(b"not a database, " * 64)
    query = "query($id: ID) { snapshots(accountId: $id) { id } }"
    with served(settings(entries(emulators), broken, TOKENS)) as gateway:
        readable = post(gateway, SOC, query, {"id": "vt-soc"}).json()
        hidden = post(gateway, SOC, query, {"id": "rl-acme"})
        unknown = post(gateway, SOC, query, {"id": "rl-nope"})
    assert readable["data"] == {"snapshots": None}
    assert readable["errors"][0]["extensions"] == {"code": "HISTORY_UNAVAILABLE"}
    assert hidden.json() == unknown.json() == {"data": {"snapshots": []}}


def test_the_cost_limit_counts_the_tokens_accounts_only(emulators, tmp_path) -> None:
    query = '{ accounts { usage(from: "2026-01-01", to: "2026-03-18") { series { requests } } } }'
    two = Sizes((("reputeapi", 1), ("virustotal", 1)), TODAY)
    five = Sizes((("reputeapi", 2), ("reversinglabs", 1), ("virustotal", 1), ("zkscore", 1)), TODAY)
    cost_two = operation_cost(schema._schema, parse(query), None, {}, two)
    cost_five = operation_cost(schema._schema, parse(query), None, {}, five)
    assert cost_two is not None and cost_five is not None and cost_two.total < cost_five.total
    config = settings(
        entries(emulators), tmp_path / "h.sqlite", TOKENS, max_query_cost=cost_two.total
    )
    with served(config) as gateway:
        allowed = post(gateway, SOC, query)
        refused = post(gateway, ALL, query)
    assert allowed.status_code == 200 and "errors" not in allowed.json()
    assert len(allowed.json()["data"]["accounts"]) == 2
    [error] = refused.json()["errors"]
    assert error["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "cost": cost_five.total,
        "limit": cost_two.total,
    }


# -- caches ------------------------------------------------------------------------------------


def answer_cache(base: str) -> dict[str, float]:
    """The answer cache's counters, from ``/metrics`` (read with the token of every account)."""
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ALL}"}, timeout=60).text
    found = re.findall(r"^usage_gateway_answer_cache_(\w+)_total ([0-9.e+]+)$", text, re.M)
    return {name: float(value) for name, value in found}


def test_the_response_cache_never_gives_one_tokens_answer_to_another(emulators, tmp_path) -> None:
    """The same document from three tokens while its data hold: each gets its own accounts.
    Asked again, each gets its own answer again, from the answer cache: three hits, nothing
    executed, no vendor called."""
    query = "{ accounts { id quotas { id used } } }"
    config = settings(
        entries(emulators), tmp_path / "h.sqlite", TOKENS, cache={"response_ttl": 3600}
    )
    with served(config) as gateway:
        first = {
            name: post(gateway, token, query)
            for name, token in (("soc", SOC), ("repute", REPUTE), ("all", ALL))
        }
        before = answer_cache(gateway)
        vendor_calls = calls(emulators, *emulators)
        again = {
            name: post(gateway, token, query)
            for name, token in (("soc", SOC), ("repute", REPUTE), ("all", ALL))
        }
        assert calls(emulators, *emulators) == vendor_calls
        after = answer_cache(gateway)
    assert after["hits"] - before["hits"] == 3
    assert after["executions"] == before["executions"] == 3
    ids = {name: [a["id"] for a in r.json()["data"]["accounts"]] for name, r in first.items()}
    assert ids == {
        "soc": SOC_SEES,
        "repute": ["repute-premium", "repute-basic"],
        "all": ["vt-soc", "repute-premium", "repute-basic", "rl-acme", "zks-prod"],
    }
    for name in first:
        assert again[name].content == first[name].content


def test_a_refusal_is_never_kept_nor_a_kept_answer_given_without_a_token(
    emulators, tmp_path
) -> None:
    query = "{ accounts { id } }"
    config = settings(
        entries(emulators), tmp_path / "h.sqlite", TOKENS, cache={**NO_CACHE, "response_ttl": 3600}
    )
    with served(config) as gateway:
        refused_first = post(gateway, None, query)
        granted = post(gateway, SOC, query)
        refused_after = [post(gateway, token, query) for token in (None, SOC + "x", SOC[:-1])]
        granted_again = post(gateway, SOC, query)
    assert refused_first.status_code == 401
    assert [r.status_code for r in refused_after] == [401, 401, 401]
    assert all("data" not in r.json() for r in [refused_first, *refused_after])
    assert granted.status_code == granted_again.status_code == 200
    assert [a["id"] for a in granted_again.json()["data"]["accounts"]] == SOC_SEES


def test_the_data_cache_holds_vendor_data_but_not_who_may_read_it(emulators, tmp_path) -> None:
    """``all`` reads every account (the data cache now holds ReversingLabs' answers); ``soc``
    then asks for that account by id and in every list: it is still not there."""
    config = settings(entries(emulators), tmp_path / "h.sqlite", TOKENS)
    with served(config) as gateway:
        warm = answer(gateway, ALL, '{ account(id: "rl-acme") { quotas { id } } }')
        assert warm["data"]["account"]["quotas"]
        cold = answer(
            gateway,
            SOC,
            '{ account(id: "rl-acme") { id } quotas { accountId } accounts { id } }',
        )
    assert cold["data"]["account"] is None
    assert {q["accountId"] for q in cold["data"]["quotas"]} == set(SOC_SEES)
    assert [a["id"] for a in cold["data"]["accounts"]] == SOC_SEES


# -- the same tests, pointed at the claim they rest on ---------------------------------------


def test_the_reference_comparison_is_not_vacuous(emulators, history) -> None:
    """A gateway of all five accounts does answer differently from one of ``soc``'s two: the
    equality above is not something any two gateways would show."""
    accounts = entries(emulators)
    with served(settings(accounts, history)) as everything:
        whole = post(everything, None, EVERYTHING, VARIABLES)
    with served(settings([a for a in accounts if a["id"] in SOC_SEES], history)) as reference:
        alone = post(reference, None, EVERYTHING, VARIABLES)
    assert whole.status_code == alone.status_code == 200
    assert json.loads(whole.content) != json.loads(alone.content)
    assert whole.json()["data"]["hidden"]["id"] == "rl-acme"


def test_metrics_need_a_token_and_show_the_tokens_accounts_only(emulators, history) -> None:
    """``/metrics`` is a route like the others: 401 without a token, and a token's scrape
    names only its accounts (no vendor call for the others)."""
    with served(settings(entries(emulators), history, TOKENS)) as gateway:
        refused = httpx.get(f"{gateway}/metrics", timeout=60)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        before = calls(emulators, "reversinglabs", "zkscore")
        scraped = httpx.get(
            f"{gateway}/metrics", headers={"Authorization": f"Bearer {SOC}"}, timeout=60
        )
        assert scraped.status_code == 200
        assert calls(emulators, "reversinglabs", "zkscore") == before
        named = set(re.findall(r'account="([^"]+)"', scraped.text))
        assert named == set(SOC_SEES)
        everything = httpx.get(
            f"{gateway}/metrics", headers={"Authorization": f"Bearer {ALL}"}, timeout=60
        )
        assert set(re.findall(r'account="([^"]+)"', everything.text)) == {
            "vt-soc",
            "repute-premium",
            "repute-basic",
            "rl-acme",
            "zks-prod",
        }


def test_named_ids_never_reach_past_the_tokens_accounts(emulators, history) -> None:
    """``accounts(ids:)`` and ``alerts(accountIds:)`` (the dashboard's pages) read only what the
    token may: a hidden id among them is answered as an unknown one, and asks no vendor."""
    query = """query($ids: [ID!]) {
      accounts(ids: $ids) { id quotas { id } }
      alerts(threshold: 0.0001, accountIds: $ids) { quota { accountId } }
    }"""
    with served(settings(entries(emulators), history, TOKENS)) as gateway:
        before = calls(emulators, "reversinglabs", "zkscore")
        mixed = answer(gateway, SOC, query, {"ids": ["rl-acme", "vt-soc", "zks-prod"]})
        hidden = answer(gateway, SOC, query, {"ids": ["rl-acme", "zks-prod"]})
        unknown = answer(gateway, SOC, query, {"ids": ["rl-nope", "zks-nope"]})
        assert calls(emulators, "reversinglabs", "zkscore") == before
        everything = answer(gateway, ALL, query, {"ids": ["rl-acme", "vt-soc", "zks-prod"]})
    assert [a["id"] for a in mixed["data"]["accounts"]] == ["vt-soc"]
    assert {a["quota"]["accountId"] for a in mixed["data"]["alerts"]} <= {"vt-soc"}
    assert hidden == unknown == {"data": {"accounts": [], "alerts": []}}
    assert [a["id"] for a in everything["data"]["accounts"]] == ["vt-soc", "rl-acme", "zks-prod"]
