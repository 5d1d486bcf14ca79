"""The GraphiQL page and the static files behind it, over HTTP (tests/browser runs them in
Chromium): every page the gateway serves loads from the gateway alone, with versioned URLs of
files served with their content type and a long cache life; Litestar's CDN-based OpenAPI
pages are gone; GraphQL over GET and POST answers as before."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.assets import STATIC_DIR, asset_url
from gateway.graphiql import CONTENT_SECURITY_POLICY, EXAMPLES, _json_in_html
from gateway.graphql.schema import schema
from tests.conftest import settings_for
from tests.test_switches import OPENAPI_PATHS

README = Path(__file__).resolve().parent.parent / "README.md"
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"


class References(HTMLParser):
    """Every URL an HTML page names in an attribute, and the JSON it carries in scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.json: list[str] = []
        self._in_json = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "action", "poster", "data", "srcset", "formaction"):
            if values.get(name):
                self.urls.append((tag, name, values[name] or ""))
        self._in_json = tag == "script" and values.get("type") == "application/json"

    def handle_data(self, data: str) -> None:
        if self._in_json:
            self.json.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_json = False


def readme_queries() -> list[str]:
    return re.findall(r"```graphql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def gateway(make_gateway):
    return make_gateway(settings_for())


def test_the_examples_are_the_readme_queries() -> None:
    assert list(EXAMPLES) == readme_queries()
    assert len(EXAMPLES) >= 2


def test_every_example_is_valid_against_the_schema() -> None:
    from graphql import parse, validate

    for query in EXAMPLES:
        assert validate(schema._schema, parse(query)) == [], query


async def test_a_browser_gets_the_offline_graphiql_page(gateway) -> None:
    response = await gateway.client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    page = References()
    page.feed(response.text)
    scripts = [url for tag, _, url in page.urls if tag == "script"]
    links = [url for tag, _, url in page.urls if tag == "link"]
    assert [urlsplit(u).path for u in scripts] == [
        "/static/vendor/react/react.production.min.js",
        "/static/vendor/react-dom/react-dom.production.min.js",
        "/static/vendor/graphiql/graphiql.min.js",
        "/static/graphiql/start.js",
    ]
    assert [urlsplit(u).path for u in links[1:]] == [
        "/static/vendor/graphiql/graphiql.min.css",
        "/static/graphiql/page.css",
    ]
    assert links[0] == "data:,"  # the icon: no request for /favicon.ico
    # The tabs it opens with: the examples, in the README's order.
    assert page.json and json.loads(page.json[0]) == [{"query": q} for q in EXAMPLES]


async def test_no_served_page_names_a_url_outside_the_gateway(gateway) -> None:
    """Every route of the app that answers a browser with HTML: each URL it names is a path
    on the gateway (or a data: URL), each file it loads is there, and names nothing elsewhere."""
    pages = 0
    for route in gateway.app.routes:
        if "{" in route.path or "GET" not in route.methods:
            continue
        response = await gateway.client.get(route.path, headers=HTML)
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        pages += 1
        assert not re.search(r"(?i)\b(https?:|wss?:)?//[a-z0-9]", response.text), route.path
        references = References()
        references.feed(response.text)
        assert references.urls, route.path
        for _tag, _name, url in references.urls:
            if url.startswith(("data:", "#")):  # nothing to load: the icon, an in-page anchor
                continue
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and url.startswith("/"), url
            loaded = await gateway.client.get(url)
            assert loaded.status_code == 200, url
            if parts.path.startswith("/static/") and "/vendor/" not in parts.path:
                # The gateway's own scripts and styles name no other host either.
                assert not re.search(r"(?i)(https?:|wss?:)//", loaded.text), url
    assert pages >= 1  # /graphql at least


async def test_asset_urls_carry_the_files_sha256(gateway) -> None:
    for name in (
        "vendor/graphiql/graphiql.min.js",
        "vendor/chart.js/chart.umd.js",
        "graphiql/start.js",
    ):
        url = asset_url(name)
        parts = urlsplit(url)
        assert parts.path == f"/static/{name}"
        digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()
        assert parse_qs(parts.query) == {"v": [digest[:16]]}


@pytest.mark.parametrize("name", ["nope.js", "../app.py", "vendor", "/etc/passwd"])
def test_an_asset_url_for_no_static_file_is_refused_at_once(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="no static file"):
        asset_url(name)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("vendor/graphiql/graphiql.min.js", JS),
        ("vendor/graphiql/graphiql.min.css", CSS),
        ("vendor/react/react.production.min.js", JS),
        ("vendor/react-dom/react-dom.production.min.js", JS),
        ("vendor/chart.js/chart.umd.js", JS),
        ("graphiql/start.js", JS),
        ("graphiql/page.css", CSS),
        ("vendor/MANIFEST.json", "application/json"),
    ],
)
async def test_static_files_are_served_whole_with_type_and_a_year_of_cache(
    gateway, path: str, content_type: str
) -> None:
    """Byte for byte (graphiql.min.js is larger than the whole-answer cache keeps: it passes
    by that cache untouched), with the content type a browser executes or applies."""
    response = await gateway.client.get(asset_url(path))
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / path).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "max-age=31536000, public, immutable"
    head = await gateway.client.head(f"/static/{path}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.js",
        "/static/vendor",
        "/static/",
        "/static/%2e%2e/app.py",
        "/static/vendor/%2e%2e/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/graphiql/%2e%2e/%2e%2e/graphiql.py",
    ],
)
async def test_no_file_outside_static_and_no_server_path_in_a_404(gateway, path: str) -> None:
    response = await gateway.client.get(path)
    assert response.status_code == 404
    message = response.json()["errors"][0]["message"]
    assert message.startswith("Not Found (GET /")
    assert str(STATIC_DIR.parent) not in response.text
    assert "def " not in response.text


async def test_static_files_take_no_post(gateway) -> None:
    response = await gateway.client.post("/static/graphiql/start.js", content=b"x")
    assert response.status_code == 405
    assert "errors" in response.json()


@pytest.mark.parametrize(
    "path",
    OPENAPI_PATHS,
)
async def test_litestars_cdn_based_openapi_pages_are_gone(gateway, path: str) -> None:
    response = await gateway.client.get(path, headers=HTML)
    assert response.status_code == 404


async def test_graphql_over_get_and_post_is_unchanged(gateway) -> None:
    """A query in the URL is run even when the client takes HTML; JSON clients never get the
    page."""
    query = '{ __type(name: "QuotaWindow") { name } }'
    expected = {"data": {"__type": {"name": "QuotaWindow"}}}
    by_get = await gateway.client.get("/graphql", params={"query": query}, headers=HTML)
    assert by_get.status_code == 200 and by_get.json() == expected
    by_post = await gateway.client.post("/graphql", json={"query": query})
    assert by_post.status_code == 200 and by_post.json() == expected
    json_client = await gateway.client.get("/graphql", headers={"Accept": "application/json"})
    assert json_client.headers["content-type"].startswith("application/json")
    assert json_client.status_code == 400


def test_json_in_the_page_cannot_close_its_script_element() -> None:
    text = _json_in_html({"query": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"query": "</script><script>alert(1)</script> & <!--"}
