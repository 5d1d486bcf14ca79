"""``GET /export/usage``: one account's usage as a CSV or JSON download.

``?account=ID&from=YYYY-MM-DD&to=YYYY-MM-DD&granularity=DAY|WEEK|MONTH&format=csv|json``
(``granularity`` DAY and ``format`` csv by default). Every parameter is checked before any work
(:mod:`gateway.export_request`): a wrong one is a 400, an account the caller cannot see a 404,
both as ``{"errors": [{"message": ..., "extensions": {"code": ..., "parameter": ...}}]}`` and
logged at INFO on one line. The rows are :mod:`gateway.export`'s, the same as the CLI writes.
How fresh they are travels with them: in the JSON's ``source``, and for CSV in the
``X-Usage-Gateway-Source`` header (``FRESH``, ``STALE``, ``UNAVAILABLE`` ...).

Which accounts a caller may export comes from one place, the request's
:class:`~gateway.service.RequestScope` (the ``scope_of`` function the route is built with, which
the GraphQL context uses too): an account outside it is answered exactly as one that does not
exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from gateway.errors import InputError
from gateway.export import ExportFormat, render
from gateway.export_request import PARAMETERS, ExportRefused, parse_export, shown
from gateway.graphql.cost import HEAVY_COST
from gateway.service import GatewayService, RequestScope

log = logging.getLogger(__name__)
PATH = "/export/usage"
SOURCE_HEADER = "X-Usage-Gateway-Source"
MAX_PARAMETERS = 20
"""Query parameters read at most (five are known; more is a mistake, refused unread)."""
MEDIA_TYPES = {ExportFormat.CSV: "text/csv", ExportFormat.JSON: "application/json"}
"""Litestar adds ``; charset=utf-8`` to ``text/`` types (and sends the body as UTF-8)."""

ScopeOf = Callable[[Mapping[str, object]], RequestScope]
"""The service scope of a request, from its ASGI scope: which accounts it may read (the same
function the GraphQL context is made with)."""


def _error(exc: ExportRefused) -> Response[Any]:
    code = "NOT_FOUND" if exc.status == 404 else "BAD_USER_INPUT"
    return Response(
        {
            "errors": [
                {
                    "message": f"Parameter '{exc.parameter}': {exc.reason}",
                    "extensions": {"code": code, "parameter": exc.parameter},
                }
            ]
        },
        status_code=exc.status,
    )


def _parameters(query: bytes) -> dict[str, str]:
    """The query string's parameters; :class:`ExportRefused` for an unknown, repeated or
    undecodable one, or too many."""
    try:
        pairs = parse_qsl(
            query.decode("latin-1"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except UnicodeDecodeError:
        raise ExportRefused("query", "the query string is not UTF-8 once percent-decoded") from None
    except ValueError:
        raise ExportRefused(
            "query",
            f"more than {MAX_PARAMETERS} parameters; the parameters are {', '.join(PARAMETERS)}",
        ) from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in PARAMETERS:
            raise ExportRefused(
                shown(name).strip('"'),
                f"unknown parameter; the parameters are {', '.join(PARAMETERS)}",
            )
        if name in values:
            raise ExportRefused(name, "given more than once")
        values[name] = value
    return values


def export_route(service: GatewayService, scope_of: ScopeOf) -> HTTPRouteHandler:
    """The route handler of ``GET /export/usage`` over ``service``'s accounts: those that
    ``scope_of`` each request lets it read."""

    @get(PATH)
    async def export_usage(request: Request[Any, Any, Any]) -> Response[Any]:
        """An account's usage as CSV or JSON, with missing days as rows of their own."""
        scope = scope_of(request.scope)
        who = f" (token {scope.caller})" if scope.caller else ""
        try:
            values = _parameters(request.scope.get("query_string", b""))
            wanted = parse_export(
                values, scope.account_ids(), service.clock().date(), service.max_query_cost
            )
        except ExportRefused as exc:
            log.info("%s %s refused%s: %s", request.method, PATH, who, exc)
            return _error(exc)
        # Heavy exports take turns with heavy GraphQL operations (HeavyQueriesInTurn).
        turn = service.heavy_turn if wanted.cost > HEAVY_COST else contextlib.nullcontext()
        try:
            async with turn:
                usage = await scope.usage(
                    wanted.account_id, wanted.start, wanted.end, wanted.granularity
                )
        except InputError as exc:  # a range the vendor cannot answer, said before any call
            refused = ExportRefused(exc.argument or "from", str(exc))
            log.info("%s %s refused%s: %s", request.method, PATH, who, refused)
            return _error(refused)
        text = await asyncio.to_thread(render, wanted.account_id, usage, wanted.form)
        headers = {SOURCE_HEADER: usage.source.state.name}
        if wanted.form is ExportFormat.CSV:
            headers["Content-Disposition"] = f'attachment; filename="{wanted.filename}"'
        return Response(text.encode(), media_type=MEDIA_TYPES[wanted.form], headers=headers)

    return export_usage
