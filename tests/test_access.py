"""Gateway tokens as configured (``[[tokens]]``) and checked (:mod:`gateway.access`): every
mistake in the config is one line naming the file, the token and the field; a presented token
is taken only when it is exactly one of the configured ones; a token's patterns become the
accounts it reads."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.access import (
    MAX_AUTHORIZATION,
    MAX_TOKENS,
    TOKEN_MAX_LENGTH,
    Access,
    Grant,
    bearer,
    digest,
    new_token,
    toml_block,
)
from gateway.app import create_app
from gateway.cli import configure_logging, new_token_text
from gateway.errors import ConfigError
from gateway.settings import parse_settings
from tests.test_logging import restore_logging  # noqa: F401  (a fixture)

SECRET = "kq3V9x-T2pLm8ZrW5yN1bC7dF4hJ6sA0"  # 32 characters, 30 of them different
HASH = hashlib.sha256(SECRET.encode()).hexdigest()
ACCOUNTS = [
    {"id": "vt-soc", "provider": "reputeapi", "api_key": "k1"},
    {"id": "vt-ir", "provider": "reputeapi", "api_key": "k2"},
    {"id": "repute", "provider": "reputeapi", "api_key": "k3"},
    {"id": "Repute-2", "provider": "reputeapi", "api_key": "k4"},
]
IDS = [a["id"] for a in ACCOUNTS]


def parse(*tokens: Any, env: dict[str, str] | None = None, **extra: Any):
    return parse_settings(
        {"accounts": ACCOUNTS, "tokens": list(tokens), **extra},
        source="gateway.toml",
        env=env or {},
    )


def refused(*tokens: Any, env: dict[str, str] | None = None, **extra: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(*tokens, env=env, **extra)
    return str(caught.value)


# -- the config --------------------------------------------------------------------------------


def test_a_token_by_its_hash_reads_the_accounts_its_patterns_name() -> None:
    settings = parse({"name": "grafana", "sha256": HASH, "accounts": ["vt-*", "repute"]})
    [token] = settings.tokens
    assert (token.name, token.digest, token.accounts) == (
        "grafana",
        bytes.fromhex(HASH),
        ("vt-*", "repute"),
    )
    assert SECRET not in repr(settings) and HASH not in repr(token)
    grant = Access(settings.tokens, IDS).authenticate(f"Bearer {SECRET}".encode())
    assert grant == Grant("grafana", frozenset({"vt-soc", "vt-ir", "repute"}))


def test_an_upper_case_hash_is_the_same_hash() -> None:
    [token] = parse({"name": "a", "sha256": HASH.upper()}).tokens
    assert token.digest == bytes.fromhex(HASH)


def test_a_token_reads_every_account_by_default() -> None:
    settings = parse({"name": "all", "sha256": HASH})
    assert settings.tokens[0].accounts == ("*",)
    grant = Access(settings.tokens, IDS).authenticate(f"Bearer {SECRET}".encode())
    assert grant is not None and grant.accounts == frozenset(IDS)


def test_a_token_from_the_environment_or_literal_is_a_secret_logs_redact() -> None:
    other = "Zx9-wV8_uT7sR6qP5oN4mL3kJ2iH1gF0eD"
    settings = parse(
        {"name": "from-env", "token": "${GRAFANA_TOKEN}"},
        {"name": "literal", "token": other},
        env={"GRAFANA_TOKEN": SECRET},
    )
    assert [t.digest for t in settings.tokens] == [digest(SECRET), digest(other)]
    assert {SECRET, other} <= settings.secret_values
    access = Access(settings.tokens, IDS)
    assert access.authenticate(f"Bearer {SECRET}".encode()).name == "from-env"
    assert access.authenticate(f"Bearer {other}".encode()).name == "literal"


@pytest.mark.usefixtures("restore_logging")
def test_logs_redact_a_configured_token(capfd) -> None:
    settings = parse(
        {"name": "literal", "token": SECRET},
        {"name": "from-env", "token": "${T}"},
        env={"T": SECRET[::-1]},
    )
    configure_logging("info", settings.secret_values)
    for secret in (SECRET, SECRET[::-1]):
        logging.getLogger("some.library").info("header was Bearer %s", secret)
    err = capfd.readouterr().err
    assert err.count("header was Bearer ********") == 2
    assert SECRET not in err and SECRET[::-1] not in err


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ({"sha256": HASH}, "token '#1': field 'name': missing (every token needs a name)"),
        (
            {"name": "has space", "sha256": HASH},
            "token '#1': field 'name': must be 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
        ),
        (
            {"name": "a"},
            "token 'a': field 'sha256': give the secret once: sha256 = \"<hex SHA-256 of the "
            'token>" or token = "${VAR}" (usage-gateway token new NAME prints both the token '
            "and its hash)",
        ),
        (
            {"name": "a", "sha256": HASH, "token": SECRET},
            "token 'a': field 'token': give the secret once: sha256 = \"<hex SHA-256 of the "
            'token>" or token = "${VAR}" (usage-gateway token new NAME prints both the token '
            "and its hash)",
        ),
        (
            {"name": "a", "sha256": HASH[:-1]},
            "token 'a': field 'sha256': must be 64 hexadecimal digits (the SHA-256 of the token)",
        ),
        (
            {"name": "a", "sha256": "g" * 64},
            "token 'a': field 'sha256': must be 64 hexadecimal digits (the SHA-256 of the token)",
        ),
        ({"name": "a", "sha256": 5}, "token 'a': field 'sha256': must be a string"),
        (
            {"name": "a", "token": SECRET[:31]},
            "token 'a': field 'token': must be 32 to 512 characters long, not 31 (usage-gateway "
            "token new NAME makes one)",
        ),
        (
            {"name": "a", "token": "x" * (TOKEN_MAX_LENGTH + 1)},
            "token 'a': field 'token': must be 32 to 512 characters long, not 513 (usage-gateway "
            "token new NAME makes one)",
        ),
        (
            {"name": "a", "token": SECRET[:20] + " " + SECRET[:20]},
            "token 'a': field 'token': must be visible ASCII characters only (no spaces or "
            "control characters)",
        ),
        (
            {"name": "a", "token": SECRET[:20] + "é" + SECRET[:20]},
            "token 'a': field 'token': must be visible ASCII characters only (no spaces or "
            "control characters)",
        ),
        (
            {"name": "a", "token": "abcdefg" * 6},
            "token 'a': field 'token': has fewer than 8 different characters: it is guessable "
            "(usage-gateway token new NAME makes one)",
        ),
        (
            {"name": "a", "token": "${NOT_SET}"},
            "token 'a': field 'token': environment variable NOT_SET is not set",
        ),
        (
            {"name": "a", "token": "${BROKEN"},
            "token 'a': field 'token': has a malformed ${VAR} reference",
        ),
        (
            {"name": "a", "sha256": HASH, "accounts": "vt-*"},
            "token 'a': field 'accounts': must be a list of 1 to 256 account ids or glob "
            'patterns ("*": all)',
        ),
        (
            {"name": "a", "sha256": HASH, "accounts": []},
            "token 'a': field 'accounts': must be a list of 1 to 256 account ids or glob "
            'patterns ("*": all)',
        ),
        (
            {"name": "a", "sha256": HASH, "accounts": ["vt-*", "vt soc"]},
            "token 'a': field 'accounts': each entry must be an account id or a glob pattern of "
            "1-64 letters, digits, '.', '_', '-', '*', '?', '[', ']' or '!'",
        ),
        (
            {"name": "a", "sha256": HASH, "scope": "all"},
            "token 'a': field 'scope': unknown field (allowed: accounts, name, sha256, token)",
        ),
    ],
)
def test_a_bad_token_entry_is_one_line_naming_file_token_and_field(
    token: dict[str, Any], problem: str
) -> None:
    assert refused(token) == f"gateway.toml: {problem}"


def test_two_tokens_may_not_share_a_name_or_a_secret() -> None:
    assert refused({"name": "a", "sha256": HASH}, {"name": "a", "token": "${T}"}, env={}) == (
        "gateway.toml: token 'a': field 'name': duplicate token name (also token #1)"
    )
    assert refused({"name": "a", "sha256": HASH}, {"name": "b", "token": SECRET}) == (
        "gateway.toml: token 'b': field 'token': the same secret as token 'a': each token "
        "needs its own"
    )


def test_the_tokens_section_is_bounded_and_must_be_an_array() -> None:
    assert refused(tokens={"name": "a"}) == (
        "gateway.toml: tokens must be an array of tables ([[tokens]])"
    )
    many = [{"name": f"t{i}", "sha256": f"{i:064x}"} for i in range(MAX_TOKENS + 1)]
    assert refused(*many) == f"gateway.toml: at most {MAX_TOKENS} [[tokens]], not {MAX_TOKENS + 1}"
    assert len(parse(*many[:MAX_TOKENS]).tokens) == MAX_TOKENS
    assert refused("grafana") == "gateway.toml: token '#1': must be a table"


def test_the_token_new_block_is_what_the_loader_reads() -> None:
    token = new_token()
    block = toml_block("grafana", digest(token), ["vt-*", "repute"])
    settings = parse_settings({"accounts": ACCOUNTS, **tomllib.loads(block)}, env={})
    grant = Access(settings.tokens, IDS).authenticate(f"Bearer {token}".encode())
    assert grant == Grant("grafana", frozenset({"vt-soc", "vt-ir", "repute"}))
    assert len(token) == 43 and token not in block


# -- checking a presented token ----------------------------------------------------------------


@pytest.fixture
def access() -> Access:
    return Access(parse({"name": "grafana", "sha256": HASH, "accounts": ["vt-*"]}).tokens, IDS)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {SECRET}",
        f"bearer {SECRET}",
        f"BEARER   {SECRET}  ",
    ],
)
def test_the_configured_token_is_taken(access: Access, header: str) -> None:
    assert access.authenticate(header.encode()) == Grant("grafana", frozenset({"vt-soc", "vt-ir"}))


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        SECRET.encode(),  # no scheme
        f"Basic {SECRET}".encode(),
        f"Bearer {SECRET[:-1]}".encode(),  # a prefix
        f"Bearer {SECRET}x".encode(),  # one more character
        f"Bearer {SECRET[:-1]}{chr(ord(SECRET[-1]) + 1)}".encode(),  # same length, last differs
        f"Bearer {SECRET.upper()}".encode(),
        f"Bearer {HASH}".encode(),  # the hash is not the token
        f"Bearer {SECRET} {SECRET}".encode(),
        b"Bearer " + b"a" * (MAX_AUTHORIZATION - 7 + 1),
    ],
)
def test_anything_else_is_refused(access: Access, header: bytes | None) -> None:
    assert access.authenticate(header) is None


def test_every_configured_token_is_compared_and_the_matching_one_wins() -> None:
    """Several tokens: each one is recognized whatever its place in the list."""
    secrets = [new_token() for _ in range(5)]
    tokens = parse(
        *({"name": f"t{i}", "token": s, "accounts": [IDS[i % 4]]} for i, s in enumerate(secrets))
    ).tokens
    access = Access(tokens, IDS)
    for i, secret in enumerate(secrets):
        grant = access.authenticate(f"Bearer {secret}".encode())
        assert grant == Grant(f"t{i}", frozenset({IDS[i % 4]}))


def test_the_presented_token_is_compared_with_every_one_in_constant_time(monkeypatch) -> None:
    """``hmac.compare_digest`` (the standard library's, watched here) compares the presented
    token's SHA-256 with each configured one, all of them, wherever the match is (or none)."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def watched(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", watched)
    secrets = [new_token() for _ in range(4)]
    tokens = parse(*({"name": f"t{i}", "token": s} for i, s in enumerate(secrets))).tokens
    access = Access(tokens, IDS)
    for presented in [secrets[0], secrets[3], "x" * 40]:
        compared.clear()
        access.authenticate(f"Bearer {presented}".encode())
        assert compared == [(digest(presented), digest(s)) for s in secrets]


def test_without_tokens_every_request_reads_every_account() -> None:
    access = Access((), IDS)
    assert not access.required
    assert (
        access.authenticate(None) == access.authenticate(b"Bearer x") == Grant(None, frozenset(IDS))
    )


def test_bearer_reads_the_token_only() -> None:
    assert bearer(f"Bearer {SECRET}".encode()) == SECRET.encode()
    assert bearer(b"Bearer " + b"a" * TOKEN_MAX_LENGTH) == b"a" * TOKEN_MAX_LENGTH
    assert bearer(b"Bearer " + b"a" * (MAX_AUTHORIZATION)) is None


def test_patterns_are_case_sensitive_globs_over_the_configured_ids() -> None:
    def reads(*patterns: str) -> set[str]:
        settings = parse({"name": "t", "sha256": HASH, "accounts": list(patterns)})
        grant = Access(settings.tokens, IDS).authenticate(f"Bearer {SECRET}".encode())
        assert grant is not None
        return set(grant.accounts)

    assert reads("vt-soc") == {"vt-soc"}
    assert reads("vt-?r") == {"vt-ir"}
    assert reads("repute*") == {"repute"}  # not Repute-2
    assert reads("[Rr]epute*") == {"repute", "Repute-2"}
    assert reads("vt-[!s]*") == {"vt-ir"}
    assert reads("gone", "vt-soc") == {"vt-soc"}


def test_a_grant_key_tells_tokens_apart_even_with_the_same_accounts() -> None:
    same = frozenset({"vt-soc"})
    assert Grant("a", same).key != Grant("b", same).key
    assert Grant("a", same).key != Grant("a", frozenset({"vt-soc", "vt-ir"})).key
    assert Grant(None, frozenset()).key != Grant(None, same).key


def test_a_pattern_that_names_no_account_is_a_warning_not_an_error(caplog) -> None:
    """An operator may name an account before adding it, or keep a token while an account is
    away; the token then reads less, never more. Refusing to start would also stop ``snapshot``
    (same file) over a token. Each such pattern is said once at start-up."""
    settings = parse(
        {"name": "grafana", "sha256": HASH, "accounts": ["vt-*", "zks-*", "gone"]},
        {"name": "ops", "sha256": "0" * 64},
    )
    caplog.set_level(logging.WARNING, logger="gateway.app")
    create_app(settings)
    assert [r.getMessage() for r in caplog.records] == [
        "token 'grafana': 'zks-*' names no configured account (the token reads only accounts "
        "that are)",
        "token 'grafana': 'gone' names no configured account (the token reads only accounts "
        "that are)",
    ]
    assert Access(settings.tokens, IDS).unmatched == [("grafana", "zks-*"), ("grafana", "gone")]


# -- the README --------------------------------------------------------------------------------

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def readme_section(title: str) -> str:
    """The README from ``title`` to the next heading of the same or a higher level."""
    start = README.index(f"\n{title}\n")
    level = title.split(" ", 1)[0]
    ends = [README.find(f"\n{h} ", start + 1) for h in ("#" * n for n in range(1, len(level) + 1))]
    return README[start : min((e for e in ends if e != -1), default=len(README))]


def test_the_readme_token_example_loads_with_its_accounts() -> None:
    """The "Tokens" config block, with the accounts of "Serving your own accounts": the token
    the README shows (and sends with curl) is grafana's, reading vt-soc and repute."""
    tokens = readme_section("### Tokens")
    [block] = re.findall(r"```toml\n(.*?)```", tokens, re.S)
    [accounts] = re.findall(
        r"```toml\n(.*?)```", readme_section("## Serving your own accounts"), re.S
    )
    env = {
        var: f"value-of-{var}-0123456789abcdefghij"
        for var in re.findall(r"\$\{([A-Z_]+)\}", accounts + block)
    }
    settings = parse_settings(tomllib.loads(accounts + "\n" + block), env=env)
    assert [t.name for t in settings.tokens] == ["grafana", "oncall"]
    [shown] = set(re.findall(r"Bearer ([A-Za-z0-9_-]{43})", tokens))
    access = Access(settings.tokens, [a.id for a in settings.accounts])
    assert access.authenticate(f"Bearer {shown}".encode()) == Grant(
        "grafana", frozenset({"vt-soc", "repute"})
    )
    oncall = access.authenticate(f"Bearer {env['ONCALL_TOKEN']}".encode())
    assert oncall is not None and oncall.accounts == {"repute", "vt-soc", "rl-acme", "zks-prod"}


def test_the_readme_shows_what_token_new_prints() -> None:
    tokens = readme_section("### Tokens")
    [shown] = set(re.findall(r"Bearer ([A-Za-z0-9_-]{43})", tokens))
    printed = new_token_text("grafana", shown, ["vt-*", "repute"])
    assert f"```\n{printed}```" in tokens
    assert "usage-gateway token new grafana --accounts 'vt-*' repute" in tokens
