"""What the gateway sets for its whole process while it serves, given back by the last app out.

While an app serves, the objects start-up built are frozen out of garbage collection
(``gc.freeze()``: a full collection need not scan them again, and each scan of them held up the
event loop for tens of milliseconds); the youngest generation is collected after
:data:`GC_THRESHOLD` allocations rather than Python's 700 (a request leaves no reference cycle
behind, so a young collection finds next to nothing to free: it walks the objects of the answers
being built at that moment, several times per request with 8 connections); and a worker thread
holds the interpreter for at most :data:`SWITCH_INTERVAL` before the event loop gets it back
(5 ms by default, and a turn of the loop may wait for it several times: large usage is converted
and history is read in worker threads).

All three are the process's, and several apps may serve in one process at once, each on a loop
of its own thread or on one loop (tests, benchmarks): the first app in saves the process's
switch interval and collection thresholds, and only the last one out restores them and thaws
the heap. An app that stopped while another served would otherwise take the short interval (or
the thresholds) from under it, or, having saved the values the other had set, leave them set for
good.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL = 0.001
"""Seconds a thread runs before another may take the interpreter, while the gateway serves."""


GC_THRESHOLD = (10_000, 10, 10)
"""``gc.set_threshold`` while the gateway serves: a young collection after 10,000 allocations
(less deallocations) of tracked objects instead of 700, the older generations as Python's."""


class _Serving:
    """Apps serving in this process, and the switch interval and collection thresholds from
    before the first."""

    lock = threading.Lock()
    apps = 0
    switch = 0.0
    thresholds: tuple[int, ...] = (700, 10, 10)


@contextmanager
def serving() -> Iterator[None]:
    """While one app serves: the start-up heap frozen, the short switch interval and the
    collection thresholds set, all given back when the last app serving in the process stops."""
    with _Serving.lock:
        if _Serving.apps == 0:
            _Serving.switch = sys.getswitchinterval()
            _Serving.thresholds = gc.get_threshold()
        _Serving.apps += 1
        gc.freeze()
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        with _Serving.lock:
            _Serving.apps -= 1
            if _Serving.apps == 0:
                sys.setswitchinterval(_Serving.switch)
                gc.set_threshold(*_Serving.thresholds)
                gc.unfreeze()
