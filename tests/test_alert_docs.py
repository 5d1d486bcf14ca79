"""The README's Alerts section, as written: its config loads, its error line is the real one,
its json body is what a real delivery sends, its signature check works, and its figures are
the code's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.alerts import config as alert_config
from gateway.alerts import delivery, formats, store
from gateway.alerts.config import RuleSet
from gateway.errors import ConfigError
from gateway.settings import load_settings, parse_settings
from tests.conftest import account_entry
from tests.receiver import Receiver, serving
from tests.test_alert_graphql import snapshot

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Alerts\n", 1)[1].split("\n## ", 1)[0]
PROSE = " ".join(re.sub(r"```.*?```", "", SECTION, flags=re.S).split())
ENV = {
    "VT_API_KEY": "vt-key",
    "RL_USERNAME": "rl-user",
    "RL_PASSWORD": "rl-password",
    "ZKS_API_KEY": "zks-key",
    "REPUTE_API_KEY": "repute-key",
    "HOOK_SECRET": "a-hook-secret",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/XYZ",
}


def block(text: str, language: str) -> str:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)[0]


def test_the_example_config_loads(tmp_path) -> None:
    serving_config = block(README.split("## Serving your own accounts", 1)[1], "toml")
    path = tmp_path / "gateway.toml"
    path.write_text(serving_config + "\n" + block(SECTION, "toml"), encoding="utf-8")
    settings = load_settings(path, env=ENV)
    alerts = settings.alerts
    assert alerts is not None
    accounts = {a.id: a for a in settings.accounts}
    assert alerts.rules == RuleSet((0.8, 0.9, 1.0), True, 7200, 3600) == RuleSet()
    assert alerts.rules_for(accounts["rl-acme"]).thresholds == (0.95, 1.0)
    assert alerts.rules_for(accounts["vt-soc"]) == RuleSet((0.8, 0.9, 1.0), False, None, 3600)
    assert alerts.rules_for(accounts["repute"]) == RuleSet()
    assert alerts.dashboard_url == "https://usage.example.com"
    assert (alerts.webhooks[0].name, alerts.webhooks[0].format) == ("ops", "json")
    assert [w.format for w in alerts.webhooks] == ["json", "slack", "alertmanager"]
    assert {ENV["HOOK_SECRET"], ENV["SLACK_WEBHOOK_URL"]} <= settings.secret_values


def test_the_error_line_is_the_real_one() -> None:
    (line,) = [x for x in SECTION.splitlines() if x.startswith("usage-gateway:")]
    data = {
        "accounts": [
            {"id": "vt-soc", "provider": "virustotal", "api_key": "k", "group": "g"},
            {"id": "rl-acme", "provider": "reversinglabs", "username": "u", "password": "p"},
        ],
        "alerts": {"accounts": {"vt-sco": {"predictive": False}}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, source="gateway.toml", env={})
    assert line == f"usage-gateway: {caught.value}"


async def test_the_json_body_is_what_a_delivery_sends_and_the_check_accepts_it(
    tmp_path, emulators
) -> None:
    example = json.loads(block(SECTION, "json"))
    with serving(Receiver()) as receiver:
        settings = parse_settings(
            {
                "gateway": {"history_path": str(tmp_path / "history.sqlite")},
                "accounts": [account_entry("virustotal", emulators["virustotal"].url)],
                "alerts": {
                    "dashboard_url": "https://usage.example.com",
                    "webhooks": [{"url": f"{receiver.url}/hook", "secret": "${HOOK_SECRET}"}],
                },
            },
            env=ENV,
        )
        await snapshot(settings)  # a snapshot run, then its alerts evaluated and delivered
    (sent,) = [
        r
        for r in receiver.accepted()
        if (r.json()["quotaId"], r.json()["rule"], r.json()["threshold"])
        == (example["quotaId"], example["rule"], example["threshold"])
    ]
    body = sent.json()
    assert list(body) == list(example)  # the same fields, in the same order
    assert {**body, "id": example["id"]} == example  # the id is new for every event
    namespace: dict = {}
    exec(block(SECTION, "python"), namespace)  # the README's check, as a receiver would run it
    genuine = namespace["genuine"]
    header = sent.headers["x-usage-gateway-signature"]
    assert genuine(sent.body, header, ENV["HOOK_SECRET"]) is True
    assert genuine(sent.body.replace(b"297", b"296"), header, ENV["HOOK_SECRET"]) is False
    assert genuine(sent.body, header, "another-secret") is False


def test_the_figures_are_the_code() -> None:
    assert delivery.TRIES == 3 and "tried up to 3 times in a run" in PROSE
    assert (delivery.BACKOFF, delivery.BACKOFF * 2) == (0.5, 1.0)
    assert "0.5 s then 1 s apart" in PROSE
    assert delivery.RUN_DEADLINE == 60 and "at most 60 s per webhook per run" in PROSE
    assert delivery.MAX_PER_RUN == 200 and "(200 events at most)" in PROSE
    assert store.MAX_REJECTED_RUNS == 3 and "after refusing it in 3 runs" in PROSE
    assert delivery.RESPONSE_CAP == 4096 and "no further than 4 KiB" in PROSE
    assert formats.OPEN_END.days == 30 and "(or 30 days on, without one)" in PROSE
    assert alert_config.MAX_THRESHOLDS == alert_config.MAX_WEBHOOKS == 10
    assert "Up to 10 thresholds and 10 webhooks" in PROSE
    assert (alert_config.DEFAULT_TIMEOUT, alert_config.MAX_TIMEOUT) == (10, 60)
    assert 'timeout = "10s"' in SECTION and "(0.1 s to 60 s)" in SECTION
    assert store.MAX_EVENTS_READ == 1000 and "`limit` 1 to 1000" in PROSE
