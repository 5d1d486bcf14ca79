"""The dashboard at ``/`` in a real Chromium, against real gateways on loopback.

What the page shows is compared with what the public GraphQL API answers for the same thing,
fetched over HTTP by the test. The ``page`` fixture fails a test whose page asked another host
for anything or logged an error.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from graphql import parse

from gateway.app import create_app
from gateway.domain import ProviderId
from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.servers import ServerThread
from providers import registry
from tests.conftest import account_entry, settings_for

QUERIES = (
    Path(__file__).resolve().parents[2] / "gateway" / "static" / "dashboard" / "queries.graphql"
).read_text(encoding="utf-8")
TOP_ENDPOINTS = 8
"""usage-chart.js draws this many endpoints on their own, the rest as "Other endpoints"."""
READY = 90_000
"""Milliseconds a page may take to load every account (the first demo answers are cold)."""


# --- helpers --------------------------------------------------------------------------------


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_ready(page) -> None:
    """Until every account's usage is drawn (or has failed visibly)."""
    page.wait_for_selector("body[data-state=ready]", timeout=READY)


def open_dashboard(page, base: str, query: str = "") -> None:
    page.goto(f"{base}/{query}")
    wait_ready(page)


def shown_range(page) -> tuple[str, str, str]:
    body = page.locator("body")
    return (
        body.get_attribute("data-from"),
        body.get_attribute("data-to"),
        body.get_attribute("data-granularity"),
    )


def charts(page) -> dict[str, Any]:
    """Every account card's Chart.js instance, as data: labels, and per dataset its label,
    values and which bars are hatched (a CanvasPattern: some days unknown)."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("article.account")].map(card => {
            const canvas = card.querySelector("canvas");
            const chart = canvas && window.Chart.getChart(canvas);
            return [card.dataset.accountId, chart ? {
                type: chart.config.type,
                stacked: chart.options.scales.y.stacked && chart.options.scales.x.stacked,
                labels: chart.data.labels,
                datasets: chart.data.datasets.map(d => ({
                    label: d.label,
                    data: d.data,
                    hatched: d.backgroundColor.map(c => c instanceof CanvasPattern),
                })),
            } : null];
        }))"""
    )


def bucket_starts(first: date, last: date, granularity: str) -> list[str]:
    """Bucket starts as the README defines them: weeks from Monday, months from the 1st."""
    if granularity == "WEEK":
        day = first - timedelta(days=first.weekday())
    elif granularity == "MONTH":
        day = first.replace(day=1)
    else:
        day = first
    starts = []
    while day <= last:
        starts.append(day.isoformat())
        if granularity == "DAY":
            day += timedelta(days=1)
        elif granularity == "WEEK":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return starts


def demo_account_ids() -> list[str]:
    """The demo's accounts, as the emulators declare them (what ``usage-gateway demo`` serves)."""
    return [account["id"] for entry in registry().values() for account in entry.emulator.accounts]


def endpoint_key(endpoint: dict[str, Any]) -> str:
    return endpoint["endpoint"] + ("" if endpoint["consumesQuota"] else " (no quota)")


USAGE = """query($id: ID!, $from: Date!, $to: Date!, $g: Granularity!) { account(id: $id) {
  usage(from: $from, to: $to, granularity: $g) {
    requests missingDays endpoints { endpoint requests consumesQuota }
    series { start requests missingDays endpoints { endpoint requests consumesQuota } } } } }"""


def usage_of(base: str, account: str, first: str, last: str, granularity: str) -> dict[str, Any]:
    answer = graphql(base, USAGE, {"id": account, "from": first, "to": last, "g": granularity})
    assert "errors" not in answer, answer["errors"]
    usage: dict[str, Any] = answer["data"]["account"]["usage"]
    return usage


def quota_limit(base: str, account: str) -> int:
    """The limit of the account's one quota (ReputeAPI's monthly quota), from the API."""
    answer = graphql(
        base, "query($id: ID!) { account(id: $id) { quotas { limit } } }", {"id": account}
    )
    [quota] = answer["data"]["account"]["quotas"]
    return int(quota["limit"])


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


