"""A gateway process whose shared Redis hangs (SIGSTOP) or dies (SIGKILL): it keeps answering from
its own memory, says so once in its log, and shares its answers again once Redis is back."""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest

from tests.e2e.test_demo import cli, read_until

QUERY = """{ accounts { id source { state } quotas { used limit }
             usage(from: "2026-01-01", to: "2026-01-31") { requests } } }"""
LATER = """{ accounts { id usage(from: "2026-02-01", to: "2026-02-28") { requests } } }"""
"""Usage only (an account's ``source`` would read its limits too, which Redis never got)."""
COOLDOWN = 0.5
"""``redis_cooldown``: how long the gateway skips a Redis that kept failing."""


def graphql_url(gateway) -> str:
    return read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]


@pytest.mark.parametrize("outage", ["hung", "killed"])
def test_a_gateway_rides_out_a_sick_redis(tmp_path, redis_server, outage) -> None:
    with cli("emulator", "reputeapi", "--port", "0", "--seed", "5") as emulator:
        line = read_until(emulator, r"^emulator reputeapi: ")[-1]
        vendor = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)

        def calls() -> dict[str, int]:
            return httpx.get(f"{vendor}/_emulator/calls", timeout=5).json()["calls"]

        config = tmp_path / "gateway.toml"
        config.write_text(
            f'[gateway]\ncache_url = "{redis_server.url}"\n\n'
            f"[cache]\nresponse_ttl = 0\nredis_timeout = 0.2\nredis_cooldown = {COOLDOWN}\n\n"
            f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\nbase_url = "{vendor}"\n'
            'api_key = "ra_live_premium_demo"\n',
            encoding="utf-8",
        )
        serve = ("serve", "--config", str(config), "--port", "0", "--log-level", "info")
        with cli(*serve) as first:
            url = graphql_url(first)
            if outage == "hung":
                redis_server.pause()
            else:
                redis_server.kill()
            answers = [httpx.post(url, json={"query": QUERY}, timeout=30).json() for _ in range(40)]
            for answer in answers:
                assert "errors" not in answer, answer
                (account,) = answer["data"]["accounts"]
                assert account["source"]["state"] == "FRESH", account  # never RATE_LIMITED
                assert account["quotas"] and account["usage"]["requests"] > 0
            assert calls() == {"/v1/usage": 2}  # limits and usage once; then from memory

            if outage == "hung":
                redis_server.resume()
            else:
                redis_server.start()  # empty, on the same port
            time.sleep(COOLDOWN * 2)  # the cooldown is over: the next operation probes Redis
            later = httpx.post(url, json={"query": LATER}, timeout=30).json()
            assert later["data"]["accounts"][0]["usage"]["requests"] > 0, later
            assert calls() == {"/v1/usage": 3}
            first.send_signal(signal.SIGINT)
            assert first.wait(20) == 0
            _, logged = first.communicate(timeout=10)

        cache_lines = [line for line in logged.splitlines() if " gateway.cache: " in line]
        warnings = [line for line in cache_lines if " WARNING " in line]
        assert len(warnings) == 1, logged
        assert f"Redis at 127.0.0.1:{redis_server.port} failed" in warnings[0]
        back = [line for line in cache_lines if "answers again" in line]
        assert len(back) == 1 and " INFO " in back[0], logged
        assert "Traceback" not in logged

        with cli(*serve) as second:  # a second gateway answers from what the first shared
            answer = httpx.post(graphql_url(second), json={"query": LATER}, timeout=30).json()
            assert answer == later
            assert calls() == {"/v1/usage": 3}
