"""The vendor client's connections (``gateway.app.vendor_client``, ``VendorTransport``): kept
alive and used again while the vendor keeps them open, and given up, without a failed call,
once the vendor closed one between calls. Against a real HTTP/1.1 server on loopback that
counts the connections it accepts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.app import vendor_client
from tests.conftest import account_entry, settings_for

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@asynccontextmanager
async def server(close_after_answer: bool) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering ``{}`` to every request; with ``close_after_answer`` it closes each
    connection after its first answer (without saying so in a header, as a vendor's idle
    timeout does). Yields its URL and a one-item list counting the connections accepted."""
    accepted = [0]
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)
                await writer.drain()
                if close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        await writer.wait_closed()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        listening.close()
        await listening.wait_closed()
        if handlers:  # each ends once the client has closed its connection
            await asyncio.wait(handlers, timeout=10)


async def test_connections_are_used_again_while_the_vendor_keeps_them_open() -> None:
    async with (
        server(close_after_answer=False) as (url, accepted),
        server(close_after_answer=False) as (other, other_accepted),
    ):
        settings = settings_for(account_entry("reputeapi", url))
        async with vendor_client(settings) as http:
            for _ in range(5):  # a configured vendor host: its own pool
                assert (await http.get(f"{url}/v1/usage")).json() == {}
            for _ in range(5):  # any other host: the shared pool
                assert (await http.get(f"{other}/v1/usage")).json() == {}
    assert accepted == other_accepted == [1]


async def test_a_connection_the_vendor_closed_is_not_used_again() -> None:
    async with server(close_after_answer=True) as (url, accepted):
        settings = settings_for(account_entry("reputeapi", url))
        async with vendor_client(settings) as http:
            for _ in range(3):
                assert (await http.get(f"{url}/v1/usage")).json() == {}
                await asyncio.sleep(0.05)  # the server's close reaches the client
    assert accepted == [3]
