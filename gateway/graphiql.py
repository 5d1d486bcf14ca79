"""The GraphiQL page ``GET /graphql`` shows a browser: offline, with the README's examples.

Everything the page loads comes from ``/static/`` (:mod:`gateway.assets`): React, ReactDOM and
GraphiQL's bundle from ``vendor/``, and ``graphiql/start.js``, which starts GraphiQL with a tab
per example query (:data:`EXAMPLES`, the README's own, in its order) and sends queries to the
page's own URL. GraphiQL keeps a user's tabs in the browser's storage, so the examples are what
a first visit opens with.

The page's Content-Security-Policy (:data:`CONTENT_SECURITY_POLICY`) lets it load scripts,
styles and fonts from the gateway only and connect nowhere else: a browser refuses anything
more, whatever a script asks.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from string import Template

from gateway.assets import asset_url

TEMPLATE = Path(__file__).resolve().parent / "templates" / "graphiql.html"


EXAMPLES = (
    """\
query FirstQuery {
  accounts {
    id
    scope
    plan
    source { state fetchedAt message }
    quotas { name window limit used remaining utilization resetsAt }
    usage(from: "2026-11-01", to: "2026-11-21", granularity: WEEK) {
      requests
      series { start requests }
      endpoints { endpoint requests consumesQuota }
      missingDays
    }
  }
}
""",
    """\
query HistoryAndAlerts {
  snapshots(accountId: "vt-soc", limit: 5) { startedAt outcome days changed error }
  alerts(threshold: 0.8) { kind message quota { accountId name utilization }
                           forecast { runsOutEarliest runsOutLatest } }
  account(id: "vt-soc") {
    quotas {
      name used limit
      history(from: "2026-11-01T00:00:00Z", to: "2026-11-22T00:00:00Z") { at used }
      forecast { usedAtResetLow usedAtResetHigh runsOutEarliest runsOutLatest samples }
    }
  }
}
""",
    """\
query Alerts {
  alertEvents(event: FIRING, limit: 20) {
    at rule threshold message accountId quotaName runsOutEarliest runsOutLatest
    deliveries { webhook state attempts lastError }
  }
  account(id: "vt-soc") {
    alertStates { rule state since }
    quotas { name utilization alertStates { rule threshold state since windowStart } }
  }
}
""",
    """\
query Headroom {
  headroom(requests: 20000, accountId: "rl-acme") {
    accountId requests fits earliestFit available
    binding { name window available fitsAt }
    constraints { kind name window limit used available resetsAt fits fitsAt }
  }
}
""",
)
"""The README's example queries (its ```graphql blocks; a test keeps the two the same), each
opened as a tab titled with its operation's name."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # GraphiQL and CodeMirror set style attributes on their elements
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",  # GraphiQL's fonts are data: URLs inside its stylesheet
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""What the page may load and where it may connect: the gateway only."""


def _json_in_html(value: object) -> str:
    """``value`` as JSON that cannot end the ``<script>`` element it stands in."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def graphiql_page(token_required: bool = False) -> str:
    """The page's HTML (made once per process: the files it names do not change). With
    ``token_required`` the page asks for a gateway token before it starts GraphiQL."""
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        graphiql_css=asset_url("vendor/graphiql/graphiql.min.css"),
        page_css=asset_url("graphiql/page.css"),
        react=asset_url("vendor/react/react.production.min.js"),
        react_dom=asset_url("vendor/react-dom/react-dom.production.min.js"),
        graphiql_js=asset_url("vendor/graphiql/graphiql.min.js"),
        start_js=asset_url("graphiql/start.js"),
        examples=_json_in_html([{"query": query} for query in EXAMPLES]),
        auth="token" if token_required else "none",
    )
