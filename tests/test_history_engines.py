"""The history store on both engines: what SQLite and PostgreSQL must do alike (counts past
2^31, one schema, a newer schema refused untouched), what PostgreSQL adds (other gateways'
writes seen by the answer cache, a server that cannot be used named without its password),
and ``history copy`` from one to the other."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway import answer_reads
from gateway.app import create_app
from gateway.domain import EndpointUsage, Quota, QuotaUnit, QuotaWindow, RateLimit
from gateway.history import DayRecord, HistoryStore, HistoryUnavailable
from gateway.history_copy import copy_history
from gateway.history_pg import PostgresHistoryStore
from gateway.history_sql import MIGRATIONS, TABLES
from gateway.settings import parse_settings
from tests.conftest import NOW, TLS, Gateway, account_entry, settings_for
from tests.e2e.test_demo import cli, read_until
from tests.e2e.test_snapshot_cli import REPUTE_DAYS, vendors  # noqa: F401  (a fixture)
from tests.history_backends import Backend, new_database, sqlite_backend
from tests.receiver import Receiver, serving
from tests.test_alert_graphql import EVENTS, settings_with_alerts
from tests.test_alert_graphql import snapshot as snapshot_with_alerts

COMMAND = [sys.executable, "-m", "gateway.cli"]
BIG = 2**62 + 12_345  # far past 2^31, and past 2^53 (a float would round it)
PASSWORD = "s3cret-Pg-pass-0123"


# -- alike on both engines ------------------------------------------------------------------------


async def refusal(store: HistoryStore) -> HistoryUnavailable:
    """What ``store`` says when written to (its reads say the same), then closed."""
    try:
        with pytest.raises(HistoryUnavailable) as refused:
            await store.start_run("acct", NOW)
        with pytest.raises(HistoryUnavailable):
            await store.runs()
    finally:
        await store.close()
    return refused.value


async def test_counts_past_2_31_survive_every_table(history) -> None:
    store = history.store()
    day = date(2026, 3, 1)
    try:
        run = await store.start_run("acct", NOW)
        split = (EndpointUsage("/a", BIG, True, bytes=BIG - 1), EndpointUsage("/b", 3, False))
        quota = Quota("acct:q", "acct", "q", QuotaWindow.MONTH, QuotaUnit.BYTES, BIG, BIG - 7)
        await store.store(
            run,
            "acct",
            [DayRecord(day, BIG + 3, BIG, BIG - 2, 2**40, split)],
            [quota],
            [RateLimit("per-minute", QuotaWindow.MINUTE, BIG, BIG - 9)],
            NOW,
        )
        (stored,) = await store.days("acct", day, day)
        samples = await store.quota_samples("acct:q", NOW, NOW)
        sweep = store.sweep("acct", day, day, None, lambda held: None, splits=False)
        summed = await sweep.stored
    finally:
        await store.close()
    assert (stored.requests, stored.quota_requests, stored.bytes, stored.failed_requests) == (
        BIG + 3,
        BIG,
        BIG - 2,
        2**40,
    )
    assert stored.endpoints == split
    assert [(s.used, s.limit) for s in samples] == [(BIG - 7, BIG)]
    assert summed.totals == split  # summed by the database, still exact
    assert history.fetch("SELECT used, quota_limit FROM rate_limit_samples") == [(BIG - 9, BIG)]


async def test_a_store_from_a_newer_gateway_is_refused_and_left_untouched(history) -> None:
    store = history.store()
    await store.start_run("acct", NOW)
    await store.close()
    newer = len(MIGRATIONS) + 1
    if history.name == "sqlite":
        with sqlite3.connect(history.gateway["history_path"]) as db:
            db.execute(f"PRAGMA user_version = {newer}")
    else:
        with psycopg.connect(history.gateway["history_url"]) as conn:
            conn.execute("UPDATE history_meta SET schema_version = %s", [newer])
    store = history.store()
    refused = await refusal(store)
    assert refused.reason == (
        f"it was written by a newer usage-gateway (schema version {newer}; this one knows up to"
        f" {len(MIGRATIONS)}); it is left untouched"
    )
    assert history.rows("snapshot_runs") == 1


def columns_of(backend: Backend) -> dict[str, list[tuple[str, bool]]]:
    """Every table's columns, in order, with whether each may be null."""
    tables = [t.name for t in TABLES] + ["alert_leases"]
    if backend.name == "sqlite":
        return {
            t: [(name, not notnull and not pk) for _, name, _, notnull, _, pk in found]
            for t in tables
            if (found := backend.fetch(f"PRAGMA table_info({t})"))
        }
    return {
        t: [
            (name, nullable == "YES")
            for name, nullable in backend.fetch(
                "SELECT column_name, is_nullable FROM information_schema.columns"
                " WHERE table_name = ? ORDER BY ordinal_position",
                t,
            )
        ]
        for t in tables
    }


