"""The CLI as a user runs it: processes, queried over HTTP, then stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.cli import DEMO_SEED
from gateway.domain import utc_now
from providers.reputeapi.emulator import ReputeData
from providers.reversinglabs.emulator import ReversingLabsData
from providers.virustotal.emulator import VirusTotalData

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
    assert lines[-2] == f"Dashboard: {url.removesuffix('graphql')}"

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


# -- the lived-in demo -------------------------------------------------------------------------

README = Path(__file__).resolve().parent.parent.parent / "README.md"
HISTORY_LINE = re.compile(
    r"^history: (?P<path>.+) \((?P<kind>kept|a temporary file, deleted at exit)\)$"
)
FILLED_LINE = re.compile(
    r"^history: (?P<runs>\d+) snapshot runs, usage back to (?P<oldest>\d{4}-\d{2}-\d{2}), "
    r"filled in (?P<seconds>[0-9.]+) s$"
)
THRESHOLD = 0.8
ELAPSED_BEFORE_FORECAST = 0.10


def started_demo(process: subprocess.Popen[str]) -> tuple[list[str], str, Path, int, date]:
    """Its start-up lines, the GraphiQL URL, the history file, the runs it filled and the
    oldest day it says they reach."""
    lines = read_until(process, r"^GraphiQL: ", seconds=90)
    (where,) = [m for m in map(HISTORY_LINE.match, lines) if m]
    (filled,) = [m for m in map(FILLED_LINE.match, lines) if m]
    url = lines[-1].split(" ", 1)[1]
    oldest = date.fromisoformat(filled["oldest"])
    return lines, url, Path(where["path"]), int(filled["runs"]), oldest


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    answer = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def window(quota: dict) -> tuple[datetime, datetime] | None:
    """A quota's current window, read from its own fields (none for a fixed quota without a
    term, or a term that is over)."""
    if quota["window"] == "FIXED_TERM":
        if quota["startsOn"] is None:
            return None
        start = midnight(date.fromisoformat(quota["startsOn"]))
        return start, midnight(date.fromisoformat(quota["endsOn"]) + timedelta(days=1))
    end = moment(quota["resetsAt"])
    spans = {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1)}
    if quota["window"] in spans:
        return end - spans[quota["window"]], end
    assert quota["window"] == "MONTH", quota
    return midnight((end - timedelta(days=1)).date().replace(day=1)), end


def forecast_due(quota: dict, now: datetime) -> bool:
    """Whether a forecast is due at ``now``: inside its window and 10 % of it past (the demo
    leaves at least three samples in every window, what a fixed term needs)."""
    span = window(quota)
    if span is None or not span[0] <= now < span[1]:
        return False
    start, end = span
    return (now - start) / (end - start) >= ELAPSED_BEFORE_FORECAST


QUOTA_FIELDS = "id accountId window limit used utilization resetsAt startsOn endsOn"


def test_the_demo_is_a_lived_in_gateway(tmp_path) -> None:
    with cli("demo", "--port", "0", "--log-level", "warning") as demo:
        lines, url, path, runs, oldest = started_demo(demo)
        assert f"history: {path} (a temporary file, deleted at exit)" in lines
        assert path.is_file() and path.parent.name.startswith("usage-gateway-demo-")
        vt_url = next(
            line.split(": ", 1)[1] for line in lines if line.startswith("emulator virustotal: ")
        )

        # Snapshot runs: as many as it says, all stored, the newest of each account at start-up.
        listed = graphql(url, "{ snapshots(limit: 1000) { accountId startedAt outcome days } }")
        assert len(listed["snapshots"]) == runs
        assert {r["outcome"] for r in listed["snapshots"]} == {"OK"}
        newest: dict[str, dict] = {}
        for run in listed["snapshots"]:
            newest.setdefault(run["accountId"], run)
        (start,) = {moment(r["startedAt"]) for r in newest.values()}
        today = start.date()
        assert start <= datetime.now(UTC)
        assert oldest == today - timedelta(days=1096)  # three years back, as the README says

        # Usage before VirusTotal's 60 days, from the store, as the emulator's seed says.
        first, last = oldest - timedelta(days=4), today - timedelta(days=61)
        usage_query = """query($from: Date!, $to: Date!) { account(id: "vt-soc") {
            usage(from: $from, to: $to) { requests quotaRequests missingDays
              series { start requests quotaRequests } } } }"""
        span = {"from": first.isoformat(), "to": last.isoformat()}
        usage = graphql(url, usage_query, span)["account"]["usage"]
        assert usage["missingDays"] == [(first + timedelta(days=i)).isoformat() for i in range(4)]
        data = VirusTotalData(DEMO_SEED)
        expected = {}
        for offset in range((last - oldest).days + 1):
            day = oldest + timedelta(days=offset)
            consuming, free, _ = data.day("soc-team", day, 1.0)
            expected[day.isoformat()] = [
                sum(consuming.values()) + sum(free.values()),
                sum(consuming.values()),
            ]
        got = {
            p["start"][:10]: [p["requests"], p["quotaRequests"]]
            for p in usage["series"]
            if p["start"][:10] >= oldest.isoformat()
        }
        assert got == expected
        assert usage["requests"] == sum(r for r, _ in expected.values())

        # The same range from a gateway without history: every day of it is missing.
        config = tmp_path / "gateway.toml"
        config.write_text(
            f'[gateway]\nhistory_path = "{tmp_path / "none.sqlite"}"\n'
            f'[[accounts]]\nid = "vt-soc"\nprovider = "virustotal"\nbase_url = "{vt_url}"\n'
            'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n',
            encoding="utf-8",
        )
        with cli("serve", "--port", "0", "--config", str(config)) as bare:
            bare_url = read_until(bare, r"^GraphiQL: ")[-1].split(" ", 1)[1]
            without = graphql(bare_url, usage_query, span)["account"]["usage"]
            bare.send_signal(signal.SIGINT)
            assert bare.wait(20) == 0
        assert len(without["missingDays"]) == (last - first).days + 1 > len(usage["missingDays"])

        # Quotas: samples in every current window, forecasts where due, alerts that follow.
        before = datetime.now(UTC)
        answer = graphql(
            url,
            f"""{{ quotas {{ {QUOTA_FIELDS}
                  forecast {{ windowStart windowEnd runsOutEarliest }} }}
                alerts(threshold: {THRESHOLD}) {{ kind quota {{ id }} }} }}""",
        )
        after = datetime.now(UTC)
        quotas = {q["id"]: q for q in answer["quotas"]}
        for quota in quotas.values():
            due = forecast_due(quota, before)
            if due == forecast_due(quota, after):  # not crossing 10 % while we asked
                assert (quota["forecast"] is not None) == due, quota
        assert any(q["forecast"] for q in quotas.values()) or not any(
            forecast_due(q, before) for q in quotas.values()
        )

        samples_query = """query($id: ID!, $from: DateTime!, $to: DateTime!) { account(id: $id) {
            quotas { id history(from: $from, to: $to) { at used limit } } } }"""
        for account in {q["accountId"] for q in quotas.values()}:
            mine = [q for q in quotas.values() if q["accountId"] == account]
            windows = {q["id"]: window(q) for q in mine}
            since = min([w[0] for w in windows.values() if w] + [start - timedelta(days=1)])
            history: dict[str, list[dict]] = {q["id"]: [] for q in mine}
            while since <= start:  # 90 days at a time: a longer range costs too much to ask
                until = min(since + timedelta(days=90), start)
                variables = {"id": account, "from": since.isoformat(), "to": until.isoformat()}
                for quota in graphql(url, samples_query, variables)["account"]["quotas"]:
                    history[quota["id"]] += [
                        s for s in quota["history"] if s not in history[quota["id"]]
                    ]
                since = until + timedelta(microseconds=1)
            for quota_id, span in windows.items():
                assert history[quota_id], quota_id  # every quota was sampled at start-up
                if span is None or span[0] >= start:
                    continue  # no window, or one that began after the demo started
                inside = [s for s in history[quota_id] if span[0] <= moment(s["at"]) <= start]
                assert len(inside) >= 4, (quota_id, inside)  # four spread over it, and one now

        over = {a["quota"]["id"] for a in answer["alerts"] if a["kind"] == "OVER_THRESHOLD"}
        assert over == {q["id"] for q in quotas.values() if (q["utilization"] or 0) >= THRESHOLD}
        running_out = {
            a["quota"]["id"] for a in answer["alerts"] if a["kind"] == "RUNS_OUT_BEFORE_RESET"
        }
        assert running_out == {
            q["id"]
            for q in quotas.values()
            if q["id"] not in over and q["forecast"] and q["forecast"]["runsOutEarliest"]
        }
        # What the seeds imply: ReversingLabs limits recomputed from the emulator's own data.
        reversinglabs = ReversingLabsData(DEMO_SEED)
        for quota_id, limit_id in (
            ("rl-acme:date_range:queries:TCA-0303", "acme-fixed-yara"),
            ("rl-acme:daily:queries:TCA-0101+TCA-0104", "acme-daily-reputation"),
        ):
            limit = reversinglabs.limit(limit_id)
            shares = {reversinglabs.limit_used(limit, t) / limit.limit for t in (before, after)}
            if all(share >= THRESHOLD for share in shares):
                assert quota_id in over
            elif all(share < THRESHOLD for share in shares):
                assert quota_id not in over

        # The README's queries run as written.
        for query in re.findall(r"```graphql\n(.*?)```", README.read_text("utf-8"), re.S):
            graphql(url, query)

        demo.send_signal(signal.SIGINT)
        assert demo.wait(20) == 0
    assert not path.exists() and not path.parent.exists()


def test_history_path_keeps_the_demo_history(tmp_path) -> None:
    kept = tmp_path / "demo-history.sqlite"
    with cli("demo", "--port", "0", "--history", str(kept)) as demo:
        lines, url, path, runs, _ = started_demo(demo)
        assert path == kept and f"history: {kept} (kept)" in lines
        assert len(graphql(url, "{ snapshots(limit: 1000) { id } }")["snapshots"]) == runs
        demo.send_signal(signal.SIGINT)
        assert demo.wait(20) == 0
    with sqlite3.connect(kept) as db:
        assert db.execute("SELECT count(*) FROM snapshot_runs").fetchone() == (runs,)


def test_an_unusable_history_path_stops_the_demo_with_one_line(tmp_path) -> None:
    missing = tmp_path / "no-such-directory" / "history.sqlite"
    with cli("demo", "--port", "0", "--history", str(missing)) as demo:
        _, errors = demo.communicate(timeout=60)
        assert demo.returncode == 3
    assert errors.strip().splitlines() == [
        f"usage-gateway: history store {missing}: it cannot be opened (no such directory, "
        "or no permission)"
    ]


def test_make_run_serves_the_demo_on_the_port_given_and_sigterm_cleans_up() -> None:
    """``make run PORT=...`` as a user types it (the venv already built: ``-o`` skips the
    install step, ``BIN`` points at this interpreter's venv), stopped with SIGTERM."""
    assert SCRIPT.exists(), f"the tests run from a venv with the console script: {SCRIPT}"
    process = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/.installed",
            "run",
            "PORT=0",
            f"BIN={SCRIPT.parent}",
        ],
        cwd=README.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # make and the demo in a group of their own, signalled together
    )
    with process:
        try:
            lines, url, path, _, _ = started_demo(process)
            assert lines[0] == f"{SCRIPT.parent}/usage-gateway demo --host 127.0.0.1 --port 0"
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/graphql", url)
            emulators = [line for line in lines if line.startswith("emulator ")]
            assert len(emulators) == 4
            assert all(re.search(r": http://127\.0\.0\.1:\d+$", line) for line in emulators)
            assert (
                httpx.get(url.replace("/graphql", "/healthz"), timeout=10).json()["accounts"] == 5
            )
            assert path.is_file()
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)
    assert not path.exists() and not path.parent.exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_demo_while_it_fills_its_history_deletes_it(stop: signal.Signals) -> None:
    with cli("demo", "--port", "0") as demo:
        lines = read_until(demo, r"^history: .* \(a temporary file, deleted at exit\)$")
        path = Path(HISTORY_LINE.match(lines[-1])["path"])
        assert path.parent.is_dir()
        demo.send_signal(stop)  # while it fills (or, on a fast machine, once it serves)
        code = demo.wait(30)
        _, errors = demo.communicate(timeout=10)
    assert code in (0, 128 + stop), errors
    assert "Traceback" not in errors
    assert not path.exists() and not path.parent.exists()
