"""``GET /metrics``: read with prometheus_client's own text parser, against gateways whose vendor
calls go over real HTTP to the emulators, compared with the graph's answers for the same data."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import build_service, create_app
from gateway.demo import fill_history
from gateway.domain import (
    Account,
    AccountScope,
    FailureCause,
    Limits,
    ProviderId,
    Quota,
    QuotaUnit,
    QuotaWindow,
    SourceState,
    SourceStatus,
)
from gateway.errors import CircuitOpen, UpstreamError
from gateway.metrics import CONTENT_TYPE, OUTCOMES, AccountReading, Reading, reading_families
from gateway.settings import DEFAULT_UPSTREAM_TIMEOUT, CacheTimes
from gateway.snapshot import run_snapshot
from gateway.upstream import BREAKER_THRESHOLD
from providers import registry
from providers.emulation import Fault
from tests.conftest import NO_CACHE, NOW, SEED, TLS, Gateway, account_entry, settings_for

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
QUOTA_LABELS = {"account", "quota", "quota_id", "window", "unit"}
ACCOUNT_LABELS = {"account", "provider"}
LABELS = {
    "usage_gateway_quota_used": QUOTA_LABELS,
    "usage_gateway_quota_limit": QUOTA_LABELS,
    "usage_gateway_quota_remaining": QUOTA_LABELS,
    "usage_gateway_quota_utilization": QUOTA_LABELS,
    "usage_gateway_quota_resets_at_seconds": QUOTA_LABELS,
    "usage_gateway_quota_runs_out_at_seconds": QUOTA_LABELS,
    "usage_gateway_source_up": ACCOUNT_LABELS,
    "usage_gateway_source_state": ACCOUNT_LABELS | {"state"},
    "usage_gateway_source_fetched_at_seconds": ACCOUNT_LABELS,
    "usage_gateway_history_up": set(),
    "usage_gateway_snapshot_runs": {"account", "outcome"},
    "usage_gateway_snapshot_last_run_duration_seconds": {"account"},
    "usage_gateway_snapshot_last_run_ok": {"account"},
    "usage_gateway_snapshot_last_success_timestamp_seconds": {"account"},
    "usage_gateway_vendor_calls_total": {"provider", "outcome"},
    "usage_gateway_vendor_call_duration_seconds_bucket": {"provider", "le"},
    "usage_gateway_vendor_call_duration_seconds_count": {"provider"},
    "usage_gateway_vendor_call_duration_seconds_sum": {"provider"},
    "usage_gateway_cache_hits_total": {"tier"},
    "usage_gateway_cache_misses_total": set(),
    "usage_gateway_cache_unreadable_total": set(),
    "usage_gateway_cache_redis_failures_total": set(),
    "usage_gateway_cache_redis_skipped_total": set(),
    "usage_gateway_cache_memory_entries": set(),
    "usage_gateway_cache_memory_bytes": set(),
    "usage_gateway_history_days_read_total": set(),
    "python_gc_frozen_objects": set(),
    "usage_gateway_answer_cache_hits_total": set(),
    "usage_gateway_answer_cache_executions_total": set(),
    "usage_gateway_answer_cache_shared_total": set(),
    "usage_gateway_answer_cache_kept_total": set(),
    "usage_gateway_answer_cache_dropped_total": set(),
    "usage_gateway_answer_cache_entries": set(),
    "usage_gateway_answer_cache_bytes": set(),
}
"""Every sample name the endpoint may write, and its labels: nothing else appears."""
QUOTAS = """{ quotas { id accountId name window unit limit used remaining utilization resetsAt
  forecast { runsOutEarliest } }
  accounts { id provider quotasSource { state fetchedAt } } }"""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    return [
        Sample(s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def pick(samples: Iterable[Sample], name: str, **labels: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` whose labels include ``labels``, keyed by their other labels'
    values (in label-name order)."""
    found = {}
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            key = tuple(v for k, v in sorted(s.labels.items()) if k not in labels)
            found[key] = s.value
    return found


