"""The dashboard and GraphiQL in Chromium against a gateway that needs a token: served on
loopback with a ``[[tokens]]`` entry that reads the ReputeAPI accounts only, next to a
VirusTotal account it must never show.

The pages ask for the token before they read anything, keep it in the tab's session storage
(never in local storage), send it with every request, and show only the token's accounts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.domain import ProviderId
from gateway.servers import ServerThread
from gateway.settings import parse_settings
from providers import registry
from tests.browser.conftest import require_playwright
from tests.conftest import account_entry

require_playwright()
from playwright.sync_api import Page, expect  # noqa: E402  (after the check above)

from tests.browser.test_dashboard import wait_ready  # noqa: E402
from tests.browser.test_graphiql import EDITOR, result_json  # noqa: E402

TOKEN = "browser-Tok3n_k3V9xT2pLm8ZrW5yN1bC7dF4h"
WRONG = "browser-Wr0ng_Zx9wV8uT7sR6qP5oN4mL3kJ2iH"
READS = ["repute-premium", "repute-basic"]
REFUSED = (
    "console: Failed to load resource: the server responded with a status of 401 (Unauthorized)"
)
"""What Chromium logs for a page or request answered 401 (expected where a token is missing)."""


def open_without_token(page: Page, page_log, url: str) -> None:
    """Open a page of the gateway with no token: 401, which Chromium logs once (and only)."""
    opened = page.goto(url)
    assert opened is not None and opened.status == 401
    assert page_log.errors == [REFUSED]
    page_log.errors.clear()


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """ReputeAPI and VirusTotal emulators on the real clock (the pages ask for days up to
    today), and a gateway over their three accounts whose one token reads ``repute-*``."""
    emulators = ServerThread(
        *(registry()[ProviderId(p)].emulator.factory(seed=5) for p in ("reputeapi", "virustotal"))
    ).start()
    repute, vt = emulators.urls
    settings = parse_settings(
        {
            "gateway": {"history_path": "/nonexistent/usage-gateway-tests/history.sqlite"},
            "accounts": [
                account_entry("virustotal", vt),
                account_entry("reputeapi", repute, 0),
                account_entry("reputeapi", repute, 1),
            ],
            "tokens": [
                {
                    "name": "browser",
                    "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                    "accounts": ["repute-*"],
                }
            ],
        },
        env={},
    )
    server = ServerThread(create_app(settings)).start()
    try:
        yield server.urls[0]
    finally:
        server.stop()
        emulators.stop()


def authorizations(page: Page) -> list[tuple[str, str | None]]:
    """(path, Authorization header) of every request the page's scripts make to /graphql or
    /export/usage (opening the page itself is not one of them)."""
    sent: list[tuple[str, str | None]] = []

    def seen(request) -> None:
        path = urlsplit(request.url).path
        if path in ("/graphql", "/export/usage") and not request.is_navigation_request():
            sent.append((path, request.headers.get("authorization")))

    page.on("request", seen)
    return sent


def stored(page: Page) -> tuple[str | None, str]:
    """The token in session storage, and all of local storage as text."""
    return page.evaluate(
        """() => [sessionStorage.getItem("usage-gateway.token"),
                  JSON.stringify(Object.entries(localStorage))]"""
    )


def test_the_dashboard_asks_for_a_token_and_then_shows_its_accounts_only(
    page, page_log, gateway, screenshot
) -> None:
    sent = authorizations(page)
    open_without_token(page, page_log, f"{gateway}/")
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-state", "token")
    expect(page.locator("#summary")).to_have_text("Not loaded: the gateway needs a token.")
    expect(page.get_by_role("button", name="Forget token")).to_be_hidden()
    assert sent == []  # it asked for the token before reading anything

    # A wrong token: refused, said so, forgotten.
    page.locator("#token").fill(WRONG)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#token-problem")).to_have_text(
        "The gateway refused the token (HTTP 401): it may have been mistyped or withdrawn."
    )
    assert sent == [("/graphql", f"Bearer {WRONG}")]
    assert stored(page)[0] is None
    assert page_log.errors == [REFUSED]
    page_log.errors.clear()
    screenshot("token-refused")

    # The right one: the page loads, with the token's accounts only.
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Use this token").click()
    wait_ready(page)
    expect(page.locator("#token-form")).to_be_hidden()
    expect(page.get_by_role("button", name="Forget token")).to_be_visible()
    screenshot("with-token")
    cards = page.locator("article.account")
    assert [cards.nth(i).get_attribute("data-account-id") for i in range(cards.count())] == READS
    rows = page.locator("#summary tbody tr")
    assert [rows.nth(i).get_attribute("data-account-id") for i in range(rows.count())] == READS
    assert "vt-soc" not in page.content()
    assert all(auth == f"Bearer {TOKEN}" for _, auth in sent[1:]) and len(sent) > 1
    token, local = stored(page)
    assert token == TOKEN and TOKEN not in local

    # The CSV link sends the token too, and saves what the export route gives for it.
    link = page.locator('article.account[data-account-id="repute-premium"] a.download')
    href = link.get_attribute("href")
    with page.expect_download() as download:
        link.click()
    expected = httpx.get(f"{gateway}{href}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert expected.status_code == 200
    assert download.value.suggested_filename == (
        expected.headers["content-disposition"].split('filename="')[1].rstrip('"')
    )
    assert Path(download.value.path()).read_text(encoding="utf-8") == expected.text
    assert sent[-1] == ("/export/usage", f"Bearer {TOKEN}")

    # A reload keeps the token (this tab's session): the page itself is still a 401 (a
    # browser sends no token when it opens a page), what it reads is not.
    del sent[:]
    reloaded = page.reload()
    assert reloaded is not None and reloaded.status == 401
    assert page_log.errors == [REFUSED]
    page_log.errors.clear()
    wait_ready(page)
    assert sent and all(auth == f"Bearer {TOKEN}" for _, auth in sent)
    expect(page.locator("#token-form")).to_be_hidden()
    # "Forget token" asks again.
    page.get_by_role("button", name="Forget token").click()
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.get_by_role("button", name="Forget token")).to_be_hidden()
    assert stored(page)[0] is None
    assert page.locator("article.account").count() == 0


def test_graphiql_asks_for_the_token_before_it_starts(page, page_log, gateway, screenshot) -> None:
    sent = authorizations(page)
    open_without_token(page, page_log, f"{gateway}/graphql")
    expect(page.locator("#token-form")).to_be_visible()
    screenshot("asks")
    expect(page.locator(EDITOR)).to_have_count(0)  # not started: nothing read yet
    assert sent == []
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator(EDITOR)).to_be_visible()
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    answer = result_json(page)
    assert [a["id"] for a in answer["data"]["accounts"]] == READS
    assert sent and all(auth == f"Bearer {TOKEN}" for _, auth in sent)
    token, local = stored(page)
    assert token == TOKEN and TOKEN not in local


def test_the_dashboard_token_carries_over_to_graphiql(page, page_log, gateway) -> None:
    open_without_token(page, page_log, f"{gateway}/")
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Use this token").click()
    wait_ready(page)
    sent = authorizations(page)
    with page.expect_navigation() as opened:
        page.get_by_role("link", name="GraphiQL").click()
    assert opened.value is not None and opened.value.status == 401  # the page: no token sent
    expect(page.locator(EDITOR)).to_be_visible()
    expect(page.locator("#token-form")).to_be_hidden()
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    assert [a["id"] for a in result_json(page)["data"]["accounts"]] == READS
    assert sent and all(auth == f"Bearer {TOKEN}" for _, auth in sent)
    assert page_log.errors == [REFUSED]
    page_log.errors.clear()
