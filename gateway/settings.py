"""The config file: ``gateway.toml`` -> frozen :class:`Settings`.

``${VAR}`` references are resolved here, from the mapping the caller passes (the process
environment by default), and nowhere else. Every account and gateway token (``[[tokens]]``) is
validated before anything starts; the first problem raises :class:`~gateway.errors.ConfigError`,
whose text is one line naming the file, the account (or token) and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.access import (
    MAX_PATTERNS,
    MAX_TOKENS,
    NAME,
    GatewayToken,
    digest,
    pattern_problem,
    sha256_problem,
    token_problem,
)
from gateway.alerts.config import AlertSettings, parse_alerts
from gateway.cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_REDIS_COOLDOWN,
    DEFAULT_REDIS_TIMEOUT,
)
from gateway.domain import AccountConfig, ProviderId, Secret
from gateway.errors import ConfigError
from gateway.trusted_documents import (
    DASHBOARD_DOCUMENT,
    ManifestError,
    TrustedDocuments,
    document_hash,
    load_manifest,
)
from providers import registry
from providers.base import DEFAULT_CALLS, DEFAULT_CALLS_PER_HOST

DEFAULT_HISTORY_PATH = "usage-history.sqlite"
DEFAULT_CACHE_URL = "memory://"
DEFAULT_CONFIG_PATH = "gateway.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COMMON_FIELDS = {"id", "provider", "name", "base_url"}
_GATEWAY_FIELDS = {
    "history_path",
    "history_url",
    "cache_url",
    "upstream_timeout",
    "max_query_cost",
    "max_request_body",
    "max_vendor_answer",
    "request_read_timeout",
    "max_connections",
    "max_vendor_calls",
    "max_vendor_calls_per_host",
    *("introspection", "graphiql", "dashboard", "cors_origins", "trusted_documents"),
}
DEFAULT_UPSTREAM_TIMEOUT = 10.0
DEFAULT_MAX_QUERY_COST = 100_000
DEFAULT_MAX_REQUEST_BODY = 64 * 1024
DEFAULT_MAX_VENDOR_ANSWER = 8 * 1024 * 1024
DEFAULT_REQUEST_READ_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
_LIMITS: dict[str, tuple[int, int, str]] = {
    "max_request_body": (1024, 64 * 1024 * 1024, "bytes"),
    "max_vendor_answer": (64 * 1024, 1024 * 1024 * 1024, "bytes"),
    "max_connections": (1, 100_000, "connections"),
    "max_vendor_calls": (1, 10_000, "calls"),
    "max_vendor_calls_per_host": (1, 10_000, "calls"),
}


@dataclass(frozen=True)
class CacheTimes:
    """Seconds vendor answers stay fresh, and how long past that they may be served stale."""

    limits: float = 60
    """Quotas and rate limits."""
    usage: float = 300
    """Usage over a range that includes today."""
    history: float = 6 * 3600
    """Usage over days that are over (vendors rarely revise them)."""
    max_stale: float = 24 * 3600
    """How long past its freshness an answer may still be served (marked STALE)."""
    response: float = 3600
    """The longest a whole GraphQL answer is kept for the same request (its data decide when
    it stops holding sooner: :mod:`gateway.response_cache`); 0 turns the answer cache off."""


CACHE_FIELDS = {
    "limits_ttl": "limits",
    "usage_ttl": "usage",
    "history_ttl": "history",
    "max_stale": "max_stale",
    "response_ttl": "response",
}
WHOLE_ANSWER_FIELDS = frozenset({"response_ttl"})
"""``[cache]`` fields about whole GraphQL answers, which no ``[cache.<provider>]`` may set."""


@dataclass(frozen=True)
class CacheStore:
    """How the data cache holds entries: its memory bound, and its patience with Redis."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    """Entries kept in each process's memory (least recently used evicted first)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Bytes of encoded entries kept in each process's memory."""
    redis_timeout: float = DEFAULT_REDIS_TIMEOUT
    """Seconds one Redis read or write may take; a slower one is a miss."""
    redis_cooldown: float = DEFAULT_REDIS_COOLDOWN
    """Seconds Redis is skipped after it kept failing, before one operation tries it again."""


STORE_FIELDS: Mapping[str, tuple[type[int] | type[float], int | float, int | float]] = {
    "max_entries": (int, 1, 10_000_000),
    "max_bytes": (int, 1024, 1024**4),
    "redis_timeout": (float, 0.001, 10),
    "redis_cooldown": (float, 0.001, 3600),
}
"""``[cache]`` fields about the store itself (kind, bounds), which no ``[cache.<provider>]`` may
set: one store holds every provider's answers."""


