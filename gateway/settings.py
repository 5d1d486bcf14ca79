"""The config file: ``gateway.toml`` -> frozen :class:`Settings`.

``${VAR}`` references are resolved here, from the mapping the caller passes (the process
environment by default), and nowhere else. Every account is validated before anything starts; the
first problem raises :class:`~gateway.errors.ConfigError`, whose text is one line naming the file,
the account and the field.
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

from gateway.alerts.config import AlertSettings, parse_alerts
from gateway.cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_REDIS_COOLDOWN,
    DEFAULT_REDIS_TIMEOUT,
)
from gateway.domain import AccountConfig, ProviderId, Secret
from gateway.errors import ConfigError
from providers import registry

DEFAULT_HISTORY_PATH = "usage-history.sqlite"
DEFAULT_CACHE_URL = "memory://"
DEFAULT_CONFIG_PATH = "gateway.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COMMON_FIELDS = {"id", "provider", "name", "base_url"}
_GATEWAY_FIELDS = {
    "history_path",
    "cache_url",
    "upstream_timeout",
    "max_query_cost",
    "max_request_body",
    "max_vendor_answer",
    "request_read_timeout",
    "max_connections",
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
    response: float = 1
    """Seconds a whole GraphQL answer is reused for the same request body (0: never)."""


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


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs from its config file."""

    accounts: tuple[AccountConfig, ...] = ()
    history_path: str = DEFAULT_HISTORY_PATH
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
    cache_times: CacheTimes = CacheTimes()
    provider_cache_times: Mapping[ProviderId, CacheTimes] = field(default_factory=dict)
    cache_store: CacheStore = CacheStore()

    def times_for(self, provider: ProviderId) -> CacheTimes:
        """The cache times of ``provider``'s accounts."""
        return self.provider_cache_times.get(provider, self.cache_times)

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
    return parse_settings(data, source=name, env=os.environ if env is None else env)


def parse_settings(
    data: Mapping[str, Any], *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate an already-parsed config mapping."""
    env = os.environ if env is None else env
    unknown = sorted(set(data) - {"gateway", "cache", "accounts", "alerts"})
    if unknown:
        raise ConfigError(
            source, f"unknown section {unknown[0]!r} (expected gateway, cache, accounts, alerts)"
        )

    gateway = data.get("gateway", {})
    if not isinstance(gateway, Mapping):
        raise ConfigError(source, "[gateway] must be a table")
    for key in sorted(set(gateway) - _GATEWAY_FIELDS):
        raise ConfigError(source, f"[gateway] has an unknown field {key!r}")
    history_path = _string(gateway, "history_path", source, "[gateway]", DEFAULT_HISTORY_PATH)
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
    }
    for key, (low, high, unit) in _LIMITS.items():
        value = gateway.get(key, limits[key])
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                source,
                f"[gateway] field {key!r} must be a whole number of {unit} in [{low}, {high}]",
            )
        limits[key] = value

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
    alerts = None
    if "alerts" in data:
        alerts = parse_alerts(data["alerts"], source=source, accounts=accounts, env=env)
        secrets.update(alerts.secret_values())
    return Settings(
        accounts=tuple(accounts),
        history_path=history_path,
        cache_url=cache_url,
        upstream_timeout=float(timeout),
        max_query_cost=max_cost,
        max_request_body=limits["max_request_body"],
        max_vendor_answer=limits["max_vendor_answer"],
        request_read_timeout=float(read_timeout),
        max_connections=limits["max_connections"],
        cache_times=cache_times,
        provider_cache_times=provider_cache_times,
        cache_store=cache_store,
        alerts=alerts,
        source=source,
        secret_values=frozenset(secrets | _url_secrets(cache_url)),
    )


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


def _resolve(value: str, env: Mapping[str, str], source: str, account: str, field: str) -> str:
    def lookup(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise ConfigError(
                source, f"environment variable {var} is not set", account=account, field=field
            )
        return env[var]

    resolved = _VAR.sub(lookup, value)
    if "${" in _VAR.sub("", value):
        raise ConfigError(source, "has a malformed ${VAR} reference", account=account, field=field)
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


def _url_secrets(url: str) -> set[str]:
    """A password in a URL (``redis://:pw@host``), so logs redact it too."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return set()
    return {password} if password else set()
