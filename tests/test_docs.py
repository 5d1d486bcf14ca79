"""The Makefile's ``run`` variables and the README's command examples, as a user types them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from datetime import date
from pathlib import Path

import pytest

from gateway.demo import MAX_PAST_DAYS, SAMPLES_PER_WINDOW
from providers import registry

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV_BIN = ".venv/bin/"
TOOLS = ("usage-gateway", "python", "python3", "pip", "pytest")
"""Commands that live in the venv: an example must call them by their ``.venv/bin`` path
(``make check``'s tools are named in prose, as what it runs, not as commands to type)."""


def make_run(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """What ``make run ARGS`` would run (``-n``), with the install step taken as done."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "--host 127.0.0.1 --port 8000"),
        (("PORT=8001",), "--host 127.0.0.1 --port 8001"),
        (("PORT=8001", "HOST=0.0.0.0"), "--host 0.0.0.0 --port 8001"),
        (("HOST=0.0.0.0", "PORT=8001"), "--host 0.0.0.0 --port 8001"),
    ],
)
def test_make_run_passes_host_and_port(args: tuple[str, ...], expected: str) -> None:
    assert make_run(*args) == [f".venv/bin/usage-gateway demo {expected}"]


def test_make_run_ignores_a_host_or_port_in_the_environment() -> None:
    # Shells and platforms set HOST and PORT for their own reasons; only make's command line counts.
    lines = make_run(env={"HOST": "build-box.example", "PORT": "5000"})
    assert lines == [".venv/bin/usage-gateway demo --host 127.0.0.1 --port 8000"]


def test_readme_documents_the_make_variables() -> None:
    assert "`make run PORT=8001`" in README
    assert "`make run HOST=0.0.0.0 PORT=8001`" in README


def commands() -> list[str]:
    """Every command of the README: the lines of its ``sh`` blocks (comments dropped) and its
    inline code spans that start with a command."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(line)
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        words = shlex.split(span) if span[0].isalpha() or span.startswith(".") else []
        if words and Path(words[0]).name in (*TOOLS, "make") and len(words) > 1:
            found.append(span)
    return found


def test_readme_commands_call_the_venv() -> None:
    found = commands()
    tools = [c for c in found if Path(shlex.split(c)[0]).name in TOOLS]
    # Non-vacuous: the examples of serve, snapshot, demo, emulator and the bench are all here.
    for needle in ("serve", "snapshot", " demo ", "emulator virustotal", "benchmarks.bench"):
        assert any(needle in c for c in tools), needle
    for command in tools:
        assert command.startswith(VENV_BIN), command
    assert {c.split()[0] for c in found} - {c.split()[0] for c in tools} == {"make"}


def test_readme_names_no_command_outside_the_venv() -> None:
    """No ``usage-gateway <command>`` in code anywhere without its venv path (prose that names
    a command says "the ``demo`` command"); its own output (``usage-gateway:``) is not a command."""
    code = re.findall(r"```(?:sh|graphql|toml|json)?\n(.*?)```", README, re.S)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    for text in code:
        for match in re.finditer(r"(\S*)usage-gateway (?=[a-z])", text):
            assert match.group(1).endswith(VENV_BIN), text


def test_readme_figures_of_the_demo_history() -> None:
    prose = " ".join(README.split())
    assert MAX_PAST_DAYS == 1096 and "three years (1,096 days)" in prose
    assert SAMPLES_PER_WINDOW == 4 and "sampled four times" in prose
    first = {pid: entry.emulator.first_day for pid, entry in registry().items()}
    assert first == {
        "reputeapi": date(2025, 1, 6),
        "reversinglabs": date(2024, 1, 1),
        "virustotal": None,
        "zkscore": date(2025, 1, 15),
    }
    for phrase in ("ReversingLabs 2024-01-01", "ReputeAPI 2025-01-06", "ZKScore 2025-01-15"):
        assert phrase in prose, phrase
