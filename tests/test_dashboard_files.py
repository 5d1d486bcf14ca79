"""The dashboard as files: ``GET /`` is its HTML page, which names only this gateway's own files
(each by its versioned URL), and its queries stay under the default cost limit for every period
the page offers. tests/browser/test_dashboard.py drives the page itself."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from graphql import parse

from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.settings import DEFAULT_MAX_QUERY_COST
from tests.conftest import NOW, account_entry, settings_for

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "gateway" / "static"
DASHBOARD = STATIC / "dashboard"
QUERIES = (DASHBOARD / "queries.graphql").read_text(encoding="utf-8")
OWN_FILES = sorted(
    [*DASHBOARD.iterdir(), ROOT / "gateway" / "templates" / "dashboard.html"],
    key=lambda path: path.name,
)


class Page(HTMLParser):
    """The URLs an HTML page names, and the text of its inline scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[tuple[str, str]] = []
        self._script_type: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) is not None:
                self.urls.append(values[name])
        if tag == "meta" and values.get("name") == "dashboard-queries":
            self.urls.append(values["content"])
        if tag == "script" and "src" not in values:
            self._script_type = values.get("type") or ""

    def handle_data(self, data: str) -> None:
        if self._script_type is not None:
            self.inline_scripts.append((self._script_type, data))
            self._script_type = None

    def handle_endtag(self, tag: str) -> None:
        self._script_type = None


@pytest.fixture
async def gateway(emulators, make_gateway):
    return make_gateway(settings_for(account_entry("reputeapi", emulators["reputeapi"].url)))


async def test_root_serves_the_dashboard_as_html(gateway) -> None:
    response = await gateway.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("<!doctype html>")
    assert "<title>Usage gateway</title>" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


async def test_the_page_names_only_its_own_files_by_versioned_urls(gateway) -> None:
    """Every file the page names is this gateway's, with ``?v=`` the start of its SHA-256,
    and is served; the only other URLs are in-page anchors, GraphiQL and a ``data:`` icon."""
    page = Page((await gateway.client.get("/")).text)
    importmap = json.loads(next(text for kind, text in page.inline_scripts if kind == "importmap"))
    named = [*page.urls, *importmap["imports"].values()]
    static = [url for url in named if url.startswith("/static/")]
    links = sorted({url for url in named if not url.startswith(("/static/", "#"))})
    assert links == ["/graphql", "data:,"]  # GraphiQL, and the icon (none)
    # The stylesheet, the chart library, the queries, the main module, and every module again
    # in the import map.
    assert len(static) == 4 + len(list(DASHBOARD.glob("*.js")))
    for url in static:
        parts = urlsplit(url)
        path = STATIC / parts.path.removeprefix("/static/")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        assert parse_qs(parts.query) == {"v": [digest]}, url
        served = await gateway.client.get(url)
        assert served.status_code == 200, url
        assert served.content == path.read_bytes()


async def test_every_module_import_goes_through_the_import_map(gateway) -> None:
    """Modules import each other by relative paths the import map sends to versioned URLs (a
    module the map missed would be fetched unversioned and cached for a year)."""
    page = Page((await gateway.client.get("/")).text)
    [(_, text)] = [(kind, text) for kind, text in page.inline_scripts if kind == "importmap"]
    mapped = set(json.loads(text)["imports"])
    modules = {f"/static/dashboard/{path.name}" for path in DASHBOARD.glob("*.js")}
    assert mapped == modules
    for path in DASHBOARD.glob("*.js"):
        for specifier in re.findall(r'^import .*? from "([^"]+)";', path.read_text(), re.M | re.S):
            assert specifier.startswith("./"), (path.name, specifier)
            assert (DASHBOARD / specifier).is_file(), (path.name, specifier)
            assert f"/static/dashboard/{specifier[2:]}" in mapped


