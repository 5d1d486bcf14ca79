"""Gateway processes sharing one real Redis make one vendor call per resource between them.

Three ``usage-gateway serve`` processes (separate Python processes, each with its own memory and
singleflight) share a redis-server; the four vendor emulators run in this test's process, on
loopback, with their data seeded and their clock frozen at the test's start, so the quotas are
recomputed here from the seeded data (:func:`benchmarks.fleet.expected_quotas`). Vendor calls
are counted by the emulators themselves (every request they served, with its query string).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.fleet import accounts, answered_quotas, emulators, expected_quotas
from benchmarks.replicas import served
from gateway.app import create_app
from gateway.domain import utc_now
from gateway.servers import ServerThread
from gateway.settings import parse_settings
from gateway.shared_flights import CHANNEL, OUTCOME_TTL, OUTCOMES
from providers.base import RETRIES
from providers.emulation import Emulator, Fault
from tests.conftest import SEED, RedisServer
from tests.e2e.test_demo import cli, read_until

QUOTAS = "{ accounts { id source { state cause retryAt } quotas { limit used } } }"
REQUESTS = 100
UPSTREAM_TIMEOUT = 3.0
"""``upstream_timeout`` of the gateways: a lease lasts 1 s more (LEASE_MARGIN)."""
COOLDOWN = 0.5


@pytest.fixture
def vendors() -> Iterator[tuple[dict[str, Emulator], dict[str, str], datetime]]:
    """The four emulators (one account each), their URLs, and their frozen clock's moment."""
    now = utc_now()
    found = emulators(4, SEED, lambda: now)
    with ServerThread(*found.values()) as servers:
        yield found, dict(zip(found, servers.urls, strict=True)), now


