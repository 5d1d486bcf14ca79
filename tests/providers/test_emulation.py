"""The emulator toolkit's faults, on emulators that implement only what a new vendor must."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from providers.emulation import Emulator, Fault, Request, Response


class Plain(Emulator):
    """An emulator that keeps the base ``error()`` (it knows nothing of ``Retry-After``)."""

    async def handle(self, request: Request) -> Response:
        return Response.json({"ok": True})


class OwnRetryAfter(Plain):
    """An emulator whose error form sets its own ``Retry-After``."""

    def error(self, status: int, message: str, *, retry_after: int | None = None) -> Response:
        return Response.json({"error": message}, status=status, headers={"retry-after": "7"})


async def get(emulator: Emulator) -> httpx.Response:
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://vendor.test") as http:
        return await http.get("/usage")


@pytest.mark.parametrize("status", [429, 503])
async def test_the_base_adds_retry_after_when_the_error_form_lacks_it(status: int) -> None:
    emulator = Plain()
    emulator.set_fault(Fault(status=status, retry_after=45))
    response = await get(emulator)
    assert response.status_code == status
    assert response.headers.get_list("retry-after") == ["45"]


async def test_no_retry_after_on_other_errors() -> None:
    emulator = Plain()
    emulator.set_fault(Fault(status=500, retry_after=45))
    response = await get(emulator)
    assert response.status_code == 500
    assert "retry-after" not in response.headers


async def test_an_error_form_with_its_own_retry_after_keeps_it() -> None:
    emulator = OwnRetryAfter()
    emulator.set_fault(Fault(status=429, retry_after=45))
    response = await get(emulator)
    assert response.headers.get_list("retry-after") == ["7"]


async def test_a_reset_while_a_request_is_in_flight_keeps_the_count_true() -> None:
    """A test's reset can land while the previous test's last request is still finishing in
    the emulator: once it ends, nothing is in flight (not -1), and the next requests count
    from there."""
    emulator = Plain()
    emulator.set_fault(Fault(delay_ms=100))
    pending = asyncio.create_task(get(emulator))
    while emulator.in_flight == 0:  # noqa: ASYNC110 - the emulator counts, it sets no event
        await asyncio.sleep(0.001)
    emulator.reset()
    await pending
    assert emulator.in_flight == 0
    emulator.set_fault(Fault(delay_ms=50))
    await asyncio.gather(get(emulator), get(emulator))
    assert emulator.max_in_flight == 2
