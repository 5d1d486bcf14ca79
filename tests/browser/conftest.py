"""A real browser against the real demo: Debian's Chromium driven by Playwright, offline.

* ``browser``: headless ``/usr/bin/chromium`` (Playwright never downloads one here), launched
  with a fresh temporary profile and the switches that keep Chromium's own background traffic
  (updates, sync, field trials) from starting. As a last fence, its proxy is a closed loopback
  port: any request to another host that the routing below did not stop fails there.
* ``page``: a new page in a context of its own (empty storage) whose every request and
  WebSocket is routed: one to a host other than 127.0.0.1, localhost or ::1 is aborted and
  recorded. After the test, the test fails if a request was aborted, or if the page logged a
  console error or threw an uncaught exception (:class:`PageLog`; ``page_log`` shows it to the
  test).
* ``screenshot(name)``: saves the page as ``tests/browser/screenshots/<test>-<name>.png``
  (ignored by git) and prints the path.
* ``demo_gateway``: ``usage-gateway demo --port 0`` as a process (its emulators and the gateway
  on loopback ports, as ``make run`` starts it), stopped with Ctrl-C after the browser tests;
  yields its base URL.

Without Chromium at /usr/bin/chromium or the ``playwright`` package, these tests are skipped
with the reason, and fail instead when the environment says ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_demo import SCRIPT, read_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route, WebSocketRoute

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root (CI), Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Loopback always bypasses a proxy; every other host would go to this closed port.
    "--proxy-server=http://127.0.0.1:9",
]
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine: 127.0.0.0/8, ::1 or localhost (``data:`` and
    ``blob:`` URLs never leave the page, and ``about:blank`` has no host)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = (parts.hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when the environment says ``CI=true``. (Called while a
    module is imported, it skips or fails the whole module.)"""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


NO_PLAYWRIGHT = "the playwright package is not installed: pip install -e '.[dev]'"


def require_playwright() -> None:
    """For a test module that imports Playwright: skip it (fail it on CI) without it."""
    if importlib.util.find_spec("playwright") is None:
        unavailable(NO_PLAYWRIGHT)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium from /usr/bin/chromium with a fresh temporary profile."""
    if not CHROMIUM.is_file():
        unavailable(
            f"Chromium not found at {CHROMIUM}: install Debian's chromium to run the browser tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(NO_PLAYWRIGHT)
    with sync_playwright() as playwright:
        # launch() gives the browser a new temporary --user-data-dir, removed on close.
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageLog:
    """What a page did that a test must not leave unnoticed."""

    requests: list[str] = field(default_factory=list)
    """Every URL the page asked for, in order."""
    blocked: list[str] = field(default_factory=list)
    """Requests (and WebSockets) to a host other than loopback: aborted."""
    errors: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions."""

    def assert_clean(self) -> None:
        outside = [url for url in self.requests if not is_loopback(url)]
        assert self.blocked == [] and outside == [], f"requests to other hosts: {outside}"
        assert self.errors == [], f"errors in the page: {self.errors}"


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog) -> Iterator[Page]:
    """A page in a fresh context; requests to other hosts are aborted and fail the test, as do
    console errors and uncaught exceptions."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, service_workers="block", locale="en-US"
    )

    def route(route: Route) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            page_log.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def route_socket(socket: WebSocketRoute) -> None:
        if is_loopback(socket.url):
            socket.connect_to_server()
        else:
            page_log.blocked.append(socket.url)
            socket.close()

    context.route("**/*", route)
    context.route_web_socket(re.compile(".*"), route_socket)
    context.on("request", lambda request: page_log.requests.append(request.url))
    opened = context.new_page()
    opened.on(
        "console",
        lambda message: (
            page_log.errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    opened.on("pageerror", lambda error: page_log.errors.append(f"uncaught: {error}"))
    try:
        yield opened
        page_log.assert_clean()
    finally:
        context.close()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``screenshot(name)`` saves the page as a PNG under tests/browser/screenshots/."""

    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return save


@dataclass
class DemoProcess:
    """``usage-gateway demo`` running, with what it printed."""

    process: subprocess.Popen[str]
    url: str
    output: list[str]


def _drain(process: subprocess.Popen[str], output: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line.rstrip("\n"))


@pytest.fixture(scope="package")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``usage-gateway demo --port 0``: the four emulators and the gateway on loopback ports.
    Yields the gateway's base URL (``http://127.0.0.1:<port>``); Ctrl-C stops it after the
    package's tests (it must exit 0)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway.cli"]
    process = subprocess.Popen(
        [*command, "demo", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path_factory.mktemp("demo"),  # its history store lands there
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    drain: threading.Thread | None = None
    try:
        output.extend(read_until(process, r"^GraphiQL: "))
        url = output[-1].split(" ", 1)[1].removesuffix("/graphql")
        drain = threading.Thread(target=_drain, args=(process, output), daemon=True)
        drain.start()
        yield url
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if drain is not None:
            drain.join(10)
        if process.stdout is not None:
            process.stdout.close()
