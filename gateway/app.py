"""Wiring: the only place that knows concrete classes. ``create_app(settings)`` -> Litestar."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from gateway import __version__
from gateway.alerts.engine import Alerting, AlertRun
from gateway.assets import static_files
from gateway.cache import Cache
from gateway.dashboard import dashboard_route
from gateway.domain import Usage, secret_forms, utc_now
from gateway.export_request import ExportRequest
from gateway.export_routes import export_route
from gateway.graphql.requests import graphql_controller
from gateway.graphql.schema import schema
from gateway.graphql.types import GatewayContext
from gateway.history import HistoryStore, HistoryUnavailable
from gateway.response_cache import ResponseCache
from gateway.service import ConfiguredAccount, GatewayService
from gateway.settings import Settings
from gateway.snapshot import AccountOutcome, run_snapshot
from gateway.upstream import Upstream
from providers import provider_class

USER_AGENT = f"usage-gateway/{__version__}"
SWITCH_INTERVAL = 0.001
"""Seconds a thread runs before another may take the interpreter, while the gateway serves."""
log = logging.getLogger(__name__)


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in log records with ``********``.

    Each secret is also matched URL-encoded and base64-encoded (:func:`secret_forms`); a
    credential made of two secrets, such as HTTP Basic's ``user:password``, comes in as one more
    secret (``Settings.secret_values``) so that its base64 form is matched too. The message (with
    its arguments), an exception's traceback and a stack trace are redacted.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {form for s in secrets if len(s) >= 4 for form in secret_forms(s)}
        self.secrets = sorted(forms, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        stack = record.stack_info or ""
        if any(s in text or s in exc_text or s in stack for s in self.secrets):
            record.msg, record.args = self._redact(text), ()
            record.exc_text = self._redact(exc_text) or None
            record.stack_info = self._redact(stack) or None
        return True


def install_redaction(secrets: Iterable[str]) -> RedactSecrets:
    """Attach a redacting filter to every handler of the root logger."""
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An exception nothing else handled: logged with its traceback, answered without it."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response(
        {"errors": [{"message": "Internal error; see the gateway log."}]},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def refused(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (405, 413, 404) in the shape of a GraphQL error."""
    return Response(
        {"errors": [{"message": f"{exc.detail} ({request.method} {request.url.path})"}]},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def vendor_client(settings: Settings) -> httpx.AsyncClient:
    """The gateway's own client for vendor calls. Providers pass their deadline
    (``upstream_timeout``) as each request's timeout; this default only matches it."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(settings.upstream_timeout),
        follow_redirects=False,
    )


def webhook_client() -> httpx.AsyncClient:
    """The client alert webhooks are called with (each call bounds its own time)."""
    return httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, follow_redirects=False)


def build_alerting(
    settings: Settings, service: GatewayService, http: httpx.AsyncClient
) -> Alerting | None:
    """The alert rules of ``settings``, evaluated after each snapshot run; None without
    ``[alerts]``."""
    if settings.alerts is None or service.history is None:
        return None
    return Alerting(settings.alerts, settings.accounts, service.history, http, clock=service.clock)


def build_service(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
) -> GatewayService:
    """The service for ``settings``: one provider client per account, the configured cache.

    ``clock`` is the time of day; ``monotonic`` the clock the providers pace their calls by.
    """
    accounts = [
        ConfiguredAccount(
            config,
            provider_class(config.provider)(
                config,
                http,
                deadline=settings.upstream_timeout,
                clock=clock,
                monotonic=monotonic,
                max_answer=settings.max_vendor_answer,
            ),
            settings.times_for(config.provider),
        )
        for config in settings.accounts
    ]
    store = settings.cache_store
    cache = Cache(
        settings.cache_url,
        max_entries=store.max_entries,
        max_bytes=store.max_bytes,
        redis_timeout=store.redis_timeout,
        redis_cooldown=store.redis_cooldown,
    )
    upstream = Upstream(cache, clock)
    history = HistoryStore(settings.history_path)
    return GatewayService(
        accounts,
        clock=clock,
        upstream=upstream,
        history=history,
        max_query_cost=settings.max_query_cost,
        alerts=settings.alerts,
    )


async def snapshot_once(settings: Settings) -> tuple[list[AccountOutcome], AlertRun | None]:
    """One snapshot of every account (``usage-gateway snapshot``), then the alert rules."""
    async with vendor_client(settings) as http, webhook_client() as hooks:
        service = build_service(settings, http)
        try:
            assert service.history is not None
            outcomes = await run_snapshot(service, service.history)
            alerting = build_alerting(settings, service, hooks)
            alerts = None if alerting is None else await alerting.after_snapshot(outcomes)
            return outcomes, alerts
        finally:
            await service.upstream.close()
            if service.history is not None:
                await service.history.close()


async def export_once(settings: Settings, wanted: ExportRequest) -> Usage:
    """One export's usage (``usage-gateway export``), read as ``serve`` reads it. The history
    store is read first: :class:`HistoryUnavailable`, before any vendor call, when it cannot be
    used."""
    async with vendor_client(settings) as http:
        service = build_service(settings, http)
        try:
            assert service.history is not None
            await service.history.days(wanted.account_id, wanted.start, wanted.end)
            return await service.request().usage(
                wanted.account_id, wanted.start, wanted.end, wanted.granularity
            )
        finally:
            await service.upstream.close()
            if service.history is not None:
                await service.history.close()


def create_app(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], datetime] = utc_now,
    debug: bool = False,
    snapshot_every: float | None = None,
) -> Litestar:
    """The gateway as an ASGI app.

    ``http_client`` is the client every vendor call goes through (tests and the demo inject one);
    without it the app opens its own at startup and closes it at shutdown.
    """
    own_client = http_client is None
    http = http_client or vendor_client(settings)
    service = build_service(settings, http, clock=clock)

    async def context_getter() -> GatewayContext:
        return GatewayContext(scope=service.request())

    graphql = graphql_controller(schema, path="/graphql", context_getter=context_getter)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, object]:
        """Liveness: the process answers and knows its accounts."""
        return {"status": "ok", "accounts": len(settings.accounts), "version": __version__}

    hooks = webhook_client() if snapshot_every and settings.alerts else None
    alerting = build_alerting(settings, service, hooks) if hooks is not None else None

    async def snapshots(every: float) -> None:
        """One run at a time: the next starts ``every`` seconds after the last one started
        (the alert rules are evaluated after each)."""
        assert service.history is not None
        while True:
            started = asyncio.get_running_loop().time()
            try:
                outcomes = await run_snapshot(service, service.history)
                if alerting is not None:
                    await alerting.after_snapshot(outcomes)
            except HistoryUnavailable as exc:
                log.error("snapshot run failed: %s", exc)  # one line: the file and the cause
            except Exception:
                log.exception("snapshot run failed")
            await asyncio.sleep(max(0.0, every - (asyncio.get_running_loop().time() - started)))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        scheduler = asyncio.create_task(snapshots(snapshot_every)) if snapshot_every else None
        # What start-up built lives as long as the process: a full garbage collection need not
        # scan it again (each scan of it held up the event loop for tens of milliseconds).
        gc.freeze()
        # Large usage is converted and history is read in worker threads; a thread holds the
        # interpreter for up to this long before the event loop gets it back (5 ms by default,
        # and a turn of the loop may wait for it several times).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            yield
        finally:
            sys.setswitchinterval(switch)
            gc.unfreeze()
            if scheduler is not None:
                scheduler.cancel()
                await asyncio.gather(scheduler, return_exceptions=True)
            await service.upstream.close()
            if service.history is not None:
                await service.history.close()
            if own_client:
                await http.aclose()
            if hooks is not None:
                await hooks.aclose()

    def response_cache(app: Any) -> Any:  # Litestar's middleware protocol: app -> app
        return ResponseCache(
            app,
            ttl=settings.cache_times.response,
            clock=clock,
            max_body=settings.max_request_body,
        )

    app = Litestar(
        route_handlers=[graphql, healthz, static_files(), dashboard_route(), export_route(service)],
        lifespan=[lifespan],
        middleware=[response_cache],
        # ResponseCache answers an oversized POST /graphql itself (413, GraphQL-shaped); this is
        # Litestar's own limit for any handler that reads a body, kept the same.
        request_max_body_size=settings.max_request_body,
        exception_handlers={HTTPException: refused, HTTP_500_INTERNAL_SERVER_ERROR: internal_error},
        debug=debug,
        logging_config=None,
        # Litestar's OpenAPI pages (/schema/...) load their scripts from CDNs; the graph
        # describes itself (introspection, schema.graphql).
        openapi_config=None,
    )
    app.state.service = service
    return app
