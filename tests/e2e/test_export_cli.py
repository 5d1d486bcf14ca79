"""``usage-gateway export`` as a process, against emulator processes on loopback: the rows it
writes (numbers summed here from the emulators' seeded data), and its exit codes with their one
line on stderr."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.cli import DEMO_SEED
from gateway.domain import utc_now
from gateway.servers import bind
from providers.reversinglabs.emulator import ReversingLabsData
from providers.virustotal.emulator import DEFAULT_RETENTION_DAYS, VirusTotalData
from tests.e2e.test_demo import cli, read_until
from tests.e2e.test_snapshot_cli import COMMAND
from tests.providers.test_reversinglabs import ACME, usage_report
from tests.test_export import vt_rows


@pytest.fixture
def vendors() -> Iterator[dict[str, str]]:
    """A VirusTotal and a ReversingLabs emulator process (the demo seed, the real clock)."""
    with (
        cli("emulator", "virustotal", "--port", "0") as vt,
        cli("emulator", "reversinglabs", "--port", "0") as rl,
    ):
        urls = {}
        for name, process in (("virustotal", vt), ("reversinglabs", rl)):
            line = read_until(process, rf"^emulator {name}: ")[-1]
            urls[name] = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        yield urls


def write_config(path: Path, vendors: dict[str, str]) -> Path:
    config = path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{path / "history.sqlite"}"\nupstream_timeout = 60\n\n'
        f'[[accounts]]\nid = "vt"\nprovider = "virustotal"\nbase_url = "{vendors["virustotal"]}"\n'
        'api_key = "vt_demo_admin_key"\ngroup = "soc-team"\n\n'
        f'[[accounts]]\nid = "rl"\nprovider = "reversinglabs"\n'
        f'base_url = "{vendors["reversinglabs"]}"\n'
        'username = "acme_alice"\npassword = "rl_demo_alice"\nscope = "company"\n',
        encoding="utf-8",
    )
    return config


def export(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "export", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def calls(url: str) -> int:
    return sum(httpx.get(f"{url}/_emulator/calls", timeout=10).json()["calls"].values())


def test_csv_rows_are_the_seeded_data(tmp_path, vendors) -> None:
    """65 days of VirusTotal by day: the 5 before its retention are missing rows, the others
    one row per endpoint."""
    today = utc_now().date()
    first = today - timedelta(days=64)
    done = export(
        write_config(tmp_path, vendors), "--account", "vt", "--from", str(first), "--to", str(today)
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert (
        ",".join(rows[0]) == "start,endpoint,requests,quota_requests,consumes_quota,bytes,missing"
    )
    retained = today - timedelta(days=DEFAULT_RETENTION_DAYS - 1)
    expected = vt_rows(VirusTotalData(DEMO_SEED), first, today, False, retained)
    assert rows[1:] == expected
    assert [r[0][:10] for r in rows[1:] if r[6] == "true"] == [
        str(first + timedelta(days=i)) for i in range(5)
    ]


def test_json_months_keep_counts_above_2_31(tmp_path, vendors) -> None:
    """The last three whole months of a ReversingLabs company, per product, as JSON."""
    this_month = utc_now().date().replace(day=1)
    months = [this_month]
    for _ in range(3):
        months.insert(0, (months[0] - timedelta(days=1)).replace(day=1))
    first, last = months[0], this_month - timedelta(days=1)
    done = export(
        write_config(tmp_path, vendors),
        *("--account", "rl", "--from", str(first), "--to", str(last)),
        *("--granularity", "MONTH", "--format", "json"),
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    data = ReversingLabsData(DEMO_SEED)
    expected = []
    for start, end in itertools.pairwise(months):
        report = usage_report(data, ACME, start, end - timedelta(days=1), utc_now())
        report.sort(key=lambda e: (-e["number_of_queries"], e["product"]))
        expected += [
            {
                "start": f"{start}T00:00:00Z",
                "endpoint": e["product"],
                "requests": e["number_of_queries"],
                "quotaRequests": e["number_of_queries"],
                "consumesQuota": True,
                "bytes": e.get("used_bytes"),
                "missing": False,
            }
            for e in report
        ]
    assert answer["rows"] == expected
    assert (answer["account"], answer["from"], answer["to"], answer["granularity"]) == (
        "rl",
        str(first),
        str(last),
        "MONTH",
    )
    assert answer["source"]["state"] == "FRESH"
    big = [r["requests"] for r in answer["rows"] if r["requests"] > 2**31]
    assert len(big) == 3 and all(f'"requests":{n},' in done.stdout for n in big)


def bad_arguments() -> list[tuple[list[str], str]]:
    today = utc_now().date()
    days = (today - date(2000, 1, 1)).days + 1
    return [
        (
            ["--account", "vt", "--from", "2026-02-30", "--to", "2026-03-01"],
            'usage-gateway export: --from: "2026-02-30" is not a date: February 2026 has 28 days, '
            "not 30 (expected YYYY-MM-DD, e.g. 2026-01-31)",
        ),
        (
            ["--account", "vt", "--from", "2026-03-10", "--to", "2026-03-01"],
            "usage-gateway export: --from: 2026-03-10 is after `to` (2026-03-01)",
        ),
        (
            ["--account", "vt", "--from", "2000-01-01", "--to", str(today)],
            f"usage-gateway export: --from: the range 2000-01-01..{today} has {days:,} days up to "
            "today, and a DAY export spans at most 387 (what max_query_cost = 100,000 allows the "
            "GraphQL query for the same rows); ask for fewer days or a coarser granularity (at "
            "most: WEEK 2,582, MONTH 8,932)",
        ),
        (
            ["--account", "nope", "--from", "2026-03-01", "--to", "2026-03-02"],
            'usage-gateway export: --account: no account "nope" (known: vt, rl)',
        ),
        (
            ["--from", "2026-03-01", "--to", "2026-03-02"],
            "usage-gateway export: --account: missing; expected an account id",
        ),
        (
            ["--account", "vt", "--from", "2026-03-01", "--to", "2026-03-02", "--format", "xml"],
            'usage-gateway export: --format: "xml" is not one of csv, json',
        ),
        (
            [
                "--account",
                "vt",
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-02",
                "--granularity",
                "HOUR",
            ],
            'usage-gateway export: --granularity: "HOUR" is not one of DAY, WEEK, MONTH',
        ),
        (
            ["--account", "vt", "--from", "2026-03-01", "--to"],
            "usage-gateway export: argument --to: expected one argument "
            "(see usage-gateway export --help)",
        ),
        (
            ["--account", "vt", "--from", "2026-03-01", "--to", "2026-03-02", "--utc"],
            "usage-gateway: unrecognized arguments: --utc (see usage-gateway --help)",
        ),
    ]


def test_bad_arguments_exit_2_with_one_line(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    for args, line in bad_arguments():
        done = export(config, *args)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n"), args
    missing = export(tmp_path / "absent.toml", "--account", "vt", "--from", "2026-03-01")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"usage-gateway: {tmp_path / 'absent.toml'}: no such file\n"
    assert calls(vendors["virustotal"]) == calls(vendors["reversinglabs"]) == 0


def test_a_history_store_that_cannot_be_used_exits_3(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    store = tmp_path / "history.sqlite"
    store.write_bytes(b"this is not a database, but it is long enough to have a header" * 4)
    today = str(utc_now().date())
    done = export(config, "--account", "vt", "--from", today, "--to", today)
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr == (
        f"usage-gateway: history store {store}: it is not a SQLite database (corrupt, or another "
        "kind of file)\n"
    )
    assert calls(vendors["virustotal"]) == 0  # refused before any vendor call


def test_a_failing_vendor_exits_1_and_still_writes_what_history_knows(tmp_path, vendors) -> None:
    config = write_config(tmp_path, vendors)
    stored = subprocess.run(
        [*COMMAND, "snapshot", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert stored.returncode == 0, stored.stderr
    httpx.post(f"{vendors['virustotal']}/_emulator/fault", json={"status": 503}, timeout=10)
    today = utc_now().date()
    first = today - timedelta(days=2)
    done = export(config, "--account", "vt", "--from", str(first), "--to", str(today))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(
        "usage-gateway export: account 'vt': source UNAVAILABLE (VENDOR_ERROR): "
    )
    assert line.endswith(
        "; the rows hold what the history store knows, the other days are marked missing"
    )
    rows = list(csv.reader(io.StringIO(done.stdout)))[1:]
    expected = vt_rows(VirusTotalData(DEMO_SEED), first, today - timedelta(days=1), False, first)
    assert rows == [*expected, [f"{today}T00:00:00Z", "", "", "", "", "", "true"]]


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_runs_as_written(tmp_path) -> None:
    """The README's try-it block, run by bash in an empty directory whose ``.venv`` is this
    one (the emulator's port swapped for a free one): a CSV with the columns and whole rows."""
    [block] = [
        b
        for b in re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
        if "try-export.toml" in b
    ]
    port = str(free_port())
    script = tmp_path / "try.sh"
    script.write_text(block.replace("9001", port), encoding="utf-8")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "usage-gateway").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m gateway.cli "$@"\n', encoding="utf-8"
    )
    (venv / "usage-gateway").chmod(0o755)
    done = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines.index("start,endpoint,requests,quota_requests,consumes_quota,bytes,missing")
    rows = list(csv.reader(lines[header + 1 :]))
    assert rows and all(len(row) == 7 and row[0].startswith("2026-11-") for row in rows)
    assert "Traceback" not in done.stderr
