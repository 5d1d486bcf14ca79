"""A history file that cannot be used is a clear, contained failure.

Four real ways a file breaks: garbage bytes, a read-only file system (a tmpfs remounted
read-only: root ignores file modes, not a read-only mount), a full disk (a small tmpfs filled to
the last block), and a store from a newer gateway (``user_version`` past our migrations).
``usage-gateway snapshot`` (a process) prints one line naming the file and the cause and exits
3; a served gateway still answers what needs no history, and marks what does as unavailable
with the same words. A newer store is never written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.history import MIGRATIONS, HistoryStore
from tests.conftest import NOW, account_entry, settings_for
from tests.e2e.test_snapshot_cli import COMMAND

TODAY = NOW.date()
VT_KEEPS_FROM = TODAY - timedelta(days=59)  # VirusTotal's 60 days of retention, today included
REASONS = {
    "corrupt": "it is not a SQLite database (corrupt, or another kind of file)",
    "read-only": "it is read-only (its file, directory or file system)",
    "full": "the disk it is on is full",
    "newer": "it was written by a newer usage-gateway (schema version 99; this one knows up to "
    f"{len(MIGRATIONS)}); it is left untouched",
}


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (root only); skipped where it cannot be mounted,
    except under CI as root with ``mount`` at hand, where it must work."""
    path.mkdir()
    mount = shutil.which("mount")
    result = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if mount
        else None
    )
    if result is None or result.returncode != 0:
        reason = "cannot mount a tmpfs for a read-only or full disk: " + (
            "no mount command" if result is None else result.stderr.strip()
        )
        if os.environ.get("CI") == "true" and mount and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def a_real_store(path: Path) -> None:
    """A store as a snapshot leaves it: migrated, one run stored."""

    async def make() -> None:
        store = HistoryStore(path)
        try:
            await store.start_run("vt-soc", NOW)
        finally:
            await store.close()

    asyncio.run(make())


@pytest.fixture(params=list(REASONS))
def broken(request, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(kind, path) of a history file broken that way."""
    kind = request.param
    if kind == "corrupt":
        path = tmp_path / "history.sqlite"
        path.write_bytes(b"not a database, only garbage \x00\xff" * 200)
        yield kind, path
    elif kind == "newer":
        path = tmp_path / "history.sqlite"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE usage_days_v99 (account_id TEXT, day TEXT)")
            db.execute("PRAGMA user_version = 99")
        db.close()
        yield kind, path
    elif kind == "read-only":
        with tmpfs(tmp_path / "mnt", "1m") as mount:
            path = mount / "history.sqlite"
            a_real_store(path)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            yield kind, path
    else:
        with tmpfs(tmp_path / "mnt", "1m") as mount:
            path = mount / "history.sqlite"
            a_real_store(path)
            try:
                with (mount / "filler").open("wb") as filler:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
            except OSError:  # no space left on device: what this fixture is for
                pass
            yield kind, path


def files(path: Path) -> dict[str, bytes]:
    """The store's file and any SQLite made beside it (``-wal``, ``-shm``, ``-journal``)."""
    return {p.name: p.read_bytes() for p in path.parent.glob(f"{path.name}*")}


def config(tmp_path: Path, store: Path, emulator_servers) -> Path:
    vt = emulator_servers["virustotal"][0].url
    repute = emulator_servers["reputeapi"][0].url
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nhistory_path = "{store}"\n\n'
        f'[[accounts]]\nid = "vt"\nprovider = "virustotal"\nbase_url = "{vt}"\n'
        'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n\n'
        f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\nbase_url = "{repute}"\n'
        'api_key = "ra_live_basic_demo"\n',
        encoding="utf-8",
    )
    return path


def test_snapshot_says_which_file_and_why_in_one_line_and_exits_3(
    broken, tmp_path, emulator_servers
) -> None:
    kind, store = broken
    before = files(store)
    result = subprocess.run(
        [*COMMAND, "snapshot", "--config", str(config(tmp_path, store, emulator_servers))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"usage-gateway: history store {store}: {REASONS[kind]}"]
    if kind == "newer":
        assert files(store) == before  # refused untouched: no byte, no -wal or -shm file


QUERY = """query($recentFrom: Date!, $oldFrom: Date!, $to: Date!,
                 $since: DateTime!, $until: DateTime!) {
  accounts {
    id
    quotas { name used history(from: $since, to: $until) { at } forecast { samples } }
    recent: usage(from: $recentFrom, to: $to) { requests missingDays source { state } }
    old: usage(from: $oldFrom, to: $to) { missingDays source { state cause message } }
  }
  quotas { name }
  snapshots { id }
  alerts { message }
}"""


async def test_serve_answers_what_needs_no_history_and_marks_the_rest(
    broken, emulators, make_gateway, caplog
) -> None:
    kind, store = broken
    before = files(store)
    caplog.set_level(logging.INFO)
    gateway = make_gateway(
        settings_for(
            account_entry("virustotal", emulators["virustotal"].url),
            account_entry("reputeapi", emulators["reputeapi"].url),
            history_path=str(store),
        )
    )
    yesterday = TODAY - timedelta(days=1)
    variables = {
        "recentFrom": (TODAY - timedelta(days=7)).isoformat(),
        "oldFrom": (TODAY - timedelta(days=90)).isoformat(),
        "to": yesterday.isoformat(),
        "since": (NOW - timedelta(days=30)).isoformat(),
        "until": NOW.isoformat(),
    }
    problem = f"history store {store}: {REASONS[kind]}"
    for _ in range(2):  # the second time, the log says nothing new
        answer = await gateway.query(QUERY, variables)
        data = answer["data"]
        # What needs no history answers: quotas, live usage within the vendor's retention.
        assert data["quotas"] and all(q["name"] for q in data["quotas"])
        for account in data["accounts"]:
            assert account["quotas"], account["id"]
            assert account["recent"]["source"] == {"state": "FRESH"}
            assert account["recent"]["missingDays"] == []
            assert account["recent"]["requests"] > 0
        # What does is null, with the file and the cause as the error.
        assert data["snapshots"] is None and data["alerts"] is None
        assert {e["message"] for e in answer["errors"]} == {problem}
        assert {tuple(e["path"]) for e in answer["errors"]} >= {("snapshots",), ("alerts",)}
        assert all(e["extensions"] == {"code": "HISTORY_UNAVAILABLE"} for e in answer["errors"])
        history_errors = [e["path"] for e in answer["errors"] if e["path"][-1] == "history"]
        assert len(history_errors) == sum(len(a["quotas"]) for a in data["accounts"])
        # Days only the store would know are missing, and the usage says why.
        vt, repute = data["accounts"]
        old_days = [TODAY - timedelta(days=d) for d in range(90, 59, -1)]
        assert vt["old"]["missingDays"] == [d.isoformat() for d in old_days]
        assert vt["old"]["source"] == {
            "state": "UNAVAILABLE",
            "cause": "INTERNAL",
            "message": f"{problem}; days before {VT_KEEPS_FROM.isoformat()}, which the vendor "
            "no longer keeps, are missing",
        }
        assert repute["old"]["source"]["state"] == "FRESH"  # ReputeAPI keeps every day
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.getMessage()) for r in loud] == [
        ("gateway.service", "WARNING", f"{problem}; answers that need it say so")
    ]
    assert not any(r.exc_info for r in caplog.records)
    if kind == "newer":
        assert files(store) == before