async def scrape(gateway: Gateway) -> list[Sample]:
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def every_account(emulators) -> list[dict[str, str]]:
    return [
        account_entry(provider, emulators[provider].url, index)
        for provider, entry in registry().items()
        for index in range(len(entry.emulator.accounts))
    ]


# -- what a scrape says ------------------------------------------------------------------------


async def test_quota_values_equal_the_graphs(emulators, make_gateway) -> None:
    gateway = make_gateway(settings_for(*every_account(emulators)))
    samples = await scrape(gateway)
    graph = await gateway.data(QUOTAS)
    quotas = graph["quotas"]
    assert len(quotas) >= 15
    fields = {
        "used": "usage_gateway_quota_used",
        "limit": "usage_gateway_quota_limit",
        "remaining": "usage_gateway_quota_remaining",
        "utilization": "usage_gateway_quota_utilization",
    }
    for field, name in fields.items():
        series = pick(samples, name)
        expected = {
            (q["accountId"], q["name"], q["id"], q["unit"], q["window"]): q[field]
            for q in quotas
            if q[field] is not None
        }
        assert series == {k: float(v) for k, v in expected.items()}, name
    resets = pick(samples, "usage_gateway_quota_resets_at_seconds")
    assert resets == {
        (q["accountId"], q["name"], q["id"], q["unit"], q["window"]): seconds(q["resetsAt"])
        for q in quotas
        if q["resetsAt"] is not None
    }
    assert any(q["window"] == "FIXED_TERM" for q in quotas)  # ... which have no reset
    # Counts past 2^31 come out exact (ReversingLabs' and VirusTotal's bytes).
    used = pick(samples, "usage_gateway_quota_used")
    large = [q for q in quotas if q["used"] is not None and q["used"] > 2**31]
    assert len(large) >= 2
    for q in large:
        value = used[(q["accountId"], q["name"], q["id"], q["unit"], q["window"])]
        assert value.is_integer() and int(value) == q["used"]
    up = pick(samples, "usage_gateway_source_up")
    assert up == {(a["id"], a["provider"]): 1.0 for a in graph["accounts"]}
    fetched = pick(samples, "usage_gateway_source_fetched_at_seconds")
    assert fetched == {
        (a["id"], a["provider"]): seconds(a["quotasSource"]["fetchedAt"]) for a in graph["accounts"]
    }


async def test_a_vendor_that_is_down_is_source_up_0_and_the_others_1(
    emulators, make_gateway, closed_port_url
) -> None:
    gateway = make_gateway(
        settings_for(
            account_entry("reputeapi", closed_port_url, 0),
            account_entry("reputeapi", emulators["reputeapi"].url, 1),
            account_entry("zkscore", emulators["zkscore"].url),
        )
    )
    samples = await scrape(gateway)
    assert pick(samples, "usage_gateway_source_up") == {
        ("repute-premium", "REPUTEAPI"): 0.0,
        ("repute-basic", "REPUTEAPI"): 1.0,
        ("zks-prod", "ZKSCORE"): 1.0,
    }
    states = pick(samples, "usage_gateway_source_state", account="repute-premium")
    assert states == {
        ("REPUTEAPI", s.name): float(s is SourceState.UNAVAILABLE) for s in SourceState
    }
    assert pick(samples, "usage_gateway_source_state", account="zks-prod", state="FRESH") == {
        ("ZKSCORE",): 1.0
    }
    accounts = {k[0] for k in pick(samples, "usage_gateway_quota_used")}
    assert accounts == {"repute-basic", "zks-prod"}  # nothing is made up for the down one
    assert pick(samples, "usage_gateway_source_fetched_at_seconds").keys() == {
        ("repute-basic", "REPUTEAPI"),
        ("zks-prod", "ZKSCORE"),
    }
    # One vendor call each: the healthy ones OK (as many as the emulators served), the other
    # failed to connect (its retries inside the one call).
    calls = pick(samples, "usage_gateway_vendor_calls_total", provider="REPUTEAPI")
    assert calls[("OK",)] == emulators["reputeapi"].emulator.total_calls() == 1
    assert calls[("CONNECTION",)] == 1
    assert sum(calls.values()) == 2
    zks = pick(samples, "usage_gateway_vendor_calls_total", provider="ZKSCORE")
    assert zks[("OK",)] == emulators["zkscore"].emulator.total_calls() == 1
    assert pick(samples, "usage_gateway_vendor_call_duration_seconds_count") == {
        ("REPUTEAPI",): 2.0,
        ("ZKSCORE",): 1.0,
    }


