"""Delivering alert events to real HTTP receivers on loopback: each format's body field by
field, the HMAC signature, retries, an event kept until the next run, refusals marked failed,
timeouts, capped answers, and what logs say (never the URL's path or the secret)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.alerts.delivery import (
    BACKOFF,
    MAX_PER_RUN,
    RESPONSE_CAP,
    RUN_DEADLINE,
    TRIES,
    Deliverer,
)
from gateway.alerts.engine import Alerting, AlertRun
from gateway.alerts.formats import OPEN_END
from gateway.alerts.store import MAX_REJECTED_RUNS
from gateway.app import history_store
from gateway.domain import Quota, QuotaUnit, QuotaWindow
from gateway.forecast import forecast
from gateway.servers import ServerThread
from gateway.settings import Settings, parse_settings
from gateway.snapshot import AccountOutcome
from tests.history_backends import Backend, backend_of
from tests.receiver import Receiver, serving

NOW = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
SECRET = "hook-secret-0123456789"
TOKEN_PATH = "/services/T0/B0/xoxb-very-secret-path"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as running:
        yield running


def bytes_quota(used: int, limit: int = 5_000_000_000_000, resets: datetime = APRIL) -> Quota:
    """A monthly byte quota, far past 2^31."""
    return Quota(
        "rl:bytes", "rl", "Monthly bytes <TCAI-0011>", QuotaWindow.MONTH, QuotaUnit.BYTES,
        limit, used, resets_at=resets,
    )  # fmt: skip


def make_settings(history: Backend, webhooks: list[dict[str, Any]], **alerts: Any) -> Settings:
    alerts.setdefault("thresholds", [0.8])
    alerts.setdefault("predictive", False)
    alerts.setdefault("unreadable_after", "off")
    return parse_settings(
        {
            "gateway": dict(history.gateway),
            "accounts": [
                {"id": "rl", "provider": "reversinglabs", "username": "u", "password": "p"},
            ],
            "alerts": {**alerts, "webhooks": webhooks},
        },
        env={"HOOK_SECRET": SECRET},
    )


@dataclass
class Runs:
    """Snapshot runs' alert halves over one store, each as a new process would make them."""

    settings: Settings
    now: datetime = NOW
    sleeps: list[float] | None = None

    async def run(self, *quotas: Quota) -> AlertRun:
        store = history_store(self.settings)
        sleeps = self.sleeps if self.sleeps is not None else []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)  # the backoff asked for; really waited, shortened
            await asyncio.sleep(min(seconds, 0.01))

        try:
            async with httpx.AsyncClient() as http:
                assert self.settings.alerts is not None
                alerting = Alerting(
                    self.settings.alerts,
                    self.settings.accounts,
                    store,
                    http,
                    clock=lambda: self.now,
                    sleep=sleep,
                )
                return await alerting.after_snapshot([AccountOutcome("rl", True, quotas=quotas)])
        finally:
            await store.close()


