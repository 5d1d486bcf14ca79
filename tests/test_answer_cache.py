"""The answer cache over the real emulators: answers kept on their data, not on time.

Each gateway runs on a clock the test moves; the emulators keep the suite's fixed clock (one test
runs an emulator of its own on the gateway's clock, across a UTC midnight). What the cache did
is read from the app's own counters (``app.state.answers.stats``, also on ``/metrics``), from
the data cache's counters (a kept answer reads nothing from it) and from the requests each
emulator served.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.domain import ProviderId
from gateway.response_cache import ResponseCache
from gateway.servers import ServerThread
from gateway.settings import parse_settings
from gateway.snapshot import run_snapshot
from gateway.upstream import BREAKER_COOLDOWN, BREAKER_THRESHOLD, Versions
from providers import registry
from providers.emulation import Fault
from tests.conftest import NO_CACHE, NOW, SEED, TLS, Gateway, account_entry, settings_for
from tests.e2e.test_demo import cli
from tests.test_resilience import Clock, z

SOURCE = "source { state fetchedAt message retryAt cause }"
QUOTAS = f"{{ accounts {{ id {SOURCE} quotas {{ name used resetsAt }} }} }}"
DASHBOARD = f"""{{ quotas(minUtilization: 0) {{ accountId name used limit utilization resetsAt }}
  accounts {{ id name {SOURCE}
    usage(from: "2026-03-01", to: "2026-03-18") {{ requests series {{ start requests }} }} }} }}"""


@pytest.fixture
async def gateway_at() -> AsyncIterator[Callable[..., tuple[Gateway, Clock]]]:
    """Gateways (answer cache on, its default cap) on their own movable clocks."""
    clients: list[httpx.AsyncClient] = []
    apps = []

    def build(*accounts, cache=None, start=NOW, settings=None, **gateway) -> tuple[Gateway, Clock]:
        clock = Clock(start)
        http = httpx.AsyncClient(verify=TLS)
        config = settings or settings_for(*accounts, cache=cache, **gateway)
        app = create_app(config, http_client=http, clock=clock)
        built = Gateway(app)
        clients.extend([http, built.client])
        apps.append(app)
        return built, clock

    yield build
    for app in apps:
        await app.state.service.upstream.close()
        await app.state.service.history.close()
    for client in clients:
        await client.aclose()


def served(*running) -> int:
    """Vendor requests the emulators served."""
    return sum(len(r.emulator.served) for r in running)


def stats(gateway: Gateway):
    return gateway.app.state.answers.stats


def data_reads(gateway: Gateway) -> int:
    """Reads the data cache answered or missed: every execution reading vendor data adds."""
    cache = gateway.app.state.service.upstream.cache.stats
    return cache.memory_hits + cache.redis_hits + cache.misses


async def settle(gateway: Gateway) -> None:
    """Wait for the background refreshes under way to land."""
    await gateway.app.state.service.upstream.settle()


@pytest.fixture
def vt(emulators):
    return emulators["virustotal"]


@pytest.fixture
def repute(emulators):
    return emulators["reputeapi"]


# -- kept, and answered without executing ------------------------------------------------------


async def test_a_repeated_query_is_answered_without_executing_anything(emulators, gateway_at):
    running = list(emulators.values())
    gateway, clock = gateway_at(*(account_entry(p, r.url) for p, r in emulators.items()))
    first = await gateway.post(DASHBOARD)
    assert first.status_code == 200 and "errors" not in first.json()
    vendor, reads = served(*running), data_reads(gateway)
    assert vendor > 0 and reads > 0
    clock.advance(1.5)  # longer than the old one-second whole-answer cache
    for _ in range(3):
        again = await gateway.post(DASHBOARD)
        assert again.content == first.content
    assert served(*running) == vendor  # no vendor asked
    assert data_reads(gateway) == reads  # and not even the data cache: nothing executed
    assert (stats(gateway).executions, stats(gateway).hits) == (1, 3)
    metrics = (await gateway.client.get("/metrics")).text
    assert "usage_gateway_answer_cache_hits_total 3.0" in metrics
    assert "usage_gateway_answer_cache_executions_total 1.0" in metrics
    assert "usage_gateway_answer_cache_entries 1.0" in metrics


async def test_one_tokens_answer_is_never_served_to_another(emulators, gateway_at):
    tokens = {
        "soc": "soc-token-0123456789abcdef0123456789",
        "repute": "repute-0123456789abcdef0123456789",
    }
    config = parse_settings(
        {
            "gateway": {"history_path": "/nonexistent/usage-gateway-tests/history.sqlite"},
            "accounts": [
                account_entry("virustotal", emulators["virustotal"].url),
                account_entry("reputeapi", emulators["reputeapi"].url),
            ],
            "tokens": [
                {"name": "soc", "token": tokens["soc"], "accounts": ["vt-*"]},
                {"name": "repute", "token": tokens["repute"], "accounts": ["repute-*"]},
            ],
        },
        env={},
    )
    gateway, _ = gateway_at(settings=config)
    body = {"query": "{ accounts { id quotas { used } } }"}

    async def ask(name: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[name]}"}
        return await gateway.client.post("/graphql", json=body, headers=headers)

    first = {name: await ask(name) for name in ("soc", "repute", "soc", "repute")}
    ids = {name: [a["id"] for a in r.json()["data"]["accounts"]] for name, r in first.items()}
    assert ids == {"soc": ["vt-soc"], "repute": ["repute-premium"]}
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 2)


async def test_concurrent_identical_misses_execute_once(repute, gateway_at):
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url))
    repute.emulator.set_fault(Fault(delay_ms=300))  # all 50 arrive while the first executes
    answers = await asyncio.gather(*(gateway.post(QUOTAS) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert (stats(gateway).executions, stats(gateway).shared) == (1, 49)
    assert served(repute) == 1  # the one execution's one vendor read


async def test_waiters_of_a_failed_execution_each_execute_on_their_own() -> None:
    """The first of ten concurrent identical requests fails (500): nothing is kept or shared
    from it, and the nine that waited for it execute each on its own."""
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # a test app below the cache
        await receive()
        index = len(calls)
        calls.append(index)
        await asyncio.sleep(0.2)
        status = 500 if index == 0 else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"answer %d" % index})

    cache = ResponseCache(app, ttl=60, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        answers = await asyncio.gather(*(client.post("/graphql", content=b"{}") for _ in range(10)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 9 + [500]
        assert len(calls) == 10
        assert (cache.stats.executions, cache.stats.shared) == (10, 0)
        again = await client.post("/graphql", content=b"{}")  # one of the nine 200s was kept
        assert again.status_code == 200 and len(calls) == 10


def post_scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/graphql", "headers": []}


async def test_a_slow_client_of_the_execution_holds_up_none_of_the_waiters() -> None:
    """The executing request's client does not read its answer (its send blocks); a request
    that waited for that execution gets the answer all the same."""
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        started.set()
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the answer"})

    cache = ResponseCache(app, ttl=60, clock=lambda: NOW)
    stuck = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def slow_send(message: dict[str, Any]) -> None:
        await stuck.wait()  # a client that reads nothing until the test lets it

    got: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        got.append(message)

    leader = asyncio.ensure_future(cache(post_scope(), receive, slow_send))
    await started.wait()
    await asyncio.wait_for(cache(post_scope(), receive, send), timeout=10)
    assert [m.get("body") for m in got] == [None, b"the answer"]
    assert (cache.stats.executions, cache.stats.shared) == (1, 1)
    assert not leader.done()
    stuck.set()
    await leader


async def test_a_streamed_answer_is_passed_on_and_never_kept() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part 1, ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part 2"})

    cache = ResponseCache(app, ttl=60, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for _ in range(2):
            answer = await client.post("/graphql", content=b"{}")
            assert answer.content == b"part 1, part 2"
    assert (cache.stats.executions, cache.stats.hits, len(cache.entries)) == (2, 0, 0)


# -- invalidated by data -----------------------------------------------------------------------


async def test_a_new_vendor_answer_invalidates_the_answers_that_used_the_old_one(
    repute, gateway_at
):
    """The data cache keeps one entry: another account's read evicts premium's, then another
    document reads premium again from the vendor. The kept answer built on the first read is
    executed again and shows the new read's ``fetchedAt``."""
    gateway, clock = gateway_at(
        account_entry("reputeapi", repute.url, 0),
        account_entry("reputeapi", repute.url, 1),
        cache={"max_entries": 1},
    )
    premium = f'{{ account(id: "repute-premium") {{ {SOURCE} quotas {{ used }} }} }}'
    first = await gateway.data(premium)
    assert first["account"]["source"]["fetchedAt"] == z(NOW)
    clock.advance(10)
    assert await gateway.data(premium) == first  # kept: its data is still fresh
    await gateway.data('{ account(id: "repute-basic") { quotas { used } } }')  # evicts premium's
    assert await gateway.data(premium) == first  # nothing new was read yet: still true
    before = served(repute)
    await gateway.data(premium + " ")  # another document: premium read from the vendor again
    assert served(repute) == before + 1
    dropped = stats(gateway).dropped
    again = await gateway.data(premium)
    assert again["account"]["source"]["fetchedAt"] == z(NOW + timedelta(seconds=10))
    assert stats(gateway).dropped == dropped + 1