async def test_a_vendor_that_is_down_is_asked_at_each_scrape_until_its_circuit_opens(
    make_gateway, closed_port_url
) -> None:
    """Failures are not cached: each scrape calls again, until BREAKER_THRESHOLD failures in a
    row open the account's circuit; then a scrape makes no call (the source says why)."""
    gateway = make_gateway(settings_for(account_entry("reputeapi", closed_port_url)))
    for attempt in range(1, BREAKER_THRESHOLD + 1):
        samples = await scrape(gateway)
        calls = pick(samples, "usage_gateway_vendor_calls_total", provider="REPUTEAPI")
        assert calls[("CONNECTION",)] == attempt
    samples = await scrape(gateway)
    calls = pick(samples, "usage_gateway_vendor_calls_total", provider="REPUTEAPI")
    assert calls[("CONNECTION",)] == BREAKER_THRESHOLD  # the open circuit made no call
    assert sum(calls.values()) == BREAKER_THRESHOLD
    assert pick(samples, "usage_gateway_source_state", state="UNAVAILABLE") == {
        ("repute-premium", "REPUTEAPI"): 1.0
    }
    cause = (await gateway.data("{ accounts { quotasSource { cause } } }"))["accounts"]
    assert cause == [{"quotasSource": {"cause": "CIRCUIT_OPEN"}}]


def test_the_readme_scrape_config_waits_as_long_as_a_vendor_may_take() -> None:
    text = README.split("## Metrics (Prometheus)", 1)[1]
    config = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert config is not None
    interval = re.search(r"scrape_interval: (\d+)s", config.group(1))
    timeout = re.search(r"scrape_timeout: (\d+)s", config.group(1))
    assert interval and timeout
    assert DEFAULT_UPSTREAM_TIMEOUT == 10 < int(timeout.group(1)) <= int(interval.group(1))
    assert int(interval.group(1)) == 15 and CacheTimes().limits == 60  # as the README says
    assert '"127.0.0.1:8000"' in config.group(1)


@pytest.mark.parametrize(
    ("fault", "outcome", "served"),
    [
        (Fault(status=503), "VENDOR_ERROR", 3),  # retried twice inside the one call
        (Fault(status=429, retry_after=30), "RATE_LIMITED", 1),
        (Fault(status=401), "CREDENTIALS_REJECTED", 1),
        (Fault(status=404), "REQUEST_REJECTED", 1),
        (Fault(malformed="json"), "MALFORMED", 1),
    ],
)
async def test_each_vendor_call_is_counted_by_its_outcome(
    emulators, make_gateway, fault: Fault, outcome: str, served: int
) -> None:
    repute = emulators["reputeapi"]
    gateway = make_gateway(settings_for(account_entry("reputeapi", repute.url, 1), cache=NO_CACHE))
    before = pick(await scrape(gateway), "usage_gateway_vendor_calls_total", provider="REPUTEAPI")
    assert before == {(o,): 0.0 for o in OUTCOMES} | {("OK",): 1.0}
    repute.emulator.set_fault(fault)
    calls_before = repute.emulator.total_calls()
    samples = await scrape(gateway)
    after = pick(samples, "usage_gateway_vendor_calls_total", provider="REPUTEAPI")
    assert after == before | {(outcome,): 1.0}
    assert repute.emulator.total_calls() - calls_before == served
    durations = pick(samples, "usage_gateway_vendor_call_duration_seconds_count")
    assert durations == {("REPUTEAPI",): 2.0}