async def test_both_engines_migrate_to_the_same_tables_and_columns(tmp_path, postgres_server):
    engines = [
        sqlite_backend(tmp_path / "history.sqlite"),
        Backend("postgresql", {"history_url": new_database(postgres_server)}),
    ]
    for backend in engines:
        store = backend.store()
        await store.start_run("acct", NOW)
        await store.close()
    sqlite_columns, pg_columns = (columns_of(b) for b in engines)
    assert len(sqlite_columns) == len(TABLES) + 1
    assert sqlite_columns == pg_columns
    # Counts are 64-bit on PostgreSQL too (SQLite's INTEGER always is).
    kinds = dict(
        engines[1].fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'usage_days'"
        )
    )
    assert kinds["requests"] == kinds["bytes"] == "bigint"


# -- PostgreSQL: other gateways write too --------------------------------------------------------


async def test_an_answer_never_outlives_another_gateways_write(history_pg) -> None:
    """Two store objects on one database, as two gateways hold them: what one read for an
    answer stops holding once the other writes, as soon as the answer cache refreshes."""
    here, there = history_pg.store(), history_pg.store()
    try:
        await here.warm()  # as the app does at start-up: the store open, its version known
        reads, token = answer_reads.begin()
        try:
            await here.runs()
        finally:
            answer_reads.end(reads, token)
        assert list(reads.refreshes) == [here.refresh_version]

        async def holds() -> bool:
            for refresh in reads.refreshes:
                await refresh()
            return reads.current()

        assert await holds()  # nobody wrote: the answer holds (the check is not vacuous)
        await there.start_run("acct", NOW)
        assert await holds() is False
    finally:
        await here.close()
        await there.close()


async def test_requests_waiting_for_the_version_share_one_read(history_pg) -> None:
    """Refreshes asked while a read of the version has not started share it; one asked after
    it started gets a read of its own (the one under way may predate a write it must see)."""
    store = history_pg.store()
    try:
        await store.warm()
        free = threading.Event()
        held = store._version_pool.submit(free.wait, 30)  # its thread busy: no read starts
        try:
            waiting = [store.refresh_version() for _ in range(50)]
        finally:
            free.set()
        held.result(timeout=30)
        assert len({id(f) for f in waiting}) == 1
        await asyncio.gather(*waiting)
        assert store.version_reads == 1
        await store.refresh_version()
        assert store.version_reads == 2
    finally:
        await store.close()


