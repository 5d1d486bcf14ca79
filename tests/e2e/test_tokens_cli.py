"""Tokens from the command line, as processes: ``serve`` fails closed on a non-loopback host
without tokens, ``token new`` prints a token and a block the gateway accepts, and the tokens a
served gateway knows never reach its log.

No test listens anywhere but loopback: the non-loopback hosts are refused before any socket is
made, or are 192.0.2.1 (TEST-NET-1, documentation only, on no interface here), where binding
fails; what a run printed before that shows which way the gate went.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from gateway.cli import is_loopback, open_to_all
from gateway.settings import load_settings
from tests.conftest import account_entry
from tests.e2e.test_demo import SCRIPT, cli, read_until

UNROUTED = "192.0.2.1"
"""TEST-NET-1: an address no interface here has; binding to it fails (EADDRNOTAVAIL)."""
QUERY = {"query": "{ accounts { id } }"}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def config_file(tmp_path: Path, emulators, tokens: str = "") -> Path:
    repute = account_entry("reputeapi", emulators["reputeapi"].url)
    vt = account_entry("virustotal", emulators["virustotal"].url)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nhistory_path = "{tmp_path / "history.sqlite"}"\n\n'
        + "".join(
            "[[accounts]]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items()) + "\n"
            for entry in (vt, repute)
        )
        + tokens,
        encoding="utf-8",
    )
    return path


# -- fail closed -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", UNROUTED, "gateway.example.org"])
def test_serve_refuses_a_non_loopback_host_without_tokens(tmp_path, emulators, host) -> None:
    config = config_file(tmp_path, emulators)
    result = run("serve", "--config", str(config), "--host", host, "--port", "8123")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [open_to_all(host, 8123)]
    assert "usage-gateway token new NAME" in result.stderr
    assert "--allow-anonymous" in result.stderr
    assert result.stdout == ""


def test_allow_anonymous_lets_serve_past_the_gate_with_a_warning(tmp_path, emulators) -> None:
    config = config_file(tmp_path, emulators)
    result = run(
        "serve", "--config", str(config), "--host", UNROUTED, "--port", "8123", "--allow-anonymous"
    )
    # Past the gate: it warned, then tried to listen (and could not: no interface has it).
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"usage-gateway: WARNING: serving {UNROUTED} with no tokens (--allow-anonymous): "
        "anyone who can reach it reads every account"
    )
    assert re.fullmatch(rf"usage-gateway: cannot listen on {UNROUTED}:8123: .+", lines[-1])
    assert result.returncode == 2


def test_with_tokens_a_non_loopback_host_needs_no_flag(tmp_path, emulators) -> None:
    token = "t" + "0123456789abcdefghijklmnopqrstuvwxyz"
    config = config_file(tmp_path, emulators, f'[[tokens]]\nname = "ops"\ntoken = "{token}"\n')
    result = run("serve", "--config", str(config), "--host", UNROUTED, "--port", "8123")
    assert result.stderr.splitlines() == [
        f"usage-gateway: cannot listen on {UNROUTED}:8123: Cannot assign requested address"
    ]
    assert result.returncode == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_serve_on_loopback_needs_no_token(tmp_path, emulators, host) -> None:
    config = config_file(tmp_path, emulators)
    with cli("serve", "--config", str(config), "--host", host, "--port", "0") as gateway:
        url = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        answer = httpx.post(url, json=QUERY, timeout=30)
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
        _, logged = gateway.communicate(timeout=10)
    assert answer.json() == {"data": {"accounts": [{"id": "vt-soc"}, {"id": "repute-premium"}]}}
    assert "WARNING" not in logged


def test_the_demo_warns_loudly_off_loopback() -> None:
    """``make run HOST=0.0.0.0`` runs ``demo --host 0.0.0.0``: it still starts (no tokens, made-up
    data) but says so. Tried here on the unrouted address: the warning comes before it listens."""
    result = run("demo", "--host", UNROUTED, "--port", "8123")
    assert result.stderr.splitlines()[0] == (
        f"usage-gateway demo: WARNING: listening on {UNROUTED}, not loopback, with no tokens: "
        "anyone who can reach this machine reads the demo's (made-up) accounts and can run "
        "queries on it"
    )
    assert result.returncode == 2  # then it could not listen there


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("::ffff:10.0.0.5", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- token new ---------------------------------------------------------------------------------


def token_new(*args: str) -> tuple[str, str]:
    """The token and the TOML block ``token new`` printed."""
    result = run("token", "new", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [token] = [line.strip() for line in lines if line.startswith("    ")]
    block = result.stdout[result.stdout.index("[[tokens]]") :]
    assert "Authorization: Bearer <token>" in result.stdout
    return token, block


def test_token_new_prints_a_token_and_the_block_a_served_gateway_accepts(
    tmp_path, emulators
) -> None:
    token, block = token_new("grafana", "--accounts", "vt-*", "repute-premium")
    other, _ = token_new("grafana")
    assert token != other and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert tomllib.loads(block) == {
        "tokens": [
            {
                "name": "grafana",
                "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "accounts": ["vt-*", "repute-premium"],
            }
        ]
    }
    assert token not in block
    config = config_file(tmp_path, emulators, block)
    assert [t.name for t in load_settings(config, env={}).tokens] == ["grafana"]
    with cli("serve", "--config", str(config), "--port", "0") as gateway:
        started = read_until(gateway, r"^GraphiQL: ")
        assert started[1] == "tokens: grafana (every route but /healthz and /static/ needs one)"
        url = started[-1].split(" ", 1)[1]
        granted = httpx.post(url, json=QUERY, headers={"Authorization": f"Bearer {token}"})
        refused = httpx.post(url, json=QUERY, headers={"Authorization": f"Bearer {other}"})
        anonymous = httpx.post(url, json=QUERY)
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
    assert granted.json() == {"data": {"accounts": [{"id": "vt-soc"}, {"id": "repute-premium"}]}}
    assert refused.status_code == anonymous.status_code == 401


def test_token_new_reads_every_account_by_default_and_checks_its_arguments() -> None:
    _, block = token_new("ops")
    assert tomllib.loads(block)["tokens"][0]["accounts"] == ["*"]
    bad_name = run("token", "new", "ops team")
    assert bad_name.returncode == 2
    assert bad_name.stderr == (
        "usage-gateway token new: NAME 'ops team' must be 1-64 letters, digits, '.', '_' or "
        "'-', starting with a letter or digit\n"
    )
    bad_pattern = run("token", "new", "ops", "--accounts", "vt soc")
    assert bad_pattern.returncode == 2
    assert bad_pattern.stderr == (
        "usage-gateway token new: --accounts 'vt soc': each entry must be an account id or a "
        "glob pattern of 1-64 letters, digits, '.', '_', '-', '*', '?', '[', ']' or '!'\n"
    )


# -- never logged ------------------------------------------------------------------------------


def forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]


def test_tokens_never_reach_the_log(tmp_path, emulators) -> None:
    """Debug logging, a literal token and one from ``${VAR}``, requests with each of them, with
    a wrong one and with a refused export: no form of any of them is in stderr, and the
    token's name is where it helps."""
    literal = "lit3ral-Tok3n_k3V9xT2pLm8ZrW5yN1bC7d"
    from_env = "env-Tok3n_Zx9wV8uT7sR6qP5oN4mL3kJ2iH1"
    wrong = "wr0ng-Tok3n_Qa1Ws2Ed3Rf4Tg5Yh6Uj7Ik8Ol"
    config = config_file(
        tmp_path,
        emulators,
        f'[[tokens]]\nname = "grafana"\ntoken = "{literal}"\n\n'
        '[[tokens]]\nname = "ci"\ntoken = "${CI_TOKEN}"\n',
    )
    env = {"CI_TOKEN": from_env}
    with cli(
        "serve", "--config", str(config), "--port", "0", "--log-level", "debug", env=env
    ) as gateway:
        url = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        base = url.removesuffix("/graphql")
        for token in (literal, from_env, wrong):
            auth = {"Authorization": f"Bearer {token}"}
            httpx.post(url, json=QUERY, headers=auth, timeout=30)
            httpx.post(url, json={"query": "{ nope }"}, headers=auth, timeout=30)
            httpx.get(
                f"{base}/export/usage",
                params={"account": "rl-acme", "from": "2026-03-01", "to": "2026-03-02"},
                headers=auth,
                timeout=30,
            )
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
        _, logged = gateway.communicate(timeout=10)
    for token in (literal, from_env, wrong):
        for form in forms(token):
            assert form not in logged, f"{form} in stderr:\n{logged}"
    assert 'GET /export/usage refused (token grafana): account: no account "rl-acme"' in logged
    assert 'GET /export/usage refused (token ci): account: no account "rl-acme"' in logged
    assert "POST /graphql refused: an unknown token (401)" in logged
    assert "GraphQL error shown (token ci): Cannot query field 'nope' on type 'Query'." in logged
