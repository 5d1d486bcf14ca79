"""The provider registry is the one list of vendors, and serving a config loads no emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from providers import registry
from tests.conftest import NO_HISTORY

ROOT = Path(__file__).parent.parent

SERVE = """
import json, sys
import gateway.cli  # what `usage-gateway serve` imports
from gateway.app import create_app
from gateway.settings import parse_settings

settings = parse_settings(json.loads(sys.argv[1]), env={})
app = create_app(settings)
print(json.dumps({
    "accounts": sorted(str(a.provider) for a in settings.accounts),
    "modules": sorted(m for m in sys.modules if m == "providers" or m.startswith("providers.")),
}))
"""


def test_serving_a_config_of_every_provider_imports_no_emulator() -> None:
    ids = list(registry())
    config = {
        "gateway": {"history_path": NO_HISTORY},
        "accounts": [
            {"provider": pid, "base_url": "http://127.0.0.1:9", **entry.emulator.accounts[0]}
            for pid, entry in registry().items()
        ],
    }
    result = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["accounts"] == sorted(ids)  # every provider is configured ...
    modules = set(seen["modules"])
    for entry in registry().values():  # ... and its client is loaded ...
        assert f"providers.{entry.package}.client" in modules
    emulators = [m for m in modules if m.endswith(".emulator") or m == "providers.emulation"]
    assert emulators == []  # ... but no emulator, nor the emulator toolkit


def test_every_id_is_a_graph_name_and_every_provider_is_described() -> None:
    for pid, entry in registry().items():
        assert entry.client.id == pid
        assert pid.upper().isidentifier() and pid == pid.lower(), pid
        assert entry.client.description.strip(), pid
