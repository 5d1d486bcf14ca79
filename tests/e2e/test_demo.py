"""``usage-gateway demo`` as a user starts it: a process, queried over HTTP, then stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


@pytest.fixture
def demo():
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway.cli"]
    process = subprocess.Popen(
        [*command, "demo", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    with process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


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
    now = utc_now()
    for account_id, key_name, limit in (
        ("repute-premium", "ra_live_premium_demo", 50_000),
        ("repute-basic", "ra_live_basic_demo", 10_000),
    ):
        key = data.keys[key_name]
        expected = [data.day(key, start + timedelta(days=i), now).requests for i in range(7)]
        account = accounts[account_id]
        assert account["source"]["state"] == "FRESH"
        assert account["quotas"] == [{"limit": limit}]
        assert [p["requests"] for p in account["usage"]["series"]] == expected
        assert account["usage"]["requests"] == sum(expected)
        assert account["usage"]["missingDays"] == []

    demo.send_signal(signal.SIGINT)
    assert demo.wait(20) == 0