def deliveries(settings: Settings) -> list[tuple[str, str, int]]:
    return backend_of(settings).fetch(
        "SELECT webhook, state, attempts FROM alert_deliveries ORDER BY event_id, webhook"
    )


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_each_format_field_by_field_and_the_signature(sqlite_history, receiver) -> None:
    hooks = [
        {"url": f"{receiver.url}/json", "name": "j", "secret": "${HOOK_SECRET}"},
        {"url": f"{receiver.url}/slack", "name": "s", "format": "slack"},
        {"url": f"{receiver.url}/api/v2/alerts", "name": "a", "format": "alertmanager"},
    ]
    settings = make_settings(
        sqlite_history,
        hooks,
        thresholds=[0.8, 1.0],
        dashboard_url="https://usage.example.com/board/",
    )
    store = history_store(settings)
    samples = [(datetime(2026, 3, day, tzinfo=UTC), 400_000_000_000 * day) for day in (4, 8)]
    try:
        for at, used in samples:
            run = await store.start_run("rl", at)
            await store.store(run, "rl", [], [bytes_quota(used)], [], at)
    finally:
        await store.close()
    used = 4_300_000_000_000  # 86 %
    runs = Runs(settings)
    result = await runs.run(bytes_quota(used))
    (event,) = result.events
    projection = forecast(bytes_quota(used), samples, NOW)
    assert projection is not None and projection.runs_out_earliest is not None

    (signed,) = receiver.accepted("/json")
    body = signed.json()
    expected_message = (
        "rl: Monthly bytes <TCAI-0011> is at 86% of its limit (4,300,000,000,000 bytes of "
        "5,000,000,000,000 bytes; threshold 80%), resets 2026-04-01T00:00Z"
    )
    assert body == {
        "id": event.id,
        "event": "firing",
        "rule": "threshold",
        "threshold": 0.8,
        "accountId": "rl",
        "provider": "reversinglabs",
        "quotaId": "rl:bytes",
        "quotaName": "Monthly bytes <TCAI-0011>",
        "window": "MONTH",
        "unit": "BYTES",
        "used": 4_300_000_000_000,  # above 2^31, exact
        "limit": 5_000_000_000_000,
        "utilization": 0.86,
        "resetsAt": "2026-04-01T00:00:00Z",
        "windowStart": "2026-03-01T00:00:00Z",
        "runsOutEarliest": iso(projection.runs_out_earliest),
        "runsOutLatest": iso(projection.runs_out_latest) if projection.runs_out_latest else None,
        "lastReadAt": None,
        "reason": None,
        "at": "2026-03-12T09:30:00Z",
        "firedAt": "2026-03-12T09:30:00Z",
        "message": expected_message,
        "dashboardUrl": "https://usage.example.com/board/#account-rl",
    }
    assert signed.headers["content-type"] == "application/json"
    assert signed.headers["x-usage-gateway-event"] == event.id
    recomputed = hmac.new(SECRET.encode(), signed.body, hashlib.sha256).hexdigest()
    assert signed.headers["x-usage-gateway-signature"] == f"sha256={recomputed}"
    assert signed.headers["user-agent"].startswith("python-httpx") or signed.headers["user-agent"]

    (slack,) = receiver.accepted("/slack")
    assert "x-usage-gateway-signature" not in slack.headers  # no secret, no signature
    text = slack.json()
    escaped = expected_message.replace("<", "&lt;").replace(">", "&gt;")
    assert text["text"] == f"[FIRING] {escaped}"
    section, context, link = text["blocks"]
    assert section == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"*FIRING* · threshold 80%\n{escaped}"},
    }
    assert context["type"] == "context"
    (element,) = context["elements"]
    assert element["type"] == "mrkdwn"
    assert element["text"].startswith(
        "account `rl` (ReversingLabs) · used 4,300,000,000,000 bytes of 5,000,000,000,000 bytes"
        " · resets 2026-04-01T00:00Z · runs out 2026-03-"
    )
    assert link == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "<https://usage.example.com/board/#account-rl|Open the dashboard>",
        },
    }

    (manager,) = receiver.accepted("/api/v2/alerts")
    (alert,) = manager.json()
    assert alert["labels"] == {
        "alertname": "UsageGatewayQuotaThreshold",
        "account": "rl",
        "provider": "reversinglabs",
        "quota": "rl:bytes",
        "rule": "threshold",
        "threshold": "0.8",
        "severity": "warning",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == expected_message
    assert annotations["event_id"] == event.id
    assert (annotations["used"], annotations["limit"]) == ("4300000000000", "5000000000000")
    assert annotations["resets_at"] == "2026-04-01T00:00:00Z"
    assert annotations["runs_out_earliest"] == iso(projection.runs_out_earliest)
    assert (alert["startsAt"], alert["endsAt"]) == ("2026-03-12T09:30:00Z", "2026-04-01T00:00:00Z")
    assert alert["generatorURL"] == "https://usage.example.com/board/#account-rl"

    # Used up, then (later in the window) back under both: critical, then two resolutions.
    runs.now = NOW + timedelta(hours=5)
    await runs.run(bytes_quota(5_000_000_000_000))
    (critical,) = receiver.accepted("/api/v2/alerts")[1].json()
    assert (critical["labels"]["severity"], critical["labels"]["threshold"]) == ("critical", "1.0")
    runs.now = NOW + timedelta(hours=6)
    await runs.run(bytes_quota(1_000, limit=10_000_000_000_000))
    resolutions = [r.json()[0] for r in receiver.accepted("/api/v2/alerts")[2:]]
    assert sorted((a["labels"]["threshold"], a["startsAt"], a["endsAt"]) for a in resolutions) == [
        ("0.8", "2026-03-12T09:30:00Z", "2026-03-12T15:30:00Z"),
        ("1.0", "2026-03-12T14:30:00Z", "2026-03-12T15:30:00Z"),
    ]
    resolved = [r.json() for r in receiver.accepted("/json")[2:]]
    assert [(b["event"], b["reason"], b["firedAt"]) for b in resolved] == [
        ("resolved", "cleared", "2026-03-12T09:30:00Z"),
        ("resolved", "cleared", "2026-03-12T14:30:00Z"),
    ]
    assert [r.json()["text"][:10] for r in receiver.accepted("/slack")[2:]] == ["[RESOLVED]"] * 2
    assert len(receiver.all()) == 12  # four events, three webhooks, each once


async def test_a_firing_alert_without_a_reset_stays_open_in_alertmanager(sqlite_history, receiver):
    settings = make_settings(
        sqlite_history, [{"url": f"{receiver.url}/api/v2/alerts", "format": "alertmanager"}]
    )
    term = Quota(
        "rl:term", "rl", "Hunting rules", QuotaWindow.FIXED_TERM, QuotaUnit.REQUESTS, 200, 190
    )
    await Runs(settings).run(term)
    (alert,) = receiver.accepted()[0].json()
    assert alert["endsAt"] == iso(NOW + OPEN_END)  # not Alertmanager's resolve_timeout
    assert "generatorURL" not in alert


async def test_retries_with_backoff_then_delivered_in_the_same_run(history, receiver) -> None:
    settings = make_settings(history, [{"url": f"{receiver.url}/hook", "name": "ops"}])
    receiver.fail(TRIES - 1, 503)
    sleeps: list[float] = []
    result = await Runs(settings, sleeps=sleeps).run(bytes_quota(4_500_000_000_000))
    assert [r.status for r in receiver.all()] == [503] * (TRIES - 1) + [200]
    assert sleeps == [BACKOFF * 2**n for n in range(TRIES - 1)]  # 0.5 s, then 1 s
    assert len({r.body for r in receiver.all()}) == 1  # the same body every time
    assert deliveries(settings) == [("ops", "delivered", TRIES)]
    assert [w.delivered for w in result.webhooks] == [1]


@pytest.mark.parametrize("status", [503, 500, 429, 408])
async def test_an_event_not_delivered_waits_and_the_next_run_delivers_it_once(
    history, receiver, caplog, status
) -> None:
    caplog.set_level(logging.INFO)
    hook = {"url": f"{receiver.url}{TOKEN_PATH}", "name": "ops", "secret": "${HOOK_SECRET}"}
    settings = make_settings(history, [hook], thresholds=[0.8, 0.9])
    receiver.fail(TRIES, status)  # every try of the first event fails
    runs = Runs(settings)
    first = await runs.run(bytes_quota(4_600_000_000_000))  # 92 %: two events
    assert len(first.events) == 2
    assert receiver.accepted() == [] and len(receiver.all()) == TRIES  # then it stops: in order
    assert deliveries(settings) == [("ops", "pending", TRIES), ("ops", "pending", 0)]
    assert "not all delivered to ops" in first.summary()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    host = receiver.url.removeprefix("http://")
    assert line == f"alert webhook 'ops' ({host}): HTTP {status}; 2 events wait for the next run"

    runs.now += timedelta(minutes=15)
    second = await runs.run(bytes_quota(4_600_000_000_000))
    assert second.events == ()  # nothing new: the old ones are delivered
    ids = [r.json()["id"] for r in receiver.accepted()]
    assert ids == [e.id for e in first.events]  # both, in order, once each
    assert deliveries(settings) == [("ops", "delivered", TRIES + 1), ("ops", "delivered", 1)]
    for _ in range(2):
        runs.now += timedelta(minutes=15)
        await runs.run(bytes_quota(4_600_000_000_000))
    assert len(receiver.accepted()) == 2  # acknowledged: never sent again
    # Ours name the webhook and its host (httpx's own request lines, which name the URL, are
    # kept at WARNING by the CLI's logging: see test_logging).
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("gateway"))
    assert "alert firing: rl: Monthly bytes" in ours
    assert TOKEN_PATH not in ours and SECRET not in ours and "xoxb" not in ours


