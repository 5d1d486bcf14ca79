"""``usage-gateway snapshot`` and ``serve --snapshot-every`` as processes, against emulator
processes: exit codes, a run killed halfway, two runs at once, and the in-server schedule."""

from __future__ import annotations

import itertools
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_demo import SCRIPT, cli, read_until

COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway.cli"]
VT_DAYS, REPUTE_DAYS = 59, 35  # VirusTotal's retention to yesterday; ReputeAPI's snapshot span


@pytest.fixture
def vendors() -> Iterator[dict[str, str]]:
    """A ReputeAPI and a VirusTotal emulator process."""
    with (
        cli("emulator", "reputeapi", "--port", "0") as repute,
        cli("emulator", "virustotal", "--port", "0") as vt,
    ):
        urls = {}
        for name, process in (("reputeapi", repute), ("virustotal", vt)):
            line = read_until(process, rf"^emulator {name}: ")[-1]
            urls[name] = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        yield urls


def write_config(
    path: Path, vendors: dict[str, str], repute_key: str = "ra_live_basic_demo"
) -> Path:
    config = path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{path / "history.sqlite"}"\nupstream_timeout = 60\n\n'
        f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\n'
        f'base_url = "{vendors["reputeapi"]}"\napi_key = "{repute_key}"\n\n'
        f'[[accounts]]\nid = "vt"\nprovider = "virustotal"\nbase_url = "{vendors["virustotal"]}"\n'
        'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n',
        encoding="utf-8",
    )
    return config


def query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path / "history.sqlite") as db:
        return db.execute(sql).fetchall()


def stored_runs(path: Path) -> int:
    """Runs stored ``ok`` so far (0 while the file or its tables are still being made)."""
    try:
        return query(path, "SELECT count(*) FROM snapshot_runs WHERE outcome = 'ok'")[0][0]
    except sqlite3.OperationalError:
        return 0


def snapshot(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "snapshot", "--config", str(config)], capture_output=True, text=True, timeout=120
    )


def test_exit_codes(tmp_path, vendors) -> None:
    ok = snapshot(write_config(tmp_path, vendors))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        f"repute: stored {REPUTE_DAYS} days (0 changed)",
        f"vt: stored {VT_DAYS} days (0 changed)",
    ]
    partly = snapshot(write_config(tmp_path, vendors, repute_key="ra_live_revoked_demo"))
    assert partly.returncode == 1
    assert partly.stdout.splitlines()[0].startswith("repute: failed: ReputeAPI rejected")
    assert partly.stdout.splitlines()[1] == f"vt: stored {VT_DAYS} days (0 changed)"
    (tmp_path / "bad.toml").write_text("[[accounts]]\nid = 'x'\n", encoding="utf-8")
    bad = snapshot(tmp_path / "bad.toml")
    assert bad.returncode == 2
    assert "account 'x': field 'provider': missing" in bad.stderr


def test_a_run_killed_halfway_leaves_no_partial_day(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    httpx.post(f"{vendors['virustotal']}/_emulator/fault", json={"delay_ms": 60_000})
    process = subprocess.Popen([*COMMAND, "snapshot", "--config", str(config)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (tmp_path / "history.sqlite").exists() and stored_runs(tmp_path) == 1:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the first account was not stored")
        process.kill()  # halfway: ReputeAPI stored, VirusTotal still waiting for its vendor
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert query(tmp_path, "SELECT account_id, outcome FROM snapshot_runs ORDER BY id") in (
        [("repute", "ok"), ("vt", "running")],
        [("vt", "running"), ("repute", "ok")],
    )
    assert query(tmp_path, "SELECT count(*) FROM usage_days WHERE account_id = 'vt'") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM quota_samples WHERE account_id = 'vt'") == [(0,)]

    httpx.post(f"{vendors['virustotal']}/_emulator/fault", json=None)
    again = snapshot(config)
    assert again.returncode == 0, again.stderr
    assert query(
        tmp_path, "SELECT account_id, count(*) FROM usage_days GROUP BY account_id ORDER BY 1"
    ) == [("repute", REPUTE_DAYS), ("vt", VT_DAYS)]
    outcomes = query(tmp_path, "SELECT account_id, outcome FROM snapshot_runs ORDER BY id")
    assert sorted(outcomes) == sorted(
        [("repute", "ok"), ("vt", "abandoned"), ("repute", "ok"), ("vt", "ok")]
    )


def test_two_snapshot_processes_at_once(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    runs = [
        subprocess.Popen(
            [*COMMAND, "snapshot", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(120), *p.communicate()) for p in runs]
    for code, _, err in results:
        assert code == 0, err
        assert "locked" not in err
    assert query(
        tmp_path, "SELECT account_id, count(*) FROM usage_days GROUP BY account_id ORDER BY 1"
    ) == [("repute", REPUTE_DAYS), ("vt", VT_DAYS)]
    assert query(tmp_path, "SELECT outcome, count(*) FROM snapshot_runs GROUP BY 1") == [("ok", 4)]
    assert query(tmp_path, "SELECT count(*) FROM usage_changes") == [(0,)]


def test_serve_snapshots_on_a_schedule_one_run_at_a_time(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    with cli("serve", "--config", str(config), "--port", "0", "--snapshot-every", "1s") as server:
        url = read_until(server, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        runs: list = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = httpx.post(
                url,
                json={"query": "{ snapshots { accountId outcome startedAt finishedAt } }"},
                timeout=10,
            ).json()
            runs = [r for r in answer["data"]["snapshots"] if r["outcome"] == "OK"]
            if len(runs) >= 6:
                break
            time.sleep(0.3)
        assert len(runs) >= 6, runs
        for account in ("repute", "vt"):
            mine = sorted(
                (r for r in runs if r["accountId"] == account), key=lambda r: r["startedAt"]
            )
            assert len(mine) >= 2
            for earlier, later in itertools.pairwise(mine):
                assert earlier["finishedAt"] <= later["startedAt"]  # never two at once
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0
