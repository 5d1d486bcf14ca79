"""Production switches (``[gateway]``), each on and off, against gateways served on loopback:
introspection, GraphiQL, the dashboard, the OpenAPI pages (never served) and the CORS
allow-list, with the whole-answer cache on."""

from __future__ import annotations

import hashlib
import logging
import re
import signal
from pathlib import Path

import httpx
import pytest

from gateway.dashboard import DASHBOARD_OFF
from gateway.errors import ConfigError
from gateway.graphql.requests import GRAPHIQL_OFF
from gateway.settings import Switches, load_settings, parse_settings
from gateway.trusted_documents import manifest_json
from tests.conftest import NO_HISTORY, account_entry, settings_for
from tests.e2e.test_demo import cli, read_until

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
GRAFANA = "https://grafana.example.com"
OTHER_ALLOWED = "http://127.0.0.1:3000"
EVIL = "https://evil.example.net"
OPENAPI_PATHS = [
    "/schema",
    "/schema/swagger",
    "/schema/redoc",
    "/schema/elements",
    "/schema/rapidoc",
    "/schema/scalar",
    "/schema/openapi.json",
    "/schema/openapi.yaml",
    "/schema/openapi.yml",
]


@pytest.fixture
def repute(emulators) -> dict[str, str]:
    return account_entry("reputeapi", emulators["reputeapi"].url, 0, id="repute")


def post(base: str, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/graphql", json={"query": query}, headers=headers, timeout=30)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


# --- introspection -----------------------------------------------------------------------------

SCHEMA_QUERY = "{ __schema { queryType { name } } }"
TYPE_QUERY = '{ __type(name: "Provider") { enumValues { name } } }'


def test_introspection_answers_by_default(serve, repute) -> None:
    base = serve(settings_for(repute))
    assert post(base, SCHEMA_QUERY).json() == {
        "data": {"__schema": {"queryType": {"name": "Query"}}}
    }
    values = post(base, TYPE_QUERY).json()["data"]["__type"]["enumValues"]
    assert {v["name"] for v in values} == {"REPUTEAPI", "REVERSINGLABS", "VIRUSTOTAL", "ZKSCORE"}


def test_introspection_off_refuses_schema_and_type_with_one_error_each(serve, repute) -> None:
    # The same documents first pass on a gateway with introspection on (in this process's
    # store of known-valid documents): the other gateway validates them with its own rules.
    open_base = serve(settings_for(repute))
    closed_base = serve(settings_for(repute, introspection=False))
    for query, field in ((SCHEMA_QUERY, "__schema"), (TYPE_QUERY, "__type")):
        assert "errors" not in post(open_base, query).json()
        for answer in (
            post(closed_base, query),
            httpx.get(f"{closed_base}/graphql", params={"query": query}, timeout=30),
        ):
            assert answer.status_code == 200
            assert answer.json() == {
                "data": None,
                "errors": [
                    {
                        "message": f"Introspection is turned off on this gateway: '{field}' "
                        "cannot be queried",
                        "locations": [{"line": 1, "column": 3}],
                        "extensions": {"code": "INTROSPECTION_DISABLED"},
                    }
                ],
            }


def test_introspection_off_still_answers_typename(serve, repute) -> None:
    base = serve(settings_for(repute, introspection=False))
    answer = post(base, "{ __typename accounts { __typename id providerName } }").json()
    assert answer == {
        "data": {
            "__typename": "Query",
            "accounts": [{"__typename": "Account", "id": "repute", "providerName": "ReputeAPI"}],
        }
    }


def test_provider_names_are_the_vendors_names(serve, emulators) -> None:
    """``Account.providerName`` (what the dashboard shows, with no introspection needed)."""
    entries = [
        account_entry(provider, running.url, 0, id=provider)
        for provider, running in emulators.items()
    ]
    base = serve(settings_for(*entries, introspection=False))
    answer = post(base, "{ accounts { id providerName } }").json()["data"]["accounts"]
    assert {a["id"]: a["providerName"] for a in answer} == {
        "reputeapi": "ReputeAPI",
        "reversinglabs": "ReversingLabs",
        "virustotal": "VirusTotal",
        "zkscore": "ZKScore",
    }


# --- GraphiQL, the dashboard, the OpenAPI pages ---------------------------------------------


def test_graphiql_off_is_a_404_saying_so_and_graphql_over_get_still_answers(serve, repute) -> None:
    base = serve(settings_for(repute, graphiql=False))
    page = httpx.get(f"{base}/graphql", headers=HTML, timeout=30)
    assert page.status_code == 404
    assert page.headers["content-type"] == "text/plain; charset=utf-8"
    assert page.text == GRAPHIQL_OFF and page.text.count("\n") == 1  # one line
    curl = httpx.get(f"{base}/graphql", headers={"Accept": "*/*"}, timeout=30)
    assert (curl.status_code, curl.text) == (404, GRAPHIQL_OFF)
    expected = {"data": {"accounts": [{"id": "repute"}]}}
    by_get = httpx.get(
        f"{base}/graphql", params={"query": "{ accounts { id } }"}, headers=HTML, timeout=30
    )
    assert (by_get.status_code, by_get.json()) == (200, expected)
    assert post(base, "{ accounts { id } }").json() == expected


def test_graphiql_is_served_by_default(serve, repute) -> None:
    page = httpx.get(f"{serve(settings_for(repute))}/graphql", headers=HTML, timeout=30)
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_dashboard_off_is_a_404_saying_so(serve, repute) -> None:
    base = serve(settings_for(repute, dashboard=False))
    page = httpx.get(f"{base}/", headers=HTML, timeout=30)
    assert (page.status_code, page.text) == (404, DASHBOARD_OFF)
    assert page.text.count("\n") == 1  # one line
    assert page.headers["content-type"] == "text/plain; charset=utf-8"
    on = httpx.get(f"{serve(settings_for(repute))}/", headers=HTML, timeout=30)
    assert on.status_code == 200 and on.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "switches",
    [{}, {"introspection": False, "graphiql": False, "dashboard": False, "cors_origins": ["*"]}],
)
def test_the_openapi_pages_are_never_served(serve, repute, switches) -> None:
    base = serve(settings_for(repute, **switches))
    for path in OPENAPI_PATHS:
        assert httpx.get(f"{base}{path}", headers=HTML, timeout=30).status_code == 404, path


