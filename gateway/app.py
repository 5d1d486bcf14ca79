"""Wiring: the only place that knows concrete classes. ``create_app(settings)`` -> Litestar."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from litestar import Litestar, get
from strawberry.litestar import make_graphql_controller

from gateway import __version__
from gateway.cache import Cache
from gateway.domain import utc_now
from gateway.graphql.schema import schema
from gateway.graphql.types import GatewayContext
from gateway.response_cache import ResponseCache
from gateway.service import ConfiguredAccount, GatewayService
from gateway.settings import Settings
from gateway.upstream import Upstream
from providers import provider_class

USER_AGENT = f"usage-gateway/{__version__}"


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in log records with ``********``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        if any(s in text or s in exc_text for s in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "********")
                exc_text = exc_text.replace(secret, "********")
            record.msg, record.args = text, ()
            record.exc_text = exc_text or None
        return True


def install_redaction(secrets: Iterable[str]) -> RedactSecrets:
    """Attach a redacting filter to every handler of the root logger."""
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor


def build_service(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> GatewayService:
    """The service for ``settings``: one provider client per account, the configured cache."""
    accounts = [
        ConfiguredAccount(
            config,
            provider_class(config.provider)(
                config, http, deadline=settings.upstream_timeout, clock=clock
            ),
            settings.times_for(config.provider),
        )
        for config in settings.accounts
    ]
    upstream = Upstream(Cache(settings.cache_url), clock)
    return GatewayService(accounts, clock=clock, upstream=upstream)


def create_app(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], datetime] = utc_now,
    debug: bool = False,
) -> Litestar:
    """The gateway as an ASGI app.

    ``http_client`` is the client every vendor call goes through (tests and the demo inject one);
    without it the app opens its own at startup and closes it at shutdown.
    """
    own_client = http_client is None
    http = http_client or httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT}, timeout=httpx.Timeout(10.0), follow_redirects=False
    )
    service = build_service(settings, http, clock=clock)

    async def context_getter() -> GatewayContext:
        return GatewayContext(scope=service.request())

    graphql = make_graphql_controller(
        schema,
        path="/graphql",
        context_getter=context_getter,
        graphql_ide="graphiql",
    )

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, object]:
        """Liveness: the process answers and knows its accounts."""
        return {"status": "ok", "accounts": len(settings.accounts), "version": __version__}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await service.upstream.close()
            if own_client:
                await http.aclose()

    def response_cache(app: Any) -> Any:  # Litestar's middleware protocol: app -> app
        return ResponseCache(app, ttl=settings.cache_times.response, clock=clock)

    app = Litestar(
        route_handlers=[graphql, healthz],
        lifespan=[lifespan],
        middleware=[response_cache],
        debug=debug,
        logging_config=None,
    )
    app.state.service = service
    return app
