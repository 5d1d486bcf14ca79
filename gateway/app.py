"""Wiring: the only place that knows concrete classes. ``create_app(settings)`` -> Litestar."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from gateway import __version__
from gateway.access import Access
from gateway.alerts.engine import Alerting, AlertRun
from gateway.assets import static_files
from gateway.cache import Cache, fingerprint
from gateway.coordination import SharedCircuits, SharedWindow, shared_store
from gateway.dashboard import dashboard_page, dashboard_route
from gateway.domain import AccountConfig, ProviderId, Usage, secret_forms, utc_now
from gateway.election import Election, group_of, store_identity
from gateway.export_request import ExportRequest
from gateway.export_routes import export_route
from gateway.graphiql import CONTENT_SECURITY_POLICY as GRAPHIQL_POLICY
from gateway.graphiql import graphiql_page
from gateway.graphql.requests import graphql_controller
from gateway.graphql.schema import build_schema, schema
from gateway.graphql.types import GatewayContext
from gateway.history import HistoryStore, HistoryUnavailable
from gateway.history_pg import PostgresHistoryStore, redact
from gateway.metrics import Metrics, SnapshotPeriods, VendorCalls, metrics_route
from gateway.response_cache import AnswerStore, ResponseCache
from gateway.runtime import serving
from gateway.scheduler import SnapshotSchedule
from gateway.service import ConfiguredAccount, GatewayService, RequestScope
from gateway.settings import Settings, Switches, parse_settings
from gateway.shared_flights import SharedFlights
from gateway.snapshot import AccountOutcome, run_snapshot
from gateway.token_gate import TokenGate, grant_of
from gateway.upstream import BREAKER_COOLDOWN, BREAKER_MAX_COOLDOWN, BREAKER_THRESHOLD, Upstream
from providers import provider_class
from providers.base import CallGate, CallObserver, VendorTransport, pool_limits

USER_AGENT = f"usage-gateway/{__version__}"
PROBE_LEASE_DEADLINES = 3
"""A shared circuit's probe may take this many vendor deadlines (``upstream_timeout``) before
another process may probe instead (its sender died, or it is that slow)."""
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


def cors_config(switches: Switches) -> CORSConfig | None:
    """CORS for the allowed origins, or ``None`` (no CORS headers at all) when there are none:
    pages there may send GET and POST with ``Content-Type`` and ``Authorization``."""
    if not switches.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(switches.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "authorization"],
    )


def vendor_hosts(settings: Settings) -> list[str]:
    """Every vendor host (``host[:port]``) the configured accounts call, in config order."""
    hosts = (
        urlsplit(config.base_url or provider_class(config.provider).default_base_url).netloc
        for config in settings.accounts
    )
    return list(dict.fromkeys(host.lower() for host in hosts))


def credential_of(config: AccountConfig) -> str:
    """What names an account's vendor credential in a store shared with other gateways: a
    fingerprint of the provider, the vendor's host and the secrets (never the secrets)."""
    cls = provider_class(config.provider)
    host = urlsplit(config.base_url or cls.default_base_url).netloc.lower()
    secrets = (f"{k}={v.reveal()}" for k, v in sorted(config.secrets.items()))
    return fingerprint(config.provider, host, *secrets)