MAX_CORS_ORIGINS = 100


@dataclass(frozen=True)
class Switches:
    """Production switches (``[gateway]``): what the gateway serves besides the graph, and
    which documents it runs. The defaults suit one person on loopback."""

    introspection: bool = True
    """``__schema`` and ``__type`` answer; off, they are refused (``__typename`` still works)."""
    graphiql: bool = True
    """``GET /graphql`` in a browser is GraphiQL; off, a 404 (GraphQL over GET still works)."""
    dashboard: bool = True
    """``GET /`` is the dashboard; off, a 404."""
    cors_origins: tuple[str, ...] = ()
    """Web origins whose pages may call the gateway (``*``: any); none: no CORS headers."""
    trusted_documents: TrustedDocuments | None = None
    """When set, the only documents the gateway runs."""
    notices: tuple[str, ...] = ()
    """What the config switched off on its own (logged once at start-up)."""


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs from its config file."""

    accounts: tuple[AccountConfig, ...] = ()
    history_path: str = DEFAULT_HISTORY_PATH
    history_url: str | None = field(default=None, repr=False)
    """A PostgreSQL history store (``postgresql://…``, its ``${VAR}`` resolved) in place of
    the SQLite file at ``history_path``; ``None``: that file."""
    cache_url: str = DEFAULT_CACHE_URL
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    """Seconds one vendor call may take in all."""
    max_query_cost: int = DEFAULT_MAX_QUERY_COST
    """The highest static cost of an operation the gateway runs (``gateway.graphql.cost``)."""
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY
    """Bytes of a ``POST /graphql`` body read at most; a larger one is answered 413."""
    max_vendor_answer: int = DEFAULT_MAX_VENDOR_ANSWER
    """Bytes of one vendor answer read at most; a larger one is refused as malformed."""
    request_read_timeout: float = DEFAULT_REQUEST_READ_TIMEOUT
    """Seconds a client may take to send one whole request (line, headers and body)."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Client connections served at once; a request on one more is answered 503."""
    max_vendor_calls: int = DEFAULT_CALLS
    """Vendor calls in flight at once over every vendor host; more wait their turn (within
    their deadline). The vendor client's connection pool is sized to it."""
    max_vendor_calls_per_host: int = DEFAULT_CALLS_PER_HOST
    """Vendor calls in flight at once to one vendor host (scheme://host:port)."""
    cache_times: CacheTimes = CacheTimes()
    provider_cache_times: Mapping[ProviderId, CacheTimes] = field(default_factory=dict)
    cache_store: CacheStore = CacheStore()
    switches: Switches = Switches()

    def times_for(self, provider: ProviderId) -> CacheTimes:
        """The cache times of ``provider``'s accounts."""
        return self.provider_cache_times.get(provider, self.cache_times)

    tokens: tuple[GatewayToken, ...] = ()
    """``[[tokens]]``: with at least one, every request but ``/healthz`` and static files needs
    one of them (:mod:`gateway.access`)."""
    alerts: AlertSettings | None = None
    """``[alerts]``: rules evaluated after every snapshot run; None when the file has none."""

    source: str = "<built in>"
    secret_values: frozenset[str] = field(default=frozenset(), repr=False)
    """Every resolved secret, so logs can redact them."""


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, f"cannot read the file ({type(exc).__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, f"invalid TOML: {exc}") from None
    return parse_settings(
        data, source=name, env=os.environ if env is None else env, base=Path(path).parent
    )


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> Settings:
    """Validate an already-parsed config mapping; relative paths of files the gateway reads
    at start-up (``trusted_documents``) are taken from ``base`` (the config file's directory;
    the working directory by default)."""
    env = os.environ if env is None else env
    unknown = sorted(set(data) - {"gateway", "cache", "accounts", "tokens", "alerts"})
    if unknown:
        raise ConfigError(
            source,
            f"unknown section {unknown[0]!r} (expected gateway, cache, accounts, tokens, alerts)",
        )

    gateway = data.get("gateway", {})
    if not isinstance(gateway, Mapping):
        raise ConfigError(source, "[gateway] must be a table")
    for key in sorted(set(gateway) - _GATEWAY_FIELDS):
        raise ConfigError(source, f"[gateway] has an unknown field {key!r}")
    history_path = _string(gateway, "history_path", source, "[gateway]", DEFAULT_HISTORY_PATH)
    history_path, history_url = _parse_history_url(gateway, history_path, source, env)
    cache_url = _string(gateway, "cache_url", source, "[gateway]", DEFAULT_CACHE_URL)
    scheme = urlsplit(cache_url).scheme
    if scheme not in ("memory", "redis", "rediss"):
        raise ConfigError(  # the URL itself is not quoted: it may hold a password
            source,
            f"[gateway] field 'cache_url': scheme {scheme[:20]!r} is not memory, redis or rediss",
        )

    timeout = gateway.get("upstream_timeout", DEFAULT_UPSTREAM_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise ConfigError(
            source, "[gateway] field 'upstream_timeout' must be a number of seconds in (0, 300]"
        )

    max_cost = gateway.get("max_query_cost", DEFAULT_MAX_QUERY_COST)
    if isinstance(max_cost, bool) or not isinstance(max_cost, int) or max_cost < 1:
        raise ConfigError(source, "[gateway] field 'max_query_cost' must be a whole number >= 1")
    read_timeout = gateway.get("request_read_timeout", DEFAULT_REQUEST_READ_TIMEOUT)
    if (
        isinstance(read_timeout, bool)
        or not isinstance(read_timeout, (int, float))
        or not 0 < read_timeout <= 300
    ):
        raise ConfigError(
            source, "[gateway] field 'request_read_timeout' must be a number of seconds in (0, 300]"
        )
    limits = {
        "max_request_body": DEFAULT_MAX_REQUEST_BODY,
        "max_vendor_answer": DEFAULT_MAX_VENDOR_ANSWER,
        "max_connections": DEFAULT_MAX_CONNECTIONS,
        "max_vendor_calls": DEFAULT_CALLS,
        "max_vendor_calls_per_host": DEFAULT_CALLS_PER_HOST,
    }
    for key, (low, high, unit) in _LIMITS.items():
        value = gateway.get(key, limits[key])
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                source,
                f"[gateway] field {key!r} must be a whole number of {unit} in [{low}, {high}]",
            )
        limits[key] = value
    if limits["max_vendor_calls_per_host"] > limits["max_vendor_calls"]:
        raise ConfigError(
            source,
            f"[gateway] field 'max_vendor_calls_per_host' ({limits['max_vendor_calls_per_host']})"
            f" is more than max_vendor_calls ({limits['max_vendor_calls']}), the calls in flight"
            " over every host",
        )

    switches = _parse_switches(gateway, source, base or Path())
    cache_times, provider_cache_times = _parse_cache(data.get("cache", {}), source)
    cache_store = _parse_store(data.get("cache", {}), source)

    raw_accounts = data.get("accounts", [])
    if not isinstance(raw_accounts, list):
        raise ConfigError(source, "accounts must be an array of tables ([[accounts]])")
    accounts: list[AccountConfig] = []
    secrets: set[str] = set()
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_accounts, start=1):
        account = _parse_account(raw, index, source, env)
        if account.id in seen:
            raise ConfigError(
                source,
                f"duplicate account id (also account #{seen[account.id]})",
                account=account.id,
                field="id",
            )
        seen[account.id] = index
        accounts.append(account)
        secrets.update(s.reveal() for s in account.secrets.values() if s.reveal())
        secrets.update(registry()[account.provider].client.derived_secrets(account))
    tokens, token_secrets = _parse_tokens(data.get("tokens", []), source, env)
    secrets.update(token_secrets)
    alerts = None
    if "alerts" in data:
        alerts = parse_alerts(data["alerts"], source=source, accounts=accounts, env=env)
        secrets.update(alerts.secret_values())
    return Settings(
        accounts=tuple(accounts),
        history_path=history_path,
        history_url=history_url,
        cache_url=cache_url,
        upstream_timeout=float(timeout),
        max_query_cost=max_cost,
        max_request_body=limits["max_request_body"],
        max_vendor_answer=limits["max_vendor_answer"],
        request_read_timeout=float(read_timeout),
        max_connections=limits["max_connections"],
        max_vendor_calls=limits["max_vendor_calls"],
        max_vendor_calls_per_host=limits["max_vendor_calls_per_host"],
        cache_times=cache_times,
        provider_cache_times=provider_cache_times,
        cache_store=cache_store,
        switches=switches,
        tokens=tokens,
        alerts=alerts,
        source=source,
        secret_values=frozenset(
            secrets | _url_secrets(cache_url) | _url_secrets(history_url or "")
        ),
    )