async def test_the_only_inline_script_is_allowed_by_its_hash(gateway) -> None:
    response = await gateway.client.get("/")
    page = Page(response.text)
    [(kind, text)] = page.inline_scripts
    assert kind == "importmap"
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["style-src"] == "'self'"  # no inline styles either


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda path: path.name)
def test_the_pages_own_files_name_no_other_host(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\b(?:https?|wss?|ftp):", text, re.I), path.name
    assert "@import" not in text and "@font-face" not in text
    for target in re.findall(r"url\(([^)]*)\)", text):
        assert target.strip("'\"").startswith("data:"), (path.name, target)


def offered_periods() -> dict[str, object]:
    """PRESETS and MAX_DAYS as periods.js declares them (what the page offers)."""
    source = (DASHBOARD / "periods.js").read_text(encoding="utf-8")
    presets = re.search(r"export const PRESETS = \[([\d, ]+)\];", source)
    limits = re.search(
        r"export const MAX_DAYS = \{ DAY: (\d+), WEEK: (\d+), MONTH: (\d+) \};", source
    )
    assert presets and limits, "periods.js no longer declares PRESETS and MAX_DAYS as expected"
    day, week, month = (int(n) for n in limits.groups())
    return {
        "presets": [int(n) for n in presets.group(1).split(",")],
        "max_days": {"DAY": day, "WEEK": week, "MONTH": month},
    }


def usage_costs() -> dict[tuple[int, str], int]:
    """The Usage operation's cost for every period (in days) and granularity the page offers:
    each preset at each granularity offered for it, and each granularity's longest range."""
    offered = offered_periods()
    max_days: dict[str, int] = offered["max_days"]  # type: ignore[assignment]
    spans = {(days, g) for days in offered["presets"] for g in max_days if days <= max_days[g]}  # type: ignore[attr-defined]
    spans |= {(days, g) for g, days in max_days.items()}
    today = NOW.date()
    costs = {}
    for days, granularity in sorted(spans):
        variables = {
            "id": "any",
            "from": (today - timedelta(days=days - 1)).isoformat(),
            "to": today.isoformat(),
            "granularity": granularity,
        }
        found = operation_cost(
            schema._schema, parse(QUERIES), "Usage", variables, Sizes((("reputeapi", 1),), today)
        )
        assert found is not None and found.exact
        costs[days, granularity] = found.total
    return costs


def test_every_offered_period_stays_under_the_default_cost_limit() -> None:
    """The page asks for one account's usage per query; every period and granularity it offers
    costs less than the default ``max_query_cost`` (the day series up to MAX_DAYS.DAY is the
    costliest)."""
    costs = usage_costs()
    assert len(costs) >= 10
    costliest = max(costs.values())
    assert costliest < DEFAULT_MAX_QUERY_COST, costs
    assert costliest == costs[offered_periods()["max_days"]["DAY"], "DAY"]  # type: ignore[index]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"endpoints, costs {costliest:,};" in readme  # the figure the README gives


def test_the_overview_costs_about_300_per_account() -> None:
    """As the README says: so it stays under the default limit up to 300 accounts."""

    def cost(count: int) -> int:
        sizes = Sizes((("reputeapi", count),), NOW.date())
        found = operation_cost(schema._schema, parse(QUERIES), "Overview", {}, sizes)
        assert found is not None
        return found.total

    costs = {count: cost(count) for count in (1, 20, 300)}
    assert max(costs.values()) < DEFAULT_MAX_QUERY_COST, costs
    assert 250 <= (costs[300] - costs[1]) / 299 <= 350


def test_over_1000_accounts_the_overview_is_asked_for_in_pages_under_the_default_limit() -> None:
    """Whole, the Overview of 1,000 accounts is over the default limit; the page then asks
    for AccountIds (under it) and pages of ids, halving from half of them (dashboard.js
    ``loadOverview``): a page of 250 is under it, and so is every operation the page sends."""
    sizes = Sizes((("reputeapi", 1000),), NOW.date())

    def cost(operation: str, variables: dict[str, object]) -> int:
        found = operation_cost(schema._schema, parse(QUERIES), operation, variables, sizes)
        assert found is not None
        return found.total

    assert cost("Overview", {}) > DEFAULT_MAX_QUERY_COST
    assert cost("AccountIds", {}) < DEFAULT_MAX_QUERY_COST
    pages = {size: cost("Overview", {"ids": [f"a{i}" for i in range(size)]}) for size in (500, 250)}
    assert pages[500] > DEFAULT_MAX_QUERY_COST >= pages[250], pages


async def test_the_costliest_offered_period_is_answered(emulators, make_gateway) -> None:
    """The real gateway agrees: the longest day series the page offers gets an answer."""
    gateway = make_gateway(
        settings_for(account_entry("reputeapi", emulators["reputeapi"].url, id="repute"))
    )
    days = offered_periods()["max_days"]["DAY"]  # type: ignore[index]
    today = NOW.date()
    answer = await gateway.client.post(
        "/graphql",
        json={
            "query": QUERIES,
            "operationName": "Usage",
            "variables": {
                "id": "repute",
                "from": (today - timedelta(days=days - 1)).isoformat(),
                "to": today.isoformat(),
                "granularity": "DAY",
            },
        },
    )
    body = answer.json()
    assert "errors" not in body, body["errors"]
    assert body["data"]["account"]["usage"]["series"]
