"""The README's screenshots, taken from the demo in the real browser.

``make screenshots`` runs this module with ``SCREENSHOTS_OUT=docs`` and so refreshes
``docs/dashboard.png`` and ``docs/graphiql.png``; in ``make test`` it writes them to a
temporary directory and checks they were taken.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.test_dashboard import open_dashboard
from tests.browser.test_graphiql import RESULT, open_graphiql, result_json

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHOTS = ("dashboard.png", "graphiql.png")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_readme_screenshots_are_taken_from_the_demo(page, demo_gateway, tmp_path) -> None:
    out = Path(os.environ.get("SCREENSHOTS_OUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1500})
    open_dashboard(page, demo_gateway)
    page.screenshot(path=str(out / "dashboard.png"))

    page.set_viewport_size({"width": 1280, "height": 800})
    open_graphiql(page, demo_gateway)
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    assert "errors" not in result_json(page)
    expect(page.locator(f"{RESULT} .CodeMirror-code")).to_contain_text('"accounts"')
    page.screenshot(path=str(out / "graphiql.png"))

    assert png_size(out / "dashboard.png") == (1280, 1500)
    assert png_size(out / "graphiql.png") == (1280, 800)


def test_the_readme_shows_the_committed_screenshots() -> None:
    text = README.read_text(encoding="utf-8")
    for name in SHOTS:
        assert f"](docs/{name})" in text, name
        assert png_size(ROOT / "docs" / name)[0] == 1280