async def test_an_answer_built_from_data_already_at_hand_ends_with_a_new_vendor_answer(
    repute, gateway_at
):
    """Limits this process holds fresh are answered at once, without the data cache's usual
    read (``Upstream.fresh``): that read too is recorded, so a new vendor answer ends the
    answers built on it."""
    gateway, clock = gateway_at(
        account_entry("reputeapi", repute.url, 0),
        account_entry("reputeapi", repute.url, 1),
        cache={"max_entries": 1},
    )
    premium = f'{{ account(id: "repute-premium") {{ {SOURCE} quotas {{ used }} }} }}'
    await gateway.data(premium)  # read from the vendor
    before = served(repute)
    at_hand = await gateway.data(premium + " # built from the limits at hand")
    assert served(repute) == before
    assert await gateway.data(premium + " # built from the limits at hand") == at_hand
    hits = stats(gateway).hits
    clock.advance(10)
    await gateway.data('{ account(id: "repute-basic") { quotas { used } } }')  # evicts premium's
    await gateway.data(premium + "  ")  # another document: premium read from the vendor again
    assert served(repute) == before + 2
    again = await gateway.data(premium + " # built from the limits at hand")
    assert stats(gateway).hits == hits
    assert again["account"]["source"]["fetchedAt"] == z(NOW + timedelta(seconds=10))
    assert at_hand["account"]["source"]["fetchedAt"] == z(NOW)