@contextmanager
def gateway_serving(settings) -> Iterator[str]:
    """A gateway for ``settings`` served on a loopback port (its own vendor client)."""
    server = ServerThread(create_app(settings)).start()
    try:
        yield server.urls[0]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def repute_emulator() -> Iterator[str]:
    """A ReputeAPI emulator on the real clock (the page asks for days up to today)."""
    emulator = registry()[ProviderId("reputeapi")].emulator.factory(seed=3)
    server = ServerThread(emulator).start()
    try:
        yield server.urls[0]
    finally:
        server.stop()


# --- the demo -------------------------------------------------------------------------------

QUOTAS = "{ accounts { id name quotas { id name used limit } } }"


class Operations:
    """The GraphQL operations a page sends, and how many were in flight at most."""

    def __init__(self, page) -> None:
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    @staticmethod
    def name(request) -> str | None:
        if urlsplit(request.url).path != "/graphql":
            return None
        assert request.method == "POST", request.method
        return str(request.post_data_json["operationName"])

    def started(self, request) -> None:
        name = self.name(request)
        if name is not None:
            self.sent.append(name)
            self.in_flight += name == "Usage"
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def ended(self, request) -> None:
        if self.name(request) == "Usage":
            self.in_flight -= 1

    def clear(self) -> None:
        self.sent.clear()
        self.most_in_flight = self.in_flight = 0


def open_at_a_still_moment(page, base: str, query: str, operations: Operations) -> dict:
    """Open the dashboard while ``query``'s answer stands still (use moves as the emulators'
    day goes on; up to three tries): the answer, equal before and after the page loaded."""
    for _attempt in range(3):
        operations.clear()
        before = graphql(base, query)
        open_dashboard(page, base)
        after = graphql(base, query)
        if before == after:
            return after
    raise AssertionError(f"{query} kept moving while the page loaded")


def test_every_demo_account_and_quota_is_shown_as_the_api_gives_it(
    page, page_log, demo_gateway, screenshot
) -> None:
    operations = Operations(page)
    after = open_at_a_still_moment(page, demo_gateway, QUOTAS, operations)
    accounts = after["data"]["accounts"]

    shown = page.locator("article.account").evaluate_all(
        "cards => cards.map(c => c.dataset.accountId)"
    )
    assert shown == [a["id"] for a in accounts]
    assert sorted(shown) == sorted(demo_account_ids())

    compared = []
    for account in accounts:
        card = page.locator(f'article.account[data-account-id="{account["id"]}"]')
        assert card.locator("h3").inner_text() == account["name"]
        assert account["quotas"], account
        for quota in account["quotas"]:
            item = card.locator(f'[data-quota-id="{quota["id"]}"]')
            assert item.locator(".quota-name").inner_text() == quota["name"]
            assert item.locator(".used").inner_text() == f"{quota['used']:,}"
            assert item.locator(".limit").inner_text() == f"{quota['limit']:,}"
            compared.extend((quota["used"], quota["limit"]))
    assert max(compared) > 2**31  # the exactness claim is tested on numbers that need it

    # The alerts are the API's, each linked to its account.
    alerts = graphql(demo_gateway, "{ alerts { message quota { id accountId } } }")
    listed = page.locator("#alerts li[data-quota-id]")
    assert listed.count() == len(alerts["data"]["alerts"]) > 0
    for index, alert in enumerate(alerts["data"]["alerts"]):
        link = listed.nth(index).locator("a")
        assert link.inner_text() == alert["message"]
        assert link.get_attribute("href") == f"#account-{alert['quota']['accountId']}"

    # Only the public graph: one Overview, then one Usage per account, at most four at a time.
    assert operations.sent == ["Overview"] + ["Usage"] * len(accounts)
    assert operations.most_in_flight <= 4

    # Every file came from the gateway's static route, each by its versioned URL.
    paths = {urlsplit(url).path for url in page_log.requests}
    assert paths - {"/", "/graphql"} == {p for p in paths if p.startswith("/static/")}
    assert all("?v=" in url for url in page_log.requests if "/static/" in url)

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(200)  # Chart.js redraws on resize
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a {width}px window"
        screenshot(str(width))


