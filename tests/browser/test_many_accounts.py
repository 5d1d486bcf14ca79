"""The dashboard over a gateway with more accounts than one Overview may cost: the page asks
for its accounts in pages under the gateway's cost limit and shows every one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from graphql import parse

from benchmarks import fleet
from gateway.domain import utc_now
from gateway.graphql.cost import Sizes, operation_cost
from gateway.graphql.schema import schema
from gateway.servers import ServerThread
from tests.browser.test_dashboard import (
    QUERIES,
    Operations,
    gateway_serving,
    open_at_a_still_moment,
)
from tests.conftest import settings_for

COUNT = 60


@pytest.fixture(scope="module")
def fleet_urls() -> Iterator[tuple[dict[str, str], dict]]:
    """The four emulators, knowing every identity of :data:`COUNT` accounts (real clock)."""
    found = fleet.emulators(COUNT, 3, utc_now)
    with ExitStack() as stack:
        urls = {
            provider: stack.enter_context(ServerThread(emulator)).urls[0]
            for provider, emulator in found.items()
        }
        yield urls, found


def overview_cost(entries: list[dict[str, str]], ids: list[str] | None) -> int:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["provider"]] = counts.get(entry["provider"], 0) + 1
    sizes = Sizes(tuple(sorted(counts.items())), utc_now().date())
    found = operation_cost(schema._schema, parse(QUERIES), "Overview", {"ids": ids}, sizes)
    assert found is not None
    return found.total


def test_every_account_of_a_many_account_gateway_is_shown(
    page, fleet_urls, tmp_path, screenshot
) -> None:
    urls, emulators = fleet_urls
    entries = fleet.accounts(COUNT, urls)
    whole = overview_cost(entries, None)
    limit = whole // 3  # the whole Overview is refused; a page of 15 accounts is not
    assert overview_cost(entries, [e["id"] for e in entries[:15]]) <= limit < whole
    settings = settings_for(
        *entries, history_path=str(tmp_path / "history.sqlite"), max_query_cost=limit
    )
    operations = Operations(page)
    alerts = "{ alerts { quota { id } } }"
    with gateway_serving(settings) as base:
        after = open_at_a_still_moment(page, base, alerts, operations)
    # The pages' alerts put together are the whole list, in the API's order.
    listed = page.locator("#alerts li[data-quota-id]").evaluate_all(
        "items => items.map(i => i.dataset.quotaId)"
    )
    assert listed == [a["quota"]["id"] for a in after["data"]["alerts"]]
    pages = {int(alert.split(":")[0][1:]) // 15 for alert in listed}  # account a00017: 1
    assert len(pages) > 1  # alerts of accounts that no one page holds
    shown = page.locator("article.account").evaluate_all(
        "cards => cards.map(c => c.dataset.accountId)"
    )
    assert shown == [e["id"] for e in entries]  # every one, once, in config order
    now = utc_now()
    for entry in entries:
        card = page.locator(f'article.account[data-account-id="{entry["id"]}"]')
        limits = card.locator("[data-quota-id] .limit").all_inner_texts()
        expected = fleet.expected_quotas(emulators, entry, now)
        assert sorted(limits) == sorted(f"{limit:,}" for limit, _ in expected), entry["id"]
    overviews = operations.sent.count("Overview")
    assert operations.sent[:3] == ["Overview", "AccountIds", "Overview"]
    assert overviews >= 4  # refused whole, then at least three pages
    assert page.locator("#banners [role=alert]").count() == 0  # no refusal is left showing
    screenshot("paged")
