"""GraphiQL at /graphql in Chromium, against the demo: it renders from the gateway's own files,
opens on the README's examples, runs them, and its documentation explorer reads the schema.
The ``page`` fixture fails any of these tests that asked another host for anything or logged an
error in the page (a script that failed to load, a Content-Security-Policy violation)."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from gateway.graphiql import EXAMPLES
from gateway.graphql.schema import schema
from providers import registry
from tests.browser.conftest import require_playwright

require_playwright()
from playwright.sync_api import Page, expect  # noqa: E402  (after the check above)

EDITOR = ".graphiql-query-editor .CodeMirror"
RESULT = ".graphiql-response .CodeMirror"
TAB_TITLES = ".graphiql-tab-button"
EXAMPLE_NAMES = [re.search(r"query (\w+)", query).group(1) for query in EXAMPLES]
"""The tabs' titles: each README example's operation name, in its order."""


def demo_account_ids() -> list[str]:
    """The demo's accounts, in its config's order, from each emulator's own list."""
    return [str(a["id"]) for entry in registry().values() for a in entry.emulator.accounts]


def codemirror_text(page: Page, selector: str) -> str:
    """All of a CodeMirror editor's text (it draws only the lines in view)."""
    text: str = page.locator(selector).evaluate("element => element.CodeMirror.getValue()")
    return text


def wait_until(page: Page, predicate: str, what: str, seconds: float = 10) -> None:
    """Poll a JavaScript predicate from here (``page.wait_for_function`` evaluates it with
    ``eval`` inside the page, which the page's Content-Security-Policy forbids)."""
    for _ in range(int(seconds * 20)):
        if page.evaluate(predicate):
            return
        page.wait_for_timeout(50)
    pytest.fail(f"timed out waiting for {what}")


def open_graphiql(page: Page, base: str) -> None:
    page.goto(f"{base}/graphql")
    expect(page.locator(EDITOR)).to_be_visible()
    expect(page.locator(TAB_TITLES)).to_have_count(len(EXAMPLES))


def result_json(page: Page) -> dict:
    """The answer in the result pane, once there is one."""
    expect(page.locator(f"{RESULT} .CodeMirror-code")).to_contain_text('"data"')
    answer: dict = json.loads(codemirror_text(page, RESULT))
    return answer


def test_graphiql_opens_on_the_readme_examples_from_local_files(
    page, page_log, demo_gateway, screenshot
) -> None:
    open_graphiql(page, demo_gateway)
    expect(page.locator(TAB_TITLES)).to_have_text(EXAMPLE_NAMES)
    assert codemirror_text(page, EDITOR) == EXAMPLES[0]
    expect(page.locator(".graphiql-logo")).to_have_text("GraphiQL")
    screenshot("opened")

    origin = urlsplit(demo_gateway)
    paths = []
    for url in page_log.requests:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url
        paths.append(parts.path)
    # The page, then its two stylesheets and four scripts, every one from /static/.
    assert paths[0] == "/graphql"
    loaded = sorted(p for p in paths if p.startswith("/static/"))
    assert loaded == sorted(
        [
            "/static/vendor/graphiql/graphiql.min.css",
            "/static/graphiql/page.css",
            "/static/vendor/react/react.production.min.js",
            "/static/vendor/react-dom/react-dom.production.min.js",
            "/static/vendor/graphiql/graphiql.min.js",
            "/static/graphiql/start.js",
        ]
    )
    assert set(paths) - set(loaded) == {"/graphql"}  # the rest: the schema's introspection
    assert page_log.blocked == []


def test_the_run_button_runs_the_first_example_against_the_demo(
    page, demo_gateway, screenshot
) -> None:
    open_graphiql(page, demo_gateway)
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    answer = result_json(page)
    assert "errors" not in answer, answer["errors"]
    accounts = answer["data"]["accounts"]
    assert [a["id"] for a in accounts] == demo_account_ids()
    assert {a["source"]["state"] for a in accounts} == {"FRESH"}
    # The pane shows it: the first account's id is on screen.
    expect(page.locator(f"{RESULT} .CodeMirror-code")).to_contain_text(
        f'"id": "{demo_account_ids()[0]}"'
    )
    screenshot("first-query-answered")

    # The second example, in its own tab, answers too.
    page.locator(TAB_TITLES, has_text="HistoryAndAlerts").click()
    assert codemirror_text(page, EDITOR) == EXAMPLES[1]
    # GraphiQL takes in the tab's operation name some 50 ms after the switch (a click sooner
    # sends the previous tab's); it has once it stores it.
    stored = "localStorage.getItem('graphiql:operationName')"
    wait_until(page, f"() => {stored} === 'HistoryAndAlerts'", "the tab's operation name")
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    expect(page.locator(f"{RESULT} .CodeMirror-code")).to_contain_text('"snapshots"')
    answer = result_json(page)
    assert "errors" not in answer, answer["errors"]
    assert answer["data"]["account"]["quotas"], answer


