"""A fifth vendor really is one package plus one test file.

A copy of this repository gains exactly ``providers/acme/`` (a client reading one JSON usage
endpoint, an emulator following the toolkit) and ``tests/providers/test_acme.py``; with
``schema.graphql`` regenerated (the graph gains ``Provider.ACME``) and nothing else edited, the
contract suite, the settings, registry and schema tests pass there and cover Acme. The same
package is also found when it lives outside the repository, on ``sys.path``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.providers import test_contract

ROOT = Path(__file__).parents[2]

ACME_INIT = '"""Acme: ``GET /v1/usage`` (a monthly quota and requests per day)."""\n'

ACME_CLIENT = '''
"""Acme client: ``GET /v1/usage`` -> a monthly request quota and requests per UTC day."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from gateway.domain import (
    AccountScope, Granularity, Limits, ProviderId, Quota, QuotaUnit, QuotaWindow, UsagePoint,
    UsageReport, day_start,
)
from providers.base import BaseProvider, ConfigField, as_count, as_list, as_object, parsing


class AcmeProvider(BaseProvider):
    id = ProviderId("acme")
    display_name = "Acme"
    description = "Acme usage API."
    default_base_url = "https://api.acme.test"
    fields: ClassVar[tuple[ConfigField, ...]] = (
        ConfigField("api_key", required=True, secret=True),
    )

    @property
    def scope(self) -> AccountScope:
        return AccountScope.API_KEY

    def auth_headers(self) -> dict[str, str]:
        return {"X-Acme-Key": self.account.secret("api_key")}

    async def limits(self) -> Limits:
        answer = await self.get_json("/v1/usage")
        with self.parsing():
            body = as_object(answer.body, "answer")
            quota = Quota(
                id=f"{self.account.id}:monthly", account_id=self.account.id,
                name="Monthly requests", window=QuotaWindow.MONTH, unit=QuotaUnit.REQUESTS,
                limit=as_count(body["limit"], "limit"), used=as_count(body["used"], "used"),
            )
        return Limits(quotas=(quota,))

    async def usage(self, start: date, end: date, granularity: Granularity) -> UsageReport:
        answer = await self.get_json("/v1/usage", {"from": str(start), "to": str(end)})
        with self.parsing():
            days = as_list(as_object(answer.body, "answer")["days"], "days")
            points = tuple(
                UsagePoint(day_start(date.fromisoformat(d["date"])), n, n)
                for d in map(as_object, days, ["day"] * len(days))
                for n in [as_count(d["requests"], "requests")]
            )
        return UsageReport(points, (), frozenset(p.start.date() for p in points))
'''

ACME_EMULATOR = '''
"""The Acme emulator: ``GET /v1/usage`` behind ``X-Acme-Key``, seeded requests per UTC day."""

from __future__ import annotations

import random
from datetime import date, timedelta

from providers.emulation import Emulator, EmulatorSpec, Request, Response

KEY = "acme_demo_key"
LIMIT = 100_000


class AcmeEmulator(Emulator):
    vendor = "Acme"

    def requests_on(self, day: date) -> int:
        return random.Random(f"acme:{self.seed}:{day}").randint(0, 500)

    async def handle(self, request: Request) -> Response:
        if request.path != "/v1/usage":
            return self.error(404, "no such path")
        if request.headers.get("x-acme-key") != KEY:
            return self.error(401, "unknown key")
        today = self.clock().date()
        first = today.replace(day=1)
        start = date.fromisoformat(request.param("from") or str(first))
        end = min(date.fromisoformat(request.param("to") or str(today)), today)
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        used = sum(self.requests_on(first + timedelta(days=i)) for i in range(today.day))
        return Response.json({
            "limit": LIMIT,
            "used": used,
            "days": [{"date": str(d), "requests": self.requests_on(d)} for d in days],
        })


EMULATOR = EmulatorSpec(
    factory=AcmeEmulator,
    accounts=({"id": "acme-demo", "name": "Acme demo", "api_key": KEY},),
    bad_credentials={"api_key": "acme_wrong_key"},
)
'''

ACME_TEST = '''
"""Acme: the gateway reports the emulator's own seeded numbers."""

from datetime import date

from tests.conftest import account_entry, settings_for


async def test_usage_and_quota_are_the_emulators(emulators, make_gateway) -> None:
    acme = emulators["acme"]
    gateway = make_gateway(settings_for(account_entry("acme", acme.url)))
    data = await gateway.data(
        '{ accounts { quotas { limit } usage(from: "2026-03-01", to: "2026-03-03") { requests } } }'
    )
    (account,) = data["accounts"]
    expected = sum(acme.emulator.requests_on(date(2026, 3, day)) for day in (1, 2, 3))
    assert account["usage"]["requests"] == expected
    assert account["quotas"] == [{"limit": 100_000}]
