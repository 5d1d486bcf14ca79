"""Trusted documents (``[gateway] trusted_documents``) and Apollo's persisted-query protocol,
against gateways served on loopback: known documents run by hash alone and by full text (POST
and GET), anything else is refused before it is parsed; manifests are checked at load; the
``documents hash`` command writes them; the dashboard runs on a locked gateway when its
document is in the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings
from gateway.trusted_documents import (
    DASHBOARD_DOCUMENT,
    MAX_MANIFEST_BYTES,
    load_manifest,
    manifest_json,
)
from tests.conftest import NO_HISTORY, account_entry, settings_for

ROOT = Path(__file__).resolve().parent.parent
IDS = "query Ids { accounts { id } }"
ONE = "query One($id: ID!) { account(id: $id) { id providerName } }"
QUOTAS = "{ quotas { accountId used limit } }"  # not trusted; would call the vendor


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def persisted(sha256: str, **more: Any) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}}, **more}


def apollo_manifest(*documents: tuple[str, str]) -> str:
    return json.dumps(
        {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [
                {"id": sha(body), "body": body, "name": name, "type": "query"}
                for name, body in documents
            ],
        }
    )


MANIFESTS = {
    "hash-to-text": manifest_json([IDS, ONE]),
    "apollo": apollo_manifest(("Ids", IDS), ("One", ONE)),
}


@pytest.fixture
def repute(emulators) -> dict[str, str]:
    return account_entry("reputeapi", emulators["reputeapi"].url, 0, id="repute")


@pytest.fixture(params=sorted(MANIFESTS))
def locked(request, tmp_path, serve, repute) -> str:
    """A gateway that runs only IDS and ONE, from a manifest in either form."""
    manifest = tmp_path / "trusted.json"
    manifest.write_text(MANIFESTS[request.param], encoding="utf-8")
    return serve(settings_for(repute, trusted_documents=str(manifest)))


def post(base: str, body: object) -> dict[str, Any]:
    response = httpx.post(f"{base}/graphql", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def get(base: str, params: dict[str, str], accept: str = "application/json") -> dict[str, Any]:
    response = httpx.get(f"{base}/graphql", params=params, headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = response.json()
    return answer


def refusal(answer: dict[str, Any]) -> str:
    """The code of an answer that is one refusal and no data."""
    assert answer.get("data") is None, answer
    [error] = answer["errors"]
    code: str = error["extensions"]["code"]
    return code


IDS_ANSWER = {"data": {"accounts": [{"id": "repute"}]}}
ONE_ANSWER = {"data": {"account": {"id": "repute", "providerName": "ReputeAPI"}}}


# --- accepted ----------------------------------------------------------------------------------


def test_a_known_document_runs_by_its_hash_alone(locked) -> None:
    assert post(locked, persisted(sha(IDS))) == IDS_ANSWER
    assert post(locked, persisted(sha(ONE), variables={"id": "repute"})) == ONE_ANSWER
    assert post(locked, persisted(sha(IDS).upper())) == IDS_ANSWER  # hex in either case


def test_a_known_document_runs_by_its_full_text(locked) -> None:
    assert post(locked, {"query": IDS}) == IDS_ANSWER
    assert post(locked, {"query": ONE, "variables": {"id": "repute"}}) == ONE_ANSWER
    assert post(locked, {"query": IDS, **persisted(sha(IDS))}) == IDS_ANSWER


def test_a_known_document_runs_over_get_by_hash_and_by_text(locked) -> None:
    extensions = json.dumps(persisted(sha(ONE))["extensions"])
    for accept in ("application/json", "*/*"):  # curl's default: still no GraphiQL page
        by_hash = get(
            locked, {"extensions": extensions, "variables": '{"id": "repute"}'}, accept=accept
        )
        assert by_hash == ONE_ANSWER
    assert get(locked, {"query": IDS}) == IDS_ANSWER


# --- refused -----------------------------------------------------------------------------------


def test_an_unknown_hash_is_persisted_query_not_found(locked, emulators) -> None:
    unknown = sha(QUOTAS)
    for answer in (
        post(locked, persisted(unknown)),
        get(locked, {"extensions": json.dumps(persisted(unknown)["extensions"])}),
    ):
        assert answer["errors"] == [
            {
                "message": f"PersistedQueryNotFound: no trusted document has the hash {unknown}",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
        assert answer["data"] is None
    assert emulators["reputeapi"].emulator.total_calls() == 0


def test_a_free_form_document_is_not_trusted(locked, emulators) -> None:
    for answer in (
        post(locked, {"query": QUOTAS}),
        get(locked, {"query": QUOTAS}),
        post(locked, {"query": QUOTAS, **persisted(sha(QUOTAS))}),
        # A known document's text changed by one space is another document.
        post(locked, {"query": IDS.replace("{ id }", "{ id  }")}),
        # Refused before it is parsed: a document that would not parse is just as untrusted.
        post(locked, {"query": "{ accounts { id "}),
    ):
        assert refusal(answer) == "DOCUMENT_NOT_TRUSTED"
    message = post(locked, {"query": QUOTAS})["errors"][0]["message"]
    assert message == (
        f"This gateway runs trusted documents only, and this one (SHA-256 {sha(QUOTAS)}) is not "
        "among them: send one of its documents, or only its hash in extensions.persistedQuery"
    )
    assert emulators["reputeapi"].emulator.total_calls() == 0  # refused before anything ran


def test_introspection_is_not_trusted_either(locked) -> None:
    assert refusal(post(locked, {"query": "{ __schema { queryType { name } } }"})) == (
        "DOCUMENT_NOT_TRUSTED"
    )


def test_a_hash_that_is_not_the_texts_is_refused(locked) -> None:
    answer = post(locked, {"query": IDS, **persisted(sha(ONE))})
    assert refusal(answer) == "BAD_USER_INPUT"
    assert answer["errors"][0]["message"] == (
        f"extensions.persistedQuery.sha256Hash is not the SHA-256 of 'query' (that is {sha(IDS)})"
    )


@pytest.mark.parametrize(
    ("persisted_query", "code", "words"),
    [
        ("abc", "BAD_USER_INPUT", "must be an object"),
        ({"version": 2, "sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED", "1"),
        ({"sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED", "must be 1"),
        ({"version": 1, "sha256Hash": "0" * 63}, "BAD_USER_INPUT", "64 hex digits"),
        ({"version": 1, "sha256Hash": "g" * 64}, "BAD_USER_INPUT", "64 hex digits"),
        ({"version": 1, "sha256Hash": 7}, "BAD_USER_INPUT", "64 hex digits"),
        ({"version": 1}, "BAD_USER_INPUT", "64 hex digits"),
    ],
)
def test_a_malformed_persisted_query_is_refused_naming_the_problem(
    locked, persisted_query, code, words
) -> None:
    answer = post(locked, {"extensions": {"persistedQuery": persisted_query}})
    assert refusal(answer) == code
    assert words in answer["errors"][0]["message"]


def test_a_batch_is_still_refused_whole(locked) -> None:
    response = httpx.post(f"{locked}/graphql", json=[persisted(sha(IDS))], timeout=30)
    assert response.status_code == 400


# --- without trusted documents -----------------------------------------------------------------


def test_without_a_manifest_a_hash_alone_is_not_supported_and_text_runs(serve, repute) -> None:
    base = serve(settings_for(repute))
    answer = post(base, persisted(sha(IDS)))
    assert refusal(answer) == "PERSISTED_QUERY_NOT_SUPPORTED"
    assert answer["errors"][0]["message"].startswith("PersistedQueryNotSupported: ")
    # Apollo's clients then send the text with the hash: it runs, as any query does.
    assert post(base, {"query": IDS, **persisted(sha(IDS))}) == IDS_ANSWER
    assert post(base, {"query": QUOTAS})["data"]["quotas"]


# --- the dashboard on a locked gateway ----------------------------------------------------------


def dashboard_document_url(base: str) -> str:
    page = httpx.get(f"{base}/", timeout=30)
    assert page.status_code == 200
    found = re.search(r'<meta name="dashboard-queries" content="([^"]+)">', page.text)
    assert found is not None
    return f"{base}{found.group(1)}"


def test_the_dashboard_runs_on_a_locked_gateway_when_its_document_is_shipped(
    serve, emulators, tmp_path
) -> None:
    """Trusted documents and introspection off: the dashboard's document, as the page
    fetches it, runs both its operations (by text, as the page sends it, and by hash)."""
    manifest = tmp_path / "trusted.json"
    manifest.write_text(manifest_json([DASHBOARD_DOCUMENT.read_text(encoding="utf-8"), IDS]))
    entries = [
        account_entry(provider, running.url, 0, id=provider)
        for provider, running in emulators.items()
    ]
    base = serve(settings_for(*entries, trusted_documents=str(manifest), introspection=False))
    document = httpx.get(dashboard_document_url(base), timeout=30).text
    overview = post(base, {"query": document, "operationName": "Overview"})
    assert "errors" not in overview, overview["errors"]
    assert {a["id"]: a["providerName"] for a in overview["data"]["accounts"]} == {
        "reputeapi": "ReputeAPI",
        "reversinglabs": "ReversingLabs",
        "virustotal": "VirusTotal",
        "zkscore": "ZKScore",
    }
    variables = {"id": "reputeapi", "from": "2026-03-01", "to": "2026-03-18", "granularity": "DAY"}
    usage = post(base, {"query": document, "operationName": "Usage", "variables": variables})
    assert "errors" not in usage, usage["errors"]
    assert len(usage["data"]["account"]["usage"]["series"]) == 18
    by_hash = post(base, persisted(sha(document), operationName="Usage", variables=variables))
    assert by_hash == usage


def test_the_dashboard_is_off_when_its_document_is_not_shipped(serve, repute, tmp_path) -> None:
    manifest = tmp_path / "trusted.json"
    manifest.write_text(manifest_json([IDS]))
    base = serve(settings_for(repute, trusted_documents=str(manifest)))
    assert httpx.get(f"{base}/", timeout=30).status_code == 404
    page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 404  # GraphiQL too: it sends documents of its own


# --- manifests checked at load -----------------------------------------------------------------

GOOD_ENTRY = {sha(IDS): IDS}


def config_with(tmp_path: Path, manifest: str | bytes | None, extra: str = "") -> Path:
    """A config in ``tmp_path/etc`` naming ``trusted.json`` beside it (written unless None)."""
    folder = tmp_path / "etc"
    folder.mkdir(exist_ok=True)
    if manifest is not None:
        data = manifest.encode() if isinstance(manifest, str) else manifest
        (folder / "trusted.json").write_bytes(data)
    config = folder / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{NO_HISTORY}"\ntrusted_documents = "trusted.json"\n{extra}'
    )
    return config


def test_the_manifest_path_is_relative_to_the_config_file(tmp_path, monkeypatch) -> None:
    config = config_with(tmp_path, json.dumps(GOOD_ENTRY))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trusted = load_settings(config, env={}).switches.trusted_documents
    assert trusted is not None
    assert trusted.path == str(config.parent / "trusted.json")
    assert dict(trusted.documents) == GOOD_ENTRY


WRONG = sha("something else")


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        (None, "trusted.json: no such file"),
        (
            json.dumps({WRONG: IDS}),
            f"trusted.json: entry '{WRONG[:12]}…': the hash is not the "
            f"SHA-256 of its document (that is {sha(IDS)})",
        ),
        (json.dumps({"abc": IDS}), "entry 'abc': the hash is not 64 hex digits (a SHA-256)"),
        (json.dumps({sha(IDS): 5}), "the document must be a non-empty string"),
        (json.dumps({sha(""): ""}), "the document must be a non-empty string"),
        ("{}", "trusted.json: holds no documents, so no query could run"),
        ("[]", "trusted.json: a manifest is a JSON object"),
        ("{nope", "trusted.json: not JSON: "),
        (b"\xff\xfe{}", "trusted.json: not UTF-8 text"),
        (
            json.dumps({"format": "relay", "operations": []}),
            "format 'relay' is not 'apollo-persisted-query-manifest'",
        ),
        (
            json.dumps({"format": "apollo-persisted-query-manifest", "version": 2}),
            "version 2 is not 1",
        ),
        (
            json.dumps({"format": "apollo-persisted-query-manifest", "version": 1}),
            "'operations' must be a list",
        ),
        (
            json.dumps(
                {"format": "apollo-persisted-query-manifest", "version": 1, "operations": ["x"]}
            ),
            "operation #1: must be an object",
        ),
        (
            json.dumps(
                {
                    "format": "apollo-persisted-query-manifest",
                    "version": 1,
                    "operations": [
                        {"id": sha(IDS), "body": IDS, "name": "Ids", "type": "query"},
                        {"id": WRONG, "body": ONE, "name": "One", "type": "query"},
                    ],
                }
            ),
            f"trusted.json: operation #2 ('One'): the hash is not the SHA-256 of its document "
            f"(that is {sha(ONE)})",
        ),
        (
            json.dumps(GOOD_ENTRY) + " " * MAX_MANIFEST_BYTES,
            f"trusted.json: larger than {MAX_MANIFEST_BYTES:,} bytes, the most read",
        ),
    ],
)
def test_a_bad_manifest_stops_the_config_naming_the_entry(tmp_path, manifest, words) -> None:
    config = config_with(tmp_path, manifest)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"{config}: [gateway] field 'trusted_documents': trusted.json: ")
    assert words in line


def test_switches_asked_for_by_name_that_trusted_documents_rule_out(tmp_path) -> None:
    config = config_with(tmp_path, json.dumps(GOOD_ENTRY), "graphiql = true\n")
    with pytest.raises(ConfigError, match="field 'graphiql': GraphiQL sends documents of its own"):
        load_settings(config, env={})
    config = config_with(tmp_path, json.dumps(GOOD_ENTRY), "dashboard = true\n")
    with pytest.raises(
        ConfigError,
        match=r"field 'dashboard': the dashboard's document is not in trusted.json; add it "
        r"\(usage-gateway documents hash --dashboard\) or set dashboard = false",
    ):
        load_settings(config, env={})
    shipped = manifest_json([IDS, DASHBOARD_DOCUMENT.read_text(encoding="utf-8")])
    config = config_with(tmp_path, shipped, "dashboard = true\ngraphiql = false\n")
    switches = load_settings(config, env={}).switches
    assert (switches.dashboard, switches.graphiql, switches.notices) == (True, False, ())


def test_an_apollo_manifest_loads_by_its_ids(tmp_path) -> None:
    path = tmp_path / "apollo.json"
    path.write_text(apollo_manifest(("Ids", IDS), ("One", ONE)))
    trusted = load_manifest(path)
    assert dict(trusted.documents) == {sha(IDS): IDS, sha(ONE): ONE}


# --- usage-gateway documents hash ---------------------------------------------------------------


def documents_hash(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "documents", "hash", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_documents_hash_writes_a_manifest_the_gateway_loads(tmp_path, serve, repute) -> None:
    (tmp_path / "ids.graphql").write_text(IDS)
    (tmp_path / "one.graphql").write_text(ONE + "\n")
    result = documents_hash("ids.graphql", "one.graphql", "--dashboard", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    dashboard = DASHBOARD_DOCUMENT.read_text(encoding="utf-8")
    assert json.loads(result.stdout) == {
        sha(IDS): IDS,
        sha(ONE + "\n"): ONE + "\n",
        sha(dashboard): dashboard,
    }
    written = documents_hash("ids.graphql", "-o", "trusted.json", cwd=tmp_path)
    assert (written.returncode, written.stdout, written.stderr) == (0, "", "")
    base = serve(settings_for(repute, trusted_documents=str(tmp_path / "trusted.json")))
    assert post(base, persisted(sha(IDS))) == IDS_ANSWER


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{ nope }", "bad.graphql: Cannot query field 'nope' on type 'Query'. (line 1)"),
        ("{ accounts { id ", "bad.graphql: not a GraphQL document at line 1: Syntax Error"),
        (b"\xff{ accounts { id } }", "bad.graphql: not UTF-8 text"),
        ("{ accounts { id } }" + " " * 1024 * 1024, "bad.graphql: larger than 1,048,576 bytes"),
        (
            "{ " + " ".join(f"a{i}: accounts {{ id }}" for i in range(31)) + " }",
            "bad.graphql: 31 aliases found. Allowed: 30",
        ),
        ("{ " + "accounts { id } " * 500 + "}", "more than 2000 tokens"),
    ],
)
def test_documents_hash_refuses_what_the_gateway_would_refuse(tmp_path, content, words) -> None:
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "bad.graphql").write_bytes(data)
    result = documents_hash("bad.graphql", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage-gateway documents hash: ")
    assert result.stderr.count("\n") == 1
    assert words in result.stderr


def test_documents_hash_needs_something_to_hash(tmp_path) -> None:
    nothing = documents_hash(cwd=tmp_path)
    assert (nothing.returncode, nothing.stderr) == (
        2,
        "usage-gateway documents hash: name .graphql files, or --dashboard\n",
    )
    missing = documents_hash("absent.graphql", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2,
        "usage-gateway documents hash: absent.graphql: No such file or directory\n",
    )


def test_serve_refuses_a_bad_manifest_with_the_readmes_line_and_exit_2(tmp_path) -> None:
    """The README's example of a manifest entry whose hash is not its document's."""
    operations = [
        {"id": sha(IDS), "body": IDS, "name": "Ids", "type": "query"},
        {"id": sha(IDS), "body": ONE, "name": "One", "type": "query"},  # Ids' hash
    ]
    manifest = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    (tmp_path / "trusted-documents.json").write_text(json.dumps(manifest))
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\ntrusted_documents = "trusted-documents.json"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", "gateway.toml", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert (result.returncode, result.stdout) == (2, "")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert result.stderr.startswith("usage-gateway: gateway.toml: [gateway] field ")
    assert result.stderr.strip() in readme.splitlines()


def test_the_readme_gives_the_manifest_bound() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert "It is read at start-up, up to 4 MiB" in readme


def test_a_refusal_is_logged_at_info_on_one_line_without_a_traceback(locked, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    post(locked, {"query": QUOTAS})
    post(locked, persisted(sha(QUOTAS)))
    shown = [r for r in caplog.records if r.name == "gateway.graphql"]
    assert [r.levelno for r in shown] == [logging.INFO, logging.INFO]
    assert "DOCUMENT_NOT_TRUSTED" not in shown[0].getMessage()  # the message, for people
    assert "is not among them" in shown[0].getMessage()
    assert "PersistedQueryNotFound" in shown[1].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