def view(name: str) -> tuple[date, date, str]:
    """A range the page offers that reaches before the demo's history, ending in the past
    (closed days: nothing moves while the test compares)."""
    if name == "longest-months":  # the longest range offered per month, ending yesterday
        return yesterday() - timedelta(days=3659), yesterday(), "MONTH"
    # 60 days per day around the first day of ZKScore's seeded usage
    first_day = registry()[ProviderId("zkscore")].emulator.first_day
    assert first_day is not None
    return first_day - timedelta(days=30), first_day + timedelta(days=29), "DAY"


@pytest.mark.parametrize("name", ["longest-months", "days-around-zkscore-start"])
def test_the_chart_is_stacked_by_endpoint_with_gaps_where_days_are_unknown(
    page, demo_gateway, name: str
) -> None:
    """Every bucket has a slot, buckets the API leaves out are null in every dataset (a gap,
    not a zero), the stack adds up to the API's count, and buckets with some unknown days are
    hatched."""
    first, last, granularity = view(name)
    open_dashboard(page, demo_gateway, f"?from={first}&to={last}&granularity={granularity}")
    assert shown_range(page) == (first.isoformat(), last.isoformat(), granularity)
    drawn = charts(page)
    starts = bucket_starts(first, last, granularity)
    gaps = partial = split = 0
    for account in demo_account_ids():
        usage = usage_of(demo_gateway, account, first.isoformat(), last.isoformat(), granularity)
        chart = drawn[account]
        assert chart["type"] == "bar" and chart["stacked"]
        assert chart["labels"] == starts
        points = {p["start"][:10]: p for p in usage["series"]}
        for index, start in enumerate(starts):
            values = [d["data"][index] for d in chart["datasets"]]
            point = points.get(start)
            if point is None:
                assert values == [None] * len(values), (account, start)
                gaps += 1
                continue
            assert None not in values and sum(values) == point["requests"], (account, start)
            hatched = {d["hatched"][index] for d in chart["datasets"]}
            assert hatched == {point["missingDays"] > 0}, (account, start)
            partial += point["missingDays"] > 0
        # Stacked by endpoint: the endpoints the buckets split, in the order of the range's
        # totals, the first TOP_ENDPOINTS on their own and the rest as one.
        in_buckets = {
            endpoint_key(e) for p in usage["series"] for e in p["endpoints"] if e["requests"]
        }
        ranked = [
            k for k in dict.fromkeys(map(endpoint_key, usage["endpoints"])) if k in in_buckets
        ]
        labels = [d["label"] for d in chart["datasets"]]
        if ranked:
            split += 1
            shown = ranked[:TOP_ENDPOINTS] if len(ranked) > TOP_ENDPOINTS + 1 else ranked
            assert labels[: len(shown)] == shown, account
            if len(shown) < len(ranked):
                assert labels[len(shown)] == f"Other endpoints ({len(ranked) - len(shown)})"
        else:
            assert labels == ["All endpoints"], account
        table = page.locator(
            f'article.account[data-account-id="{account}"] details.buckets tbody tr'
        )
        assert table.count() == len(starts)
        missing = len(usage["missingDays"])
        if missing:
            note = page.locator(f'article.account[data-account-id="{account}"] .missing-note')
            assert f"{missing:,} day" in note.inner_text()
    # Each case was seen (days are whole: only weeks and months can be known in part).
    assert gaps and split and (partial > 0) == (granularity != "DAY"), (gaps, partial, split)


