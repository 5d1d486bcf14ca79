"""The CLI as a user runs it: processes, queried over HTTP, then stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway.cli import DEMO_SEED
from gateway.domain import utc_now
from providers.reputeapi.emulator import ReputeData

SCRIPT = Path(sys.executable).parent / "usage-gateway"


def read_until(process: subprocess.Popen[str], pattern: str, seconds: float = 30) -> list[str]:
    """Lines of stdout up to the first that matches ``pattern``."""
    deadline = time.monotonic() + seconds
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    pytest.fail(f"no line matching {pattern!r} in {lines}")


@contextmanager
def cli(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``usage-gateway ARGS`` as a process; killed if the test leaves it running."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway.cli"]
    process = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    with process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def demo() -> Iterator[subprocess.Popen[str]]:
    with cli("demo", "--port", "0", "--log-level", "warning") as process:
        yield process


def expected_days(data: ReputeData, key_name: str, start, count: int) -> list[int]:
    key = data.keys[key_name]
    now = utc_now()
    return [data.day(key, start + timedelta(days=i), now).requests for i in range(count)]


def test_demo_serves_the_graph_and_stops_cleanly(demo) -> None:
    lines = read_until(demo, r"^GraphiQL: ")
    url = lines[-1].split(" ", 1)[1]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/graphql", url)
    assert any(line.startswith("emulator reputeapi: http://127.0.0.1:") for line in lines)

    page = httpx.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "graphiql" in page.text.lower()

    # A closed past week, so the numbers cannot move while the test runs.
    end = utc_now().date() - timedelta(days=2)
    start = end - timedelta(days=6)
    query = """query($from: Date!, $to: Date!) { accounts { id source { state } quotas { limit }
        usage(from: $from, to: $to) { requests missingDays series { requests } } } }"""
    answer = httpx.post(
        url,
        json={"query": query, "variables": {"from": start.isoformat(), "to": end.isoformat()}},
        timeout=30,
    ).json()
    assert "errors" not in answer, answer
    accounts = {a["id"]: a for a in answer["data"]["accounts"]}

    data = ReputeData(DEMO_SEED)
    for account_id, key_name, limit in (
        ("repute-premium", "ra_live_premium_demo", 50_000),
        ("repute-basic", "ra_live_basic_demo", 10_000),
    ):
        expected = expected_days(data, key_name, start, 7)
        account = accounts[account_id]
        assert account["source"]["state"] == "FRESH"
        assert account["quotas"] == [{"limit": limit}]
        assert [p["requests"] for p in account["usage"]["series"]] == expected
        assert account["usage"]["requests"] == sum(expected)
        assert account["usage"]["missingDays"] == []

    demo.send_signal(signal.SIGINT)
    assert demo.wait(20) == 0


def test_serve_a_config_against_a_lone_emulator(tmp_path) -> None:
    with cli("emulator", "reputeapi", "--port", "0", "--seed", "11") as emulator:
        line = read_until(emulator, r"^emulator reputeapi: ")[-1]
        vendor_url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        config = tmp_path / "gateway.toml"
        config.write_text(
            "[[accounts]]\n"
            'id = "repute-prod"\n'
            'provider = "reputeapi"\n'
            f'base_url = "{vendor_url}"\n'
            'api_key = "${REPUTE_API_KEY}"\n',
            encoding="utf-8",
        )
        env = {"USAGE_GATEWAY_CONFIG": str(config), "REPUTE_API_KEY": "ra_live_basic_demo"}
        with cli("serve", "--port", "0", env=env) as gateway:
            lines = read_until(gateway, r"^GraphiQL: ")
            assert lines[0] == f"usage-gateway: 1 account from {config}"
            url = lines[-1].split(" ", 1)[1]
            end = utc_now().date() - timedelta(days=1)
            start = end - timedelta(days=2)
            query = """query($from: Date!, $to: Date!) { account(id: "repute-prod") {
                plan usage(from: $from, to: $to) { series { requests } } } }"""
            variables = {"from": start.isoformat(), "to": end.isoformat()}
            answer = httpx.post(url, json={"query": query, "variables": variables}, timeout=30)
            account = answer.json()["data"]["account"]
            expected = expected_days(ReputeData(11), "ra_live_basic_demo", start, 3)
            assert account["plan"] == "basic"
            assert [p["requests"] for p in account["usage"]["series"]] == expected
            gateway.send_signal(signal.SIGINT)
            assert gateway.wait(20) == 0
            _, logged = gateway.communicate(timeout=10)
            assert "ra_live_basic_demo" not in logged
        emulator.send_signal(signal.SIGINT)
        assert emulator.wait(20) == 0
