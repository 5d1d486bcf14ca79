"""An honest HTTP/1.1 load generator on raw asyncio streams.

httpx itself tops out near 400 requests/s here, which would measure the client, not the server,
so this one writes requests and reads answers on keep-alive sockets itself. It is honest in four
ways, each tested in ``tests/test_loadgen.py`` against real servers on loopback:

- **Every answer is checked.** A status other than 200, a GraphQL ``errors`` member anywhere in
  the answer's JSON (not only near its start), a body that is not JSON when JSON was expected,
  and a transport failure (refused or reset connection, an answer cut short, one slower than
  ``timeout``) are each counted, never taken for a success. A failed connection is opened again,
  so one error does not silently stop a connection's share of the load.
- **Runs are bounded** by time (``seconds``) and by count (``max_requests``), whichever comes
  first; a connection never starts a request after either bound.
- **Its own CPU is reported.** ``LoadResult.cpu_share`` is the share of one core this process
  used while it ran: near 1.0 the generator, not the server, was the bottleneck, and the rate it
  reports is a floor.
- **Latencies are kept** for every successful answer, for percentiles.

:func:`wrk_rate` runs ``wrk`` (when installed) on the same request, to cross-check a figure with
a well-known generator. :func:`round_trips` times requests one at a time on one connection, for
what a single request costs (a refusal, say) rather than a rate.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Body = dict[str, Any]


@dataclass
class LoadResult:
    """What a run did: answers that passed every check, and every kind of failure."""

    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers with a status other than 200, by status."""
    graphql_errors: int = 0
    """200 answers whose JSON has an ``errors`` member, or that are not JSON."""
    transport_errors: Counter[str] = field(default_factory=Counter)
    """Connections refused or reset, answers cut short or too slow, by kind."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from writing a request to reading its last byte, for every ``ok`` answer."""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    first_error: str | None = None
    """The first failure, as text, to show what went wrong."""
    warmup_failures: int = 0
    """Failures during the warm-up (not part of the rate, but failures all the same)."""

    @property
    def errors(self) -> int:
        return (
            sum(self.statuses.values())
            + self.graphql_errors
            + sum(self.transport_errors.values())
            + self.warmup_failures
        )

    @property
    def rate(self) -> float:
        """Successful answers per second (failures are not counted as throughput)."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """The share of one core the generator used while it ran."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency (nearest rank), ``nan`` with no answers."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def describe(self) -> str:
        """``1,234 req/s, p50 1.2 ms, p99 3.4 ms, 0 errors, generator 45 % of a core``."""
        failures = self.errors
        detail = ""
        if failures:
            kinds = [f"HTTP {s} x{n}" for s, n in sorted(self.statuses.items())]
            kinds += [f"GraphQL errors x{self.graphql_errors}"] if self.graphql_errors else []
            kinds += [f"{k} x{n}" for k, n in sorted(self.transport_errors.items())]
            kinds += [f"{self.warmup_failures} in the warm-up"] if self.warmup_failures else []
            detail = f" ({', '.join(kinds)}; first: {self.first_error})"
        return (
            f"{self.rate:,.0f} req/s, p50 {self.percentile(50) * 1000:.1f} ms,"
            f" p99 {self.percentile(99) * 1000:.1f} ms, {failures} error"
            f"{'' if failures == 1 else 's'}{detail}, generator {self.cpu_share:.0%} of a core"
        )


def request_bytes(url: str, body: Body, headers: dict[str, str] | None = None) -> bytes:
    """A keep-alive ``POST`` of ``body`` as JSON to ``url``."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def get_bytes(url: str) -> bytes:
    """A keep-alive ``GET`` of ``url``."""
    parts = urlsplit(url)
    return f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()


async def round_trips(
    url: str,
    requests: Sequence[bytes],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a per-request limit, not the call's own deadline
) -> list[tuple[float, int, bytes]]:
    """``requests`` (made by :func:`request_bytes` or :func:`get_bytes` before the clock starts)
    sent in turn on one keep-alive connection to ``url``'s host, each once the answer to the one
    before is read whole: for each, the seconds from writing it to reading its answer's last
    byte, the status and the body. One request at a time measures what each costs the server
    with none of an HTTP client's own work (httpx adds 0.5-0.8 ms here, and its own pauses); a
    failed or slow connection raises, as there is no load to go on with."""
    parts = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80), timeout
    )
    answers = []
    try:
        for request in requests:
            start = time.perf_counter()
            writer.write(request)
            status, body = await asyncio.wait_for(_read_answer(reader), timeout)
            answers.append((time.perf_counter() - start, status, body))
    finally:
        writer.close()
    return answers


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent to us
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if length is None:
        raise ConnectionError("an answer with neither Content-Length nor chunked encoding")
    return status, await reader.readexactly(length)


def _has_graphql_errors(body: bytes) -> bool:
    """Whether a 200 answer is not a GraphQL success: an ``errors`` member, or not a JSON object.
    Without the bytes ``"errors"`` anywhere there can be no such member, and the JSON is not
    decoded (that would load the generator); an object's braces are still checked."""
    if b'"errors"' not in body:
        stripped = body.strip()
        return not (stripped.startswith(b"{") and stripped.endswith(b"}"))
    try:
        document = json.loads(body)
    except ValueError:
        return True
    return not isinstance(document, dict) or "errors" in document


