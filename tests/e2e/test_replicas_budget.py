"""Three gateway processes as one towards a vendor: its rate, its holds and an account's circuit.

Each test starts a ReputeAPI emulator process and three ``usage-gateway serve`` processes on one
config, then drives them concurrently over HTTP. The emulator records when each request arrived
(``GET /_emulator/calls``), by its own clock: what the vendor saw, not what the gateways think
they did. Each test runs twice: with a shared Redis (the claim holds) and with ``memory://``
(each process alone: the same load breaks it, so the test can fail).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.replicas import most_in_a_window
from gateway.domain import utc_now
from gateway.upstream import BREAKER_THRESHOLD
from providers.base import RETRIES
from providers.reputeapi.emulator import USAGE_LIMIT_PER_MINUTE as USAGE_ENDPOINT_LIMIT
from tests.e2e.test_demo import cli, read_until

REPLICAS = 3
PERIOD = 60.0
"""ReputeAPI's window for ``/v1/usage``: USAGE_ENDPOINT_LIMIT calls per minute."""
KEY = "ra_live_premium_demo"

USAGE = """query ($day: Date!) { account(id: "repute") {
  source { state cause retryAt }
  usage(from: $day, to: $day) { requests } } }"""
SOURCE = """query ($day: Date!) { account(id: "repute") {
  usage(from: $day, to: $day) { requests } source { state cause retryAt } } }"""


@contextmanager
def vendor() -> Iterator[str]:
    with cli("emulator", "reputeapi", "--port", "0", "--seed", "5") as process:
        line = read_until(process, r"^emulator reputeapi: ")[-1]
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match is not None
        yield match.group(0)


@contextmanager
def gateways(tmp_path: Path, cache_url: str, vendor_url: str) -> Iterator[list[str]]:
    """``REPLICAS`` gateway processes on one config (each its own history file); their
    GraphQL URLs."""
    with ExitStack() as stack:
        processes: list[subprocess.Popen[str]] = []
        for n in range(REPLICAS):
            config = tmp_path / f"gateway-{n}.toml"
            config.write_text(
                f'[gateway]\ncache_url = "{cache_url}"\n'
                f'history_path = "{tmp_path / f"history-{n}.sqlite"}"\n\n'
                # a Redis slow to answer under the suite's load would send a process alone
                "[cache]\nredis_timeout = 2\n\n"
                f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\n'
                f'base_url = "{vendor_url}"\napi_key = "{KEY}"\n',
                encoding="utf-8",
            )
            serve = cli("serve", "--config", str(config), "--port", "0", "--log-level", "error")
            processes.append(stack.enter_context(serve))
        yield [read_until(p, r"^GraphiQL: ", 60)[-1].split(" ", 1)[1] for p in processes]


def arrivals(vendor_url: str) -> list[tuple[float, int]]:
    """Every ``/v1/usage`` request the vendor received: (arrival, status), in order."""
    body = httpx.get(f"{vendor_url}/_emulator/calls", timeout=10).json()
    return [(t, status) for t, path, status in body["arrivals"] if path == "/v1/usage"]


def days(count: int, skip: int = 0) -> list[str]:
    """``count`` distinct past days (each a resource of its own: one vendor call each)."""
    first = utc_now().date() - timedelta(days=2 + skip)
    return [(first - timedelta(days=i)).isoformat() for i in range(count)]


async def ask(client: httpx.AsyncClient, url: str, query: str, day: str) -> dict[str, Any]:
    response = await client.post(url, json={"query": query, "variables": {"day": day}})
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()["data"]["account"]
    return account