def test_the_period_and_granularity_switches_change_the_chart(page, demo_gateway) -> None:
    open_dashboard(page, demo_gateway)
    account = demo_account_ids()[0]
    today = datetime.now(UTC).date()

    def labels() -> list[str]:
        return charts(page)[account]["labels"]

    def check(days: int, granularity: str) -> None:
        wait_ready(page)
        first, last, shown = shown_range(page)
        assert (first, shown) == (
            (date.fromisoformat(last) - timedelta(days=days - 1)).isoformat(),
            granularity,
        )
        assert last in {today.isoformat(), datetime.now(UTC).date().isoformat()}
        starts = bucket_starts(date.fromisoformat(first), date.fromisoformat(last), granularity)
        assert labels() == starts

    check(30, "DAY")  # the default
    page.select_option("#period", "7")
    check(7, "DAY")
    assert "period=7" in page.url
    page.locator('label[for="g-week"]').click()
    check(7, "WEEK")
    page.select_option("#period", "365")
    check(365, "WEEK")  # a year defaults to weeks
    page.focus("#g-week")
    page.keyboard.press("ArrowRight")  # the radio group works from the keyboard
    check(365, "MONTH")
    assert "period=365" in page.url and "granularity=MONTH" in page.url

    # A custom range.
    page.select_option("#period", "custom")
    wait_ready(page)
    last = yesterday()
    first = last - timedelta(days=13)
    page.fill("#from", first.isoformat())
    page.fill("#to", last.isoformat())
    page.locator('label[for="g-day"]').click()
    wait_ready(page)
    page.get_by_role("button", name="Apply").click()
    wait_ready(page)
    assert shown_range(page) == (first.isoformat(), last.isoformat(), "DAY")
    assert labels() == bucket_starts(first, last, "DAY")

    # A range longer than days are offered for: Day is disabled, weeks are shown, and why.
    page.fill("#from", (last - timedelta(days=399)).isoformat())
    page.get_by_role("button", name="Apply").click()
    wait_ready(page)
    assert page.locator("#g-day").is_disabled()
    assert shown_range(page)[2] == "WEEK"
    assert "per day is offered up to 366 days" in page.locator("#range-note").inner_text()

    # A reversed range is refused with a message; the charts stay as they were.
    page.fill("#from", last.isoformat())
    page.fill("#to", first.isoformat())
    page.get_by_role("button", name="Apply").click()
    wait_ready(page)
    assert page.locator("#range-note").inner_text() == "The range starts after it ends."


def test_the_csv_link_downloads_the_usage_shown(page, demo_gateway) -> None:
    """Each account's link is /export/usage for what its chart shows; the file's rows add up
    to the API's count and mark the API's missing days."""
    first, last, granularity = view("days-around-zkscore-start")
    open_dashboard(page, demo_gateway, f"?from={first}&to={last}&granularity={granularity}")
    files: dict[str, str] = {}
    missing_seen = 0
    for account in demo_account_ids():
        href = page.locator(
            f'article.account[data-account-id="{account}"] a.download'
        ).get_attribute("href")
        parts = urlsplit(href)
        assert parts.path == "/export/usage"
        assert parse_qs(parts.query) == {
            "account": [account],
            "from": [first.isoformat()],
            "to": [last.isoformat()],
            "granularity": [granularity],
            "format": ["csv"],
        }
        response = httpx.get(f"{demo_gateway}{href}", timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"].startswith("attachment")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert {
            "start",
            "endpoint",
            "requests",
            "quota_requests",
            "consumes_quota",
            "missing",
        } <= set(rows[0])
        usage = usage_of(demo_gateway, account, first.isoformat(), last.isoformat(), granularity)
        assert sum(int(r["requests"]) for r in rows if r["requests"]) == usage["requests"]
        missing = [r["start"][:10] for r in rows if r["missing"] == "true"]
        assert missing == usage["missingDays"], account
        missing_seen += len(missing)
        files[account] = response.text
    assert missing_seen  # the range reaches before ZKScore's first day

    # A click downloads the same file.
    account = demo_account_ids()[-1]
    with page.expect_download() as download:
        page.locator(f'article.account[data-account-id="{account}"] a.download').click()
    assert download.value.suggested_filename.endswith(".csv")
    assert Path(download.value.path()).read_text(encoding="utf-8") == files[account]


