"""The vendored browser files: what MANIFEST.json says is there, is, byte for byte; the versions
are the ones web/package.json pins; the licenses come along; the wheel ships them."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "gateway" / "static"
VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "MANIFEST.json").read_text(encoding="utf-8"))
PINNED: dict[str, str] = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]
BUILD_WHEEL = (
    "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
)
LOCK = json.loads((ROOT / "web" / "package-lock.json").read_text())["packages"]


def test_every_file_in_the_manifest_is_there_with_its_sha256() -> None:
    assert len(MANIFEST) >= 4 * 3  # a file, its license and third-party licenses per package
    for entry in MANIFEST:
        path = VENDOR / entry["file"]
        assert path.is_file(), f"{entry['file']} is in MANIFEST.json but not in {VENDOR}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["file"]


def test_every_vendored_file_is_in_the_manifest() -> None:
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()} - {
        "MANIFEST.json"
    }
    assert present == {entry["file"] for entry in MANIFEST}


def test_versions_are_the_exact_pins_of_package_json_and_its_lock() -> None:
    assert set(PINNED) == {"graphiql", "react", "react-dom", "chart.js"}
    for package, version in PINNED.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package} is not pinned exactly"
        assert LOCK[f"node_modules/{package}"]["version"] == version
        assert LOCK[f"node_modules/{package}"]["integrity"].startswith("sha512-")
        assert {e["version"] for e in MANIFEST if e["package"] == package} == {version}


def test_each_package_comes_with_its_license_and_its_dependencies_licenses() -> None:
    for package in PINNED:
        names = {e["file"].split("/", 1)[1] for e in MANIFEST if e["package"] == package}
        assert any(name.startswith("LICENSE") for name in names), package
        assert "THIRD-PARTY-LICENSES.txt" in names, package
        licence = next(VENDOR / package / n for n in names if n.startswith("LICENSE"))
        assert "Permission is hereby granted" in licence.read_text()  # MIT, all four
    # GraphiQL's bundle includes graphql-js and CodeMirror: their licenses are listed.
    third = (VENDOR / "graphiql" / "THIRD-PARTY-LICENSES.txt").read_text()
    for bundled in ("\ngraphql 16.", "\ncodemirror 5.", "\n@graphiql/react 0.34."):
        assert bundled in third, bundled
    assert "\n@kurkle/color " in (VENDOR / "chart.js" / "THIRD-PARTY-LICENSES.txt").read_text()


def test_the_browser_files_are_the_bundles_a_page_loads() -> None:
    files = {e["file"]: e for e in MANIFEST}
    # The dashboard loads Chart.js from this very path.
    assert files["chart.js/chart.umd.js"]["source"] == "dist/chart.umd.js"
    assert files["react/react.production.min.js"]["source"] == "umd/react.production.min.js"
    assert files["react-dom/react-dom.production.min.js"]["source"] == (
        "umd/react-dom.production.min.js"
    )
    assert files["graphiql/graphiql.min.js"]["source"] == "graphiql.min.js"
    assert files["graphiql/graphiql.min.css"]["source"] == "graphiql.min.css"
    head = (VENDOR / "chart.js" / "chart.umd.js").read_text()[:300]
    assert f"Chart.js v{PINNED['chart.js']}" in head
    umd = (VENDOR / "graphiql" / "graphiql.min.js").read_text()[:400]
    assert ".GraphiQL=t(e.React,e.ReactDOM)" in umd  # reads window.React and window.ReactDOM


def test_vendored_stylesheets_load_nothing_from_elsewhere() -> None:
    for css in VENDOR.rglob("*.css"):
        urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text())
        assert urls, css  # GraphiQL's embeds its fonts and images
        assert [u for u in urls if not u.startswith("data:")] == [], css
        assert "@import" not in css.read_text(), css


def test_the_wheel_ships_the_static_files(tmp_path: Path) -> None:
    """Built with setuptools from a copy of the sources (no download: no build isolation)."""
    source = tmp_path / "src"
    source.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gateway", "providers"):
        shutil.copytree(ROOT / name, source / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-c", BUILD_WHEEL, str(tmp_path / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("gateway/static/")}
    expected = {
        f"gateway/{p.relative_to(ROOT / 'gateway')}"
        for p in STATIC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == expected
    assert "gateway/static/vendor/chart.js/chart.umd.js" in shipped


def test_the_readme_names_the_pinned_versions() -> None:
    rows = re.findall(
        r"^\| ([a-z.\-, ]+) \| (\d+\.\d+\.\d+) \|", (ROOT / "README.md").read_text(), re.M
    )
    named = {package: version for names, version in rows for package in names.split(", ")}
    assert named == PINNED
