"""The dashboard in a real Chromium on a locked-down gateway: trusted documents (the manifest
``usage-gateway documents hash --dashboard`` writes), introspection and GraphiQL off. The page
sends its document exactly as the manifest holds it, and needs no introspection."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.domain import ProviderId
from gateway.servers import ServerThread
from providers import registry
from tests.browser.conftest import require_playwright
from tests.conftest import account_entry, settings_for

require_playwright()

ROOT = Path(__file__).resolve().parents[2]
READY = 90_000


@pytest.fixture(scope="module")
def repute_emulator() -> Iterator[str]:
    """A ReputeAPI emulator on the real clock (the page asks for days up to today)."""
    server = ServerThread(registry()[ProviderId("reputeapi")].emulator.factory(seed=3)).start()
    try:
        yield server.urls[0]
    finally:
        server.stop()


def test_the_dashboard_works_on_a_locked_down_gateway(page, repute_emulator, tmp_path) -> None:
    manifest = tmp_path / "trusted-documents.json"
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "documents",
            "hash",
            "--dashboard",
            "-o",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert written.returncode == 0, written.stderr
    assert len(json.loads(manifest.read_text())) == 1
    settings = settings_for(
        account_entry("reputeapi", repute_emulator, id="repute"),
        trusted_documents=str(manifest),
        introspection=False,
    )
    assert settings.switches.dashboard and not settings.switches.graphiql
    server = ServerThread(create_app(settings)).start()
    try:
        sent: list[dict[str, object]] = []
        page.on(
            "request",
            lambda request: (
                sent.append(request.post_data_json) if request.url.endswith("/graphql") else None
            ),
        )
        page.goto(f"{server.urls[0]}/")
        page.wait_for_selector("body[data-state=ready]", timeout=READY)
        assert page.locator("#banners [role=alert]").count() == 0
        row = page.locator('#summary tr[data-account-id="repute"] td').first.inner_text()
        assert row == "ReputeAPI"
        assert page.locator('article.account[data-account-id="repute"] canvas').count() == 1
        assert {body["operationName"] for body in sent} == {"Overview", "Usage"}
    finally:
        server.stop()