async def test_a_refused_event_is_marked_failed_after_some_runs_and_others_still_go(
    history, receiver, caplog
) -> None:
    settings = make_settings(
        history, [{"url": f"{receiver.url}/hook", "name": "ops"}], cooldown="off"
    )
    runs = Runs(settings)
    receiver.fail(1, 400)
    await runs.run(bytes_quota(4_100_000_000_000))
    assert [r.status for r in receiver.all()] == [400]  # a refusal is not retried in the run
    for run in range(2, MAX_REJECTED_RUNS + 1):
        receiver.fail(1, 302 if run == 2 else 422)  # a redirect is not followed: refused
        runs.now += timedelta(minutes=15)
        await runs.run(bytes_quota(4_100_000_000_000))
        assert len(receiver.all()) == run
    assert deliveries(settings) == [("ops", "failed", MAX_REJECTED_RUNS)]
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    (line,) = [r.getMessage() for r in failed]
    assert line.startswith("alert webhook 'ops' (127.0.0.1:")
    assert line.endswith(f"(HTTP 422) in {MAX_REJECTED_RUNS} runs: marked failed, not sent again")
    runs.now += timedelta(minutes=15)
    await runs.run(bytes_quota(4_100_000_000_000))
    assert len(receiver.all()) == MAX_REJECTED_RUNS  # never again
    # A refused event does not hold up the ones after it.
    receiver.fail(1, 404)
    runs.now = datetime(2026, 4, 2, tzinfo=UTC)  # the window reset: a resolution, then
    await runs.run(bytes_quota(4_900_000_000_000, resets=datetime(2026, 5, 1, tzinfo=UTC)))
    statuses = [r.status for r in receiver.all()[MAX_REJECTED_RUNS:]]
    assert statuses == [404, 200]