def test_start_up_logs_what_the_config_switched_off(serve, repute, tmp_path, caplog) -> None:
    manifest = tmp_path / "trusted.json"
    manifest.write_text(manifest_json(["{ accounts { id } }"]))
    caplog.set_level(logging.INFO)
    settings = settings_for(repute, trusted_documents=str(manifest))
    serve(settings)
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.app"]
    assert lines == [
        "GraphiQL is off: with trusted_documents only the manifest's documents run",
        f"the dashboard is off: its document is not in {manifest} (add it with usage-gateway "
        "documents hash --dashboard)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "gateway.app")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- CORS ----------------------------------------------------------------------------------


def preflight(base: str, origin: str, path: str = "/graphql") -> httpx.Response:
    return httpx.options(
        f"{base}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
        timeout=30,
    )


def test_no_cors_headers_at_all_by_default(serve, repute) -> None:
    base = serve(settings_for(repute))
    for origin in (GRAFANA, EVIL):
        assert cors_headers(preflight(base, origin)) == {}
        answer = post(base, "{ accounts { id } }", {"Origin": origin})
        assert answer.status_code == 200 and cors_headers(answer) == {}
        assert "vary" not in answer.headers


def test_a_preflight_from_an_allowed_origin_allows_post_with_its_headers(serve, repute) -> None:
    base = serve(settings_for(repute, cors_origins=[GRAFANA, OTHER_ALLOWED]))
    for origin in (GRAFANA, OTHER_ALLOWED):
        answer = preflight(base, origin)
        assert answer.status_code == 204
        headers = cors_headers(answer)
        assert headers["access-control-allow-origin"] == origin
        assert "POST" in headers["access-control-allow-methods"].split(", ")
        allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
        assert {"content-type", "authorization"} <= allowed
        assert "access-control-allow-credentials" not in headers
        assert answer.headers["vary"] == "Origin"


def test_a_disallowed_origin_gets_no_allow_origin(serve, repute) -> None:
    base = serve(settings_for(repute, cors_origins=[GRAFANA]))
    for origin in (EVIL, GRAFANA + ".evil.example.net", "https://grafana.example.com:8443"):
        refused = preflight(base, origin)
        assert "access-control-allow-origin" not in refused.headers
        assert refused.status_code == 400  # Litestar's word: "Disallowed CORS Origin"
        answer = post(base, "{ accounts { id } }", {"Origin": origin})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


def test_cors_with_the_whole_answer_cache_gives_each_origin_its_own_headers(
    serve, emulators, repute
) -> None:
    """The same request body from several origins, the answer cache on: every answer after
    the first comes from the cache (counted as hits, nothing executed, the vendor called no
    more), each with the headers of the origin that asked, or none."""
    base = serve(
        settings_for(repute, cache={"response_ttl": 600}, cors_origins=[GRAFANA, OTHER_ALLOWED])
    )
    query = "{ accounts { id quotas { used limit } } }"
    emulator = emulators["reputeapi"].emulator
    first = post(base, query, {"Origin": GRAFANA})
    assert first.status_code == 200 and "errors" not in first.json()
    assert first.headers["access-control-allow-origin"] == GRAFANA
    calls = emulator.total_calls()
    assert calls > 0
    for origin, allowed in (
        (OTHER_ALLOWED, OTHER_ALLOWED),
        (EVIL, None),
        (None, None),
        (GRAFANA, GRAFANA),
        (EVIL, None),
    ):
        answer = post(base, query, {"Origin": origin} if origin else {})
        assert answer.content == first.content
        assert answer.headers.get("access-control-allow-origin") == allowed, origin
        assert answer.headers.get_list("access-control-allow-origin") == (
            [allowed] if allowed else []
        )
        assert answer.headers.get("vary") == ("Origin" if allowed else None)
        if origin is None:
            assert cors_headers(answer) == {}
    assert emulator.total_calls() == calls  # every one of them from the answer cache
    counted = httpx.get(f"{base}/metrics", timeout=30).text
    assert "usage_gateway_answer_cache_hits_total 5.0" in counted
    assert "usage_gateway_answer_cache_executions_total 1.0" in counted


def test_a_preflight_is_cached_by_the_browser_for_600_seconds(serve, repute) -> None:
    base = serve(settings_for(repute, cors_origins=[GRAFANA]))
    assert preflight(base, GRAFANA).headers["access-control-max-age"] == "600"


def test_introspection_off_says_it_once_per_introspection_field(serve, repute) -> None:
    base = serve(settings_for(repute, introspection=False))
    answer = post(
        base, '{ __schema { types { name fields { name } } } __type(name: "Query") { name } }'
    )
    assert answer.status_code == 200
    errors = answer.json()["errors"]
    assert [e["message"].rsplit(": ", 1)[1] for e in errors] == [
        "'__schema' cannot be queried",
        "'__type' cannot be queried",
    ]
    assert {e["extensions"]["code"] for e in errors} == {"INTROSPECTION_DISABLED"}


# --- config ------------------------------------------------------------------------------------


def test_the_switches_default_to_one_person_on_loopback() -> None:
    switches = settings_for().switches
    assert switches == Switches()
    assert (switches.introspection, switches.graphiql, switches.dashboard) == (True, True, True)
    assert (switches.cors_origins, switches.trusted_documents, switches.notices) == ((), None, ())


@pytest.mark.parametrize(
    ("gateway", "words"),
    [
        ({"introspection": "no"}, "[gateway] field 'introspection' must be true or false"),
        ({"graphiql": 0}, "[gateway] field 'graphiql' must be true or false"),
        ({"dashboard": "off"}, "[gateway] field 'dashboard' must be true or false"),
        ({"cors_origins": GRAFANA}, "field 'cors_origins' must be a list of origins"),
        ({"cors_origins": [GRAFANA + "/"]}, "'https://grafana.example.com/' is not an origin"),
        ({"cors_origins": [GRAFANA + "/d"]}, "is not an origin: a browser sends scheme://"),
        ({"cors_origins": ["grafana.example.com"]}, "'grafana.example.com' is not an origin"),
        ({"cors_origins": ["ftp://grafana.example.com"]}, "is not an origin"),
        ({"cors_origins": ["https://u:p@grafana.example.com"]}, "is not an origin"),
        ({"cors_origins": ["https://grafana.example.com:99999"]}, "is not an origin"),
        (
            {"cors_origins": ["https://Grafana.example.com"]},
            "a browser sends origins in lower case",
        ),
        (
            {"cors_origins": ["https://grafana.example.com:443"]},
            "names its scheme's default port, which a browser never sends: write "
            "https://grafana.example.com",
        ),
        ({"cors_origins": ["*", GRAFANA]}, '"*" (any origin) stands alone'),
        ({"cors_origins": ["http://[::1]:80"]}, "never sends: write http://[::1]"),
        ({"cors_origins": [f"https://h{i}.example" for i in range(101)]}, "at most 100"),
        ({"trusted_documents": ""}, "[gateway] field 'trusted_documents' must be a manifest's"),
    ],
)
def test_a_bad_switch_stops_the_config_naming_the_field(gateway, words) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"gateway": gateway}, source="gateway.toml", env={})
    line = str(caught.value)
    assert line.startswith("gateway.toml: [gateway] ") and "\n" not in line
    assert words in line