# --- failures -------------------------------------------------------------------------------


def test_a_failing_vendor_shows_on_its_account_while_the_others_render(
    page, repute_emulator, closed_port_url, screenshot
) -> None:
    settings = settings_for(
        account_entry("virustotal", closed_port_url, id="vt-down", name="VirusTotal (down)"),
        account_entry("reputeapi", repute_emulator, id="repute-up"),
    )
    with gateway_serving(settings) as base:
        open_dashboard(page, base)
        status = graphql(
            base, '{ account(id: "vt-down") { quotasSource { state message cause } } }'
        )
        source = status["data"]["account"]["quotasSource"]
        assert (source["state"], source["cause"]) == ("UNAVAILABLE", "CONNECTION")

        down = page.locator('article.account[data-account-id="vt-down"]')
        banner = down.locator('.source-banner[role="alert"][data-source-state="UNAVAILABLE"]')
        assert source["message"] in banner.inner_text()
        assert "cause CONNECTION" in banner.inner_text()
        assert down.locator(".badge[data-state]").first.inner_text() == "Unavailable"
        assert "could not be read" in down.locator(".quotas-panel").inner_text()
        # Its usage is all unknown days: gaps, never zeros.
        chart = charts(page)["vt-down"]
        assert chart["labels"] and all(v is None for d in chart["datasets"] for v in d["data"])

        up = page.locator('article.account[data-account-id="repute-up"]')
        assert up.get_attribute("data-usage-state") == "ready"
        assert up.locator(".badge[data-state]").first.inner_text() == "Fresh"
        assert (
            up.locator("[data-quota-id] .limit").inner_text()
            == f"{quota_limit(base, 'repute-up'):,}"
        )
        assert charts(page)["repute-up"]["datasets"]
        assert (
            page.locator('#summary tr[data-account-id="vt-down"]').inner_text().count("Unavailable")
            == 1
        )
        screenshot("1280")


def test_graphql_errors_show_as_messages_where_they_happen(page, repute_emulator, tmp_path) -> None:
    """An unusable history store (alerts and forecasts fail) and a cost limit the usage queries
    exceed: both errors are on the page where they apply, the quotas render regardless."""
    history = tmp_path / "history.sqlite"
    history.write_bytes(b"this is not a SQLite database" * 100)
    accounts = [account_entry("reputeapi", repute_emulator, id="repute-a")]
    today = datetime.now(UTC).date()
    sizes = Sizes((("reputeapi", 1),), today)
    overview = operation_cost(schema._schema, parse(QUERIES), "Overview", {}, sizes)
    usage = operation_cost(
        schema._schema,
        parse(QUERIES),
        "Usage",
        {
            "id": "repute-a",
            "from": str(today - timedelta(days=29)),
            "to": str(today),
            "granularity": "DAY",
        },
        sizes,
    )
    assert overview and usage and usage.total > overview.total
    settings = settings_for(*accounts, history_path=str(history), max_query_cost=overview.total)
    with gateway_serving(settings) as base:
        open_dashboard(page, base)
        alerts = page.locator("#alerts [role=alert]").inner_text()
        assert "history store" in alerts and str(history) in alerts
        card = page.locator('article.account[data-account-id="repute-a"]')
        forecasts = card.locator(".forecast-banner").inner_text()  # once, not per quota
        assert forecasts.startswith("No forecasts: ") and str(history) in forecasts
        assert card.get_attribute("data-usage-state") == "error"
        message = card.locator(".usage-panel [role=alert]").inner_text()
        assert re.search(r"Query too costly: its cost is [\d,]+, over the limit of", message)
        assert "Pick a shorter period or a coarser granularity." in message
        assert (
            card.locator("[data-quota-id] .limit").inner_text()
            == f"{quota_limit(base, 'repute-a'):,}"
        )