async def test_an_answer_ends_at_its_datas_ttl(vt, gateway_at):
    gateway, clock = gateway_at(account_entry("virustotal", vt.url), cache={"limits_ttl": 60})
    first = await gateway.data(QUOTAS)
    assert first["accounts"][0]["source"]["state"] == "FRESH"
    clock.advance(59.999)
    assert await gateway.data(QUOTAS) == first
    assert stats(gateway).hits == 1
    clock.advance(0.001)  # the data's TTL: executed again, and the answer says STALE
    after = await gateway.data(QUOTAS)
    assert after["accounts"][0]["source"]["state"] == "STALE"
    assert after["accounts"][0]["source"]["fetchedAt"] == z(NOW)
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)


async def test_an_answer_ends_at_the_first_quota_reset_in_its_data(vt, gateway_at):
    """VirusTotal's hourly quota resets at 15:00, long before the data's two-hour TTL."""
    gateway, clock = gateway_at(account_entry("virustotal", vt.url), cache={"limits_ttl": 7200})
    first = await gateway.data(QUOTAS)
    resets = [q["resetsAt"] for q in first["accounts"][0]["quotas"] if q["resetsAt"]]
    reset = datetime.fromisoformat(min(resets))
    assert reset == datetime.fromisoformat("2026-03-18T15:00:00+00:00")
    clock.now = reset - timedelta(milliseconds=1)
    assert await gateway.data(QUOTAS) == first
    assert (stats(gateway).executions, stats(gateway).hits) == (1, 1)
    vendor = served(vt)
    clock.now = reset
    await gateway.data(QUOTAS)
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)
    assert served(vt) == vendor  # executed from the data cache, whose TTL has not passed


