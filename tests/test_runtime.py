"""What the gateway sets for the process while it serves, and gives back at shutdown."""

from __future__ import annotations

import gc
import sys

from litestar.testing import AsyncTestClient

from gateway.app import SWITCH_INTERVAL, create_app
from tests.conftest import settings_for
from tests.test_metrics import parse, pick


async def test_threads_hand_the_interpreter_back_within_a_millisecond_while_serving() -> None:
    before = sys.getswitchinterval()
    assert before != SWITCH_INTERVAL == 0.001
    app = create_app(settings_for())
    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert sys.getswitchinterval() == SWITCH_INTERVAL
        assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
    assert sys.getswitchinterval() == before


async def test_the_start_up_heap_is_frozen_while_serving_and_thawed_at_shutdown() -> None:
    """``gc.freeze()`` after start-up, shown in ``/metrics``; ``gc.unfreeze()`` at shutdown, so
    that a process that builds apps one after another (tests, benchmarks) frees them."""
    before = gc.get_freeze_count()
    app = create_app(settings_for())
    async with AsyncTestClient(app) as client:
        frozen = gc.get_freeze_count()
        scraped = parse((await client.get("/metrics")).text)
        # Frozen objects that are freed leave the count: it can only have fallen meanwhile.
        [shown] = pick(scraped, "python_gc_frozen_objects").values()
        assert before < shown <= frozen
    assert gc.get_freeze_count() == 0