def _parse_switches(gateway: Mapping[str, Any], source: str, base: Path) -> Switches:
    """``[gateway]``'s ``introspection``, ``graphiql``, ``dashboard``, ``cors_origins`` and
    ``trusted_documents``. With trusted documents, GraphiQL is off (it sends documents of its
    own), and so is the dashboard unless the manifest holds its document; asked for by name
    (``= true``), either is an error instead."""
    flags: dict[str, bool | None] = {}
    for key in ("introspection", "graphiql", "dashboard"):
        value = gateway.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(source, f"[gateway] field {key!r} must be true or false")
        flags[key] = value
    origins = _parse_origins(gateway.get("cors_origins", []), source)
    trusted = None
    notices: list[str] = []
    graphiql, dashboard = flags["graphiql"], flags["dashboard"]
    raw_path = gateway.get("trusted_documents")
    if raw_path is not None:
        if not isinstance(raw_path, str) or not raw_path:
            raise ConfigError(
                source, "[gateway] field 'trusted_documents' must be a manifest's path"
            )
        try:
            trusted = load_manifest(base / raw_path, raw_path)
        except ManifestError as exc:
            raise ConfigError(source, f"[gateway] field 'trusted_documents': {exc}") from None
        if graphiql:
            raise ConfigError(
                source,
                "[gateway] field 'graphiql': GraphiQL sends documents of its own, which "
                "trusted_documents refuses; leave graphiql out (or false)",
            )
        if graphiql is None:
            graphiql = False
            notices.append(
                "GraphiQL is off: with trusted_documents only the manifest's documents run"
            )
        dashboard_known = trusted.get(document_hash(_dashboard_document())) is not None
        if dashboard and not dashboard_known:
            raise ConfigError(
                source,
                f"[gateway] field 'dashboard': the dashboard's document is not in "
                f"{raw_path}; add it (usage-gateway documents hash --dashboard) or set "
                "dashboard = false",
            )
        if dashboard is None and not dashboard_known:
            dashboard = False
            notices.append(
                f"the dashboard is off: its document is not in {raw_path} (add it with "
                "usage-gateway documents hash --dashboard)"
            )
    return Switches(
        introspection=flags["introspection"] is not False,
        graphiql=graphiql is not False,
        dashboard=dashboard is not False,
        cors_origins=origins,
        trusted_documents=trusted,
        notices=tuple(notices),
    )