async def round_robin(urls: list[str], query: str, wanted: list[str]) -> list[dict[str, Any]]:
    """One query per day, all at once, spread over the gateways in turn."""
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(ask(client, urls[i % len(urls)], query, day) for i, day in enumerate(wanted))
        )


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_replicas_keep_one_rate_window_per_vendor_credential(tmp_path, redis_url, shared):
    """Twice the vendor's limit of distinct reads, spread over three processes at once: with a
    shared Redis the vendor receives exactly its limit in the window and answers no 429; each
    process pacing alone lets through more than the limit."""
    demand = 2 * USAGE_ENDPOINT_LIMIT
    with vendor() as vendor_url:
        with gateways(tmp_path, redis_url if shared else "memory://", vendor_url) as urls:
            answers = asyncio.run(round_robin(urls, USAGE, days(demand)))
        seen = arrivals(vendor_url)
    times = [t for t, _ in seen]
    limited = [status for _, status in seen if status == 429]
    states = [a["source"]["state"] for a in answers]
    if shared:
        assert most_in_a_window(times, PERIOD) == len(seen) == USAGE_ENDPOINT_LIMIT, seen
        assert limited == []
        # (a process's first reads also read the account's limits: vendor calls too)
        assert states.count("FRESH") <= USAGE_ENDPOINT_LIMIT
        assert states.count("RATE_LIMITED") == demand - states.count("FRESH")  # held back here
    else:
        assert most_in_a_window(times, PERIOD) > USAGE_ENDPOINT_LIMIT


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_a_retry_after_heard_by_one_replica_holds_every_replica(tmp_path, redis_url, shared):
    """One process hears 429 with ``Retry-After: 3``; until that moment the vendor receives
    nothing more from any process, though the others keep being asked for new data."""
    hold = 3
    with vendor() as vendor_url:
        with gateways(tmp_path, redis_url if shared else "memory://", vendor_url) as urls:
            fault = {"status": 429, "retry_after": hold, "times": 1}
            httpx.post(f"{vendor_url}/_emulator/fault", json=fault, timeout=10)
            first = asyncio.run(round_robin(urls[:1], SOURCE, days(1)))[0]
            assert first["source"]["state"] == "RATE_LIMITED"
            heard = time.time()  # calls of that first read already under way are not held
            answers: list[dict[str, Any]] = []
            fresh = iter(days(200, skip=1))
            while not any(a["source"]["state"] == "FRESH" for a in answers[-2:]):
                answers += asyncio.run(round_robin(urls[1:], SOURCE, [next(fresh), next(fresh)]))
                time.sleep(0.1)  # some 20 rounds during the hold (200 days last 100 rounds)
        seen = arrivals(vendor_url)
    (limited_at, status), *later = seen
    assert status == 429
    early = [t for t, _ in later if heard <= t < limited_at + hold]
    if shared:
        held = [a for a in answers if a["source"]["state"] == "RATE_LIMITED"]
        assert held, "the other replicas were asked during the hold"
        assert {a["source"]["retryAt"] for a in held} == {first["source"]["retryAt"]}
        assert early == []
        assert later, "the vendor is called again once the hold is over"
    else:
        assert early != []


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_a_circuit_one_replica_opened_is_open_for_every_replica(tmp_path, redis_url, shared):
    """One process meets an unwell vendor until the account's circuit opens; the other two are
    then asked for new data and answer CIRCUIT_OPEN until the same moment, with no call."""
    with vendor() as vendor_url:
        with gateways(tmp_path, redis_url if shared else "memory://", vendor_url) as urls:
            httpx.post(f"{vendor_url}/_emulator/fault", json={"status": 503}, timeout=10)
            wanted = days(BREAKER_THRESHOLD + 1)
            failed = [asyncio.run(round_robin(urls[:1], SOURCE, [day]))[0] for day in wanted]
            opened = failed[-1]["source"]
            assert (opened["state"], opened["cause"]) == ("UNAVAILABLE", "CIRCUIT_OPEN")
            before = len(arrivals(vendor_url))
            others = asyncio.run(round_robin(urls[1:], SOURCE, days(4, skip=10)))
        after = len(arrivals(vendor_url))
    assert before >= BREAKER_THRESHOLD * (1 + RETRIES)  # every failed call was tried 3 times
    sources = [(a["source"]["cause"], a["source"]["retryAt"]) for a in others]
    if shared:
        assert sources == [("CIRCUIT_OPEN", opened["retryAt"])] * 4
        assert after == before
        assert moment(opened["retryAt"]) > utc_now().timestamp()  # still open as they answered
    else:
        assert after > before