async def test_an_answer_about_today_ends_at_utc_midnight(gateway_at):
    """A VirusTotal emulator on the gateway's clock: at midnight the range's last day becomes
    today, and the answer executed then has it."""
    clock = Clock(datetime.fromisoformat("2026-03-18T23:58:00+00:00"))
    emulator = registry()[ProviderId("virustotal")].emulator.factory(seed=SEED, clock=clock)
    query = '{ accounts { usage(from: "2026-03-17", to: "2026-03-19") { series { start } } } }'
    with ServerThread(emulator) as vendor:
        gateway, gateway_clock = gateway_at(
            account_entry("virustotal", vendor.urls[0]), start=clock.now
        )
        gateway_clock.now = clock.now
        first = await gateway.data(query)
        days = [p["start"][:10] for p in first["accounts"][0]["usage"]["series"]]
        assert days == ["2026-03-17", "2026-03-18"]
        clock.now = gateway_clock.now = datetime.fromisoformat("2026-03-18T23:59:59.999+00:00")
        assert await gateway.data(query) == first
        assert stats(gateway).hits == 1
        clock.now = gateway_clock.now = datetime.fromisoformat("2026-03-19T00:00:00+00:00")
        after = await gateway.data(query)
    days = [p["start"][:10] for p in after["accounts"][0]["usage"]["series"]]
    assert days == ["2026-03-17", "2026-03-18", "2026-03-19"]
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)


RUNS = "{ snapshots { accountId outcome } }"


async def test_a_snapshot_run_invalidates_answers_that_read_the_history(vt, gateway_at, tmp_path):
    """The gateway's own snapshot run (``serve --snapshot-every`` makes them) writes the
    history through the same store."""
    gateway, _ = gateway_at(account_entry("virustotal", vt.url), history_path=str(tmp_path / "h"))
    assert (await gateway.data(RUNS))["snapshots"] == []
    assert (await gateway.data(RUNS))["snapshots"] == []
    assert stats(gateway).hits == 1
    service = gateway.app.state.service
    outcomes = await run_snapshot(service, service.history)
    assert [o.ok for o in outcomes] == [True]
    after = await gateway.data(RUNS)
    assert after["snapshots"] == [{"accountId": "vt-soc", "outcome": "OK"}]
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)


async def test_any_write_through_the_gateways_store_invalidates_at_once(vt, gateway_at, tmp_path):
    """Counted by the store itself, not seen through the file: here a write that changes
    nothing in the file (no run to mark abandoned), as a write landing within one tick of the
    file system's clock would look."""
    gateway, _ = gateway_at(account_entry("virustotal", vt.url), history_path=str(tmp_path / "h"))
    service = gateway.app.state.service
    await run_snapshot(service, service.history)
    await asyncio.sleep(0.06)  # past the settling time of the file's modification time
    first = await gateway.data(RUNS)
    assert await gateway.data(RUNS) == first
    assert (stats(gateway).executions, stats(gateway).hits) == (1, 1)
    files = [os.stat(p).st_mtime_ns for p in (tmp_path / "h", tmp_path / "h-wal")]
    assert await service.history.abandon_stale_runs(NOW - timedelta(days=1)) == 0
    assert [os.stat(p).st_mtime_ns for p in (tmp_path / "h", tmp_path / "h-wal")] == files
    assert await gateway.data(RUNS) == first
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)