def test_origins_as_browsers_send_them() -> None:
    origins = [GRAFANA, OTHER_ALLOWED, "http://[::1]:8080", GRAFANA]
    switches = parse_settings({"gateway": {"cors_origins": origins}}, env={}).switches
    assert switches.cors_origins == (GRAFANA, OTHER_ALLOWED, "http://[::1]:8080")
    anyone = parse_settings({"gateway": {"cors_origins": ["*"]}}, env={}).switches
    assert anyone.cors_origins == ("*",)


def readme_switches_config() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = re.split(r"\n##+ ", readme.split("### Production switches\n", 1)[1], maxsplit=1)[0]
    [block] = re.findall(r"```toml\n(.*?)```", section, re.S)
    return block


def test_the_readmes_example_config_loads_and_serves(serve, tmp_path) -> None:
    block = readme_switches_config()
    config = tmp_path / "gateway.toml"
    config.write_text(block.replace("[gateway]\n", f'[gateway]\nhistory_path = "{NO_HISTORY}"\n'))
    query = "{ accounts { id } }"
    (tmp_path / "trusted-documents.json").write_text(manifest_json([query]))
    settings = load_settings(config, env={})
    switches = settings.switches
    assert (switches.introspection, switches.graphiql, switches.dashboard) == (False, False, False)
    assert switches.cors_origins == (GRAFANA,)
    assert switches.trusted_documents is not None
    assert switches.trusted_documents.path == str(tmp_path / "trusted-documents.json")
    assert switches.notices == ()  # every switch is set by name: nothing goes off on its own
    base = serve(settings)
    by_hash = httpx.post(
        f"{base}/graphql",
        json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _sha(query)}}},
        headers={"Origin": GRAFANA},
        timeout=30,
    )
    assert by_hash.json() == {"data": {"accounts": []}}
    assert by_hash.headers["access-control-allow-origin"] == GRAFANA
    assert httpx.get(f"{base}/", timeout=30).status_code == 404


def test_serve_names_only_what_it_serves(tmp_path) -> None:
    """With the dashboard and GraphiQL off, ``serve`` prints the GraphQL endpoint alone."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{NO_HISTORY}"\ngraphiql = false\ndashboard = false\n'
    )
    with cli("serve", "--config", str(config), "--port", "0") as gateway:
        lines = read_until(gateway, r"^GraphQL: ")
        url = lines[-1].split(" ", 1)[1]
        assert not any(line.startswith(("Dashboard:", "GraphiQL:")) for line in lines)
        answer = httpx.post(url, json={"query": "{ accounts { id } }"}, timeout=30)
        assert answer.json() == {"data": {"accounts": []}}
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
