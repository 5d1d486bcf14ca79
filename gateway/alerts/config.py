"""The ``[alerts]`` section of the config file -> frozen :class:`AlertSettings`.

::

    [alerts]
    thresholds = [0.8, 0.9, 1.0]     # utilization steps; each fires once per quota window
    predictive = true                # fire when projected to run out before the reset
    unreadable_after = "2h"          # an account unread this long is an alert of its own
    cooldown = "1h"                  # a rule that resolved stays quiet this long
    dashboard_url = "https://usage.example.com/"   # optional: events link to the account there

    [alerts.providers.reversinglabs] # optional: any of the four rule fields, per provider
    thresholds = [0.95]

    [alerts.accounts.vt-soc]         # optional: per account (wins over its provider's table)
    predictive = false

    [[alerts.webhooks]]
    url = "http://127.0.0.1:9999/hooks/quota"
    format = "json"                  # json | slack | alertmanager
    secret = "${HOOK_SECRET}"        # optional: HMAC-SHA256 of the body
    name = "ops"                     # optional: how logs and the graph name it
    timeout = "10s"                  # optional: one try's limit

Durations are ``90s``, ``15m``, ``2h``, ``1d`` (or seconds as a number); ``unreadable_after`` and
``cooldown`` take ``"off"`` too. ``${VAR}`` in a webhook's ``url`` or ``secret`` reads the
environment (as everywhere in the file); both are then secrets: logs name a webhook by its name
and host only. Every problem raises :class:`~gateway.errors.ConfigError` naming the file, the
table and the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from gateway.domain import AccountConfig, ProviderId, Secret
from gateway.errors import ConfigError
from providers import registry

FORMATS = ("json", "slack", "alertmanager")
DEFAULT_THRESHOLDS = (0.8, 0.9, 1.0)
DEFAULT_UNREADABLE_AFTER = 2 * 3600.0
DEFAULT_COOLDOWN = 3600.0
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
MAX_THRESHOLDS = 10
MAX_THRESHOLD = 10.0
MAX_WEBHOOKS = 10
MAX_URL = 2048
MAX_NAME = 64
MAX_DURATION = 366 * 86400.0
_RULE_FIELDS = ("thresholds", "predictive", "unreadable_after", "cooldown")
_TOP_FIELDS = (*_RULE_FIELDS, "dashboard_url", "webhooks", "accounts", "providers")
_WEBHOOK_FIELDS = ("url", "format", "secret", "name", "timeout")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class RuleSet:
    """The rules one account is evaluated by."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    """Utilization steps, ascending (1.0 = the whole limit)."""
    predictive: bool = True
    """Fire when the forecast says the quota runs out before its window ends."""
    unreadable_after: float | None = DEFAULT_UNREADABLE_AFTER
    """Seconds without a successful read before the account is an alert; None: never."""
    cooldown: float = DEFAULT_COOLDOWN
    """Seconds after a rule resolved during which it does not fire again (it waits, pending)."""


@dataclass(frozen=True)
class Webhook:
    """One ``[[alerts.webhooks]]`` entry."""

    name: str
    """The webhook's key in the store and its name in logs and the graph (never the URL)."""
    url: Secret
    format: str
    secret: Secret | None = None
    timeout: float = DEFAULT_TIMEOUT
    url_from_env: bool = False
    """The URL came from a ``${VAR}``: it is a secret too (a Slack URL holds a token)."""

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL: what logs show of it."""
        return urlsplit(self.url.reveal()).netloc

    @property
    def label(self) -> str:
        """How logs name it: its name and host, never the URL's path (it may be a token)."""
        return f"{self.name!r} ({self.host})"


@dataclass(frozen=True)
class AlertSettings:
    """Everything ``[alerts]`` says."""

    rules: RuleSet = RuleSet()
    providers: Mapping[ProviderId, RuleSet] = field(default_factory=dict)
    accounts: Mapping[str, RuleSet] = field(default_factory=dict)
    webhooks: tuple[Webhook, ...] = ()
    dashboard_url: str | None = None

    def rules_for(self, account: AccountConfig) -> RuleSet:
        """The rules of ``account``: its own table, else its provider's, else ``[alerts]``."""
        found = self.accounts.get(account.id)
        if found is not None:
            return found
        return self.providers.get(account.provider, self.rules)

    def secret_values(self) -> set[str]:
        """Webhook secrets, and URLs read from the environment (they may carry a token)."""
        found = {w.secret.reveal() for w in self.webhooks if w.secret is not None}
        return found | {w.url.reveal() for w in self.webhooks if w.url_from_env}


