"""Long lists are completed a little at a time, letting the event loop run in between.

graphql-core completes a list of plain values in one go: a year of daily points across many
accounts would hold up every other request meanwhile. A list longer than :data:`SLICE` is handed
to graphql-core as an async iterator instead, which completes it item by item. Every such list
in the process shares one budget per turn of the event loop (:data:`TURN_BUDGET`): once the
lists being completed have used it, each gives the loop a turn after its next item, however
many lists are in progress at once. The answer is the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

SLICE = 100
"""Lists longer than this are completed in turns."""

TURN_BUDGET = 0.001
"""Seconds of list completion, over every list in progress, before the event loop gets a turn.

Small, because a request waits for it several times: reading it, each await of its execution
and writing its answer are turns of their own, and each may follow a list's slice. Under `make
bench` section 6's mixed load the loop's own CPU between two 5 ms wake-ups of a monitor was
20 ms at the 99th percentile with 4 ms here, 12 ms with 1 ms."""


class _Turn:
    """When the current turn's budget started; restarted once per loop turn after a yield."""

    started = 0.0
    restart_pending = False

    @classmethod
    def restart(cls) -> None:
        cls.started = time.perf_counter()
        cls.restart_pending = False

    @classmethod
    def spent(cls) -> bool:
        return time.perf_counter() - cls.started > TURN_BUDGET

    @classmethod
    async def give_way(cls) -> None:
        if not cls.restart_pending:
            # Runs at the start of the next turn, before the tasks that yield now resume.
            cls.restart_pending = True
            asyncio.get_running_loop().call_soon(cls.restart)
        await asyncio.sleep(0)


async def in_slices(items: list[Any]) -> AsyncIterator[Any]:
    """``items``, one at a time, giving the event loop a turn whenever the shared budget of
    this turn is spent."""
    if _Turn.spent() and not _Turn.restart_pending:
        _Turn.restart()  # the first list after a quiet spell starts a budget of its own
    for item in items:
        if _Turn.spent():
            await _Turn.give_way()
        yield item
