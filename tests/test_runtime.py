"""What the gateway sets for the process while it serves, and gives back at shutdown."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.runtime import GC_THRESHOLD, SWITCH_INTERVAL
from gateway.servers import ServerThread
from tests.conftest import settings_for
from tests.test_metrics import parse, pick


@pytest.fixture
def default_switch() -> Iterator[float]:
    """The process's switch interval set to Python's default for the test, then put back."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, ...]]:
    """The process's collection thresholds set to Python's defaults for the test, then put
    back."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*before)


async def test_young_collections_are_rarer_while_serving(
    default_thresholds: tuple[int, ...],
) -> None:
    """A young collection after 10,000 allocations rather than 700 (a request leaves no cycle
    for it to free: tests/test_garbage.py), Python's own thresholds again at shutdown."""
    assert GC_THRESHOLD == (10_000, 10, 10)
    app = create_app(settings_for())
    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_threshold() == default_thresholds


async def test_threads_hand_the_interpreter_back_within_a_millisecond_while_serving(
    default_switch: float,
) -> None:
    assert SWITCH_INTERVAL == 0.001
    app = create_app(settings_for())
    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert sys.getswitchinterval() == SWITCH_INTERVAL
        assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
    assert sys.getswitchinterval() == default_switch


async def test_apps_serving_at_once_give_the_process_back_when_the_last_one_stops(
    default_switch: float, default_thresholds: tuple[int, ...]
) -> None:
    """Two apps whose lifespans overlap (A starts, B starts, A stops, B stops): the short
    interval and the frozen heap hold until B stops, and then the process has its own again
    (with each app saving and restoring for itself, B would restore the interval A had set)."""
    first, second = AsyncTestClient(create_app(settings_for())), None
    async with first:
        second = AsyncTestClient(create_app(settings_for()))
        await second.__aenter__()
        assert sys.getswitchinterval() == SWITCH_INTERVAL
    try:
        assert sys.getswitchinterval() == SWITCH_INTERVAL  # B still serves
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        assert (await second.get("/healthz")).status_code == 200
    finally:
        await second.__aexit__(None, None, None)
    assert sys.getswitchinterval() == default_switch
    assert gc.get_threshold() == default_thresholds
    assert gc.get_freeze_count() == 0


def test_apps_serving_in_threads_at_once_give_the_process_back_when_the_last_one_stops(
    default_switch: float, default_thresholds: tuple[int, ...]
) -> None:
    """The same with each app served by uvicorn on a loop of its own thread (as the tests'
    servers and the benchmarks serve them), started and stopped crosswise."""
    first = ServerThread(create_app(settings_for())).start()
    second = ServerThread(create_app(settings_for())).start()
    first.stop()
    assert sys.getswitchinterval() == SWITCH_INTERVAL
    assert gc.get_threshold() == GC_THRESHOLD
    second.stop()
    assert sys.getswitchinterval() == default_switch
    assert gc.get_threshold() == default_thresholds
    assert gc.get_freeze_count() == 0


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
