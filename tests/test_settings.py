"""The config file: every way it can be wrong ends in one line naming file, account and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.domain import ProviderId, Secret
from gateway.errors import ConfigError
from gateway.settings import load_settings, parse_settings
from providers import registry

GOOD = """
[gateway]
history_path = "/tmp/history.sqlite"
cache_url = "redis://127.0.0.1:6379/0"
upstream_timeout = 4.5

[[accounts]]
id = "repute"
provider = "reputeapi"
name = "Repute prod"
base_url = "http://127.0.0.1:9004"
api_key = "${REPUTE_API_KEY}"

[[accounts]]
id = "repute-literal"
provider = "reputeapi"
api_key = "ra_live_literal_key"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), env={"REPUTE_API_KEY": "ra_live_from_env"})
    assert settings.history_path == "/tmp/history.sqlite"
    assert settings.cache_url == "redis://127.0.0.1:6379/0"
    assert settings.upstream_timeout == 4.5
    first, second = settings.accounts
    assert (first.id, first.provider, first.name, first.base_url) == (
        "repute",
        ProviderId("reputeapi"),
        "Repute prod",
        "http://127.0.0.1:9004",
    )
    assert first.secrets == {"api_key": Secret("ra_live_from_env")}
    assert second.name == "repute-literal"  # name defaults to id
    assert second.base_url is None
    assert second.secret("api_key") == "ra_live_literal_key"
    assert settings.secret_values == {"ra_live_from_env", "ra_live_literal_key"}
    assert "ra_live" not in repr(settings) and "ra_live" not in repr(first)


def test_provider_fields_and_whole_numbers(tmp_path: Path) -> None:
    text = ACCOUNT.format(id="vt", provider="virustotal") + (
        'api_key = "${VT_API_KEY}"\ngroup = "soc-team"\nretention_days = 30\n'
    )
    (account,) = load_settings(write(tmp_path, text), env={"VT_API_KEY": "vt_k"}).accounts
    assert account.provider == ProviderId("virustotal")
    assert account.options == {"group": "soc-team", "retention_days": "30"}
    assert account.secrets == {"api_key": Secret("vt_k")}


@pytest.mark.parametrize("provider", list(registry()))
def test_every_registered_provider_is_a_config_choice(provider: str) -> None:
    """The config's provider choices are the registry's ids, each with its own cache table."""
    demo = registry()[ProviderId(provider)].emulator.accounts[0]
    data = {"cache": {provider: {"usage_ttl": 7}}, "accounts": [{"provider": provider, **demo}]}
    settings = parse_settings(data, env={})
    (account,) = settings.accounts
    assert account.provider == provider
    assert settings.times_for(account.provider).usage == 7


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})
    assert (settings.history_path, settings.cache_url, settings.accounts) == (
        "usage-history.sqlite",
        "memory://",
        (),
    )


ACCOUNT = '[[accounts]]\nid = "{id}"\nprovider = "{provider}"\n'


