"""The bench's load generator counts every failure and keeps to its bounds: driven against a real
HTTP server on loopback (raw asyncio, so it can answer wrongly in every way a gateway might)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from benchmarks.loadgen import (
    get_bytes,
    post_load,
    request_bytes,
    round_trips,
    run_load,
    wrk_rate,
)
from gateway.servers import ServerThread

OK = json.dumps({"data": {"n": 1}}).encode()

Behaviour = Callable[[int, bytes], bytes | None]
"""The answer to request number n (with its body) as raw bytes; None closes the connection."""


def answer(status: int, body: bytes, *, chunked: bool = False) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    if chunked:
        middle = len(body) // 2
        chunks = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (body[:middle], body[middle:])
            if part
        )
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@asynccontextmanager
async def server(behaviour: Behaviour) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP/1.1 keep-alive server: the URL, and every request body it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,  # a GET
                )
                body = await reader.readexactly(length)
                received.append(body)
                reply = behaviour(len(received) - 1, body)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/graphql", received
    finally:
        listening.close()


async def test_every_answer_that_passes_is_counted_and_timed() -> None:
    async with server(lambda n, body: answer(200, OK)) as (url, received):
        result = await run_load(
            url, {"query": "{ n }"}, seconds=30, connections=4, max_requests=200, warmup=0
        )
    assert result.ok == 200 == len(received)
    assert result.errors == 0
    assert len(result.latencies) == 200
    assert 0 < result.percentile(50) <= result.percentile(99) <= max(result.latencies)
    assert json.loads(received[0]) == {"query": "{ n }"}


async def test_a_bad_status_is_counted_by_status_not_as_throughput() -> None:
    def behaviour(n: int, body: bytes) -> bytes:
        return answer(500 if n % 4 == 0 else (429 if n % 4 == 1 else 200), OK)

    async with server(behaviour) as (url, _):
        result = await run_load(url, {}, seconds=30, connections=2, max_requests=100, warmup=0)
    assert result.statuses == {500: 25, 429: 25}
    assert result.ok == 50
    assert result.errors == 50
    assert "HTTP 429 x25" in result.describe() and "HTTP 500 x25" in result.describe()


async def test_graphql_errors_anywhere_in_the_answer_are_counted() -> None:
    """Errors after a long ``data`` member (the gateway puts ``errors`` last), a JSON array and
    a body that is not JSON are failures; the bytes ``errors`` inside a string are not."""
    long_data = {"data": {"rows": ["x" * 50] * 100}}
    bodies = [
        json.dumps({**long_data, "errors": [{"message": "late"}]}).encode(),
        b"[1, 2]",
        b"<html>oops</html>",
        json.dumps({"data": {"text": 'the word "errors" in a value'}}).encode(),
        OK,
    ]
    async with server(lambda n, body: answer(200, bodies[n % 5])) as (url, _):
        result = await run_load(url, {}, seconds=30, connections=1, max_requests=50, warmup=0)
    assert len(bodies[0]) > 5000
    assert result.graphql_errors == 30
    assert result.ok == 20
    assert "late" in (result.first_error or "")


async def test_round_trips_send_each_request_after_the_answer_before_and_time_each() -> None:
    """Each request goes out only once the answer before it is read whole: the server waits
    50 ms before each answer and notes any byte that arrives meanwhile (a request sent early).
    Each answer comes back with its own status, body and time (at least the server's wait)."""
    received: list[bytes] = []
    early: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = (
                int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) if b"POST" in head else 0
            )
            received.append(await reader.readexactly(length))
            with suppress(TimeoutError):
                early.append(await asyncio.wait_for(reader.read(1), 0.05))
            n = len(received) - 1
            writer.write(answer(200 if length else 204, b'{"n": %d}' % n, chunked=n == 2))
            if n == 2:
                break
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/graphql"
    try:
        requests = [request_bytes(url, {"query": "{ a }"}), get_bytes(url), request_bytes(url, {})]
        answers = await round_trips(url, requests)
    finally:
        listening.close()
    assert [(status, body) for _, status, body in answers] == [
        (200, b'{"n": 0}'),
        (204, b'{"n": 1}'),
        (200, b'{"n": 2}'),
    ]
    assert received == [b'{"query": "{ a }"}', b"", b"{}"]
    assert early == []
    assert all(seconds >= 0.05 for seconds, _, _ in answers)


