"""The browser fixtures keep their word: nothing leaves the machine unnoticed, errors count."""

from __future__ import annotations

import pytest

from tests.browser.conftest import CHROMIUM, is_loopback, unavailable


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000/graphql", True),
        ("http://127.9.9.9/", True),
        ("http://localhost:1/x", True),
        ("http://[::1]:8000/", True),
        ("data:text/plain,hi", True),
        ("about:blank", True),
        ("https://unpkg.com/react@18.3.1/umd/react.production.min.js", False),
        ("http://10.0.0.1/", False),
        ("http://[2001:db8::1]/", False),
        ("ws://example.com/graphql", False),
        ("http://127.0.0.1.example.com/", False),
    ],
)
def test_loopback_means_this_machine_only(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_without_chromium_the_tests_skip_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install Debian's chromium"):
        unavailable(f"Chromium not found at {CHROMIUM}: install Debian's chromium")


def test_without_chromium_on_ci_the_tests_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable(f"Chromium not found at {CHROMIUM}: install Debian's chromium")


def test_a_request_to_another_host_is_aborted_and_recorded(page, page_log, demo_gateway) -> None:
    page.goto(f"{demo_gateway}/healthz")
    outside = "https://unpkg.com/graphiql@4.1.2/graphiql.min.js"
    failed = page.evaluate(
        "url => fetch(url).then(() => 'fetched', error => String(error))", outside
    )
    assert failed.startswith("TypeError"), failed
    assert page_log.blocked == [outside]
    assert any("ERR_BLOCKED_BY_CLIENT" in e for e in page_log.errors), page_log.errors
    page_log.blocked.clear()  # seen: the fixture's own check after the test need not fail
    page_log.requests.clear()
    page_log.errors.clear()


def test_a_websocket_to_another_host_is_refused_and_recorded(page, page_log, demo_gateway) -> None:
    page.goto(f"{demo_gateway}/healthz")
    outside = "wss://example.com/graphql"
    closed = page.evaluate(
        """url => new Promise(done => {
            const socket = new WebSocket(url);
            socket.onopen = () => done('open');
            socket.onclose = () => done('closed');
        })""",
        outside,
    )
    assert closed == "closed"
    assert page_log.blocked == [outside]
    page_log.blocked.clear()
    page_log.errors.clear()


def test_console_errors_and_exceptions_are_collected(page, page_log) -> None:
    page.set_content("<p>hello</p>")
    page.evaluate("console.error('something broke')")
    page.evaluate("setTimeout(() => { throw new Error('uncaught here') })")
    page.wait_for_function("true")
    page.evaluate("new Promise(done => setTimeout(done, 50))")
    assert page_log.errors == ["console: something broke", "uncaught: uncaught here"]
    page_log.errors.clear()


def test_unrouted_traffic_to_other_hosts_ends_at_a_closed_loopback_port(browser) -> None:
    """What no route sees (a context without one stands in for Chromium's own requests)
    goes to the proxy, a closed port on this machine, and fails."""
    context = browser.new_context()
    try:
        page = context.new_page()
        with pytest.raises(Exception, match="ERR_PROXY_CONNECTION_FAILED"):
            page.goto("http://example.com/", timeout=10_000)
    finally:
        context.close()