@pytest.mark.parametrize(
    ("text", "env", "account", "field", "words"),
    [
        (
            ACCOUNT.format(id="x", provider="shodan") + 'api_key = "k"\n',
            {},
            "x",
            "provider",
            f"unknown provider 'shodan' (expected one of: {', '.join(registry())})",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi"),
            {},
            "x",
            "api_key",
            "missing (X-API-Key value (ra_live_...))",
        ),
        ('[[accounts]]\nprovider = "reputeapi"\napi_key = "k"\n', {}, "#1", "id", "missing"),
        ('[[accounts]]\nid = "x"\napi_key = "k"\n', {}, "x", "provider", "missing"),
        (
            '[[accounts]]\nid = "x"\nprovider = ["reputeapi"]\n',
            {},
            "x",
            "provider",
            "unknown provider ['reputeapi']",
        ),
        (
            (ACCOUNT.format(id="dup", provider="reputeapi") + 'api_key = "k"\n') * 2,
            {},
            "dup",
            "id",
            "duplicate account id (also account #1)",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi") + 'api_key = "${REPUTE_KEY}"\n',
            {},
            "x",
            "api_key",
            "environment variable REPUTE_KEY is not set",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi") + 'api_key = "${REPUTE KEY}"\n',
            {},
            "x",
            "api_key",
            "malformed ${VAR} reference",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi") + 'api_key = "${EMPTY}"\n',
            {"EMPTY": ""},
            "x",
            "api_key",
            "is empty",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi") + 'api_key = "k"\ngroup = "soc"\n',
            {},
            "x",
            "group",
            "unknown field for provider 'reputeapi'",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi") + "api_key = 42\n",
            {},
            "x",
            "api_key",
            "must be a string",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi")
            + 'api_key = "k"\nbase_url = "http://127.0.0.1:9000/v1"\n',
            {},
            "x",
            "base_url",
            "must be scheme://host[:port]",
        ),
        (
            ACCOUNT.format(id="x", provider="reputeapi")
            + 'api_key = "k"\nbase_url = "ftp://vendor.example"\n',
            {},
            "x",
            "base_url",
            "must be scheme://host[:port]",
        ),
        (
            ACCOUNT.format(id="vt", provider="virustotal") + 'api_key = "k"\n',
            {},
            "vt",
            "group",
            "give exactly one of group or user",
        ),
        (
            ACCOUNT.format(id="vt", provider="virustotal")
            + 'api_key = "k"\ngroup = "soc"\nuser = "alice"\n',
            {},
            "vt",
            "group",
            "give exactly one of group or user",
        ),
        (
            ACCOUNT.format(id="vt", provider="virustotal")
            + 'api_key = "k"\ngroup = "soc"\nretention_days = "60"\n',
            {},
            "vt",
            "retention_days",
            "must be a whole number from 1 to 3650",
        ),
        (
            ACCOUNT.format(id="vt", provider="virustotal")
            + 'api_key = "k"\ngroup = "soc"\nretention_days = 0\n',
            {},
            "vt",
            "retention_days",
            "must be a whole number from 1 to 3650",
        ),
        (
            ACCOUNT.format(id="bad id!", provider="reputeapi") + 'api_key = "k"\n',
            {},
            "#1",
            "id",
            "must be 1-64 letters",
        ),
    ],
)
def test_bad_accounts(tmp_path, text, env, account, field, words) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    error = caught.value
    assert (error.file, error.account, error.field) == (str(path), account, field)
    line = str(error)
    assert "\n" not in line
    assert line.startswith(f"{path}: account {account!r}: field {field!r}: ")
    assert words in line


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[accounts]\nid = 'x'\n", "invalid TOML: "),
        ("[gateway]\ncache_url = 'memcached://x'\n", "scheme 'memcached' is not memory, redis"),
        ("[gateway]\nupstream_timeout = 0\n", "upstream_timeout"),
        ("[gateway]\nhistory = 'x'\n", "unknown field 'history'"),
        ("[gatway]\n", "unknown section 'gatway'"),
        (
            "[cache.reputeapi]\nresponse_ttl = 5\n",
            "[cache.reputeapi] field 'response_ttl' is not per provider: a whole answer spans "
            "every provider, so it only applies in [cache]",
        ),
        (
            "[cache.reputeapi]\nreputeapi = 5\n",
            "[cache.reputeapi] has an unknown field 'reputeapi' (allowed: limits_ttl, usage_ttl, "
            "history_ttl, max_stale)",
        ),
        ("accounts = 'x'\n", "array of tables"),
    ],
)
def test_bad_files(tmp_path, text, words) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value).startswith(f"{path}: ")
    assert words in str(caught.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.toml", env={})


def test_serve_refuses_a_bad_config_with_one_line_and_exit_2(tmp_path) -> None:
    path = write(
        tmp_path,
        ACCOUNT.format(id="vt", provider="reputeapi") + 'api_key = "${NOT_SET_ANYWHERE}"\n',
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"usage-gateway: {path}: account 'vt': field 'api_key': "
        "environment variable NOT_SET_ANYWHERE is not set\n"
    )


def test_serve_reads_the_config_path_from_the_environment(tmp_path) -> None:
    path = write(tmp_path, ACCOUNT.format(id="r", provider="nosuch"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "USAGE_GATEWAY_CONFIG": str(path)},
    )
    assert result.returncode == 2
    assert f"{path}: account 'r': field 'provider': unknown provider 'nosuch'" in result.stderr


def test_a_cache_password_is_a_secret_and_never_quoted() -> None:
    settings = parse_settings({"gateway": {"cache_url": "redis://:hunter2-pw@127.0.0.1:6379/0"}})
    assert "hunter2-pw" in settings.secret_values  # logs redact it
    with pytest.raises(ConfigError) as caught:
        parse_settings({"gateway": {"cache_url": "memcached://:hunter2-pw@127.0.0.1"}})
    assert "hunter2-pw" not in str(caught.value)


def test_history_url_picks_the_store_and_history_path_stays_the_default() -> None:
    assert parse_settings({}, env={}).history_url is None
    pg = parse_settings(
        {"gateway": {"history_url": "postgresql://gw:${PGPW}@db.internal/usage"}},
        env={"PGPW": "pg-secret-123"},
    )
    assert pg.history_url == "postgresql://gw:pg-secret-123@db.internal/usage"
    assert "pg-secret-123" in pg.secret_values  # redacted from logs
    assert "pg-secret-123" not in repr(pg)
    relative = parse_settings({"gateway": {"history_url": "sqlite:///data/h.sqlite"}}, env={})
    absolute = parse_settings({"gateway": {"history_url": "sqlite:////var/h.sqlite"}}, env={})
    assert (relative.history_path, relative.history_url) == ("data/h.sqlite", None)
    assert (absolute.history_path, absolute.history_url) == ("/var/h.sqlite", None)


@pytest.mark.parametrize(
    ("gateway", "env", "words"),
    [
        (
            {"history_path": "h.sqlite", "history_url": "postgresql://h/db"},
            {},
            "[gateway] sets both 'history_path' and 'history_url'",
        ),
        ({"history_url": "mysql://u:pw-x@h/db"}, {}, "scheme 'mysql' is not postgresql or sqlite"),
        ({"history_url": "sqlite://h.sqlite"}, {}, "a SQLite URL is sqlite:///relative/path"),
        ({"history_url": "postgresql://u:${NOPE}@h/db"}, {}, "environment variable NOPE"),
        ({"history_url": ""}, {}, "'history_url' must be a non-empty string"),
    ],
)
def test_a_bad_history_url_is_named_and_its_password_never_quoted(gateway, env, words) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings({"gateway": gateway}, env=env)
    assert words in str(refused.value)
    assert "pw-x" not in str(refused.value)