def vendor_client(settings: Settings) -> httpx.AsyncClient:
    """The gateway's own client for vendor calls. Providers pass their deadline
    (``upstream_timeout``) as each request's timeout; this default only matches it.

    Each configured vendor host has a connection pool of its own, with room for every call the
    gate lets in to it (``max_vendor_calls_per_host``), kept alive between calls; any other
    host shares one pool of ``max_vendor_calls``. Calls wait in the gate, never in a pool, and
    each pool's bookkeeping (httpcore's, which grows with the square of its connections) stays
    that of a few connections.
    """
    per_host = pool_limits(settings.max_vendor_calls_per_host)
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(settings.upstream_timeout),
        transport=VendorTransport(pool_limits(settings.max_vendor_calls)),
        mounts={f"all://{host}": VendorTransport(per_host) for host in vendor_hosts(settings)},
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
    observe: Callable[[ProviderId], CallObserver] | None = None,
) -> GatewayService:
    """The service for ``settings``: one provider client per account, the configured cache.

    ``clock`` is the time of day; ``monotonic`` the clock the providers pace their calls by;
    ``observe`` gives, per provider, what its clients tell of each vendor call (metrics).
    Every client shares one gate: ``max_vendor_calls`` in flight at once, and
    ``max_vendor_calls_per_host`` to one host. With a Redis cache, every process using it
    shares each vendor credential's rate window and holds, and each account's circuit
    (:mod:`gateway.coordination`).
    """
    gate = CallGate(settings.max_vendor_calls, settings.max_vendor_calls_per_host)
    store = settings.cache_store
    cache = Cache(
        settings.cache_url,
        max_entries=store.max_entries,
        max_bytes=store.max_bytes,
        redis_timeout=store.redis_timeout,
        redis_cooldown=store.redis_cooldown,
    )
    shared = shared_store(cache)
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
                observe=observe(config.provider) if observe else None,
                gate=gate,
                shared=None if shared is None else SharedWindow(shared, credential_of(config)),
            ),
            settings.times_for(config.provider),
        )
        for config in settings.accounts
    ]
    circuits = None
    if shared is not None:
        circuits = SharedCircuits(
            shared,
            threshold=BREAKER_THRESHOLD,
            cooldown=BREAKER_COOLDOWN,
            max_cooldown=BREAKER_MAX_COOLDOWN,
            lease=PROBE_LEASE_DEADLINES * settings.upstream_timeout,
            clock=clock,
        )
    flights = None if cache.redis is None else SharedFlights(cache, settings.upstream_timeout)
    upstream = Upstream(cache, clock, shared=flights, circuits=circuits)
    history = history_store(settings)
    return GatewayService(
        accounts,
        clock=clock,
        upstream=upstream,
        history=history,
        max_query_cost=settings.max_query_cost,
        alerts=settings.alerts,
    )


def history_store(settings: Settings) -> HistoryStore:
    """The configured history store: PostgreSQL at ``history_url``, or the SQLite file at
    ``history_path``."""
    if settings.history_url is not None:
        return PostgresHistoryStore(settings.history_url)
    return HistoryStore(settings.history_path)


def history_at(url: str, argument: str) -> HistoryStore:
    """The history store at ``url`` (``sqlite:///path`` or ``postgresql://…``, as
    ``history_url`` takes them); :class:`ConfigError` naming ``argument`` when it is neither."""
    settings = parse_settings({"gateway": {"history_url": url}}, source=argument, env={})
    return history_store(settings)


def history_where(settings: Settings) -> str:
    """The configured history store as messages name it (a URL without its password)."""
    if settings.history_url is not None:
        return redact(settings.history_url)
    return settings.history_path