async def test_a_usage_answer_read_from_stored_days_ends_with_a_write_to_the_store(
    vt, gateway_at, tmp_path
):
    """Usage reads the store in one sweep of its thread (not through its other reads): an
    answer over days the vendor no longer keeps, which asks the vendor nothing, still ends
    with the next write to the store."""
    gateway, _ = gateway_at(account_entry("virustotal", vt.url), history_path=str(tmp_path / "h"))
    service = gateway.app.state.service
    await run_snapshot(service, service.history)
    await asyncio.sleep(0.06)  # past the settling time of the file's modification time
    start, end = (NOW - timedelta(days=200)).date(), (NOW - timedelta(days=190)).date()
    usage = f'usage(from: "{start}", to: "{end}") {{ missingDays }}'
    query = f'{{ account(id: "vt-soc") {{ {usage} }} }}'
    served = len(vt.emulator.served)
    first = await gateway.data(query)
    assert len(first["account"]["usage"]["missingDays"]) == 11
    assert await gateway.data(query) == first
    assert len(vt.emulator.served) == served  # beyond retention: the vendor is not asked
    assert (stats(gateway).executions, stats(gateway).hits) == (1, 1)
    assert service.history.days_read == 0  # nothing stored there: the sweep found no days
    assert await service.history.abandon_stale_runs(NOW - timedelta(days=1)) == 0
    assert await gateway.data(query) == first
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 1)


async def test_a_snapshot_by_another_process_invalidates_answers_that_read_the_history(
    vt, gateway_at, tmp_path
):
    """``usage-gateway snapshot`` from cron, a process of its own, writes the same file."""
    history = tmp_path / "history.sqlite"
    entry = account_entry("virustotal", vt.url)
    gateway, _ = gateway_at(entry, history_path=str(history))
    service = gateway.app.state.service
    await run_snapshot(service, service.history)  # the file exists, the store has it open
    first = await gateway.data(RUNS)
    assert len(first["snapshots"]) == 1
    await asyncio.sleep(0.06)  # past the settling time of the file's modification time
    assert await gateway.data(RUNS) == first
    assert await gateway.data(RUNS) == first
    hits = stats(gateway).hits
    assert hits >= 1
    config = tmp_path / "gateway.toml"
    fields = "\n".join(f'{k} = "{v}"' for k, v in entry.items())
    config.write_text(
        f'[gateway]\nhistory_path = "{history}"\n\n[[accounts]]\n{fields}\n', encoding="utf-8"
    )
    with cli("snapshot", "--config", str(config)) as process:
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
    after = await gateway.data(RUNS)
    assert len(after["snapshots"]) == 2
    assert stats(gateway).hits == hits


async def test_an_answer_over_a_history_file_written_just_now_is_not_kept(vt, gateway_at, tmp_path):
    """A file whose modification time is this instant could be written again within the file
    system's clock tick without its signature changing: such an answer is not kept."""
    history = tmp_path / "history.sqlite"
    gateway, _ = gateway_at(account_entry("virustotal", vt.url), history_path=str(history))
    service = gateway.app.state.service
    await run_snapshot(service, service.history)
    future = time.time_ns() + 10**10
    for path in (history, Path(f"{history}-wal")):
        os.utime(path, ns=(future, future))
    await gateway.data(RUNS)
    await gateway.data(RUNS)
    assert (stats(gateway).executions, stats(gateway).hits) == (2, 0)
    past = time.time_ns() - 10**9
    for path in (history, Path(f"{history}-wal")):
        os.utime(path, ns=(past, past))
    await gateway.data(RUNS)
    await gateway.data(RUNS)
    assert (stats(gateway).executions, stats(gateway).hits) == (3, 1)


# -- never staler than the data ----------------------------------------------------------------