async def test_calls_held_back_count_as_rate_limited_without_a_duration(
    emulators, make_gateway
) -> None:
    """After a 429 with Retry-After: 30 the gateway sends nothing for 30 s (its clock stands
    still here): the next read is a RATE_LIMITED call that never reached the vendor."""
    zks = emulators["zkscore"]
    gateway = make_gateway(settings_for(account_entry("zkscore", zks.url), cache=NO_CACHE))
    zks.emulator.set_fault(Fault(status=429, retry_after=30, times=1))
    await scrape(gateway)
    served = zks.emulator.total_calls()
    samples = await scrape(gateway)
    assert zks.emulator.total_calls() == served  # held back: nothing sent
    calls = pick(samples, "usage_gateway_vendor_calls_total", provider="ZKSCORE")
    assert calls[("RATE_LIMITED",)] == 2 and calls[("OK",)] == 0
    histogram = pick(samples, "usage_gateway_vendor_call_duration_seconds_count")
    assert histogram == {("ZKSCORE",): 1.0}  # only the call that reached the vendor
    buckets = pick(samples, "usage_gateway_vendor_call_duration_seconds_bucket")
    assert buckets[("+Inf", "ZKSCORE")] == 1.0


def test_the_outcomes_are_the_error_trees_causes() -> None:
    """Every cause an upstream error can carry is an outcome, but the breaker's (no call)."""

    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for sub in cls.__subclasses__() for s in subclasses(sub)}

    causes = {c.cause for c in subclasses(UpstreamError)} - {CircuitOpen.cause}
    assert set(OUTCOMES) == {"OK"} | {c.name for c in causes} | {FailureCause.INTERNAL.name}
    assert len(OUTCOMES) == len(set(OUTCOMES)) == len(FailureCause)


# -- a scrape reads through the cache ----------------------------------------------------------


class MovingClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_scrapes_every_15_s_make_no_more_vendor_calls_than_the_ttl_allows(
    emulators,
) -> None:
    """20 scrapes, 15 s apart by the gateway's clock, with limits_ttl = 60: each account's
    quotas are read at the first scrape and once per 60 s after (in the background, as the
    cached answer goes stale): 5 reads over 285 s, whatever the number of scrapes."""
    ttl, step, scrapes = 60, 15, 20
    moving = MovingClock(NOW)
    settings = settings_for(*every_account(emulators), cache={"limits_ttl": ttl})
    async with httpx.AsyncClient(verify=TLS) as http:
        app = create_app(settings, http_client=http, clock=moving)
        service = app.state.service
        gateway = Gateway(app)
        try:
            first = None
            for index in range(scrapes):
                moving.now = NOW + timedelta(seconds=step * index)
                samples = await scrape(gateway)
                assert set(pick(samples, "usage_gateway_source_up").values()) == {1.0}
                await service.upstream.settle()  # a refresh it started has ended
                if first is None:
                    first = {p: e.emulator.total_calls() for p, e in emulators.items()}
                    assert all(first.values())
        finally:
            await gateway.client.aclose()
    elapsed = step * (scrapes - 1)
    reads = 1 + elapsed // ttl
    assert reads == 5
    for provider, running in emulators.items():
        assert running.emulator.total_calls() == reads * first[provider], provider


async def test_a_scrape_after_a_query_reads_the_same_cache(emulators, make_gateway) -> None:
    accounts = every_account(emulators)
    gateway = make_gateway(settings_for(*accounts))
    await gateway.data("{ quotas { used } }")
    calls = sum(e.emulator.total_calls() for e in emulators.values())
    first = await scrape(gateway)
    assert sum(e.emulator.total_calls() for e in emulators.values()) == calls
    assert pick(first, "usage_gateway_cache_misses_total") == {(): float(len(accounts))}
    assert pick(first, "usage_gateway_cache_hits_total") == {
        ("memory",): float(len(accounts)),  # one read of each account's quotas
        ("redis",): 0.0,
    }
    second = await scrape(gateway)
    assert pick(second, "usage_gateway_cache_hits_total")[("memory",)] == 2 * len(accounts)
    assert pick(second, "usage_gateway_cache_misses_total") == {(): float(len(accounts))}
    assert pick(second, "usage_gateway_cache_memory_entries") == {(): float(len(accounts))}
    assert pick(second, "usage_gateway_cache_memory_bytes")[()] > 0


