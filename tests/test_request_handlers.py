"""The ``/graphql`` GET and POST handlers ask Litestar for the request alone: it resolves no
dependency for them (Strawberry's handlers ask for three, which Litestar resolves in a task
group per request), and the context they make themselves is the one resolvers see."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from gateway.app import create_app
from tests.conftest import account_entry, settings_for


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
