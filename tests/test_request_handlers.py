"""The ``/graphql`` GET and POST handlers ask Litestar for the request alone: it resolves no
dependency for them (Strawberry's handlers ask for three, which Litestar resolves in a task
group per request), and the context they make themselves is the one resolvers see."""

from __future__ import annotations

import json

from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from websockets.sync.client import connect

from gateway.app import create_app
from tests.conftest import account_entry, settings_for
from tests.test_scopes import answer, served


def graphql_handlers() -> dict[str, HTTPRouteHandler]:
    app = create_app(settings_for())
    route = next(r for r in app.routes if r.path == "/graphql" and isinstance(r, HTTPRoute))
    return {
        method: handler
        for handler in route.route_handlers
        for method in handler.http_methods
        if method in ("GET", "POST")
    }


def test_graphql_handlers_resolve_no_dependency() -> None:
    handlers = graphql_handlers()
    assert set(handlers) == {"GET", "POST"}
    for method, handler in handlers.items():
        model = handler.create_kwargs_model({})
        assert list(model.dependency_batches) == [], method  # nothing Litestar resolves per request
        assert list(handler.parsed_fn_signature.parameters) == ["request"], method


async def test_get_and_post_answer_with_the_request_context(emulators, make_gateway) -> None:
    """The context made in the handler carries the request's scope (its accounts) and the
    response Strawberry merges its own into: GET and POST both answer."""
    gateway = make_gateway(settings_for(account_entry("reputeapi", emulators["reputeapi"].url)))
    posted = await gateway.data("{ accounts { id } }")
    got = await gateway.client.get(
        "/graphql",
        params={"query": "{ accounts { id } }"},
        headers={"Accept": "application/json"},
    )
    assert got.status_code == 200, got.text
    assert got.json() == {"data": posted}
    assert len(posted["accounts"]) == 1


def test_a_query_over_a_websocket_gets_the_gateway_context(emulators) -> None:
    """graphql-transport-ws runs queries too: their context is the gateway's (the request's
    scope of accounts), as over HTTP, so the answer is the same."""
    config = settings_for(account_entry("reputeapi", emulators["reputeapi"].url))
    with served(config) as base:
        over_http = answer(base, None, "{ accounts { id } }")
        url = base.replace("http://", "ws://") + "/graphql"
        with connect(url, subprotocols=["graphql-transport-ws"], proxy=None, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}
            ws.send(
                json.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": "{ accounts { id } }"}}
                )
            )
            message = json.loads(ws.recv(timeout=30))
    assert message == {"id": "1", "type": "next", "payload": over_http}
