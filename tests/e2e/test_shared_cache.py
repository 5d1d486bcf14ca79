"""Two gateway processes sharing one real Redis: the second answers with no vendor call."""

from __future__ import annotations

import re

import httpx

from tests.e2e.test_demo import cli, read_until

QUERY = """{ accounts { id source { state fetchedAt } quotas { used limit }
             usage(from: "2026-01-01", to: "2026-01-31") { requests } } }"""


def test_a_second_gateway_answers_from_the_shared_cache(tmp_path, redis_url) -> None:
    with cli("emulator", "reputeapi", "--port", "0", "--seed", "5") as emulator:
        line = read_until(emulator, r"^emulator reputeapi: ")[-1]
        vendor = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        config = tmp_path / "gateway.toml"
        config.write_text(
            f'[gateway]\ncache_url = "{redis_url}"\n\n'
            f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\nbase_url = "{vendor}"\n'
            'api_key = "ra_live_premium_demo"\n',
            encoding="utf-8",
        )
        answers = []
        for _ in range(2):  # two gateway processes, one after the other
            with cli("serve", "--config", str(config), "--port", "0") as gateway:
                url = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]
                answers.append(httpx.post(url, json={"query": QUERY}, timeout=30).json())
                calls = httpx.get(f"{vendor}/_emulator/calls", timeout=5).json()["calls"]
                assert calls == {"/v1/usage": 2}  # limits and usage, by the first gateway only
        first, second = answers
        assert "errors" not in first
        assert first["data"]["accounts"][0]["source"]["state"] == "FRESH"
        assert second == first  # the same data, with the first fetch's time