'''


def write_acme(providers: Path) -> None:
    package = providers / "acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(ACME_INIT, encoding="utf-8")
    (package / "client.py").write_text(ACME_CLIENT.lstrip(), encoding="utf-8")
    (package / "emulator.py").write_text(ACME_EMULATOR.lstrip(), encoding="utf-8")


def provider_tests() -> set[str]:
    """The contract tests parametrized over providers (each must run for Acme)."""
    return {
        name
        for name, function in vars(test_contract).items()
        if name.startswith("test_")
        and any(
            mark.name == "parametrize" and mark.args[0] == "provider"
            for mark in getattr(function, "pytestmark", [])
        )
    }


def test_one_package_and_one_test_file_add_a_vendor(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("gateway", "providers", "tests"):
        shutil.copytree(ROOT / name, repo / name, ignore=junk)
    for name in ("pyproject.toml", "schema.graphql", "README.md"):
        shutil.copy2(ROOT / name, repo / name)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # the contract the schema tests read, beside the copy as beside us
        (tmp_path / "shared").symlink_to(shared)
    write_acme(repo / "providers")
    (repo / "tests" / "providers" / "test_acme.py").write_text(ACME_TEST.lstrip(), "utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", *args]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env)

    # The graph gains a Provider value, so the generated schema is regenerated (`make schema`).
    export = run("strawberry", "export-schema", "gateway.graphql.schema:schema")
    assert export.returncode == 0, export.stderr
    assert '"""Acme usage API."""\n  ACME\n' in export.stdout
    (repo / "schema.graphql").write_text(export.stdout, encoding="utf-8")

    result = run(
        *("pytest", "-p", "no:cacheprovider", "-q", "-rA"),
        *("tests/providers/test_contract.py", "tests/providers/test_acme.py"),
        *("tests/test_settings.py", "tests/test_registry.py", "tests/test_schema.py"),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.findall(r"^PASSED (\S+)", result.stdout, re.M)
    acme_contract = {
        node.split("::")[1].split("[")[0]
        for node in passed
        if node.startswith("tests/providers/test_contract.py::") and "acme" in node
    }
    assert acme_contract == provider_tests()  # every provider-parametrized contract test ran
    unavailable = [n for n in passed if "test_unavailable_vendor[" in n and "acme" in n]
    assert len(unavailable) == len(test_contract.FAILURES)
    expected = {
        "tests/providers/test_acme.py::test_usage_and_quota_are_the_emulators",
        "tests/test_settings.py::test_every_registered_provider_is_a_config_choice[acme]",
        "tests/test_registry.py::test_serving_a_config_of_every_provider_imports_no_emulator",
        "tests/test_schema.py::test_the_provider_enum_is_the_registry",
        "tests/test_schema.py::test_schema_graphql_is_current",
        "tests/providers/test_contract.py::test_every_provider_has_its_own_test_file",
    }
    assert expected <= set(passed)
    summary = result.stdout.strip().splitlines()[-1]
    skipped = "" if shared.is_dir() else r"(, \d+ skipped)?"  # the contract copy, without shared/
    assert re.fullmatch(rf"{len(passed)} passed{skipped} in .*", summary), summary


def test_a_vendor_package_outside_the_repository_is_found(tmp_path: Path) -> None:
    write_acme(tmp_path / "elsewhere" / "providers")
    probe = (
        "from providers import registry; entry = registry()['acme']; "
        "print(sorted(registry())); print(entry.client.__module__); "
        "print(entry.emulator.factory.__module__); "
        "import sys; print(sys.modules[entry.client.__module__].__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "elsewhere")},
    )
    assert result.returncode == 0, result.stderr
    ids, client, emulator, path = result.stdout.splitlines()
    assert "'acme'" in ids and len(eval(ids)) >= 2  # the repository's own vendors too
    assert (client, emulator) == ("providers.acme.client", "providers.acme.emulator")
    assert Path(path) == tmp_path / "elsewhere" / "providers" / "acme" / "client.py"


def test_two_packages_with_one_id_are_refused(tmp_path: Path) -> None:
    write_acme(tmp_path / "elsewhere" / "providers")
    shutil.copytree(
        tmp_path / "elsewhere" / "providers" / "acme",
        tmp_path / "elsewhere" / "providers" / "acme2",
    )
    result = subprocess.run(
        [sys.executable, "-c", "from providers import registry; registry()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "elsewhere")},
    )
    assert result.returncode == 1
    assert "providers 'acme' and 'acme2' both declare the id 'acme'" in result.stderr