async def test_a_stale_answer_is_not_served_once_the_refresh_lands(vt, gateway_at):
    gateway, clock = gateway_at(
        account_entry("virustotal", vt.url), cache={"limits_ttl": 60, "max_stale": 3600}
    )
    await gateway.data(QUOTAS)
    vt.emulator.set_fault(Fault(delay_ms=1500))  # the refresh takes a while
    clock.advance(61)
    stale = await gateway.data(QUOTAS)
    assert stale["accounts"][0]["source"]["state"] == "STALE"
    assert await gateway.data(QUOTAS) == stale  # kept while the refresh is under way
    assert stats(gateway).hits == 1
    await settle(gateway)
    fresh = await gateway.data(QUOTAS)
    assert fresh["accounts"][0]["source"] == {
        "state": "FRESH",
        "fetchedAt": z(NOW + timedelta(seconds=61)),
        "message": None,
        "retryAt": None,
        "cause": None,
    }
    assert (stats(gateway).executions, stats(gateway).hits) == (3, 1)


async def test_stale_data_whose_refresh_failed_is_shown_by_answers_never_kept(vt, gateway_at):
    """Without a retry time, each request executes again and so asks for a refresh, as the
    data cache alone would; once the vendor answers, the next answer is FRESH."""
    gateway, clock = gateway_at(
        account_entry("virustotal", vt.url), cache={"limits_ttl": 60, "max_stale": 3600}
    )
    await gateway.data(QUOTAS)
    vt.emulator.set_fault(Fault(status=503))
    clock.advance(61)
    under_way = await gateway.data(QUOTAS)
    assert under_way["accounts"][0]["source"]["cause"] is None  # a refresh is under way
    await settle(gateway)  # it failed
    for _ in range(2):
        failed = (await gateway.data(QUOTAS))["accounts"][0]["source"]
        assert (failed["state"], failed["cause"], failed["fetchedAt"]) == (
            "STALE",
            "VENDOR_ERROR",
            z(NOW),
        )
        await settle(gateway)
    assert (stats(gateway).executions, stats(gateway).hits) == (4, 0)
    vt.emulator.set_fault(None)
    await gateway.data(QUOTAS)  # asks for a refresh, which now lands
    await settle(gateway)
    fresh = (await gateway.data(QUOTAS))["accounts"][0]["source"]
    assert (fresh["state"], fresh["fetchedAt"]) == ("FRESH", z(NOW + timedelta(seconds=61)))


async def test_a_rate_limited_answer_is_kept_until_its_retry_time(repute, gateway_at):
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url))
    repute.emulator.set_fault(Fault(status=429, retry_after=30))
    limited = await gateway.data(QUOTAS)
    source = limited["accounts"][0]["source"]
    assert (source["state"], source["retryAt"]) == ("RATE_LIMITED", z(NOW + timedelta(seconds=30)))
    repute.emulator.set_fault(None)
    clock.advance(29.999)
    assert await gateway.data(QUOTAS) == limited
    assert (stats(gateway).hits, served(repute)) == (1, 1)
    clock.advance(0.001)
    after = await gateway.data(QUOTAS)
    assert after["accounts"][0]["source"]["state"] == "FRESH"
    assert (stats(gateway).executions, served(repute)) == (2, 2)


async def test_a_failure_is_kept_only_while_the_circuit_is_open(repute, gateway_at):
    """A failure without a retry time is never kept (each request asks the vendor again); once
    the circuit opens, the answer saying so is kept until the circuit lets a probe through."""
    gateway, clock = gateway_at(account_entry("reputeapi", repute.url))
    repute.emulator.set_fault(Fault(status=503))
    for _ in range(BREAKER_THRESHOLD):
        source = (await gateway.data(QUOTAS))["accounts"][0]["source"]
        assert (source["cause"], source["retryAt"]) == ("VENDOR_ERROR", None)
    assert (stats(gateway).executions, stats(gateway).hits) == (BREAKER_THRESHOLD, 0)
    opened = await gateway.data(QUOTAS)
    assert opened["accounts"][0]["source"]["cause"] == "CIRCUIT_OPEN"
    reopen = NOW + timedelta(seconds=BREAKER_COOLDOWN)
    assert opened["accounts"][0]["source"]["retryAt"] == z(reopen)
    sent = served(repute)
    assert await gateway.data(QUOTAS) == opened
    assert stats(gateway).hits == 1
    repute.emulator.set_fault(None)
    clock.now = reopen
    probed = await gateway.data(QUOTAS)
    assert probed["accounts"][0]["source"]["state"] == "FRESH"
    assert served(repute) == sent + 1