def _errors_of(body: bytes) -> str:
    """A failed answer's ``errors`` member (or its start, when it has none), for the report."""
    try:
        document = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    if isinstance(document, dict) and "errors" in document:
        return json.dumps(document["errors"])[:300]
    return f"not a JSON object: {body[:200]!r}"


class _Run:
    def __init__(
        self,
        host: str,
        port: int,
        make_request: Callable[[int], bytes],
        stop: float,
        max_requests: int | None,
        timeout: float,
        check_json: bool,
        result: LoadResult,
    ) -> None:
        self.host, self.port = host, port
        self.make_request = make_request
        self.stop = stop
        self.left = math.inf if max_requests is None else max_requests
        self.timeout = timeout
        self.check_json = check_json
        self.result = result
        self.sent = 0

    def _take(self) -> int | None:
        """The next request's number, or ``None`` past either bound."""
        if self.left <= 0 or time.perf_counter() >= self.stop:
            return None
        self.left -= 1
        self.sent += 1
        return self.sent - 1

    def _failed(self, kind: str, text: str) -> None:
        self.result.transport_errors[kind] += 1
        self.result.first_error = self.result.first_error or text

    async def connection(self) -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while (number := self._take()) is not None:
            request = self.make_request(number)
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), self.timeout
                    )
                start = time.perf_counter()
                writer.write(request)
                status, body = await asyncio.wait_for(_read_answer(reader), self.timeout)
                took = time.perf_counter() - start
            except TimeoutError:
                self._failed("timeout", f"no answer within {self.timeout:g} s")
            except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                self._failed(type(exc).__name__, f"{type(exc).__name__}: {exc}")
            else:
                if status != 200:
                    self.result.statuses[status] += 1
                    self.result.first_error = self.result.first_error or (
                        f"HTTP {status}: {body[:200]!r}"
                    )
                elif self.check_json and _has_graphql_errors(body):
                    self.result.graphql_errors += 1
                    self.result.first_error = self.result.first_error or _errors_of(body)
                else:
                    self.result.ok += 1
                    self.result.latencies.append(took)
                continue
            if writer is not None:  # a failed connection is not reused: open a new one
                writer.close()
            writer = reader = None
        if writer is not None:
            writer.close()


async def run_load(
    url: str,
    body: Body | Callable[[int], Body],
    *,
    seconds: float,
    connections: int,
    max_requests: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - a per-request limit, not the call's own deadline
    warmup: float = 0.3,
    headers: dict[str, str] | None = None,
    check_json: bool = True,
) -> LoadResult:
    """``POST url`` over ``connections`` keep-alive connections until ``seconds`` pass or
    ``max_requests`` were sent. ``body`` is one JSON body, or a function of the request's number
    giving each request its own (a document no cache has seen, say). ``warmup`` seconds of the
    same load run first and are not counted."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if callable(body):
        make_body = body

        def make_request(number: int) -> bytes:
            return request_bytes(url, make_body(number), headers)
    else:
        fixed = request_bytes(url, body, headers)

        def make_request(number: int) -> bytes:
            return fixed

    if warmup > 0:
        offset = 1 << 40  # a warm-up body is never one the measured run sends
        warmed = LoadResult()
        warm = _Run(
            host,
            port,
            lambda n: make_request(offset + n),
            time.perf_counter() + warmup,
            None,
            timeout,
            check_json,
            warmed,
        )
        await asyncio.gather(*(warm.connection() for _ in range(connections)))
    result = LoadResult()
    if warmup > 0:
        result.warmup_failures = warmed.errors
        result.first_error = warmed.first_error
    cpu, start = time.process_time(), time.perf_counter()
    run = _Run(host, port, make_request, start + seconds, max_requests, timeout, check_json, result)
    await asyncio.gather(*(run.connection() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu
    return result


async def post_load(url: str, body: Body, seconds: float, connections: int) -> float:
    """Successful requests per second of ``POST url`` with a JSON ``body``; raises if any
    request failed (see :func:`run_load` for the whole result)."""
    result = await run_load(url, body, seconds=seconds, connections=connections)
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests under load: {result.describe()}")
    return result.rate


WRK_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*?timeout (\d+)")


def wrk_rate(url: str, body: Body, *, seconds: float, connections: int) -> float | None:
    """Requests per second ``wrk`` measures for the same ``POST`` (one thread, as this generator
    runs in one), or ``None`` where wrk is not installed. Raises if wrk saw a failure."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        done = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", file.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
    finally:
        os.unlink(file.name)
    failures = [int(n) for pair in WRK_ERRORS.findall(done.stdout) for n in pair if n]
    if any(failures) or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk saw failures:\n{done.stdout}")
    match = WRK_RATE.search(done.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{done.stdout}")
    return float(match.group(1))