def test_a_refused_page_query_shows_the_reason_not_an_empty_page(page, repute_emulator) -> None:
    settings = settings_for(account_entry("reputeapi", repute_emulator), max_query_cost=1)
    with gateway_serving(settings) as base:
        page.goto(f"{base}/")
        page.wait_for_selector("body[data-state=error]", timeout=READY)
        banner = page.locator("#banners [role=alert]").inner_text()
        assert "Query too costly" in banner and "over the limit of 1 " in banner
        assert page.locator("h1").inner_text() == "Usage gateway"
        assert page.locator("#period").is_visible()


def test_counts_past_2_to_the_53_are_read_and_shown_exactly(page, repute_emulator) -> None:
    """The page's JSON reader keeps integers a JS number cannot hold (BigInt values are JSON
    numbers), and its count format groups them: the same code path as every answer."""
    settings = settings_for(account_entry("reputeapi", repute_emulator))
    with gateway_serving(settings) as base:
        open_dashboard(page, base)
        shown = page.evaluate(
            """async () => {
                const api = await import("/static/dashboard/api.js");
                const format = await import("/static/dashboard/format.js");
                const answer = api.parseExact('{"used": 18446744073709551615, "i": 2147483648}');
                return [format.count(answer.used), format.count(answer.i)];
            }"""
        )
    assert shown == [f"{2**64 - 1:,}", f"{2**31:,}"]


def test_the_page_reloads_every_five_minutes_and_on_refresh(page, repute_emulator) -> None:
    settings = settings_for(account_entry("reputeapi", repute_emulator))
    with gateway_serving(settings) as base:
        operations = Operations(page)
        page.clock.install()
        open_dashboard(page, base)
        assert operations.sent == ["Overview", "Usage"]
        page.clock.fast_forward("04:00")  # (the load itself took a few real seconds)
        assert operations.sent == ["Overview", "Usage"]
        page.clock.fast_forward("01:10")
        wait_ready(page)
        assert operations.sent == ["Overview", "Usage"] * 2
        page.get_by_role("button", name="Refresh").click()
        wait_ready(page)
        assert operations.sent == ["Overview", "Usage"] * 3
        # Charts redrawn let go of the old ones (a page left open does not pile them up).
        assert page.evaluate("Object.keys(window.Chart.instances).length") == 1
        # A page nobody can see (another tab) is not reloaded.
        page.evaluate("Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'})")
        page.clock.fast_forward("10:00")
        assert operations.sent == ["Overview", "Usage"] * 3


@pytest.mark.parametrize(
    ("status", "state"), [(503, "UNAVAILABLE"), (429, "RATE_LIMITED"), (401, "AUTH_FAILED")]
)
def test_an_emulator_fault_shows_on_its_account_while_the_others_render(
    page, repute_emulator, status, state
) -> None:
    """The vendor answers, but with a fault (its emulator's): that account says so, in the
    state the API gives; the other account renders in full."""
    from providers.emulation import Fault

    vendor = registry()[ProviderId("virustotal")].emulator.factory(seed=3)
    vendor.set_fault(Fault(status=status))
    server = ServerThread(vendor).start()
    try:
        settings = settings_for(
            account_entry("virustotal", server.urls[0], id="vt-faulty", name="VirusTotal"),
            account_entry("reputeapi", repute_emulator, id="repute-up"),
        )
        with gateway_serving(settings) as base:
            open_dashboard(page, base)
            answer = graphql(base, '{ account(id: "vt-faulty") { quotasSource { state } } }')
            assert answer["data"]["account"]["quotasSource"]["state"] == state
            faulty = page.locator('article.account[data-account-id="vt-faulty"]')
            assert faulty.locator(f'.source-banner[data-source-state="{state}"]').count() >= 1
            up = page.locator('article.account[data-account-id="repute-up"]')
            assert up.get_attribute("data-usage-state") == "ready"
            assert up.locator(".badge[data-state]").first.inner_text() == "Fresh"
            assert charts(page)["repute-up"]["datasets"]
    finally:
        server.stop()