def config_text(
    redis_url: str, entries: list[dict[str, str]], history: Path, redis_timeout: float
) -> str:
    lines = [
        "[gateway]",
        f'cache_url = "{redis_url}"',
        f'history_path = "{history}"',
        f"upstream_timeout = {UPSTREAM_TIMEOUT}",
        "",
        "[cache]",
        f"redis_timeout = {redis_timeout}\nredis_cooldown = {COOLDOWN}",
    ]
    for entry in entries:
        lines += ["", "[[accounts]]", *(f'{k} = "{v}"' for k, v in entry.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def replicas(
    tmp_path: Path,
    redis_url: str,
    entries: list[dict[str, str]],
    count: int,
    redis_timeout: float = 1.0,
) -> Iterator[list[tuple[Any, str]]]:
    """``count`` gateway processes on one config: (process, base URL) each. ``redis_timeout``
    is long by default: on this busy machine a burst of 100 requests can hold a process's
    event loop past the default 0.25 s, which its Redis timeout counts as an outage."""
    with ExitStack() as stack:
        started = []
        for index in range(count):
            config = tmp_path / f"gateway-{index}.toml"
            history = tmp_path / f"history-{index}.sqlite"
            text = config_text(redis_url, entries, history, redis_timeout)
            config.write_text(text, encoding="utf-8")
            serve = ("serve", "--config", str(config), "--port", "0", "--log-level", "info")
            started.append(stack.enter_context(cli(*serve)))
        found = []
        for process in started:
            url = read_until(process, r"^GraphiQL: ")[-1].split(" ", 1)[1]
            found.append((process, url.removesuffix("/graphql")))
        yield found


async def round_robin(
    urls: list[str], query: str, count: int = REQUESTS, patience: float = 60
) -> list[dict[str, Any]]:
    """``count`` concurrent POSTs of ``query``, the i-th to ``urls[i % len(urls)]``. Each
    document differs by a comment, so no request shares another's execution (the answer
    cache): each one reads through its gateway's data cache."""
    async with httpx.AsyncClient(timeout=patience) as client:
        answers = await asyncio.gather(
            *(
                client.post(urls[i % len(urls)] + "/graphql", json={"query": f"# {i}\n{query}"})
                for i in range(count)
            )
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json() for a in answers]


def metric(base: str, name: str, **labels: str) -> float:
    """One sample of ``GET base/metrics`` (0 when absent)."""
    text = httpx.get(base + "/metrics", timeout=30).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def shared_reads(bases: list[str], outcome: str) -> int:
    return int(sum(metric(b, "usage_gateway_shared_reads_total", outcome=outcome) for b in bases))


def single_gateway_calls(
    found: dict[str, Emulator], urls: dict[str, str], entries: list[dict[str, str]]
) -> Counter[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """The vendor requests one gateway alone (memory cache) makes for one cold ``QUOTAS``."""
    data = {"gateway": {"history_path": "/nonexistent/usage-gateway/h.sqlite"}, "accounts": entries}
    with ServerThread(create_app(parse_settings(data, env={}))) as gateway:
        answer = httpx.post(gateway.urls[0] + "/graphql", json={"query": QUOTAS}, timeout=60)
        assert "errors" not in answer.json(), answer.text
    calls = served(found)
    for emulator in found.values():
        emulator.reset()
    return calls


async def test_three_replicas_call_each_vendor_resource_once(
    tmp_path, redis_server: RedisServer, vendors
) -> None:
    """100 concurrent identical cold queries over 3 gateway processes: every vendor request is
    made once (the same requests, and as many, as one gateway alone makes), and every answer
    holds the seeded quotas. The calls are slow (0.5 s), so most requests wait for them."""
    found, urls, now = vendors
    entries = accounts(4, urls)
    alone = single_gateway_calls(found, urls, entries)
    assert set(alone.values()) == {1}
    assert sum(alone.values()) == 1 + 5 + 1 + 1  # a ReversingLabs quota read asks 5 resources
    for emulator in found.values():
        emulator.set_fault(Fault(delay_ms=500))
    with replicas(tmp_path, redis_server.url, entries, 3) as running:
        bases = [base for _, base in running]
        answers = await round_robin(bases, QUOTAS)
        assert served(found) == alone
        expected = {e["id"]: expected_quotas(found, e, now) for e in entries}
        for answer in answers:
            assert "errors" not in answer, answer
            for account in answer["data"]["accounts"]:
                assert account["source"]["state"] == "FRESH", account
                assert answered_quotas(account) == expected[account["id"]]
        assert shared_reads(bases, "called") == len(entries)  # one read per account's quotas
        assert shared_reads(bases, "joined") >= 1
        assert shared_reads(bases, "alone") == 0
        # one shared read per process and account (its singleflight in front), not per request
        assert sum(shared_reads(bases, outcome) for outcome in OUTCOMES) == 3 * len(entries)
        watch = redis_server.client()
        assert watch.pubsub_numsub(CHANNEL) == [(CHANNEL.encode(), 3)]  # one per process
        watch.close()
        assert served(found) == alone  # the scrapes read the cached quotas


@pytest.mark.parametrize("status", [429, 500])
async def test_a_failure_is_shared_not_called_again(
    tmp_path, redis_server: RedisServer, vendors, status
) -> None:
    """The vendor fails (429, or 500 on every attempt): the replicas show the lease holder's
    failure instead of each calling it; a 429 is asked once, a 500 once plus its retries. The
    shared failure lives ``OUTCOME_TTL`` seconds: after that, a 500 (which has no retry time,
    so no answer showing it is kept) is asked again. (A 429's answers are kept until its
    ``retryAt``, as with one gateway.)"""
    found, urls, now = vendors
    entries = [e for e in accounts(4, urls) if e["provider"] == "reputeapi"]
    repute = found["reputeapi"]
    repute.set_fault(Fault(status=status, delay_ms=500))
    with replicas(tmp_path, redis_server.url, entries, 3) as running:
        bases = [base for _, base in running]
        answers = await round_robin(bases, QUOTAS)
        attempts = 1 if status == 429 else 1 + RETRIES
        assert list(served(found).values()) == [attempts]
        states = {
            (a["source"]["state"], a["source"]["cause"], a["source"]["retryAt"])
            for answer in answers
            for a in answer["data"]["accounts"]
        }
        assert len(states) == 1, states  # the same failure everywhere, retry time included
        (state,) = states
        if status == 429:
            assert state[:2] == ("RATE_LIMITED", "RATE_LIMITED") and state[2] is not None
        else:
            assert state == ("UNAVAILABLE", "VENDOR_ERROR", None)
        assert shared_reads(bases, "called") == 1
        assert shared_reads(bases, "joined_failure") >= 2  # the two other replicas at least
        if status == 429:
            return
        repute.set_fault(None)
        await asyncio.sleep(OUTCOME_TTL + 0.2)  # the shared failure is gone
        (again,) = await round_robin(bases[1:2], QUOTAS, count=1)
        (account,) = again["data"]["accounts"]
        assert account["source"]["state"] == "FRESH", account
        assert answered_quotas(account) == expected_quotas(found, entries[0], now)
        assert sum(served(found).values()) == attempts + 1


async def test_a_killed_lease_holder_is_taken_over(
    tmp_path, redis_server: RedisServer, vendors
) -> None:
    """The replica holding the lease is killed (SIGKILL) while its vendor call is in flight:
    another replica, which waited for it, takes the lease once it expires and answers with
    the seeded quotas (its own call: two vendor requests in all)."""
    found, urls, now = vendors
    entries = [e for e in accounts(4, urls) if e["provider"] == "reputeapi"]
    repute = found["reputeapi"]
    repute.set_fault(Fault(delay_ms=2500, times=1))  # only the first call is slow
    watch = redis_server.client()
    with replicas(tmp_path, redis_server.url, entries, 2) as running:
        (holder, first), (_, second) = running
        async with httpx.AsyncClient(timeout=60) as client:
            doomed = asyncio.ensure_future(client.post(first + "/graphql", json={"query": QUOTAS}))
            await until(lambda: repute.total_calls() == 1 and bool(watch.keys("lease:*")))
            waiting = asyncio.ensure_future(
                client.post(second + "/graphql", json={"query": QUOTAS})
            )
            holder.send_signal(signal.SIGKILL)  # the lease stays until it expires
            answer = (await waiting).json()
            with pytest.raises(httpx.HTTPError):
                await doomed
        (account,) = answer["data"]["accounts"]
        assert account["source"]["state"] == "FRESH", account
        assert answered_quotas(account) == expected_quotas(found, entries[0], now)
        assert repute.total_calls() == 2
        assert metric(second, "usage_gateway_shared_reads_total", outcome="took_over") == 1
        assert metric(second, "usage_gateway_shared_reads_total", outcome="called") == 0
    watch.close()


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("outage", ["killed", "hung"])
async def test_replicas_ride_out_a_redis_outage_and_share_again_after(
    tmp_path, redis_server: RedisServer, vendors, outage
) -> None:
    """Redis dies (SIGKILL) or hangs (SIGSTOP) under two replicas: each keeps answering FRESH
    from its own vendor calls (its own singleflight: one call per replica), ``/metrics`` shows
    Redis down, and one warning per process says so. Redis comes back on the same port: both
    see it again without a restart, and a new cold read is made once between them."""
    found, urls, now = vendors
    entries = [e for e in accounts(4, urls) if e["provider"] == "reputeapi"]
    repute = found["reputeapi"]
    repute.set_fault(Fault(delay_ms=300))
    with replicas(tmp_path, redis_server.url, entries, 2, redis_timeout=0.2) as running:
        bases = [base for _, base in running]
        if outage == "killed":
            redis_server.kill()
        else:
            redis_server.pause()
        # each Redis operation gives up after redis_timeout (0.2 s), and after 3 failures Redis
        # is left alone for its cooldown: no request waits for the outage to end
        answers = await round_robin(bases, QUOTAS, count=20, patience=UPSTREAM_TIMEOUT * 3)
        for answer in answers:
            (account,) = answer["data"]["accounts"]
            assert account["source"]["state"] == "FRESH", account
            assert answered_quotas(account) == expected_quotas(found, entries[0], now)
        assert list(served(found).values()) == [2]  # one call per replica
        for base in bases:
            assert metric(base, "usage_gateway_redis_up") == 0
            assert metric(base, "usage_gateway_shared_reads_total", outcome="alone") >= 1

        if outage == "killed":
            redis_server.start()  # empty, on the same port
        else:
            redis_server.resume()
        for base in bases:
            await until(lambda base=base: metric(base, "usage_gateway_redis_up") == 1)
        day = now.date().isoformat()
        usage = f'{{ accounts {{ usage(from: "{day}", to: "{day}") {{ requests }} }} }}'
        later = await round_robin(bases, usage, count=20)
        assert all("errors" not in a for a in later), later
        assert sum(served(found).values()) == 3  # the new read, made once between them
        assert shared_reads(bases, "called") == 1
        for process, _ in running:
            process.send_signal(signal.SIGINT)
            assert process.wait(20) == 0
            _, logged = process.communicate(timeout=10)
            warnings = [
                line
                for line in logged.splitlines()
                if " gateway.cache: " in line and " WARNING " in line
            ]
            assert len(warnings) == 1, logged
            assert "its own vendor calls" in warnings[0]
            assert len([line for line in logged.splitlines() if "answers again" in line]) == 1
            assert "Traceback" not in logged