async def test_round_trips_raise_on_a_dropped_connection() -> None:
    async with server(lambda n, body: None if n == 1 else answer(200, OK)) as (url, _):
        with pytest.raises(asyncio.IncompleteReadError):
            await round_trips(url, [request_bytes(url, {})] * 3)


async def test_a_chunked_answer_is_read_whole() -> None:
    big = json.dumps({"data": {"rows": list(range(2000))}, "errors": [{"message": "x"}]}).encode()
    async with server(lambda n, body: answer(200, OK if n % 2 else big, chunked=True)) as (
        url,
        _,
    ):
        result = await run_load(url, {}, seconds=30, connections=2, max_requests=40, warmup=0)
    assert (result.ok, result.graphql_errors, sum(result.transport_errors.values())) == (20, 20, 0)


async def test_a_dropped_connection_is_counted_and_the_load_goes_on() -> None:
    """Every fifth request's connection is closed without an answer: each is a transport error,
    and the generator opens a new connection and keeps sending."""
    async with server(lambda n, body: None if n % 5 == 4 else answer(200, OK)) as (url, received):
        result = await run_load(url, {}, seconds=30, connections=3, max_requests=100, warmup=0)
    assert len(received) == 100
    assert result.ok == 80
    assert sum(result.transport_errors.values()) == 20


async def test_a_refused_connection_is_counted() -> None:
    async with server(lambda n, body: answer(200, OK)) as (url, _):
        pass  # closed: nothing listens on the port any more
    result = await run_load(url, {}, seconds=30, connections=2, max_requests=10, warmup=0)
    assert result.ok == 0
    assert sum(result.transport_errors.values()) == 10
    assert result.rate == 0


async def test_an_answer_slower_than_the_timeout_is_counted() -> None:
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        held.append(writer)  # read and never answered

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        result = await run_load(
            f"http://127.0.0.1:{port}/",
            {},
            seconds=30,
            connections=2,
            max_requests=4,
            timeout=0.2,
            warmup=0,
        )
    finally:
        listening.close()
        for writer in held:
            writer.close()
    assert result.transport_errors == {"timeout": 4}
    assert result.ok == 0


async def test_runs_are_bounded_by_count_and_by_time() -> None:
    async with server(lambda n, body: answer(200, OK)) as (url, received):
        counted = await run_load(url, {}, seconds=30, connections=8, max_requests=37, warmup=0)
        assert len(received) == counted.ok == 37
        timed = await run_load(url, {}, seconds=0, connections=8, warmup=0)
        assert timed.ok == 0 and len(received) == 37
        short = await run_load(url, {}, seconds=0.2, connections=2, warmup=0)
    assert short.ok > 0
    assert short.seconds < 5  # it stopped: a run without a time bound would not return


async def test_each_request_can_carry_its_own_body_and_warm_up_bodies_differ() -> None:
    async with server(lambda n, body: answer(200, OK)) as (url, received):
        result = await run_load(
            url,
            lambda n: {"query": f"{{ a{n}: n }}"},
            seconds=30,
            connections=3,
            max_requests=30,
            warmup=0.1,
        )
    measured = [json.loads(b)["query"] for b in received][-30:]
    assert sorted(measured) == sorted(f"{{ a{n}: n }}" for n in range(30))
    warm = [json.loads(b)["query"] for b in received][:-30]
    assert warm and not set(warm) & set(measured)
    assert result.ok == 30


async def test_the_generator_reports_its_own_cpu_share() -> None:
    async with server(lambda n, body: answer(200, OK)) as (url, _):
        result = await run_load(url, {}, seconds=0.3, connections=4, warmup=0)
    assert 0 < result.cpu_share <= 1.5  # one thread (plus the server's, in this process)
    assert f"generator {result.cpu_share:.0%} of a core" in result.describe()


async def test_post_load_refuses_to_report_a_rate_over_failures() -> None:
    async with server(lambda n, body: answer(500 if n == 3 else 200, OK)) as (url, _):
        with pytest.raises(RuntimeError, match="1 failed requests"):
            await post_load(url, {}, 0.2, 2)


def test_wrk_agrees_that_a_server_answers(tmp_path: object) -> None:
    """Where wrk is installed, it runs the same POST and reports a rate (a failure raises)."""
    if shutil.which("wrk") is None:
        assert wrk_rate("http://127.0.0.1:1/", {}, seconds=1, connections=1) is None
        return
    from benchmarks.bare import app

    with ServerThread(app) as bare:
        rate = wrk_rate(bare.urls[0] + "/graphql", {"query": "{ n }"}, seconds=1, connections=2)
    assert rate is not None and rate > 0
