"""The usage dashboard at ``GET /``: one HTML page, a client of the public GraphQL API.

Its scripts, style and queries are static files under ``gateway/static/dashboard/`` (served at
``/static/``, :mod:`gateway.assets`); everything it shows it reads with ``POST /graphql``, and
its CSV links point at ``/export/usage``. The page names every file by its versioned URL
(:func:`gateway.assets.asset_url`), and an import map sends each ES module's relative imports
(``./api.js``) to the versioned URL too, so that no browser keeps a stale module past an upgrade.

The page's Content-Security-Policy lets the browser load and call nothing but this gateway, and
run no inline script but the import map (allowed by its hash): no request leaves for a CDN, a
font service or anywhere else, whatever a file names.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler

from gateway.assets import STATIC_DIR, STATIC_PATH, asset_url

TEMPLATE = Path(__file__).resolve().parent / "templates" / "dashboard.html"
MODULES = STATIC_DIR / "dashboard"


@dataclass(frozen=True)
class Page:
    html: str
    content_security_policy: str


def _json_in_html(value: object) -> str:
    """``value`` as JSON that cannot end the ``<script>`` element it stands in."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def dashboard_page(token_required: bool = False) -> Page:
    """The page's HTML and its Content-Security-Policy (made once per process). With
    ``token_required`` the page asks for a gateway token before it reads anything."""
    modules = sorted(path.name for path in MODULES.glob("*.js"))
    imports = {
        f"{STATIC_PATH}/dashboard/{name}": asset_url(f"dashboard/{name}") for name in modules
    }
    importmap = _json_in_html({"imports": imports})
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    html = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        css=asset_url("dashboard/dashboard.css"),
        queries=asset_url("dashboard/queries.graphql"),
        chart=asset_url("vendor/chart.js/chart.umd.js"),
        main=asset_url("dashboard/dashboard.js"),
        importmap=importmap,
        auth="token" if token_required else "none",
    )
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}'",  # the files, and the inline import map
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html, policy)


DASHBOARD_OFF = "The dashboard is turned off on this gateway.\n"
"""The body of ``GET /`` when the dashboard is off (404, plain text)."""


def dashboard_route(enabled: bool = True, *, token_required: bool = False) -> HTTPRouteHandler:
    """``GET /``: the dashboard page (built here: a missing file fails at start-up; it asks for
    a gateway token first when ``token_required``), or, when not ``enabled``, a 404 saying it
    is off."""
    if not enabled:

        @get("/", sync_to_thread=False, include_in_schema=False)
        def dashboard_off() -> Response[str]:
            return Response(
                DASHBOARD_OFF,
                status_code=404,
                media_type=MediaType.TEXT,
                headers={"X-Content-Type-Options": "nosniff"},
            )

        return dashboard_off

    page = dashboard_page(token_required)

    @get("/", sync_to_thread=False, include_in_schema=False)
    def dashboard() -> Response[str]:
        return Response(
            page.html,
            media_type=MediaType.HTML,
            headers={
                "Content-Security-Policy": page.content_security_policy,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return dashboard