def _dashboard_document() -> str:
    return DASHBOARD_DOCUMENT.read_text(encoding="utf-8")


def _parse_origins(raw: object, source: str) -> tuple[str, ...]:
    """``cors_origins``: ``["*"]``, or origins as a browser sends them: ``scheme://host[:port]``
    (http or https, no path, no default port)."""
    where = "[gateway] field 'cors_origins'"
    if not isinstance(raw, list) or not all(isinstance(o, str) for o in raw):
        raise ConfigError(
            source, f'{where} must be a list of origins such as ["https://grafana.example.com"]'
        )
    if len(raw) > MAX_CORS_ORIGINS:
        raise ConfigError(source, f"{where} lists {len(raw)} origins; at most {MAX_CORS_ORIGINS}")
    if "*" in raw:
        if len(raw) > 1:
            raise ConfigError(source, f'{where}: "*" (any origin) stands alone')
        return ("*",)
    origins: list[str] = []
    for origin in raw:
        shown = repr(origin[:80])
        parts = urlsplit(origin)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or port == -1
            or origin != f"{parts.scheme}://{parts.netloc}"
            or parts.username is not None
            or parts.password is not None
        ):
            raise ConfigError(
                source,
                f"{where}: {shown} is not an origin: a browser sends scheme://host[:port] "
                "(http or https, no path, not even a trailing /)",
            )
        if port == {"http": 80, "https": 443}[parts.scheme]:
            raise ConfigError(
                source,
                f"{where}: {shown} names its scheme's default port, which a browser never "
                f"sends: write {parts.scheme}://{parts.netloc.rsplit(':', 1)[0]}",
            )
        if origin != origin.lower():
            raise ConfigError(source, f"{where}: {shown}: a browser sends origins in lower case")
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _parse_cache(raw: object, source: str) -> tuple[CacheTimes, dict[ProviderId, CacheTimes]]:
    """``[cache]`` with ``limits_ttl``, ``usage_ttl``, ``history_ttl``, ``max_stale`` and
    per-provider tables (``[cache.<provider id>]``) overriding any of them but ``response_ttl``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "[cache] must be a table")
    providers = registry()

    def times(table: Mapping[str, Any], where: str, base: CacheTimes) -> CacheTimes:
        values: dict[str, float] = {}
        top = where == "[cache]"
        for key, value in table.items():
            if (key in providers or key in STORE_FIELDS) and top:
                continue
            if key in STORE_FIELDS:
                raise ConfigError(
                    source,
                    f"{where} field {key!r} is not per provider: one cache holds every provider's "
                    "answers, so it only applies in [cache]",
                )
            if key in WHOLE_ANSWER_FIELDS and not top:
                raise ConfigError(
                    source,
                    f"{where} field {key!r} is not per provider: a whole answer spans every "
                    "provider, so it only applies in [cache]",
                )
            if key not in CACHE_FIELDS:
                fields = [k for k in CACHE_FIELDS if top or k not in WHOLE_ANSWER_FIELDS]
                extra = [*STORE_FIELDS, *sorted(providers)] if top else []
                allowed = ", ".join([*fields, *extra])
                raise ConfigError(
                    source, f"{where} has an unknown field {key!r} (allowed: {allowed})"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(source, f"{where} field {key!r} must be a number of seconds >= 0")
            values[CACHE_FIELDS[key]] = float(value)
        return replace(base, **values)

    defaults = times(raw, "[cache]", CacheTimes())
    per_provider: dict[ProviderId, CacheTimes] = {}
    for name, table in raw.items():
        if name in providers:
            if not isinstance(table, Mapping):
                raise ConfigError(source, f"[cache.{name}] must be a table")
            per_provider[ProviderId(name)] = times(table, f"[cache.{name}]", defaults)
    return defaults, per_provider


def _parse_store(raw: Mapping[str, Any], source: str) -> CacheStore:
    """``[cache]``'s ``max_entries``, ``max_bytes``, ``redis_timeout`` and ``redis_cooldown``."""
    values: dict[str, Any] = {}
    for key, (kind, low, high) in STORE_FIELDS.items():
        value = raw.get(key)
        if value is None:
            continue
        accepted = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, accepted) or not low <= value <= high:
            what = (
                f"a whole number from {low:,} to {high:,}"
                if kind is int
                else f"a number of seconds from {low:g} to {high:g}"
            )
            raise ConfigError(source, f"[cache] field {key!r} must be {what}")
        values[key] = kind(value)
    return CacheStore(**values)


