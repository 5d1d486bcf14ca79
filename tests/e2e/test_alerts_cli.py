"""Alerts across processes: ``usage-gateway snapshot`` twice at once, and beside ``serve
--snapshot-every``, over one history store and a real receiver: each event is made once and
delivered once to each webhook. The vendor is an emulator process (on the real clock); its
constant quotas say which events there must be."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_demo import cli, read_until
from tests.e2e.test_snapshot_cli import COMMAND
from tests.receiver import Receiver, serving

# VirusTotal's emulator reports these quotas of the group with constant use, whatever the date.
CONSTANT = {
    "intelligence_hunting_rules": 137 / 200,
    "monitor_storage_bytes": 412_345_678_901 / 1_000_000_000_000,
    "private_scans_monthly": 240 / 1000,
}
STEPS = (0.2, 0.4, 0.6)


@pytest.fixture
def virustotal() -> Iterator[str]:
    with cli("emulator", "virustotal", "--port", "0") as process:
        line = read_until(process, r"^emulator virustotal: ")[-1]
        yield re.search(r"http://127\.0\.0\.1:\d+", line).group(0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    # Slow answers: while one process waits for one, the other is trying to deliver too.
    with serving(Receiver(delay=0.2)) as running:
        yield running


def write_config(tmp_path: Path, vendor: str, hook: str) -> Path:
    config = tmp_path / "gateway.toml"
    steps = ", ".join(map(str, STEPS))
    config.write_text(
        f'[gateway]\nhistory_path = "{tmp_path / "history.sqlite"}"\n\n'
        f'[[accounts]]\nid = "vt"\nprovider = "virustotal"\nbase_url = "{vendor}"\n'
        'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n\n'
        f"[alerts]\nthresholds = [{steps}]\n\n"
        f'[[alerts.webhooks]]\nurl = "{hook}/json"\nname = "json"\n'
        'secret = "${HOOK_SECRET}"\n\n'
        f'[[alerts.webhooks]]\nurl = "{hook}/api/v2/alerts"\nformat = "alertmanager"\n'
        'name = "am"\n',
        encoding="utf-8",
    )
    return config


ENV = {"HOOK_SECRET": "e2e-hook-secret-value"}


def snapshots(config: Path, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [*COMMAND, "snapshot", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ENV},
        )
        for _ in range(count)
    ]


def finish(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """Each process's exit code, stdout and stderr, once it has ended."""
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out, err))
    return results


def stored_events(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        return db.execute("SELECT uid, data FROM alert_events ORDER BY id").fetchall()


def assert_each_event_delivered_once(tmp_path: Path, receiver: Receiver) -> set[str]:
    events = {uid for uid, _ in stored_events(tmp_path)}
    json_ids = Counter(r.json()["id"] for r in receiver.accepted("/json"))
    am_ids = Counter(
        r.json()[0]["annotations"]["event_id"] for r in receiver.accepted("/api/v2/alerts")
    )
    assert set(json_ids) == events == set(am_ids)
    assert set(json_ids.values()) == {1} == set(am_ids.values())  # exactly once each
    assert len(receiver.all()) == 2 * len(events)  # and nothing was sent that was not taken
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("SELECT DISTINCT state FROM alert_deliveries").fetchall() == [
            ("delivered",)
        ]
    return events


def constant_firings(receiver: Receiver) -> set[tuple[str, float]]:
    found = set()
    for request in receiver.accepted("/json"):
        body = request.json()
        name = body["quotaName"]
        if name in CONSTANT and body["rule"] == "threshold" and body["event"] == "firing":
            found.add((name, body["threshold"]))
    return found


EXPECTED_CONSTANT = {(name, s) for name, share in CONSTANT.items() for s in STEPS if share >= s}


def test_two_snapshot_processes_at_once_deliver_each_event_once(
    tmp_path, virustotal, receiver
) -> None:
    config = write_config(tmp_path, virustotal, receiver.url)
    for _ in range(2):  # twice: the second round finds everything said already
        for code, out, err in finish(snapshots(config, 2)):
            assert code == 0, err
            assert re.search(r"^alerts: \d+ fired, \d+ resolved; \d+ deliveries$", out, re.M), out
            assert "locked" not in err and "Traceback" not in err
    events = assert_each_event_delivered_once(tmp_path, receiver)
    assert constant_firings(receiver) == EXPECTED_CONSTANT
    assert len(events) >= len(EXPECTED_CONSTANT)
    for request in receiver.accepted("/json"):  # signed with the secret from the environment
        digest = hmac.new(ENV["HOOK_SECRET"].encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-usage-gateway-signature"] == f"sha256={digest}"


def test_serve_snapshots_and_cron_snapshots_together_deliver_each_event_once(
    tmp_path, virustotal, receiver
) -> None:
    config = write_config(tmp_path, virustotal, receiver.url)
    with cli(
        "serve", "--config", str(config), "--port", "0", "--snapshot-every", "1s", env=ENV
    ) as server:
        url = read_until(server, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        for code, _, err in finish(snapshots(config, 2)):
            assert code == 0, err
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server's own runs go on meanwhile
            runs = httpx.post(
                url, json={"query": "{ snapshots(limit: 20) { outcome } }"}, timeout=10
            ).json()["data"]["snapshots"]
            if sum(r["outcome"] == "OK" for r in runs) >= 5:
                break
            time.sleep(0.3)
        events = httpx.post(
            url,
            json={"query": "{ alertEvents(limit: 1000) { id deliveries { webhook state } } }"},
            timeout=10,
        ).json()["data"]["alertEvents"]
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0
    delivered = assert_each_event_delivered_once(tmp_path, receiver)
    assert {e["id"] for e in events} == delivered
    for event in events:
        assert sorted((d["webhook"], d["state"]) for d in event["deliveries"]) == [
            ("am", "DELIVERED"),
            ("json", "DELIVERED"),
        ]
    assert constant_firings(receiver) == EXPECTED_CONSTANT


def test_logs_name_a_webhook_by_name_and_host_only(tmp_path, virustotal, closed_port_url) -> None:
    token = "T0123/B0456/a-slack-like-token"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{tmp_path / "history.sqlite"}"\n\n'
        f'[[accounts]]\nid = "vt"\nprovider = "virustotal"\nbase_url = "{virustotal}"\n'
        'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n\n'
        "[alerts]\nthresholds = [0.2]\n\n"
        '[[alerts.webhooks]]\nurl = "${HOOK_URL}"\nname = "chat"\nformat = "slack"\n'
        'secret = "${HOOK_SECRET}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "HOOK_URL": f"{closed_port_url}/services/{token}", **ENV}
    done = subprocess.run(
        [*COMMAND, "snapshot", "--config", str(config), "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    host = closed_port_url.removeprefix("http://")
    assert f"alert webhook 'chat' ({host}): connection failed;" in done.stderr
    assert "alert firing: vt: " in done.stderr  # debug output is on
    assert "not all delivered to chat" in done.stdout
    for secret in (token, "a-slack-like-token", ENV["HOOK_SECRET"]):
        assert secret not in done.stderr and secret not in done.stdout