async def test_a_receiver_that_hangs_is_timed_out_and_tried_again(sqlite_history, receiver) -> None:
    settings = make_settings(
        sqlite_history, [{"url": f"{receiver.url}/hook", "name": "ops", "timeout": "0.5s"}]
    )
    receiver.hang = 1.5
    receiver.fail(1, None)  # holds the first request for 1.5 s, past the 0.5 s timeout
    await Runs(settings).run(bytes_quota(4_100_000_000_000))
    assert [r.status for r in receiver.all()] == [None, 200]
    assert deliveries(settings) == [("ops", "delivered", 2)]
    assert backend_of(settings).fetch("SELECT last_error FROM alert_deliveries") == [(None,)]


class Endless:
    """A receiver that accepts, then sends an answer that never ends (a chunk every 50 ms)."""

    def __init__(self) -> None:
        self.chunks = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 202, "headers": []})
        for _ in range(400):  # 20 s of it, far past the webhook's 1 s timeout
            self.chunks += 1
            await send({"type": "http.response.body", "body": b"x" * 8192, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})


async def test_only_the_first_bytes_of_an_answer_are_read(sqlite_history) -> None:
    endless = Endless()
    with ServerThread(endless) as server:
        settings = make_settings(
            sqlite_history, [{"url": f"{server.urls[0]}/hook", "name": "ops", "timeout": "1s"}]
        )
        await Runs(settings).run(bytes_quota(4_100_000_000_000))
    # Reading it all would take 20 s and time out; the first chunk (past the cap) is enough.
    assert RESPONSE_CAP < 8192
    assert deliveries(settings) == [("ops", "delivered", 1)]