def _string(table: Mapping[str, Any], key: str, source: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(source, f"{where} field {key!r} must be a non-empty string")
    return value


def _parse_account(raw: object, index: int, source: str, env: Mapping[str, str]) -> AccountConfig:
    label = f"#{index}"
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "must be a table", account=label)
    account_id = raw.get("id")
    if account_id is None:
        raise ConfigError(source, "missing (every account needs an id)", account=label, field="id")
    if not isinstance(account_id, str) or not _ID.match(account_id):
        raise ConfigError(
            source,
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            account=label,
            field="id",
        )
    label = account_id

    provider_name = raw.get("provider")
    if provider_name is None:
        raise ConfigError(source, "missing", account=label, field="provider")
    known = registry()
    if not isinstance(provider_name, str) or provider_name not in known:
        choices = ", ".join(sorted(known))
        raise ConfigError(
            source,
            f"unknown provider {provider_name!r} (expected one of: {choices})",
            account=label,
            field="provider",
        )
    provider = ProviderId(provider_name)
    client = known[provider].client
    specs = {f.name: f for f in client.fields}

    for key in raw:
        if key not in _COMMON_FIELDS and key not in specs:
            allowed = ", ".join(sorted(_COMMON_FIELDS | set(specs)))
            raise ConfigError(
                source,
                f"unknown field for provider {provider_name!r} (allowed: {allowed})",
                account=label,
                field=key,
            )

    name = raw.get("name", account_id)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(source, "must be a non-empty string", account=label, field="name")

    base_url = raw.get("base_url")
    if base_url is not None:
        base_url = _check_base_url(base_url, source, label)

    options: dict[str, str] = {}
    secrets: dict[str, Secret] = {}
    for spec in client.fields:
        value = raw.get(spec.name)
        if value is None:
            if spec.required:
                hint = f" ({spec.help})" if spec.help else ""
                raise ConfigError(source, f"missing{hint}", account=label, field=spec.name)
            continue
        if spec.integer is not None:
            low, high = spec.integer
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    source,
                    f"must be a whole number from {low} to {high}",
                    account=label,
                    field=spec.name,
                )
            options[spec.name] = str(value)
            continue
        if not isinstance(value, str):
            raise ConfigError(source, "must be a string", account=label, field=spec.name)
        resolved = _resolve(value, env, source, label, spec.name)
        if not resolved:
            raise ConfigError(source, "is empty", account=label, field=spec.name)
        if spec.choices and resolved not in spec.choices:
            raise ConfigError(
                source,
                f"{resolved!r} is not one of: {', '.join(spec.choices)}",
                account=label,
                field=spec.name,
            )
        if spec.secret:
            secrets[spec.name] = Secret(resolved)
        else:
            options[spec.name] = resolved
    problem = client.validate_options(options)
    if problem is not None:
        raise ConfigError(source, problem[1], account=label, field=problem[0])
    return AccountConfig(
        id=account_id,
        provider=provider,
        name=name.strip(),
        base_url=base_url,
        options=options,
        secrets=secrets,
    )


