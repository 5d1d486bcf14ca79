"""Three ``usage-gateway serve --snapshot-every 2s`` processes sharing one Redis and one history
file: one runner per period; the runner killed (SIGKILL) mid-run is taken over within its period
by another replica, and later periods go on with one runner each.

The count comes from the history store (its ``snapshot_runs``: which process stored which
account when), checked against the processes' own log lines and ``/metrics``.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from providers import registry
from tests.e2e.test_demo import cli, read_until
from tests.e2e.test_snapshot_cli import COMMAND

EVERY = 2.0
PROVIDERS = ("virustotal", "reversinglabs")
"""Vendors whose emulators set no per-minute limit on usage reads: a run every 2 s for a
minute stays within what they allow (ReputeAPI's allows 30 usage reads a minute)."""
ACCOUNTS = {registry()[p].emulator.accounts[0]["id"] for p in PROVIDERS}
SECRETS = ("vt_demo_admin_key", "rl_demo_alice")


@pytest.fixture
def vendors() -> Iterator[dict[str, str]]:
    """An emulator process of each of :data:`PROVIDERS` (real clock), by provider."""
    with (
        cli("emulator", PROVIDERS[0], "--port", "0") as one,
        cli("emulator", PROVIDERS[1], "--port", "0") as two,
    ):
        urls = {}
        for name, process in zip(PROVIDERS, (one, two), strict=True):
            line = read_until(process, rf"^emulator {name}: ")[-1]
            urls[name] = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        yield urls


def write_config(path: Path, urls: dict[str, str], redis_url: str) -> Path:
    """Three replicas' config: the shared Redis, one history file, an account per vendor."""
    entries = []
    for provider in PROVIDERS:
        account = registry()[provider].emulator.accounts[0]
        fields = {"provider": provider, "base_url": urls[provider], **account}
        fields.pop("name")
        entries.append("[[accounts]]\n" + "".join(f'{k} = "{v}"\n' for k, v in fields.items()))
    config = path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{path / "history.sqlite"}"\ncache_url = "{redis_url}"\n\n'
        + "\n".join(entries),
        encoding="utf-8",
    )
    return config


SERVE = ("--snapshot-every", f"{EVERY:g}s", "--log-level", "info")


