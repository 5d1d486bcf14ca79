"""Secrets never echo, in any encoding: a vendor that sends credentials back (in an error, or in
an answer of the wrong shape) gets them blanked everywhere text leaves the gateway — the GraphQL
answer, the history store's run records and the snapshot's outcome."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.app import build_service
from gateway.servers import ServerThread
from gateway.snapshot import run_snapshot
from tests.conftest import NOW, TLS, account_entry, settings_for

KEY = "ra_live_s3cr3t/key+Z9="
USER, PASSWORD = "soc-analyst-7", "p@ss/w0rd+Z9="


def forms(*secrets: str) -> dict[str, str]:
    """Every form a secret might leave in: raw, URL-encoded, base64 (padded or not)."""
    found = {}
    for secret in secrets:
        raw = base64.b64encode(secret.encode()).decode()
        found |= {
            f"raw {secret}": secret,
            f"url {secret}": quote(secret, safe=""),
            f"b64 {secret}": raw,
            f"b64 bare {secret}": raw.rstrip("="),
        }
    return found


def echoing(answer: Callable[[dict[str, str]], tuple[int, Any]]):
    """A loopback vendor: ``answer(headers)`` -> (status, JSON body) for every GET."""

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, body = answer(headers)
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


@pytest.fixture
def vendor() -> Iterator[Callable[[Callable[[dict[str, str]], tuple[int, Any]]], str]]:
    servers: list[ServerThread] = []

    def serve(answer: Callable[[dict[str, str]], tuple[int, Any]]) -> str:
        server = ServerThread(echoing(answer)).start()
        servers.append(server)
        return server.urls[0]

    yield serve
    for server in servers:
        server.stop()


def repute_shape(value_at: str) -> Callable[[dict[str, str]], tuple[int, Any]]:
    """A ReputeAPI answer whose ``value_at`` field carries the caller's key, URL-encoded and
    base64 too: a count or a timestamp that is not one."""

    def answer(headers: dict[str, str]) -> tuple[int, Any]:
        key = headers.get("x-api-key", "")
        echoed = f"{key} {quote(key, safe='')} {base64.b64encode(key.encode()).decode()}"
        quota: dict[str, Any] = {"monthly_limit": 1000, "used": 1, "reset_date": None}
        quota[value_at] = echoed
        return 200, {"quota": quota, "rate_limits": {"requests_per_minute": 60}}

    return answer


def basic_echo(headers: dict[str, str]) -> tuple[int, Any]:
    """ReversingLabs-style: a 401 quoting the Authorization header it got."""
    return 401, {"message": f"denied {headers.get('authorization')}"}


CASES = {
    "a count that is the key": (
        "reputeapi",
        lambda: repute_shape("monthly_limit"),
        {"api_key": KEY},
        "MALFORMED",
    ),
    "a timestamp that is the key": (
        "reputeapi",
        lambda: repute_shape("reset_date"),
        {"api_key": KEY},
        "MALFORMED",
    ),
    "an error quoting HTTP Basic": (
        "reversinglabs",
        lambda: basic_echo,
        {"username": USER, "password": PASSWORD},
        "CREDENTIALS_REJECTED",
    ),
}


@pytest.mark.parametrize("case", CASES)
async def test_an_echoed_secret_leaves_in_no_form(case, vendor, make_gateway, tmp_path) -> None:
    provider, answer, secrets, cause = CASES[case]
    entry = account_entry(provider, vendor(answer()), **secrets)
    leaked = forms(*secrets.values(), *([f"{USER}:{PASSWORD}"] if "username" in secrets else []))

    gateway = make_gateway(settings_for(entry))
    shown = await gateway.query("{ accounts { source { state cause message } quotas { id } } }")
    (account,) = shown["data"]["accounts"]
    assert account["source"]["cause"] == cause and account["quotas"] == []
    assert "********" in account["source"]["message"] or cause == "MALFORMED"

    path = tmp_path / "history.sqlite"
    async with httpx.AsyncClient(verify=TLS) as http:
        service = build_service(
            settings_for(entry, history_path=str(path)), http, clock=lambda: NOW
        )
        try:
            assert service.history is not None
            (outcome,) = await run_snapshot(service, service.history)
        finally:
            await service.upstream.close()
            if service.history is not None:
                await service.history.close()
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT outcome, error FROM snapshot_runs").fetchall()
    assert [row[0] for row in stored] == ["failed"] and not outcome.ok

    for where, text in {
        "answer": json.dumps(shown),
        "snapshot outcome": outcome.error or "",
        "history file": json.dumps(stored),
    }.items():
        for name, form in leaked.items():
            assert form not in text, f"{name} in the {where}: {text}"