def test_ctrl_enter_runs_a_query_typed_in_a_new_tab(page, demo_gateway, screenshot) -> None:
    open_graphiql(page, demo_gateway)
    page.get_by_role("button", name="New tab").click()
    expect(page.locator(TAB_TITLES)).to_have_count(len(EXAMPLES) + 1)
    page.locator(EDITOR).click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # Typed as a user would: the editor closes each bracket, and typing one steps over it.
    query = 'query VtSoc { account(id: "vt-soc") { id provider name } }'
    page.keyboard.type(query)
    assert codemirror_text(page, EDITOR) == query
    # GraphiQL has read the edit once the tab bears the operation's name.
    expect(page.locator(TAB_TITLES).last).to_have_text("VtSoc")
    page.keyboard.press("Control+Enter")
    answer = result_json(page)
    vt = next(a for a in registry()["virustotal"].emulator.accounts if a["id"] == "vt-soc")
    assert answer == {
        "data": {"account": {"id": "vt-soc", "provider": "VIRUSTOTAL", "name": vt["name"]}}
    }
    screenshot("typed-query-answered")

    # GraphiQL keeps the user's tabs in the browser from now on (once it has stored them:
    # it does so a moment after an edit).
    stored_tabs = "JSON.parse(localStorage.getItem('graphiql:tabState')).tabs"
    wait_until(page, f"() => {stored_tabs}.some(tab => tab.title === 'VtSoc')", "stored tabs")
    page.reload()
    expect(page.locator(TAB_TITLES)).to_have_text([*EXAMPLE_NAMES, "VtSoc"])


def test_headers_typed_in_are_sent_and_never_stored(page, demo_gateway) -> None:
    open_graphiql(page, demo_gateway)
    page.locator("button[data-name=headers]").click()
    headers_editor = page.locator(".graphiql-editor-tool .CodeMirror").last
    expect(headers_editor).to_be_visible()
    headers_editor.click()
    page.keyboard.type('{"Authorization": "Bearer not-to-be-kept')
    # Let GraphiQL take the typed headers into its state (debounced) before the run, as a
    # person typing and then pressing Run does: its history then has them to keep.
    page.wait_for_timeout(700)
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if r.method == "POST" else None,
    )
    page.locator(EDITOR).click()
    page.keyboard.press("Control+Enter")
    result_json(page)
    assert "Bearer not-to-be-kept" in sent
    # GraphiQL writes its history of runs (graphiql:queries) and, after a 500 ms debounce, its
    # tabs: wait for both writes, so the check below sees everything the page will keep.
    wait_until(
        page,
        "() => (localStorage.getItem('graphiql:queries') || '').includes('FirstQuery')",
        "GraphiQL's history to keep the run",
    )
    page.wait_for_timeout(700)
    stored = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert "FirstQuery" in stored  # the tabs and the history are kept...
    assert "not-to-be-kept" not in stored  # ...the headers are not
    # The page still knows them: the next run sends them again.
    sent.clear()
    page.locator(EDITOR).click()
    page.keyboard.press("Control+Enter")
    for _ in range(100):
        if sent:
            break
        page.wait_for_timeout(50)
    assert sent == ["Bearer not-to-be-kept"]


def test_the_documentation_explorer_reads_the_schema(page, demo_gateway, screenshot) -> None:
    """It opens on the root types and goes into ``Query``: every root field, in the schema's
    order, with its description (from the schema, as introspection gave it to the page)."""
    query_type = schema._schema.query_type
    assert query_type is not None
    open_graphiql(page, demo_gateway)
    page.get_by_role("button", name="Show Documentation Explorer").click()
    explorer = page.locator(".graphiql-doc-explorer")
    expect(explorer.locator(".graphiql-doc-explorer-title")).to_have_text("Docs")
    expect(explorer).to_contain_text("query: Query")
    explorer.get_by_role("link", name="Query", exact=True).click()
    expect(explorer.locator(".graphiql-doc-explorer-title")).to_have_text("Query")
    expect(explorer.locator(".graphiql-markdown-description").first).to_have_text(
        (query_type.description or "").replace("`", "")
    )
    fields = explorer.locator(".graphiql-doc-explorer-item")
    expect(fields.locator(".graphiql-doc-explorer-field-name")).to_have_text(
        list(query_type.fields)
    )
    # (Descriptions are Markdown: `code` shows without its backticks.)
    expect(fields.locator(".graphiql-markdown-description")).to_have_text(
        [(field.description or "").replace("`", "") for field in query_type.fields.values()]
    )
    screenshot("documentation-explorer")


def test_the_page_may_connect_to_the_gateway_only(page, page_log, demo_gateway) -> None:
    """Its Content-Security-Policy stops a script's request to another origin in the browser,
    before the request exists (the fixture's routing never sees it)."""
    open_graphiql(page, demo_gateway)
    page_log.requests.clear()
    outcome = page.evaluate(
        """() => new Promise(done => {
            document.addEventListener('securitypolicyviolation',
                event => done(event.violatedDirective + ' ' + event.blockedURI));
            fetch('https://unpkg.com/graphiql').catch(() => {});
        })"""
    )
    assert outcome == "connect-src https://unpkg.com/graphiql"
    assert page_log.requests == [] and page_log.blocked == []
    assert page_log.errors and all("Content Security Policy" in e for e in page_log.errors)
    page_log.errors.clear()