def parse_duration(value: object) -> float | None:
    """``90``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"`` as seconds; None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        return None
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_alerts(
    raw: object, *, source: str, accounts: Sequence[AccountConfig], env: Mapping[str, str]
) -> AlertSettings:
    """Validate ``[alerts]`` for the ``accounts`` of the file; ``${VAR}`` reads ``env``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "[alerts] must be a table")
    for key in raw:
        if key not in _TOP_FIELDS:
            raise ConfigError(
                source, f"[alerts] has an unknown field {key!r} (allowed: {', '.join(_TOP_FIELDS)})"
            )
    rules = _rules(raw, RuleSet(), source, "[alerts]")
    providers: dict[ProviderId, RuleSet] = {}
    known = registry()
    for name, table in _tables(raw, "providers", source).items():
        if name not in known:
            raise ConfigError(
                source,
                f"[alerts.providers.{name}]: no such provider (expected one of: "
                f"{', '.join(sorted(known))})",
            )
        providers[ProviderId(name)] = _rules(table, rules, source, f"[alerts.providers.{name}]")
    per_account: dict[str, RuleSet] = {}
    by_id = {a.id: a for a in accounts}
    for name, table in _tables(raw, "accounts", source).items():
        account = by_id.get(name)
        if account is None:
            raise ConfigError(
                source,
                f"[alerts.accounts.{name}]: no account has this id (known: "
                f"{', '.join(by_id) or 'none'})",
            )
        base = providers.get(account.provider, rules)
        per_account[name] = _rules(table, base, source, f"[alerts.accounts.{name}]")
    webhooks = _webhooks(raw.get("webhooks", []), source, env)
    dashboard = raw.get("dashboard_url")
    if dashboard is not None:
        dashboard = _url(dashboard, source, "[alerts] field 'dashboard_url'")
    return AlertSettings(
        rules=rules,
        providers=providers,
        accounts=per_account,
        webhooks=webhooks,
        dashboard_url=dashboard,
    )


def _tables(raw: Mapping[str, Any], key: str, source: str) -> Mapping[str, Mapping[str, Any]]:
    tables = raw.get(key, {})
    if not isinstance(tables, Mapping):
        raise ConfigError(source, f"[alerts] field {key!r} must be a table of tables")
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ConfigError(source, f"[alerts.{key}.{name}] must be a table")
    return tables


def _rules(table: Mapping[str, Any], base: RuleSet, source: str, where: str) -> RuleSet:
    nested = {"webhooks", "accounts", "providers", "dashboard_url"}
    for key in table:
        if key not in _RULE_FIELDS and not (where == "[alerts]" and key in nested):
            raise ConfigError(
                source, f"{where} has an unknown field {key!r} (allowed: {', '.join(_RULE_FIELDS)})"
            )
    values: dict[str, Any] = {}
    if "thresholds" in table:
        values["thresholds"] = _thresholds(table["thresholds"], source, where)
    if "predictive" in table:
        if not isinstance(table["predictive"], bool):
            raise ConfigError(source, f"{where} field 'predictive' must be true or false")
        values["predictive"] = table["predictive"]
    if "unreadable_after" in table:
        values["unreadable_after"] = _duration(
            table["unreadable_after"], source, where, "unreadable_after", off=True, least=60
        )
    if "cooldown" in table:
        cooldown = _duration(table["cooldown"], source, where, "cooldown", off=True, least=0)
        values["cooldown"] = cooldown or 0.0
    return replace(base, **values)


def _thresholds(value: object, source: str, where: str) -> tuple[float, ...]:
    problem = (
        f"{where} field 'thresholds' must be a list of at most {MAX_THRESHOLDS} different "
        f"fractions above 0 and at most {MAX_THRESHOLD:g}, such as [0.8, 0.9, 1.0]"
    )
    if not isinstance(value, list) or len(value) > MAX_THRESHOLDS:
        raise ConfigError(source, problem)
    steps: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ConfigError(source, problem)
        if not 0 < item <= MAX_THRESHOLD or float(item) in steps:
            raise ConfigError(source, f"{problem}; {item!r} is not")
        steps.append(float(item))
    return tuple(sorted(steps))