# -- never kept ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ accounts { id }", "Syntax Error"),
        ("{ accounts { nope } }", "Cannot query field"),
        (
            "{ "
            + " ".join(
                f'a{i}: accounts {{ usage(from: "2000-01-01", to: "2026-03-18") {{ requests }} }}'
                for i in range(30)
            )
            + " }",
            "QUERY_TOO_COSTLY",
        ),
    ],
)
async def test_a_refused_request_is_kept(vt, gateway_at, query, code):
    """A refusal of the whole request depends on the request alone (and today's date, for
    its cost): asked again, it is answered from the answer cache."""
    gateway, _ = gateway_at(account_entry("virustotal", vt.url))
    first = await gateway.query(query)
    again = await gateway.query(query)
    assert again == first and first.get("data") is None
    assert code in str(first["errors"]), first["errors"]
    assert (stats(gateway).executions, stats(gateway).hits) == (1, 1)
    assert served(vt) == 0


async def test_answers_with_errors_are_not_kept(vt, gateway_at):
    gateway, _ = gateway_at(account_entry("virustotal", vt.url))
    wrong = '{ accounts { usage(from: "2026-03-18", to: "2026-03-01") { requests } } }'
    for _ in range(2):
        assert (await gateway.query(wrong))["errors"]
    assert (stats(gateway).executions, stats(gateway).hits, stats(gateway).kept) == (2, 0, 0)


@pytest.mark.parametrize(
    "query",
    [
        '{ headroom(requests: 1, accountId: "vt-soc") { fits earliestFit } }',
        "{ quotas { forecast { samples } } }",
        "{ alerts(threshold: 0.5) { kind } }",
    ],
)
async def test_answers_that_show_the_moment_itself_are_not_kept(vt, gateway_at, query):
    gateway, _ = gateway_at(account_entry("virustotal", vt.url))
    for _ in range(2):
        await gateway.data(query)
    assert (stats(gateway).executions, stats(gateway).hits, stats(gateway).kept) == (2, 0, 0)


async def test_response_ttl_0_turns_the_answer_cache_off(repute, gateway_at):
    gateway, _ = gateway_at(account_entry("reputeapi", repute.url), cache=NO_CACHE)
    for _ in range(2):
        await gateway.data(QUOTAS)
    assert served(repute) == 2
    assert stats(gateway) == type(stats(gateway))()  # nothing counted: not even an execution
    assert len(gateway.app.state.answers.entries) == 0


# -- bounded ---------------------------------------------------------------------------------


async def test_kept_answers_count_what_they_read_toward_the_byte_bound(emulators, gateway_at):
    gateway, _ = gateway_at(*(account_entry(p, r.url) for p, r in emulators.items()))
    answer = await gateway.post(DASHBOARD)
    answers = gateway.app.state.answers
    [entry] = answers.entries.values()
    assert len(entry.checks) >= len(emulators)  # at least each account's quotas
    assert answers.size > len(answer.content) + len(entry.checks) * 64


def test_a_forgotten_version_never_compares_as_unchanged() -> None:
    versions = Versions(max_keys=2)
    a = versions.bump("a")
    seen = {key: versions.of(key) for key in ("a", "b", "never")}
    versions.bump("b")
    versions.bump("c")  # "a" is forgotten
    versions.bump("d")  # "b" too
    assert versions.of("a") != a
    assert versions.of("b") != seen["b"]
    assert versions.of("never") != seen["never"]
    assert versions.of("c") == versions.of("c")
    unchanged = versions.of("d")
    versions.bump("e")  # "c" forgotten; "d" remembered and unchanged
    assert versions.of("d") == unchanged