def _resolve(
    value: str,
    env: Mapping[str, str],
    source: str,
    owner: str,
    field: str,
    *,
    what: str = "account",
) -> str:
    """``value`` with its ``${VAR}`` references read from ``env``; errors name the ``owner``
    (an account, or a token when ``what`` says so) and the field."""
    where = {"token": owner} if what == "token" else {"account": owner}

    def lookup(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise ConfigError(
                source, f"environment variable {var} is not set", field=field, **where
            )
        return env[var]

    resolved = _VAR.sub(lookup, value)
    if "${" in _VAR.sub("", value):
        raise ConfigError(source, "has a malformed ${VAR} reference", field=field, **where)
    return resolved


def _check_base_url(value: object, source: str, account: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, "must be a string", account=account, field="base_url")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(
            source, "has an invalid port", account=account, field="base_url"
        ) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ConfigError(
            source,
            f"{value!r} must be scheme://host[:port] (http or https, no path, query or user)",
            account=account,
            field="base_url",
        )
    return value.rstrip("/")


HISTORY_SCHEMES = ("postgresql", "postgres", "sqlite")


def _parse_history_url(
    gateway: Mapping[str, Any], history_path: str, source: str, env: Mapping[str, str]
) -> tuple[str, str | None]:
    """``[gateway] history_url``: ``postgresql://…`` (its ``${VAR}`` read from ``env``), or
    ``sqlite:///path``, the same as ``history_path = "path"``. Setting it together with
    ``history_path`` is an error naming both. Returns the history path and the PostgreSQL URL
    (``None`` for SQLite). The URL itself is never quoted in an error: it may hold a password."""
    if "history_url" not in gateway:
        return history_path, None
    if "history_path" in gateway:
        raise ConfigError(
            source,
            "[gateway] sets both 'history_path' and 'history_url': set one (history_url for"
            " PostgreSQL, history_path for a SQLite file)",
        )
    raw = _string(gateway, "history_url", source, "[gateway]", "")

    def lookup(match: re.Match[str]) -> str:
        if match.group(1) not in env:
            raise ConfigError(
                source,
                f"[gateway] field 'history_url': environment variable {match.group(1)} is not set",
            )
        return env[match.group(1)]

    url = _VAR.sub(lookup, raw)
    if "${" in _VAR.sub("", raw):
        raise ConfigError(source, "[gateway] field 'history_url' has a malformed ${VAR} reference")
    scheme = url.partition(":")[0].lower()
    if scheme not in HISTORY_SCHEMES or not url[len(scheme) :].startswith("://"):
        raise ConfigError(
            source,
            f"[gateway] field 'history_url': scheme {scheme[:20]!r} is not postgresql or sqlite"
            " (postgresql://user@host/db, sqlite:///path)",
        )
    if scheme == "sqlite":
        return sqlite_path(url, source, "[gateway] field 'history_url'"), None
    return history_path, url


def sqlite_path(url: str, source: str, where: str) -> str:
    """The file of ``sqlite:///path`` (as SQLAlchemy reads it: ``sqlite:///relative.sqlite``,
    ``sqlite:////absolute/path.sqlite``)."""
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path or "?" in path or "#" in path:
        raise ConfigError(
            source,
            f"{where}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path",
        )
    return path


def _url_secrets(url: str) -> set[str]:
    """A password in a URL (``redis://:pw@host``), so logs redact it too."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return set()
    return {password} if password else set()


_TOKEN_FIELDS = {"name", "sha256", "token", "accounts"}


def _parse_tokens(
    raw_tokens: object, source: str, env: Mapping[str, str]
) -> tuple[tuple[GatewayToken, ...], set[str]]:
    """``[[tokens]]``: each with a ``name``, its secret as ``sha256`` (hex) or ``token`` (a
    literal or ``${VAR}``), and ``accounts`` (ids or glob patterns; default every account).
    Also returns the secrets given as ``token``, for log redaction."""
    if not isinstance(raw_tokens, list):
        raise ConfigError(source, "tokens must be an array of tables ([[tokens]])")
    if len(raw_tokens) > MAX_TOKENS:
        raise ConfigError(source, f"at most {MAX_TOKENS} [[tokens]], not {len(raw_tokens)}")
    tokens: list[GatewayToken] = []
    secrets: set[str] = set()
    names: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    for index, raw in enumerate(raw_tokens, start=1):
        label = f"#{index}"
        if not isinstance(raw, Mapping):
            raise ConfigError(source, "must be a table", token=label)
        name = raw.get("name")
        if name is None:
            raise ConfigError(
                source, "missing (every token needs a name)", token=label, field="name"
            )
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(
                source,
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                token=label,
                field="name",
            )
        label = name
        if name in names:
            raise ConfigError(
                source,
                f"duplicate token name (also token #{names[name]})",
                token=label,
                field="name",
            )
        names[name] = index
        for key in sorted(set(raw) - _TOKEN_FIELDS):
            allowed = ", ".join(sorted(_TOKEN_FIELDS))
            raise ConfigError(source, f"unknown field (allowed: {allowed})", token=label, field=key)
        given = [key for key in ("sha256", "token") if key in raw]
        if len(given) != 1:
            raise ConfigError(
                source,
                'give the secret once: sha256 = "<hex SHA-256 of the token>" or '
                'token = "${VAR}" (usage-gateway token new NAME prints both the token and '
                "its hash)",
                token=label,
                field=given[-1] if given else "sha256",
            )
        [kind] = given
        value = raw[kind]
        if not isinstance(value, str):
            raise ConfigError(source, "must be a string", token=label, field=kind)
        if kind == "sha256":
            problem = sha256_problem(value)
            if problem is not None:
                raise ConfigError(source, problem, token=label, field=kind)
            token_digest = bytes.fromhex(value)
        else:
            resolved = _resolve(value, env, source, label, kind, what="token")
            problem = token_problem(resolved)
            if problem is not None:
                raise ConfigError(source, problem, token=label, field=kind)
            secrets.add(resolved)
            token_digest = digest(resolved)
        if token_digest in digests:
            raise ConfigError(
                source,
                f"the same secret as token {digests[token_digest]!r}: each token needs its own",
                token=label,
                field=kind,
            )
        digests[token_digest] = name
        accounts = raw.get("accounts", ["*"])
        if not isinstance(accounts, list) or not 1 <= len(accounts) <= MAX_PATTERNS:
            raise ConfigError(
                source,
                f'must be a list of 1 to {MAX_PATTERNS} account ids or glob patterns ("*": all)',
                token=label,
                field="accounts",
            )
        for pattern in accounts:
            problem = pattern_problem(pattern)
            if problem is not None:
                raise ConfigError(source, problem, token=label, field="accounts")
        tokens.append(GatewayToken(name, token_digest, tuple(accounts)))
    return tuple(tokens), secrets
