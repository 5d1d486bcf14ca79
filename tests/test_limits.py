"""Every input is bounded before it is read: request bodies, vendor answers, slow clients.

Over real HTTP on loopback: gateways and hostile vendors served by ``ServerThread``, clients on
raw sockets that count what they managed to send.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import select
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.response_cache import ResponseCache
from gateway.servers import ServerLimits, ServerThread
from gateway.settings import parse_settings
from providers import provider_class
from tests.conftest import NO_CACHE, NOW, Running, account_entry, clock, settings_for

MiB = 1024 * 1024


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


class Counting:
    """An ASGI wrapper counting the request body bytes the server handed to the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


class Reader(threading.Thread):
    """Reads everything a socket receives until EOF or a reset, in the background."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = b""
        self.reset = False

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
        except OSError:
            self.reset = True

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        head, _, body = self.data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers, body


def push(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[int, Reader]:
    """Send ``head`` then ``chunks`` until the server stops the connection; the bytes of
    ``chunks`` sent (into the socket) and the reader of what came back."""
    sock = socket.create_connection(address(url), timeout=30)
    reader = Reader(sock)
    reader.start()
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    else:
        sock.shutdown(socket.SHUT_WR)
    reader.join(30)
    sock.close()
    return sent, reader


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of a JSON-ish body in HTTP/1.1 chunked framing."""
    piece = b" " * size
    for _ in range(total // size):
        yield b"%x\r\n%s\r\n" % (size, piece)
    yield b"0\r\n\r\n"


def raw(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    piece = b" " * size
    for _ in range(total // size):
        yield piece


HEAD = (
    b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Accept: application/json\r\n"
)


@pytest.fixture(params=[1, 0], ids=["response cache on", "response cache off"])
def served_gateway(request: pytest.FixtureRequest) -> Iterator[tuple[str, Counting]]:
    settings = settings_for(cache={"response_ttl": request.param}, max_request_body=16 * 1024)
    app = Counting(create_app(settings, clock=clock))
    with ServerThread(app) as server:
        yield server.urls[0], app


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A client's mistake left no error and no traceback in the log."""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def assert_refused(reader: Reader, limit: int) -> None:
    status, headers, body = reader.answer()
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["errors"][0]
    assert error["extensions"] == {"code": "REQUEST_TOO_LARGE", "maxBytes": limit}
    assert f"larger than {limit} bytes" in error["message"]


def test_a_chunked_100_mb_body_is_refused_after_the_limit(served_gateway, caplog) -> None:
    url, app = served_gateway
    sent, reader = push(url, HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunked(100 * MiB))
    # The server read at most the limit and one read past it (uvicorn hands on at most
    # ~320 KiB at once); the sender was cut off once the socket buffers between them filled.
    assert app.received <= 16 * 1024 + 512 * 1024
    assert sent < 32 * MiB
    assert_refused(reader, 16 * 1024)

    query = json.dumps({"query": "{ accounts { id } }", "padding": " " * 15000}).encode()
    with httpx.Client() as client:
        response = client.post(
            f"{url}/graphql", content=query, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200  # a body under the limit is answered
    assert response.json() == {"data": {"accounts": []}}
    assert_quiet(caplog)


def test_an_announced_100_mb_body_is_refused_before_reading_it(served_gateway, caplog) -> None:
    url, app = served_gateway
    head = HEAD + b"Content-Length: %d\r\n\r\n" % (100 * MiB)
    sent, reader = push(url, head, raw(100 * MiB))
    assert app.received == 0
    assert sent < 32 * MiB
    assert_refused(reader, 16 * 1024)
    assert_quiet(caplog)


# -- the whole-answer cache is bounded by bytes -----------------------------------------------


class Answers:
    """An app answering every request with ``size`` bytes, counting calls."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * self.size})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def post(client: httpx.AsyncClient, n: int) -> None:
    response = await client.post("/graphql", content=b"query %d" % n)
    assert response.status_code == 200


async def test_the_whole_answer_cache_keeps_32_mib_at_most_by_default() -> None:
    inner = Answers(1_000_000)
    cache = ResponseCache(inner, ttl=60, clock=Clock())
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for n in range(40):
            await post(client, n)
        assert sum(len(e.body) for e in cache.entries.values()) <= 32 * MiB
        await post(client, 39)  # the newest is kept
        assert inner.calls == 40


async def test_the_whole_answer_cache_keeps_512_answers_at_most_by_default() -> None:
    inner = Answers(10)
    cache = ResponseCache(inner, ttl=60, clock=Clock())
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for n in range(520):
            await post(client, n)
        assert len(cache.entries) == 512
        await post(client, 7)  # among the first 8 in: evicted, so executed again
        await post(client, 519)  # the newest: kept
        assert inner.calls == 521


async def test_an_answer_over_one_mib_is_never_kept() -> None:
    inner = Answers(MiB + 1)
    cache = ResponseCache(inner, ttl=60, clock=Clock())
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        await post(client, 1)
        await post(client, 1)
    assert inner.calls == 2 and len(cache.entries) == 0


async def test_the_whole_answer_cache_evicts_the_least_recently_used_past_its_bytes() -> None:
    inner = Answers(3000)
    cache = ResponseCache(inner, ttl=10, clock=Clock(), max_bytes=10_000, max_entries=100)
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for n in range(10):
            await post(client, n)
        assert len(cache.entries) == 3 and cache.size <= 10_000
        await post(client, 7)  # still kept: no call
        assert inner.calls == 10
        await post(client, 0)  # evicted: called again
        assert inner.calls == 11
        await post(client, 8)  # the least recently used when 0 came back
        assert inner.calls == 12


async def test_the_whole_answer_cache_drops_expired_answers() -> None:
    inner = Answers(3000)
    now = Clock()
    cache = ResponseCache(inner, ttl=10, clock=now)
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for n in range(20):
            await post(client, n)
        now.now += timedelta(seconds=11)
        await post(client, 100)
        assert len(cache.entries) == 1  # the 20 expired ones are gone, not only past their TTL


# -- vendor answers ---------------------------------------------------------------------------


def ten_to_six_endpoints() -> bytes:
    endpoints = ",".join(f'"/api/v1/e{i:07d}": 1' for i in range(10**6))
    return b'{"summary": {"requests": 1000000, "endpoints": {' + endpoints.encode() + b"}}}"


class HostileVendor:
    """A vendor answering every path with the body of ``mode``, streamed; counts the bytes it
    got out before the client went away."""

    def __init__(self) -> None:
        self.mode = "big"
        self.sent = 0
        self.endpoints = ten_to_six_endpoints()
        self.bomb = gzip.compress(b'{"pad": "' + b" " * (50 * MiB) + b'"}', compresslevel=9)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"application/json")]
        if self.mode == "big":
            body = b'{"pad": "' + b" " * (50 * MiB) + b'"}'
        elif self.mode == "announced":
            body = b'{"pad": "' + b" " * (50 * MiB) + b'"}'
            headers.append((b"content-length", str(len(body)).encode()))
        elif self.mode == "endpoints":
            body = self.endpoints
        elif self.mode == "padded":  # JSON of 1 MiB, under the limit
            body = json.dumps({"pad": " " * MiB}).encode()
        elif self.mode == "small":
            body = b'{"pad": " "}'
        elif self.mode == "gzip":
            body = self.bomb
            headers.append((b"content-encoding", b"gzip"))
        else:
            body = b"[" * 100_000 + b"]" * 100_000
        status = 200
        if self.mode == "error":  # a 503 with 50 MB of explanation
            status, body = 503, b'{"error": "' + b" " * (50 * MiB) + b'"}'
        self.sent = 0
        await send({"type": "http.response.start", "status": status, "headers": headers})
        step = 256 * 1024
        for offset in range(0, len(body), step):
            if gone.is_set():
                break
            await send(
                {
                    "type": "http.response.body",
                    "body": body[offset : offset + step],
                    "more_body": True,
                }
            )
            self.sent += len(body[offset : offset + step])
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        watcher.cancel()


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileVendor, str]]:
    vendor = HostileVendor()
    with ServerThread(vendor) as server:
        yield vendor, server.urls[0]


SOURCES = "{ accounts { id source { state cause message } } }"


@pytest.mark.parametrize(
    ("mode", "limit", "words"),
    [
        ("big", MiB, f"larger than {MiB} bytes"),
        ("announced", MiB, f"larger than {MiB} bytes"),
        ("gzip", MiB, f"larger than {MiB} bytes"),
        ("endpoints", None, f"larger than {8 * MiB} bytes"),
        ("deep", None, "nested deeper than 64 levels"),
    ],
    ids=["50 MB", "50 MB announced", "50 MB gzip bomb", "10^6 endpoints", "100k-deep nesting"],
)
async def test_a_hostile_vendor_answer_is_refused_and_the_others_answer(
    hostile,
    emulators: dict[str, Running],
    make_gateway,
    caplog,
    mode: str,
    limit: int | None,
    words: str,
) -> None:
    vendor, url = hostile
    vendor.mode = mode
    extra = {} if limit is None else {"max_vendor_answer": limit}
    settings = settings_for(
        account_entry("reputeapi", url, id="hostile"),
        account_entry("zkscore", emulators["zkscore"].url, id="fine"),
        cache=NO_CACHE,
        **extra,
    )
    data = await make_gateway(settings).data(SOURCES)
    sources = {a["id"]: a["source"] for a in data["accounts"]}
    assert sources["fine"]["state"] == "FRESH"
    assert sources["hostile"]["state"] == "UNAVAILABLE"
    assert sources["hostile"]["cause"] == "MALFORMED"
    assert words in sources["hostile"]["message"]
    assert_quiet(caplog)
    if mode in ("big", "announced"):
        assert vendor.sent < 25 * MiB  # the gateway stopped reading: the rest never left


async def test_a_huge_error_answer_keeps_its_status_without_being_read(
    hostile, make_gateway, caplog
) -> None:
    vendor, url = hostile
    vendor.mode = "error"
    settings = settings_for(account_entry("reputeapi", url, id="hostile"), cache=NO_CACHE)
    data = await make_gateway(settings).data(SOURCES)
    (source,) = [a["source"] for a in data["accounts"]]
    assert (source["state"], source["cause"]) == ("UNAVAILABLE", "VENDOR_ERROR")
    assert source["message"] == "ReputeAPI failed (HTTP 503)"  # its 50 MB explanation dropped
    assert vendor.sent < 25 * MiB
    assert_quiet(caplog)


class CountingExecutor(ThreadPoolExecutor):
    """The event loop's default executor, counting the work sent to it."""

    submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_large_answer_is_parsed_in_a_worker_thread(hostile) -> None:
    vendor, url = hostile
    executor = CountingExecutor(max_workers=1)
    asyncio.get_running_loop().set_default_executor(executor)
    (account,) = settings_for(account_entry("reputeapi", url)).accounts
    async with httpx.AsyncClient() as http:
        provider = provider_class(account.provider)(account, http)
        vendor.mode = "small"
        await provider.get_json("/v1/usage")  # connects (and may resolve the address)
        before = executor.submitted
        assert (await provider.get_json("/v1/usage")).body == {"pad": " "}
        assert executor.submitted == before  # a small answer: parsed on the loop
        vendor.mode = "padded"
        assert len((await provider.get_json("/v1/usage")).body["pad"]) == MiB
        assert executor.submitted == before + 1  # 1 MiB: parsed by the executor


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_request_body", 10),
        ("max_vendor_answer", "8M"),
        ("max_connections", 0),
        ("request_read_timeout", 0),
    ],
)
def test_limits_out_of_range_are_config_errors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"\\[gateway\\] field '{field}' must be"):
        parse_settings({"gateway": {field: value}}, env={})


def test_limits_have_safe_defaults() -> None:
    settings = parse_settings({}, env={})
    assert settings.max_request_body == 64 * 1024
    assert settings.max_vendor_answer == 8 * MiB
    assert settings.request_read_timeout == 10
    assert settings.max_connections == 1000


# -- slow clients and the connection cap ------------------------------------------------------


def healthz_app() -> Any:
    return create_app(settings_for(), clock=clock)


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer (head and a Content-Length body), or what came before EOF."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(answer) < len(head) + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def open_until_closed(url: str, first: bytes, drip: bytes, steps: int = 60) -> int | None:
    """Send ``first``, then every 0.2 s one byte of ``drip`` (while it lasts), for ``steps``
    steps; the step at which the server closed the connection, or ``None``."""
    sock = socket.create_connection(address(url), timeout=10)
    with sock:
        sock.sendall(first)
        if first.endswith(b"\r\n\r\n"):  # a whole request: read its answer first
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
        for step in range(steps):
            readable, _, _ = select.select([sock], [], [], 0.2)
            try:
                if readable and sock.recv(65536) == b"":
                    return step
                if step < len(drip):
                    sock.send(drip[step : step + 1])
            except OSError:  # reset
                return step
        return None


REQUEST = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


@pytest.mark.parametrize(
    ("first", "drip"),
    [
        (b"", b""),
        (b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ", b"a" * 100),
        (REQUEST, b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 60),
        (HEAD + b"Content-Length: 1000\r\n\r\n{", b" " * 100),
    ],
    ids=["silent", "headers a byte at a time", "next kept-alive request", "short body"],
)
def test_a_slow_client_is_cut_off_while_others_are_answered(
    first: bytes, drip: bytes, caplog
) -> None:
    limits = ServerLimits(request_read_timeout=1.0)
    with ServerThread(healthz_app(), limits=limits) as server:
        url = server.urls[0]
        result: list[int | None] = []
        slow = threading.Thread(target=lambda: result.append(open_until_closed(url, first, drip)))
        slow.start()
        with httpx.Client() as client:
            assert client.get(f"{url}/healthz").status_code == 200
        slow.join(60)
    # the client would go on for 12 s (sending a byte every 0.2 s); the server closed at ~1 s
    closed_at = result[0]
    assert closed_at is not None and closed_at < 30
    assert_quiet(caplog)


def request_on(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    return read_answer(sock)


def test_a_request_beyond_max_connections_is_answered_503_and_closed() -> None:
    limits = ServerLimits(max_connections=2, keep_alive=60, request_read_timeout=60)
    with ServerThread(healthz_app(), limits=limits) as server:
        where = address(server.urls[0])
        first = socket.create_connection(where, timeout=10)
        with first:
            assert request_on(first).startswith(b"HTTP/1.1 200")
            second = socket.create_connection(where, timeout=10)
            with second:
                assert request_on(second).startswith(b"HTTP/1.1 200")  # two open: the cap
                third = socket.create_connection(where, timeout=10)
                with third:
                    refused = request_on(third)
                    assert refused.startswith(b"HTTP/1.1 503")
                    assert b"connection: close" in refused.lower()
                    assert third.recv(1) == b""  # closed
                assert request_on(first).startswith(b"HTTP/1.1 200")  # the kept-alive ones serve