async def test_concurrent_scrapes_each_answer_in_full(emulators, make_gateway) -> None:
    accounts = every_account(emulators)
    gateway = make_gateway(settings_for(*accounts))
    answers = await asyncio.gather(*(scrape(gateway) for _ in range(5)))
    series = [pick(a, "usage_gateway_quota_limit") for a in answers]
    assert len(series[0]) >= 15 and all(s == series[0] for s in series)
    assert all(len(pick(a, "usage_gateway_source_up")) == len(accounts) for a in answers)


# -- forecasts and snapshot runs (the history store) -------------------------------------------


async def test_run_out_times_are_the_graphs_forecasts(emulators, make_gateway, tmp_path) -> None:
    path = str(tmp_path / "history.sqlite")
    await fill_history(path, seed=SEED, now=NOW)
    gateway = make_gateway(settings_for(*every_account(emulators), history_path=path))
    samples = await scrape(gateway)
    graph = (await gateway.data(QUOTAS))["quotas"]
    expected = {
        (q["accountId"], q["name"], q["id"], q["unit"], q["window"]): seconds(
            q["forecast"]["runsOutEarliest"]
        )
        for q in graph
        if q["forecast"] and q["forecast"]["runsOutEarliest"]
    }
    assert expected  # the seeded use runs some quotas out
    assert pick(samples, "usage_gateway_quota_runs_out_at_seconds") == expected
    assert pick(samples, "usage_gateway_history_up") == {(): 1.0}


