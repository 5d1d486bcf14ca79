"""Schemathesis generates GraphQL queries from the introspected schema (every root field, its
arguments filled with values of every shape the schema allows and some it does not) and sends
them to a gateway served by uvicorn over loopback: no answer may be a 5xx or carry Python's
words, and nothing may be logged at WARNING or above, nor with a traceback. ``make test`` runs
a small deterministic sample; ``make fuzz`` (``FUZZ_EXAMPLES``) many.
"""

from __future__ import annotations

import logging
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes

from gateway.app import create_app
from gateway.servers import ServerThread
from tests.conftest import account_entry, clock, settings_for
from tests.test_bad_requests import assert_no_python, assert_quiet_log

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))

# Our custom scalars, as strings shaped like them but as often impossible (2026-02-30, month
# 13, year 0000) as possible, and any text at all.
DAY = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
schemathesis.graphql.scalar(
    "Date", st.one_of(st.from_regex(rf"\A{DAY}\Z"), st.text(max_size=30)).map(nodes.String)
)
schemathesis.graphql.scalar(
    "DateTime",
    st.one_of(
        st.from_regex(rf"\A{DAY}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(Z|[+-][0-9]{{2}}:[0-9]{{2}})?\Z"),
        st.text(max_size=40),
    ).map(nodes.String),
)
schemathesis.graphql.scalar("BigInt", st.integers().map(nodes.Int))


@pytest.fixture(scope="module")
def gateway_url(emulator_servers):
    accounts = [account_entry(provider, pair[0].url) for provider, pair in emulator_servers.items()]
    app = create_app(settings_for(*accounts), clock=clock)
    with ServerThread(app) as server:
        yield server.urls[0]


@pytest.fixture(scope="module")
def graphql_schema(gateway_url):
    return schemathesis.graphql.from_url(f"{gateway_url}/graphql")


ROOT_FIELDS = ["accounts", "account", "quotas", "alerts", "snapshots", "headroom", "alertEvents"]


def test_every_root_field_is_fuzzed(graphql_schema) -> None:
    labels = {r.ok().label for r in graphql_schema.get_all_operations()}
    assert labels == {f"Query.{name}" for name in ROOT_FIELDS}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("root", ROOT_FIELDS)
def test_no_generated_query_gets_a_5xx_python_text_or_a_loud_log(
    graphql_schema, root, mode, emulators, caplog
) -> None:
    caplog.set_level(logging.INFO)  # ``emulators``: every vendor healthy, reset for this test
    operation = next(
        r.ok() for r in graphql_schema.get_all_operations() if r.ok().label == f"Query.{root}"
    )

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case) -> None:
        response = case.call(timeout=60)
        assert response.status_code < 500, response.text[:500]
        assert_no_python(response.text)

    check()
    assert_quiet_log(caplog)  # the gateway serves in this process: its log lines are here