def snapshot_election(settings: Settings, every: float) -> Election | None:
    """With a shared Redis (``cache_url = "redis://…"``), the election of one snapshot runner
    per period among the replicas with the same history store, accounts and period; ``None``
    with the memory cache (every process runs its own schedule)."""
    if not settings.cache_url.startswith(("redis://", "rediss://")):
        return None
    store = settings.cache_store
    group = group_of(
        store_identity(settings.history_path, settings.history_url),
        [a.id for a in settings.accounts],
        every,
    )
    return Election.from_url(
        settings.cache_url,
        group,
        every,
        timeout=store.redis_timeout,
        cooldown=store.redis_cooldown,
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
    calls = VendorCalls(dict.fromkeys(a.provider for a in settings.accounts))
    service = build_service(settings, http, clock=clock, observe=calls.observer)
    answers = AnswerStore(settings.cache_times.response)
    metrics = Metrics(service, calls, answers)
    access = Access(settings.tokens, [a.id for a in settings.accounts])
    for name, pattern in access.unmatched:
        log.warning(
            "token %r: %r names no configured account (the token reads only accounts that are)",
            name,
            pattern,
        )

    def request_scope(connection: Mapping[str, object]) -> RequestScope:
        """What one request (its ASGI scope) may read: the accounts of its token (every
        account when the gateway has no tokens). The GraphQL context and the export route
        both come here."""
        grant = grant_of(connection)
        return service.request(grant.accounts, caller=grant.name)

    def context_getter(scope: Mapping[str, object]) -> GatewayContext:
        return GatewayContext(scope=request_scope(scope))

    switches = settings.switches
    for notice in switches.notices:
        log.warning("%s", notice)
    graph = (
        schema
        if switches.introspection and switches.trusted_documents is None
        else build_schema(
            introspection=switches.introspection, trusted_documents=switches.trusted_documents
        )
    )
    graphql = graphql_controller(
        graph,
        path="/graphql",
        context_getter=context_getter,
        graphiql=switches.graphiql,
        token_required=access.required,
    )

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, object]:
        """Liveness: the process answers (and, when it has no tokens, knows its accounts:
        with tokens it says nothing more to anyone who asks)."""
        if access.required:
            return {"status": "ok"}
        return {"status": "ok", "accounts": len(settings.accounts), "version": __version__}

    def page_for(scope: Any) -> tuple[str, str] | None:
        """The page a browser opens (the dashboard at ``/``, GraphiQL at ``GET /graphql``
        without a ``query``): shown without a token too, to ask for one; it holds no data."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        accept = b",".join(v for k, v in scope.get("headers", []) if k == b"accept")
        if b"text/html" not in accept:
            return None
        if scope["path"] == "/" and switches.dashboard:
            page = dashboard_page(access.required)
            return page.html, page.content_security_policy
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if scope["path"] == "/graphql" and "query" not in query and switches.graphiql:
            return graphiql_page(access.required), GRAPHIQL_POLICY
        return None

    hooks = webhook_client() if snapshot_every and settings.alerts else None
    alerting = build_alerting(settings, service, hooks) if hooks is not None else None

    async def snapshot_run() -> list[AccountOutcome] | None:
        """One snapshot run, then the alert rules; ``None`` when the run failed as a whole."""
        assert service.history is not None
        try:
            outcomes = await run_snapshot(service, service.history)
        except HistoryUnavailable as exc:
            log.error("snapshot run failed: %s", exc)  # one line: the file and the cause
            return None
        except Exception:
            log.exception("snapshot run failed")
            return None
        if alerting is not None:
            try:
                await alerting.after_snapshot(outcomes)
            except HistoryUnavailable as exc:
                log.error("alert rules not evaluated after the snapshot run: %s", exc)
            except Exception:
                log.exception("alert rules failed after the snapshot run")
        return outcomes

    schedule = (
        SnapshotSchedule(snapshot_every, snapshot_run, snapshot_election(settings, snapshot_every))
        if snapshot_every
        else None
    )
    if schedule is not None:
        metrics.registry.register(SnapshotPeriods(schedule.counts))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        scheduler = asyncio.create_task(schedule.run_forever()) if schedule else None
        if service.upstream.shared is not None:
            await service.upstream.shared.start()
        if service.history is not None:
            try:
                await service.history.warm()
            except HistoryUnavailable as exc:
                service.history_failed(exc)  # said once now; answers that need it say so
        try:
            with serving():  # the start-up heap frozen and a short switch interval meanwhile
                yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
                await asyncio.gather(scheduler, return_exceptions=True)
            if schedule is not None and schedule.election is not None:
                await schedule.election.close()
            await service.upstream.close()
            if service.history is not None:
                await service.history.close()
            if own_client:
                await http.aclose()
            if hooks is not None:
                await hooks.aclose()

    def token_gate(app: Any) -> Any:  # Litestar's middleware protocol: app -> app
        return TokenGate(app, access, page_for=page_for)

    def response_cache(app: Any) -> Any:
        return ResponseCache(
            app,
            ttl=answers.ttl,
            clock=clock,
            max_body=settings.max_request_body,
            vary=lambda scope: grant_of(scope).key,
            store=answers,
        )

    app = Litestar(
        route_handlers=[
            graphql,
            healthz,
            static_files(),
            dashboard_route(switches.dashboard, token_required=access.required),
            export_route(service, request_scope),
            metrics_route(metrics, request_scope),
        ],
        lifespan=[lifespan],
        # The gate first: a request without a valid token is answered before the response
        # cache (or anything else) sees it, so a refusal is never kept nor a kept answer given.
        middleware=[token_gate, response_cache],
        # Outside every route (and so outside the answer cache, which keeps answers
        # without these headers): each answer gets the headers of the origin that asked.
        cors_config=cors_config(switches),
        # ResponseCache answers an oversized POST /graphql itself (413, GraphQL-shaped); this is
        # Litestar's own limit for any handler that reads a body, kept the same.
        request_max_body_size=settings.max_request_body,
        exception_handlers={HTTPException: refused, HTTP_500_INTERNAL_SERVER_ERROR: internal_error},
        debug=debug,
        logging_config=None,
        # Litestar's OpenAPI pages (/schema/...) load their scripts from CDNs; the graph
        # describes itself (introspection, schema.graphql). Never served, whatever the config.
        openapi_config=None,
    )
    app.state.service = service
    app.state.answers = answers
    app.state.snapshots = schedule
    return app
