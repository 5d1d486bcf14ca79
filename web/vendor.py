#!/usr/bin/env python3
"""Copy the browser files the gateway serves from web/node_modules into gateway/static/vendor/.

``make assets`` runs ``npm ci`` in web/ (the exact versions of package.json, checked against
package-lock.json's integrity hashes), then this script. For each package in :data:`FILES` it
copies the listed files, byte for byte, into ``gateway/static/vendor/<package>/``, with the
package's own license file and ``THIRD-PARTY-LICENSES.txt``: the license of every package its
dependency tree holds (a bundle such as GraphiQL's includes their code). Then it writes
``gateway/static/vendor/MANIFEST.json``: one entry per copied file with its package, version,
path and SHA-256, which ``tests/test_assets.py`` checks against the files.

The vendor directory is rewritten from scratch: a file nobody lists any more is gone. Only the
standard library is used, so it runs with any Python 3.11.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent
MODULES = WEB / "node_modules"
VENDOR = WEB.parent / "gateway" / "static" / "vendor"

FILES: dict[str, tuple[str, ...]] = {
    # The newest GraphiQL that ships a bundle a page can load with a <script> tag (GraphiQL 5
    # is ES modules and Monaco web workers, for a bundler). It reads window.React and
    # window.ReactDOM, and bundles graphql-js, CodeMirror 5 and its other dependencies.
    "graphiql": ("graphiql.min.js", "graphiql.min.css"),
    # React 18 is the last React with browser (UMD) builds; GraphiQL 4 supports 18 and 19.
    "react": ("umd/react.production.min.js",),
    "react-dom": ("umd/react-dom.production.min.js",),
    "chart.js": ("dist/chart.umd.js",),
}
"""Package -> the files of it a browser loads (paths inside the npm package)."""

SEPARATE = frozenset(FILES)
"""Packages loaded as files of their own: not counted among another package's third parties."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def license_file(package_dir: Path) -> Path | None:
    """The package's license file (LICENSE, LICENSE.md, LICENCE, license.txt...)."""
    found = sorted(
        p for p in package_dir.iterdir() if p.is_file() and p.name.upper().startswith("LICEN")
    )
    return found[0] if found else None


def resolve(lock: dict[str, dict[str, object]], importer: str, name: str) -> str | None:
    """Where npm put ``name`` for the package at ``importer`` (Node's lookup: the nearest
    ``node_modules/<name>`` up the tree)."""
    base = importer
    while True:
        candidate = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
        if candidate in lock:
            return candidate
        if not base:
            return None
        cut = base.rfind("/node_modules/")
        base = base[:cut] if cut >= 0 else ""


def dependency_tree(lock: dict[str, dict[str, object]], root: str) -> list[str]:
    """Lock keys of every package ``root`` depends on (dependencies and installed peers),
    transitively, leaving out packages vendored on their own."""
    seen: set[str] = set()
    todo = [f"node_modules/{root}"]
    while todo:
        key = todo.pop()
        entry = lock[key]
        names: dict[str, str] = {}
        for field in ("dependencies", "peerDependencies", "optionalDependencies"):
            names.update(entry.get(field, {}) or {})
        for name in names:
            if name in SEPARATE:
                continue
            found = resolve(lock, key, name)
            if found is not None and found not in seen:
                seen.add(found)
                todo.append(found)
    return sorted(seen)


def third_party(lock: dict[str, dict[str, object]], package: str) -> str:
    """The text of THIRD-PARTY-LICENSES.txt for ``package``."""
    parts = [
        f"Licenses of the packages in the dependency tree of {package} "
        f"{lock[f'node_modules/{package}']['version']}, as npm installed them for this copy.\n"
    ]
    for key in dependency_tree(lock, package):
        entry = lock[key]
        name = key.rsplit("node_modules/", 1)[1]
        text_file = license_file(WEB / key)
        text = (
            text_file.read_text(encoding="utf-8", errors="replace").strip()
            if text_file
            else "(the package ships no license file)"
        )
        parts.append(f"{'=' * 78}\n{name} {entry['version']} ({entry.get('license')})\n\n{text}\n")
    return "\n".join(parts)


def main() -> int:
    lock_path = WEB / "package-lock.json"
    lock: dict[str, dict[str, object]] = json.loads(lock_path.read_text())["packages"]
    pinned: dict[str, str] = json.loads((WEB / "package.json").read_text())["dependencies"]
    if set(pinned) != set(FILES):
        print(f"vendor.py: package.json pins {sorted(pinned)}, FILES lists {sorted(FILES)}")
        return 1
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    manifest: list[dict[str, str]] = []
    for package, sources in sorted(FILES.items()):
        package_dir = MODULES / package
        version = json.loads((package_dir / "package.json").read_text())["version"]
        if version != pinned[package]:
            print(f"vendor.py: {package} {version} installed, {pinned[package]} pinned: npm ci")
            return 1
        target = VENDOR / package
        target.mkdir(parents=True)
        licensed = license_file(package_dir)
        if licensed is None:
            print(f"vendor.py: {package} ships no license file")
            return 1
        copies = [(source, Path(source).name) for source in sources]
        copies.append((licensed.name, licensed.name))
        for source, name in copies:
            shutil.copyfile(package_dir / source, target / name)
        (target / "THIRD-PARTY-LICENSES.txt").write_text(third_party(lock, package))
        copies.append(("", "THIRD-PARTY-LICENSES.txt"))
        for source, name in copies:
            entry = {"package": package, "version": version, "file": f"{package}/{name}"}
            if source:
                entry["source"] = source
            entry["sha256"] = sha256(target / name)
            manifest.append(entry)
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest:
        print(f"  {entry['file']:55} {entry['version']:8} {entry['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