class Replica:
    """One ``serve`` process; its log goes to a file the test reads."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(
                [*COMMAND, "serve", "--config", str(config), "--port", "0", *SERVE],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.url = read_until(self.process, r"^GraphiQL: ")[-1].split(" ", 1)[1].rsplit("/", 1)[0]

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self) -> str:
        """The process's state letter in ``/proc`` (``T``: stopped)."""
        return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            assert self.process.wait(30) == 0
        self.process.communicate(timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.communicate(timeout=10)


def until(condition: Callable[[], object], what: str, seconds: float = 60) -> object:
    """``condition()`` once it is true; fails the test naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def runs(path: Path) -> list[tuple[str, str, str, float]]:
    """(account, owner's pid, outcome, started at) of every stored snapshot run."""
    with sqlite3.connect(path / "history.sqlite") as db:
        rows = db.execute("SELECT account_id, owner, outcome, started_at FROM snapshot_runs")
        return [
            (account, owner.rsplit(":", 1)[1], outcome, datetime.fromisoformat(started).timestamp())
            for account, owner, outcome, started in rows.fetchall()
        ]


def period_of(moment: float) -> int:
    return math.floor(moment / EVERY)


def fault(url: str, body: dict | None) -> None:
    httpx.post(f"{url}/_emulator/fault", json=body, timeout=5).raise_for_status()


LOGGED = r"snapshot period (\d+) \(every 2 s\): (ran|taken_over|lost|local) by"
"""The line each run of a period ends with."""


LOGGED = r"snapshot period (\d+) \(every 2 s\): (ran|taken_over|lost|local) by"
"""The line each run of a period ends with."""


def metric(text: str, outcome: str) -> float:
    line = re.search(
        rf'^usage_gateway_snapshot_periods_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M
    )
    assert line is not None, text
    return float(line.group(1))


@pytest.fixture
def replicas(tmp_path, vendors, redis_server) -> Iterator[list[Replica]]:
    config = write_config(tmp_path, vendors, redis_server.url)
    started: list[Replica] = []
    try:
        for index in range(3):
            started.append(Replica(config, tmp_path / f"replica-{index}.log"))
        yield started
    finally:
        for replica in started:
            replica.kill()


class Shared:
    """The test's own look at the shared Redis: its clock and the election's keys."""

    def __init__(self, redis_server) -> None:
        self.redis = redis_server.client()

    def now(self) -> float:
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def period(self) -> int:
        return period_of(self.now())

    def key(self, kind: str, period: int) -> bytes | None:
        found = list(self.redis.scan_iter(match=f"snapshot:*:{kind}:{period}"))
        assert len(found) <= 1, found  # one election group for the three
        return found[0] if found else None

    def done_by(self, period: int) -> str | None:
        """The token of the replica that marked ``period`` done."""
        found = self.key("done", period)
        value = self.redis.get(found) if found else None
        return value.decode() if value else None

    def no_credentials(self) -> None:
        for found in self.redis.scan_iter(match="*"):
            value = self.redis.get(found) or b""
            assert not any(s.encode() in found + value for s in SECRETS), (found, value)


def slow_runner(shared: Shared, path: Path, vendors: dict[str, str], replicas: list[Replica]):
    """Make the vendors answer after 1.5 s from the next period on; that period, its runner's
    token and its process, once the run waits for both vendors."""
    done = shared.period()
    until(lambda: shared.done_by(done), "the current period done")
    for url in vendors.values():
        fault(url, {"delay_ms": 1500})
    period = done + 1
    lease = until(lambda: shared.key("run", period), "the next period taken")
    token = shared.redis.get(lease).decode()
    pid = token.split(":")[-2]
    (runner,) = [r for r in replicas if str(r.pid) == pid]

    def mid_run() -> bool:
        running = {a for a, o, outcome, _ in runs(path) if o == pid and outcome == "running"}
        return running == ACCOUNTS

    until(mid_run, "the runner waiting for both vendors")
    return period, token, runner


def periods_stored(path: Path) -> dict[int, list[tuple[str, str, str]]]:
    """(account, owner's pid, outcome) of the stored runs, by the period they started in."""
    by_period: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for account, owner, outcome, started in runs(path):
        by_period[period_of(started)].append((account, owner, outcome))
    return by_period


def logged(replicas: list[Replica]) -> dict[int, list[str]]:
    """``pid:outcome`` of each period's run, from the replicas' logs, by period."""
    ran: dict[int, list[str]] = defaultdict(list)
    for replica in replicas:
        for line in replica.lines():
            said = re.search(LOGGED, line)
            if said:
                ran[int(said.group(1))].append(f"{replica.pid}:{said.group(2)}")
        assert "Traceback" not in replica.log.read_text()
    return ran


def pid_of(token: str) -> str:
    return token.split(":")[-2]


def test_one_runner_per_period_and_a_killed_runner_is_taken_over(
    tmp_path, vendors, redis_server, replicas
) -> None:
    shared = Shared(redis_server)
    first = shared.period() + 1
    until(lambda: shared.done_by(first + 5), "five periods done with all three up")

    killed_period, token, victim = slow_runner(shared, tmp_path, vendors, replicas)
    victim.process.send_signal(signal.SIGKILL)  # mid-run
    victim.kill()
    for url in vendors.values():
        fault(url, None)
    taker = until(lambda: shared.done_by(killed_period), "the killed period done")
    assert taker != token
    survivors = [r for r in replicas if r is not victim]
    last = shared.period() + 3
    until(lambda: shared.done_by(last), "three more periods done")
    scrapes = [httpx.get(f"{r.url}/metrics", timeout=30).text for r in survivors]
    shared.no_credentials()
    for replica in survivors:
        replica.stop()

    # The store: per period, each account stored once, by one process.
    by_period = periods_stored(tmp_path)
    for period in range(first, last + 1):
        stored = [(a, o) for a, o, outcome in by_period[period] if outcome == "ok"]
        assert sorted(a for a, _ in stored) == sorted(ACCOUNTS), (period, by_period[period])
        assert len({o for _, o in stored}) == 1, (period, stored)
        others = [(a, o, outcome) for a, o, outcome in by_period[period] if outcome != "ok"]
        if period == killed_period:
            # The killed run stored nothing (a later run marked it abandoned); another process
            # ran the period whole, starting within it.
            assert sorted(others) == sorted((a, pid_of(token), "abandoned") for a in ACCOUNTS)
            assert stored[0][1] == pid_of(taker) != pid_of(token)
        else:
            assert others == [], (period, others)

    # The logs say the same: one "ran"/"taken_over" line per period, the takeover by the taker.
    ran = logged(replicas)
    for period in range(first, last + 1):
        assert len(ran[period]) == 1, (period, ran[period])
    assert ran[killed_period] == [f"{pid_of(taker)}:taken_over"]
    assert sum(metric(text, "taken_over") for text in scrapes) == 1
    assert sum(metric(text, "lost") + metric(text, "local") for text in scrapes) == 0
    assert all(metric(text, "skipped") >= 1 for text in scrapes)


def test_a_runner_paused_past_its_lease_does_not_mark_the_period_done(
    tmp_path, vendors, redis_server, replicas
) -> None:
    """SIGSTOP the runner mid-run until another replica has taken the period over and run it;
    resumed, the paused one ends its run (idempotent upserts: nothing changes in the store) but
    does not mark the period done: the taker's mark stays."""
    shared = Shared(redis_server)
    until(lambda: shared.done_by(shared.period() - 1), "a period done")
    period, token, paused = slow_runner(shared, tmp_path, vendors, replicas)
    paused.process.send_signal(signal.SIGSTOP)
    try:
        until(lambda: paused.state() == "T", "the runner stopped")
        for url in vendors.values():
            fault(url, None)
        taker = until(lambda: shared.done_by(period), "the paused runner's period done")
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert taker != token

    def ended() -> bool:
        return any(f"snapshot period {period} " in line for line in paused.lines())

    until(ended, "the paused runner's run ended")
    assert shared.done_by(period) == taker
    later = shared.period() + 2
    until(lambda: shared.done_by(later), "two more periods done")
    scrapes = {r.pid: httpx.get(f"{r.url}/metrics", timeout=30).text for r in replicas}
    for replica in replicas:
        replica.stop()

    ran = logged(replicas)
    assert sorted(ran[period]) == sorted([f"{paused.pid}:lost", f"{pid_of(taker)}:taken_over"])
    (line,) = [x for x in paused.lines() if f"snapshot period {period} (" in x]
    assert "its lease was gone at the end, so it did not mark the period done" in line
    assert any("lease expired before its run ended" in x for x in paused.lines())
    assert metric(scrapes[paused.pid], "lost") == 1
    for later_period in range(period + 1, later + 1):
        assert len(ran[later_period]) == 1, (later_period, ran)
    # Both runs of the period stored every account; the second changed nothing.
    stored = [(a, o) for a, o, outcome in periods_stored(tmp_path)[period] if outcome == "ok"]
    assert sorted(stored) == sorted(
        (a, o) for a in ACCOUNTS for o in (str(paused.pid), pid_of(taker))
    )
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("SELECT count(*) FROM usage_changes").fetchall() == [(0,)]