class Ticking:
    """A clock that moves one second each time it is read, from ``start``."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


async def test_snapshot_runs_are_read_from_the_history_store(
    emulators, make_gateway, tmp_path, closed_port_url
) -> None:
    """Two snapshot runs (as cron's would be) of a healthy account and one whose vendor is
    down; the scrape says what the graph's ``snapshots`` says of the same store."""
    path = str(tmp_path / "history.sqlite")
    settings = settings_for(
        account_entry("zkscore", emulators["zkscore"].url),
        account_entry("reputeapi", closed_port_url),
        history_path=path,
    )
    async with httpx.AsyncClient(verify=TLS) as http:
        service = build_service(settings, http, clock=Ticking(NOW - timedelta(hours=2)))
        try:
            for _ in range(2):
                await run_snapshot(service, service.history)
        finally:
            await service.upstream.close()
            await service.history.close()
    gateway = make_gateway(settings)
    samples = await scrape(gateway)
    runs = (await gateway.data("{ snapshots { accountId startedAt finishedAt outcome } }"))[
        "snapshots"
    ]
    assert {(r["accountId"], r["outcome"]) for r in runs} == {
        ("zks-prod", "OK"),
        ("repute-premium", "FAILED"),
    }
    assert pick(samples, "usage_gateway_snapshot_runs") == {
        ("zks-prod", "ok"): 2.0,
        ("repute-premium", "failed"): 2.0,
        **{(a, o): 0.0 for a in ("zks-prod", "repute-premium") for o in ("running", "abandoned")},
        ("zks-prod", "failed"): 0.0,
        ("repute-premium", "ok"): 0.0,
    }
    latest = {}
    for run in runs:  # newest first
        latest.setdefault(run["accountId"], run)
    assert pick(samples, "usage_gateway_snapshot_last_run_duration_seconds") == {
        (a,): seconds(r["finishedAt"]) - seconds(r["startedAt"]) for a, r in latest.items()
    }
    assert all(
        v > 0 for v in pick(samples, "usage_gateway_snapshot_last_run_duration_seconds").values()
    )
    assert pick(samples, "usage_gateway_snapshot_last_run_ok") == {
        ("zks-prod",): 1.0,
        ("repute-premium",): 0.0,
    }
    assert pick(samples, "usage_gateway_snapshot_last_success_timestamp_seconds") == {
        ("zks-prod",): seconds(latest["zks-prod"]["finishedAt"])
    }


async def test_a_history_store_that_cannot_be_used_leaves_the_rest(
    emulators, make_gateway, tmp_path, caplog
) -> None:
    broken = tmp_path / "history.sqlite"
    broken.write_bytes(b"this is not a SQLite database" * 100)
    gateway = make_gateway(
        settings_for(account_entry("zkscore", emulators["zkscore"].url), history_path=str(broken))
    )
    samples = await scrape(gateway)
    assert pick(samples, "usage_gateway_history_up") == {(): 0.0}
    assert pick(samples, "usage_gateway_source_up") == {("zks-prod", "ZKSCORE"): 1.0}
    assert pick(samples, "usage_gateway_quota_used")
    assert not pick(samples, "usage_gateway_quota_runs_out_at_seconds")
    assert not pick(samples, "usage_gateway_snapshot_runs")
    assert "Traceback" not in caplog.text


# -- labels, numbers, registries ---------------------------------------------------------------

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


async def test_labels_are_bounded(emulators, make_gateway, closed_port_url) -> None:
    accounts = [
        *every_account(emulators),
        account_entry("virustotal", closed_port_url, id="vt-down"),
    ]
    gateway = make_gateway(settings_for(*accounts, cache=NO_CACHE))
    samples = await scrape(gateway)
    graph = (await gateway.data("{ quotas { id name } }"))["quotas"]
    allowed = {
        "account": {a["id"] for a in accounts},
        "quota": {q["name"] for q in graph},
        "quota_id": {q["id"] for q in graph},
        "window": {w.name for w in QuotaWindow},
        "unit": {u.name for u in QuotaUnit},
        "state": {s.name for s in SourceState},
        "provider": {p.upper() for p in registry()},
        "outcome": set(OUTCOMES) | {"running", "ok", "failed", "abandoned"},
        "tier": {"memory", "redis"},
    }
    assert {s.name for s in samples} <= set(LABELS)
    for sample in samples:
        assert set(sample.labels) == LABELS[sample.name], sample
        for label, value in sample.labels.items():
            if label != "le":
                assert value in allowed[label], (sample.name, label, value)
            assert not DATE.search(value), sample
    # Bounded by the config, not by the traffic: another scrape adds no series.
    again = await scrape(gateway)
    assert {(s.name, tuple(sorted(s.labels.items()))) for s in again} == {
        (s.name, tuple(sorted(s.labels.items()))) for s in samples
    }


def reading_of(used: int) -> Reading:
    account = Account("big", ProviderId("reversinglabs"), "big", AccountScope.COMPANY)
    quota = Quota("big:bytes", "big", "bytes", QuotaWindow.MONTH, QuotaUnit.BYTES, used, used)
    return Reading((AccountReading(account, SourceStatus(SourceState.FRESH), Limits((quota,))),))


@pytest.mark.parametrize(
    ("used", "shown"),
    [
        (2**31 + 1, 2**31 + 1),  # exact
        (10**15 + 7, 10**15 + 7),  # exact: below 2^53
        (2**53 + 1, 2**53),  # Prometheus keeps floats: the nearest one, as the README says
    ],
)
def test_numbers_are_exact_up_to_2_to_the_53(used: int, shown: int) -> None:
    registry_ = CollectorRegistry(auto_describe=False)

    class One:
        def collect(self) -> Any:
            return reading_families(reading_of(used))

    registry_.register(One())
    samples = parse(generate_latest(registry_).decode())
    [value] = pick(samples, "usage_gateway_quota_used").values()
    assert value == float(shown) and int(value) == shown


async def test_each_app_has_a_registry_of_its_own(emulators, make_gateway) -> None:
    one = make_gateway(settings_for(account_entry("zkscore", emulators["zkscore"].url)))
    two = make_gateway(settings_for(account_entry("reputeapi", emulators["reputeapi"].url)))
    first, second = await scrape(one), await scrape(two)
    assert set(pick(first, "usage_gateway_source_up")) == {("zks-prod", "ZKSCORE")}
    assert set(pick(second, "usage_gateway_source_up")) == {("repute-premium", "REPUTEAPI")}
    assert set(pick(first, "usage_gateway_vendor_calls_total")) == {
        (o, "ZKSCORE") for o in OUTCOMES
    }
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith("usage_gateway") for n in names)
