"""A bare Litestar JSON endpoint: the yardstick for the gateway's warm throughput."""

from __future__ import annotations

from litestar import Litestar, post

PAYLOAD = {
    "data": {
        "accounts": [
            {"id": f"account-{i}", "source": {"state": "FRESH"}, "quotas": [{"used": i * 1000}]}
            for i in range(5)
        ]
    }
}


@post("/graphql", status_code=200, sync_to_thread=False)
def graphql() -> dict[str, object]:
    """The same route and method as the gateway, answering a fixed JSON document."""
    return PAYLOAD


app = Litestar(route_handlers=[graphql], logging_config=None)