async def test_gateways_starting_together_on_a_new_database_migrate_it_once(history_pg) -> None:
    stores = [history_pg.store() for _ in range(8)]
    try:
        runs = await asyncio.gather(*(store.start_run("acct", NOW) for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert sorted(runs) == list(range(1, 9))
    assert history_pg.fetch("SELECT schema_version FROM history_meta") == [(len(MIGRATIONS),)]


async def test_a_lost_connection_is_one_failed_call_then_made_again(history_pg) -> None:
    store = history_pg.store()
    try:
        await store.start_run("acct", NOW)
        with psycopg.connect(history_pg.gateway["history_url"], autocommit=True) as admin:
            (ended,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'usage-gateway'"
            ).fetchone()
        assert ended == 1  # the store's connection (the version's is not open yet)
        with pytest.raises(HistoryUnavailable) as lost:
            await store.runs()
        assert [r.account_id for r in await store.runs()] == ["acct"]
    finally:
        await store.close()
    assert lost.value.reason == "the server shut down the connection"


RUNS = "{ snapshots(limit: 10) { accountId outcome } }"


async def test_a_kept_answer_is_not_served_after_another_gateways_write(history_pg) -> None:
    """Two gateways on one PostgreSQL store, answer cache on: gateway A answers from its kept
    answer while nothing changed, and executes again once gateway B's snapshot wrote."""
    entries = [account_entry("reputeapi", "http://127.0.0.1:9", i) for i in (0, 1)]
    one, two = (e["id"] for e in entries)
    settings = settings_for(*entries, **history_pg.gateway, cache={"response_ttl": 600})
    writer = history_pg.store()
    run = await writer.start_run(one, NOW)
    await writer.store(run, one, [], [], [], NOW)
    app = create_app(settings, clock=lambda: NOW)
    gateway = Gateway(app)
    try:
        await app.state.service.history.warm()  # as start-up does
        first = await gateway.data(RUNS)
        again = await gateway.data(RUNS)
        stats = app.state.answers.stats
        assert first == again == {"snapshots": [{"accountId": one, "outcome": "OK"}]}
        assert stats.hits == 1
        other = await writer.start_run(two, NOW)  # gateway B writes
        await writer.store(other, two, [], [], [], NOW)
        after = await gateway.data(RUNS)
        assert {r["accountId"] for r in after["snapshots"]} == {one, two}
        assert stats.hits == 1
    finally:
        await gateway.client.aclose()
        await app.state.service.history.close()
        await writer.close()


# -- PostgreSQL: a server that cannot be used --------------------------------------------------


def socket_dir(server: Any) -> str:
    return re.search(r"host=([^&]+)", server.get_uri()).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def password_role(postgres_server) -> str:
    """A role that must give its password (SCRAM) on the session's server; its URL."""
    hba = Path(postgres_server.pgdata) / "pg_hba.conf"
    hba.write_text(f"local all pgsecret scram-sha-256\n{hba.read_text()}")
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE pgsecret LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("CREATE DATABASE secretdb OWNER pgsecret")
        conn.execute("SELECT pg_reload_conf()")
    url = f"postgresql://pgsecret:{PASSWORD}@/secretdb?host={socket_dir(postgres_server)}"
    for _ in range(500):  # the server reloads its rules on its own time: until a password counts
        try:
            psycopg.connect(url.replace(PASSWORD, "not-it")).close()
        except psycopg.OperationalError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the server never asked pgsecret for its password")
    return url


def broken_urls(server: Any, role_url: str) -> dict[str, tuple[str, str]]:
    """URLs that cannot be used, each with the reason the store must give."""
    wrong = role_url.replace(PASSWORD, f"{PASSWORD}-wrong")
    return {
        "password": (wrong, "the server refused the credentials (password authentication failed)"),
        "database": (
            role_url.replace("/secretdb?", "/no_such_db?"),
            "the database does not exist on the server",
        ),
        "down": (
            f"postgresql://pgsecret:{PASSWORD}@127.0.0.1:9/secretdb",
            "cannot connect to the server (connection refused: is it running?)",
        ),
    }


@pytest.mark.parametrize("case", ["password", "database", "down"])
async def test_a_server_that_cannot_be_used_is_named_without_its_password(
    postgres_server, password_role, case, caplog
) -> None:
    url, reason = broken_urls(postgres_server, password_role)[case]
    caplog.set_level(logging.DEBUG)
    store = PostgresHistoryStore(url)
    refused = await refusal(store)
    assert refused.reason == reason
    assert str(refused).startswith("history store postgresql://pgsecret:***@")
    assert refused.__cause__ is None and refused.__context__ is not None
    shown = [str(refused), repr(refused), *(r.getMessage() for r in caplog.records)]
    assert not [s for s in shown if PASSWORD in s]
    # ...and the right password works (the failure above is the URL's, not the server's).
    good = PostgresHistoryStore(password_role)
    try:
        await good.runs()
    finally:
        await good.close()


def test_snapshot_says_which_store_and_why_without_the_password(
    tmp_path, postgres_server, password_role
) -> None:
    url, reason = broken_urls(postgres_server, password_role)["password"]
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nhistory_url = "${HISTORY_URL}"\n\n[[accounts]]\nid = "repute"\n'
        'provider = "reputeapi"\nbase_url = "http://127.0.0.1:9"\napi_key = "k"\n',
        encoding="utf-8",
    )
    env = {"HISTORY_URL": url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [*COMMAND, "snapshot", "--config", str(config), "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 3, done.stderr
    assert reason in done.stderr.splitlines()[-1]
    assert PASSWORD not in done.stdout + done.stderr


# -- history copy -------------------------------------------------------------------------------


def table_rows(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table's rows, in key order."""
    return {
        t.name: [
            tuple(row)
            for row in backend.fetch(f"SELECT * FROM {t.name} ORDER BY {', '.join(t.key)}")
        ]
        for t in TABLES
    }


def copy_cli(source: str, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "history", "copy", "--from", source, "--to", target],
        capture_output=True,
        text=True,
        timeout=120,
    )


QUERIES = """query($from: Date!, $to: Date!) {
  snapshots(limit: 100) { accountId outcome days changed startedAt finishedAt }
  accounts { id
    usage(from: $from, to: $to) { requests quotaRequests missingDays
      series { start requests quotaRequests bytes } endpoints { endpoint requests consumesQuota } }
    quotas { id
      history(from: "2026-03-01T00:00:00Z", to: "2026-03-19T00:00:00Z") { at used limit } }
  }
}"""


async def test_a_copied_store_answers_as_the_original(tmp_path, emulators, postgres_server) -> None:
    with serving(Receiver()) as receiver:
        settings = settings_with_alerts(tmp_path, emulators, f"{receiver.url}/hook")
        await snapshot_with_alerts(settings)
    source = sqlite_backend(Path(settings.history_path))
    store = source.store()  # a revised day, so usage_changes has a row to copy
    try:
        yesterday = (NOW - timedelta(days=1)).date()
        (day,) = await store.days("vt-soc", yesterday, yesterday)
        run = await store.start_run("vt-soc", NOW)
        revised = replace(day, requests=day.requests + 5, endpoints=None)
        assert (await store.store(run, "vt-soc", [revised], [], [], NOW)).changed == 1
    finally:
        await store.close()
    target = Backend("postgresql", {"history_url": new_database(postgres_server)})
    expected = table_rows(source)
    assert all(expected[t.name] for t in TABLES), {t: len(r) for t, r in expected.items()}
    url = f"sqlite:///{settings.history_path}"  # an absolute path: sqlite:////tmp/...
    for _ in (1, 2):  # the second copy changes nothing
        done = copy_cli(url, target.gateway["history_url"])
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[1:-1] == [f"{t.name}: {len(expected[t.name])} rows" for t in TABLES]
        assert table_rows(target) == expected
        for t in TABLES:
            assert target.rows(t.name) == source.rows(t.name)
    # New rows on the copy take ids past the copied ones.
    store = target.store()
    try:
        run = await store.start_run("vt-soc", NOW)
    finally:
        await store.close()
    assert run == max(r[0] for r in expected["snapshot_runs"]) + 1

    answers = []
    for backend in (source, target):
        gateway_settings = replace(
            settings,
            history_path=backend.gateway.get("history_path", settings.history_path),
            history_url=backend.gateway.get("history_url"),
        )
        async with httpx.AsyncClient(verify=TLS) as http:
            app = create_app(gateway_settings, http_client=http, clock=lambda: NOW)
            gateway = Gateway(app)
            try:
                first = (NOW - timedelta(days=59)).date().isoformat()
                last = (NOW - timedelta(days=1)).date().isoformat()
                answers.append(
                    (
                        await gateway.data(QUERIES, {"from": first, "to": last}),
                        await gateway.data(EVENTS),
                    )
                )
            finally:
                await gateway.client.aclose()
                await app.state.service.history.close()
    sqlite_answer, pg_answer = answers
    pg_answer[0]["snapshots"] = [s for s in pg_answer[0]["snapshots"] if s["outcome"] != "RUNNING"]
    assert sqlite_answer == pg_answer
    assert len(sqlite_answer[1]["alertEvents"]) > 0 and len(sqlite_answer[0]["snapshots"]) == 3


async def test_copy_refuses_bad_arguments_and_unusable_stores(tmp_path, postgres_server) -> None:
    target = new_database(postgres_server)
    missing = f"sqlite:///{tmp_path}/none.sqlite"
    assert copy_cli("mysql://h/db", target).returncode == 2
    assert copy_cli(f"sqlite:///{tmp_path}/a.sqlite", "sqlite://relative").returncode == 2
    same = copy_cli(target, target)
    assert same.returncode == 2 and "the same store" in same.stderr
    gone = copy_cli(missing, target)
    assert gone.returncode == 3 and "there is no such store to copy from" in gone.stderr
    # A target from a newer gateway is refused, untouched.
    source = sqlite_backend(tmp_path / "history.sqlite")
    store = source.store()
    await store.start_run("acct", NOW)
    await store.close()
    with psycopg.connect(target) as conn:
        conn.execute(
            "CREATE TABLE history_meta (id INTEGER PRIMARY KEY, schema_version INTEGER NOT NULL,"
            " writes BIGINT NOT NULL)"
        )
        conn.execute("INSERT INTO history_meta VALUES (1, %s, 0)", [len(MIGRATIONS) + 1])
    newer = copy_cli(f"sqlite:///{tmp_path}/history.sqlite", target)
    assert newer.returncode == 3 and "written by a newer usage-gateway" in newer.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT to_regclass('snapshot_runs')").fetchone() == (None,)


async def test_copy_in_process_moves_every_batch(tmp_path, postgres_server) -> None:
    """More rows than one batch holds, with keys of several columns: every row arrives once."""
    source = sqlite_backend(tmp_path / "history.sqlite")
    store = source.store()
    first = date(2024, 1, 1)
    try:
        run = await store.start_run("acct", NOW)
        records = [
            DayRecord(
                first + timedelta(days=n),
                n,
                n,
                endpoints=(EndpointUsage("/a", n, True), EndpointUsage("/b", 1, False)),
            )
            for n in range(700)
        ]
        await store.store(run, "acct", records, [], [], NOW)
    finally:
        await store.close()
    target = Backend("postgresql", {"history_url": new_database(postgres_server)})
    sqlite_store, pg_store = source.store(), target.store()
    try:
        copied = await copy_history(sqlite_store, pg_store)
    finally:
        await sqlite_store.close()
        await pg_store.close()
    counts = {c.table: c.rows for c in copied}
    assert counts["usage_days"] == 700 and counts["usage_endpoints"] == 1400
    assert table_rows(target) == table_rows(source)


@pytest.fixture
def history_pg(postgres_server) -> Backend:
    return Backend("postgresql", {"history_url": new_database(postgres_server)})


# -- snapshot and serve, as processes, on PostgreSQL ---------------------------------------------


def test_snapshot_then_serve_on_postgresql(tmp_path, vendors, history_pg) -> None:  # noqa: F811
    """``snapshot`` (cron) stores into PostgreSQL, twice as one store (upserts); ``serve`` on the
    same database answers from it."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_url = "{history_pg.gateway["history_url"]}"\n\n'
        f'[[accounts]]\nid = "repute"\nprovider = "reputeapi"\n'
        f'base_url = "{vendors["reputeapi"]}"\napi_key = "ra_live_basic_demo"\n',
        encoding="utf-8",
    )
    for _ in (1, 2):
        done = subprocess.run(
            [*COMMAND, "snapshot", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"repute: stored {REPUTE_DAYS} days (0 changed)"]
    assert history_pg.rows("usage_days") == REPUTE_DAYS
    assert history_pg.rows("snapshot_runs", "outcome = 'ok'") == 2
    with cli("serve", "--config", str(config), "--port", "0") as gateway:
        url = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        answer = httpx.post(url, json={"query": RUNS}, timeout=30).json()
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
    assert answer == {"data": {"snapshots": [{"accountId": "repute", "outcome": "OK"}] * 2}}


async def test_a_gateway_whose_postgresql_is_down_answers_what_needs_no_history(
    emulators, make_gateway, caplog
) -> None:
    """PostgreSQL down (nothing listens at the URL): quotas and the vendors' own days are
    answered as usual; what needs the store is null with ``HISTORY_UNAVAILABLE`` naming it
    without its password, once in the log, with no traceback."""
    from tests.test_history_broken import QUERY, VT_KEEPS_FROM

    caplog.set_level(logging.INFO)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    url = f"postgresql://gw:pg-secret-9@127.0.0.1:{port}/usage"
    entries = [
        account_entry("virustotal", emulators["virustotal"].url),
        account_entry("reputeapi", emulators["reputeapi"].url),
    ]
    settings = parse_settings({"gateway": {"history_url": url}, "accounts": entries}, env={})
    gateway = make_gateway(settings)
    today = NOW.date()
    variables = {
        "recentFrom": (today - timedelta(days=7)).isoformat(),
        "oldFrom": (today - timedelta(days=90)).isoformat(),
        "to": (today - timedelta(days=1)).isoformat(),
        "since": (NOW - timedelta(days=30)).isoformat(),
        "until": NOW.isoformat(),
    }
    problem = (
        f"history store postgresql://gw:***@127.0.0.1:{port}/usage: cannot connect to the"
        " server (connection refused: is it running?)"
    )
    answer = await gateway.query(QUERY, variables)
    data = answer["data"]
    assert "pg-secret-9" not in json.dumps(answer)
    for account in data["accounts"]:
        assert account["quotas"], account["id"]
        assert account["recent"]["source"] == {"state": "FRESH"}
        assert account["recent"]["requests"] > 0
    assert data["snapshots"] is None and data["alerts"] is None
    assert {e["message"] for e in answer["errors"]} == {problem}
    assert all(e["extensions"] == {"code": "HISTORY_UNAVAILABLE"} for e in answer["errors"])
    vt, repute = data["accounts"]
    assert vt["old"]["source"]["message"] == (
        f"{problem}; days before {VT_KEEPS_FROM.isoformat()}, which the vendor no longer keeps,"
        " are missing"
    )
    assert repute["old"]["source"]["state"] == "FRESH"  # ReputeAPI keeps every day
    assert (await gateway.query(QUERY, variables))["errors"] == answer["errors"]
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud.count(f"{problem}; answers that need it say so") == 1, loud
    assert not any(r.exc_info for r in caplog.records)
    assert not any("pg-secret-9" in r.getMessage() for r in caplog.records)
