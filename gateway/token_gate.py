"""The gate in front of every route: a request without a valid gateway token goes no further.

An ASGI middleware over :class:`~gateway.access.Access`. Each HTTP request (and WebSocket) gets
its :class:`~gateway.access.Grant` attached to the ASGI scope (:func:`grant_of` reads it back),
from which the request's :class:`~gateway.service.RequestScope` is made. With tokens configured,
a request to any route but ``/healthz`` and the static files (``/static/...``) without a valid
``Authorization: Bearer <token>`` is answered here, before anything reads its body:

* 401 with ``WWW-Authenticate: Bearer realm="usage-gateway"`` (and ``error="invalid_token"``
  when a token was sent but is not one of the gateway's);
* the body a GraphQL client expects: ``{"errors": [{"message": ..., "extensions": {"code":
  "UNAUTHENTICATED"}}]}`` (for ``/graphql`` and every other route);
* except for a browser opening a page (``/``, or GraphiQL at ``GET /graphql``): the page itself,
  still with status 401. The page holds no data (it is the same for every visitor, like a
  static file); it asks for a token, keeps it in the tab's session storage and sends it with
  every request it makes.

``OPTIONS`` requests go through with a grant that reads nothing: a browser's CORS preflight
never carries a token, and Litestar answers it with the allowed methods alone. A WebSocket
without a valid token is closed before it is accepted (the server answers 403).
Refusals are logged at INFO on one line, without the token; nothing here logs a token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from gateway.access import NOBODY, Access, Grant

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
GRANT_KEY = "usage_gateway.grant"
"""Where the request's grant is kept in the ASGI scope."""
OPEN_PATHS = frozenset({"/healthz"})
OPEN_PREFIXES = ("/static/",)
REALM = 'Bearer realm="usage-gateway"'
UNAUTHENTICATED = "UNAUTHENTICATED"


PageFor = Callable[[Scope], tuple[str, str] | None]
"""The page (its HTML and Content-Security-Policy) to show a browser that asked for ``scope``
without a token, when it asked for a page."""


def grant_of(scope: Mapping[str, object]) -> Grant:
    """The request's grant; :data:`~gateway.access.NOBODY` (reads nothing) when none was
    attached, so a route reached past the gate by mistake reads nothing."""
    grant = scope.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else NOBODY


def is_open(path: str) -> bool:
    """Whether ``path`` is answered without a token: the liveness check and static files."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key.lower() == name]


def refusal(message: str) -> bytes:
    """The JSON body of a 401."""
    error = {"message": message, "extensions": {"code": UNAUTHENTICATED}}
    return json.dumps({"errors": [error]}).encode()


class TokenGate:
    """Attach each request's grant; answer 401 for a request that needs a token and has none
    that is valid."""

    def __init__(self, app: ASGIApp, access: Access, *, page_for: PageFor) -> None:
        self.app = app
        self.access = access
        self.page_for = page_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        authorization = _header(scope, b"authorization")
        # Two Authorization headers are one too many: neither is taken.
        grant = self.access.authenticate(authorization[0] if len(authorization) == 1 else None)
        # A CORS preflight (OPTIONS) never carries a token; what answers it reads no data.
        if grant is not None or is_open(path) or scope.get("method") == "OPTIONS":
            scope[GRANT_KEY] = grant or NOBODY
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "WEBSOCKET")
        cause = "an unknown token" if authorization else "no token"
        log.info("%s %s refused: %s (401)", method, path, cause)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = REALM + (', error="invalid_token"' if authorization else "")
        headers = [
            (b"www-authenticate", challenge.encode()),
            (b"cache-control", b"no-store"),
        ]
        page = self.page_for(scope)
        if page is not None:
            html, policy = page
            body = html.encode()
            headers += [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-security-policy", policy.encode()),
                (b"x-content-type-options", b"nosniff"),
            ]
        else:
            body = refusal(
                "This gateway needs a token: send it as Authorization: Bearer <token>"
                if not authorization
                else "The token is not one of this gateway's: send a valid one as "
                "Authorization: Bearer <token>"
            )
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
