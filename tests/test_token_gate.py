"""The gate over real HTTP (uvicorn on loopback): what every route answers without a valid
token, with one, and what stays open (``/healthz``, which then says only "ok", and ``/static/``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gateway.app import create_app
from gateway.assets import asset_url
from gateway.dashboard import dashboard_page
from gateway.graphiql import CONTENT_SECURITY_POLICY, graphiql_page
from gateway.servers import ServerThread
from gateway.settings import parse_settings
from tests.conftest import account_entry
from tests.test_scopes import served

TOKEN = "gate-token-k3V9xT2pLm8ZrW5yN1bC7dF4hJ6sA0q"
NEEDS = "This gateway needs a token: send it as Authorization: Bearer <token>"
WRONG = "The token is not one of this gateway's: send a valid one as Authorization: Bearer <token>"
CHALLENGE = 'Bearer realm="usage-gateway"'
INVALID = 'Bearer realm="usage-gateway", error="invalid_token"'


@pytest.fixture
def gateway(emulators, tmp_path) -> Iterator[str]:
    config = parse_settings(
        {
            "gateway": {"history_path": str(tmp_path / "h.sqlite")},
            "accounts": [account_entry("reputeapi", emulators["reputeapi"].url)],
            "tokens": [{"name": "ops", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}],
        },
        env={},
    )
    with served(config) as base:
        yield base


def refusal(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}


def assert_json_401(response: httpx.Response, message: str, challenge: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == refusal(message)


QUERY = {"query": "{ accounts { id } }"}
JSON_ROUTES = [
    ("POST", "/graphql", {"json": QUERY}),
    ("GET", "/graphql", {"params": QUERY}),
    ("GET", "/graphql", {}),  # a script's GET (Accept: */*), not a browser's
    ("GET", "/graphql", {"params": QUERY, "headers": {"Accept": "text/html"}}),
    (
        "GET",
        "/export/usage",
        {"params": {"account": "repute-premium", "from": "2026-03-01", "to": "2026-03-18"}},
    ),
    ("GET", "/export/usage", {}),
    ("GET", "/", {"headers": {"Accept": "application/json"}}),
]


@pytest.mark.parametrize(("method", "path", "options"), JSON_ROUTES)
def test_every_route_answers_401_as_graphql_json_without_a_token(
    gateway, method: str, path: str, options: dict[str, Any]
) -> None:
    headers = options.pop("headers", {})
    missing = httpx.request(method, f"{gateway}{path}", headers=headers, timeout=30, **options)
    assert_json_401(missing, NEEDS, CHALLENGE)
    wrong = httpx.request(
        method,
        f"{gateway}{path}",
        headers={**headers, "Authorization": f"Bearer {TOKEN[:-1]}"},
        timeout=30,
        **options,
    )
    assert_json_401(wrong, WRONG, INVALID)


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN} extra",
        "Bearer " + "a" * 10_000,
    ],
)
def test_a_malformed_authorization_is_a_wrong_token(gateway, authorization: str) -> None:
    response = httpx.post(
        f"{gateway}/graphql", json=QUERY, headers={"Authorization": authorization}, timeout=30
    )
    assert_json_401(response, WRONG, INVALID)


def test_two_authorization_headers_are_refused(gateway) -> None:
    response = httpx.post(
        f"{gateway}/graphql",
        json=QUERY,
        headers=[("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")],
        timeout=30,
    )
    assert_json_401(response, WRONG, INVALID)


def test_the_token_opens_every_route(gateway) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    posted = httpx.post(f"{gateway}/graphql", json=QUERY, headers=auth, timeout=30)
    got = httpx.get(f"{gateway}/graphql", params=QUERY, headers=auth, timeout=30)
    assert posted.json() == got.json() == {"data": {"accounts": [{"id": "repute-premium"}]}}
    exported = httpx.get(
        f"{gateway}/export/usage",
        params={"account": "repute-premium", "from": "2026-03-01", "to": "2026-03-18"},
        headers=auth,
        timeout=30,
    )
    assert exported.status_code == 200 and exported.text.startswith("start,")
    page = httpx.get(f"{gateway}/", headers=auth, timeout=30)
    assert page.status_code == 200 and page.text == dashboard_page(True).html


@pytest.mark.parametrize(
    ("path", "params", "page"),
    [
        ("/", {}, lambda: dashboard_page(True).html),
        ("/", {"period": "30"}, lambda: dashboard_page(True).html),
        ("/graphql", {}, lambda: graphiql_page(True)),
    ],
)
def test_a_browser_without_a_token_gets_the_page_that_asks_for_one(
    gateway, path: str, params: dict[str, str], page
) -> None:
    """Status 401, and the page: the same bytes for everyone, no data in it, the body marked
    ``data-auth="token"`` so its script asks for a token before it reads anything."""
    response = httpx.get(
        f"{gateway}{path}",
        params=params,
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == page()
    assert 'data-auth="token"' in response.text and "repute-premium" not in response.text
    policy = response.headers["content-security-policy"]
    assert policy == (
        CONTENT_SECURITY_POLICY
        if path == "/graphql"
        else dashboard_page(True).content_security_policy
    )


def test_pages_of_a_gateway_without_tokens_do_not_ask_for_one(emulators, tmp_path) -> None:
    config = parse_settings(
        {
            "gateway": {"history_path": str(tmp_path / "h.sqlite")},
            "accounts": [account_entry("reputeapi", emulators["reputeapi"].url)],
        },
        env={},
    )
    with served(config) as base:
        dashboard = httpx.get(f"{base}/", timeout=30)
        graphiql = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"}, timeout=30)
        health = httpx.get(f"{base}/healthz", timeout=30).json()
    assert dashboard.status_code == graphiql.status_code == 200
    assert 'data-auth="none"' in dashboard.text and 'data-auth="none"' in graphiql.text
    assert health["status"] == "ok" and health["accounts"] == 1  # no tokens: it may say more


def test_healthz_and_static_files_stay_open_and_say_nothing_more(gateway) -> None:
    health = httpx.get(f"{gateway}/healthz", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    script = httpx.get(f"{gateway}{asset_url('dashboard/api.js')}", timeout=30)
    assert script.status_code == 200 and "Authorization" in script.text


def test_a_body_is_not_read_without_a_token(gateway) -> None:
    """A client without a token cannot make the gateway read (or refuse as too large) a body:
    the gate answers first."""
    response = httpx.post(
        f"{gateway}/graphql",
        content=b"x" * 200_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_json_401(response, NEEDS, CHALLENGE)


def test_a_websocket_needs_the_token_too(gateway) -> None:
    url = gateway.replace("http://", "ws://") + "/graphql"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=["graphql-transport-ws"], proxy=None, open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(
        url,
        subprotocols=["graphql-transport-ws"],
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
        proxy=None,
        open_timeout=10,
    ) as socket:
        socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "connection_ack"}


def test_refusals_are_logged_without_the_token(emulators, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    config = parse_settings(
        {
            "gateway": {"history_path": str(tmp_path / "h.sqlite")},
            "accounts": [account_entry("reputeapi", emulators["reputeapi"].url)],
            "tokens": [{"name": "ops", "token": TOKEN}],
        },
        env={},
    )
    with ServerThread(create_app(config)) as server:
        base = server.urls[0]
        httpx.post(f"{base}/graphql", json=QUERY, timeout=30)
        httpx.post(
            f"{base}/graphql", json=QUERY, headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=30
        )
        httpx.get(
            f"{base}/export/usage",
            params={"account": "nope", "from": "2026-03-01", "to": "2026-03-02"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("gateway")]
    assert "POST /graphql refused: no token (401)" in lines
    assert "POST /graphql refused: an unknown token (401)" in lines
    assert 'GET /export/usage refused (token ops): account: no account "nope"' in lines, lines
    assert not any(TOKEN in line for line in lines)


def test_an_options_request_goes_through_and_reads_nothing(gateway) -> None:
    """A browser's CORS preflight carries no token: it gets the allowed methods, no data."""
    for path in ("/graphql", "/export/usage", "/"):
        response = httpx.options(
            f"{gateway}{path}",
            headers={"Origin": "https://grafana.example", "Access-Control-Request-Method": "POST"},
            timeout=30,
        )
        assert response.status_code == 204 and response.content == b"", path
        assert "allow" in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/../graphql?query=%7Baccounts%7Bid%7D%7D",
        "/static/%2e%2e/graphql?query=%7Baccounts%7Bid%7D%7D",
        "/static/dashboard/../../export/usage?account=repute-premium&from=2026-03-01&to=2026-03-02",
        "/healthz/../graphql?query=%7Baccounts%7Bid%7D%7D",
    ],
)
def test_an_open_path_leads_nowhere_else(gateway, path: str) -> None:
    """Sent as it is (an HTTP client would resolve the dots): what the gate lets through under
    /static/ is looked up there and finds nothing, and /healthz/.. is no open path at all (the
    router finds no route for it)."""
    host, port = urlsplit(gateway).hostname, urlsplit(gateway).port
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), reply
    first = path.split("/")[1]  # static, healthz
    assert json.loads(body)["errors"][0]["message"].startswith(f"Not Found (GET /{first}/")