def _duration(
    value: object, source: str, where: str, key: str, *, off: bool, least: float
) -> float | None:
    if off and value == "off":
        return None
    seconds = parse_duration(value)
    if seconds is None or not least <= seconds <= MAX_DURATION:
        also = ', or "off"' if off else ""
        raise ConfigError(
            source,
            f"{where} field {key!r} must be a duration from {least:g} s to 366 days such as "
            f'"90s", "15m", "2h" or "1d"{also}',
        )
    return seconds


def _url(value: object, source: str, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise ConfigError(source, f"{where} must be an http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(source, f"{where} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(source, f"{where} must be an http or https URL with a host")
    if parts.username or parts.password:
        raise ConfigError(
            source, f"{where} must not hold credentials (user:password@); use a secret"
        )
    return value


def _resolve(value: str, env: Mapping[str, str], source: str, where: str) -> str:
    """``value`` with its ``${VAR}`` references read from ``env``."""

    def lookup(match: re.Match[str]) -> str:
        if match.group(1) not in env:
            raise ConfigError(source, f"{where}: environment variable {match.group(1)} is not set")
        return env[match.group(1)]

    resolved = _VAR.sub(lookup, value)
    if "${" in _VAR.sub("", value):
        raise ConfigError(source, f"{where} has a malformed ${{VAR}} reference")
    return resolved


def _webhooks(raw: object, source: str, env: Mapping[str, str]) -> tuple[Webhook, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_WEBHOOKS:
        raise ConfigError(
            source,
            f"alerts.webhooks must be an array of at most {MAX_WEBHOOKS} tables "
            "([[alerts.webhooks]])",
        )
    hooks: list[Webhook] = []
    for index, item in enumerate(raw, start=1):
        where = f"[[alerts.webhooks]] #{index}"
        if not isinstance(item, Mapping):
            raise ConfigError(source, f"{where} must be a table")
        for key in item:
            if key not in _WEBHOOK_FIELDS:
                raise ConfigError(
                    source,
                    f"{where} has an unknown field {key!r} (allowed: {', '.join(_WEBHOOK_FIELDS)})",
                )
        raw_url = item.get("url")
        if not isinstance(raw_url, str) or not raw_url:
            raise ConfigError(source, f"{where} field 'url' is missing (an http(s) URL)")
        url_field = f"{where} field 'url'"
        url = _url(_resolve(raw_url, env, source, url_field), source, url_field)
        form = item.get("format", "json")
        if form not in FORMATS:
            raise ConfigError(
                source, f"{where} field 'format' must be one of: {', '.join(FORMATS)}"
            )
        secret = None
        if "secret" in item:
            if not isinstance(item["secret"], str):
                raise ConfigError(source, f"{where} field 'secret' must be a string")
            value = _resolve(item["secret"], env, source, f"{where} field 'secret'")
            if len(value) < 8:
                raise ConfigError(source, f"{where} field 'secret' must be at least 8 characters")
            secret = Secret(value)
        timeout = DEFAULT_TIMEOUT
        if "timeout" in item:
            seconds = parse_duration(item["timeout"])
            if seconds is None or not 0.1 <= seconds <= MAX_TIMEOUT:
                raise ConfigError(
                    source,
                    f"{where} field 'timeout' must be a duration from 0.1 s to "
                    f'{MAX_TIMEOUT:g} s, such as "10s"',
                )
            timeout = seconds
        name = item.get("name")
        if name is None:
            digest = hashlib.sha256(f"{form} {url}".encode()).hexdigest()[:8]
            name = f"{form}-{digest}"
        elif not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.fullmatch(name):
            raise ConfigError(
                source,
                f"{where} field 'name' must be 1-{MAX_NAME} letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
            )
        if any(h.name == name for h in hooks):
            raise ConfigError(source, f"{where} field 'name': {name!r} is taken by another webhook")
        hooks.append(Webhook(name, Secret(url), form, secret, timeout, "${" in raw_url))
    return tuple(hooks)