async def test_an_unreachable_webhook_keeps_the_event(
    sqlite_history, closed_port_url, caplog
) -> None:
    settings = make_settings(
        sqlite_history, [{"url": f"{closed_port_url}{TOKEN_PATH}", "name": "ops"}]
    )
    await Runs(settings).run(bytes_quota(4_100_000_000_000))
    assert deliveries(settings) == [("ops", "pending", TRIES)]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    host = closed_port_url.removeprefix("http://")
    assert line == f"alert webhook 'ops' ({host}): connection failed; 1 event wait for the next run"


async def test_two_evaluations_at_once_make_and_deliver_each_event_once(history) -> None:
    slow = Receiver(delay=0.2)  # both runs are delivering while the first answer is awaited
    with serving(slow):
        hooks = [{"url": f"{slow.url}/a", "name": "a"}, {"url": f"{slow.url}/b", "name": "b"}]
        settings = make_settings(history, hooks, thresholds=[0.5, 0.8, 0.9])
        quota = bytes_quota(4_700_000_000_000)
        results = await asyncio.gather(*(Runs(settings).run(quota) for _ in range(4)))
    made = [e.id for r in results for e in r.events]
    assert len(made) == 3 == len(set(made))  # three steps, each made by one run only
    for path in ("/a", "/b"):
        assert sorted(r.json()["id"] for r in slow.accepted(path)) == sorted(made)
    assert len(slow.all()) == 6


@pytest.mark.parametrize("extra", [0, 10])
async def test_a_run_sends_at_most_so_many_events_to_a_webhook(
    sqlite_history, receiver, caplog, extra
) -> None:
    steps = [round(0.1 * n, 1) for n in range(1, 11)]  # ten thresholds, all reached
    settings = make_settings(
        sqlite_history, [{"url": f"{receiver.url}/hook", "name": "ops"}], thresholds=steps
    )
    quotas = [
        Quota(f"rl:q{n:03}", "rl", f"q{n}", QuotaWindow.MONTH, QuotaUnit.REQUESTS, 10, 10,
              resets_at=APRIL)
        for n in range((MAX_PER_RUN + extra) // 10)
    ]  # fmt: skip
    runs = Runs(settings)
    first = await runs.run(*quotas)
    assert len(first.events) == MAX_PER_RUN + extra
    assert len(receiver.accepted()) == MAX_PER_RUN
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if extra:
        (line,) = warnings
        assert line.endswith(
            f": {MAX_PER_RUN} events sent in this run; {extra} events wait for the next run"
        )
    else:
        assert warnings == []  # exactly as many as a run sends: nothing waits, nothing to say
    runs.now += timedelta(minutes=15)
    await runs.run(*quotas)
    ids = [r.json()["id"] for r in receiver.accepted()]
    assert ids == [e.id for e in first.events]  # all of them, in order, each once


async def test_a_run_stops_delivering_at_its_deadline(sqlite_history, receiver) -> None:
    """The run's time is read from a clock that moves 25 s with every request the receiver
    gets: the fourth event would start past the 60 s, so it and the rest wait."""
    settings = make_settings(
        sqlite_history,
        [{"url": f"{receiver.url}/hook", "name": "ops"}],
        thresholds=[0.5, 0.6, 0.7, 0.8, 0.9],
    )
    store = history_store(settings)
    try:
        async with httpx.AsyncClient() as http:
            assert settings.alerts is not None
            alerting = Alerting(settings.alerts, settings.accounts, store, http, clock=lambda: NOW)
            events = await alerting.evaluate(
                [AccountOutcome("rl", True, quotas=(bytes_quota(4_900_000_000_000),))]
            )
            deliverer = Deliverer(
                alerting.store, http, settings.alerts, clock=lambda: NOW,
                monotonic=lambda: 25.0 * len(receiver.all()), deadline=RUN_DEADLINE,
            )  # fmt: skip
            (report,) = await deliverer.run()
    finally:
        await store.close()
    assert len(events) == 5
    assert (report.delivered, report.stopped) == (3, "the run's 60 s for it are over")
    assert [r.json()["id"] for r in receiver.accepted()] == [e.id for e in events[:3]]
    assert [s for _, s, _ in deliveries(settings)] == ["delivered"] * 3 + ["pending"] * 2
