"""Issue 16, point 5: three gateway processes on one Redis and one PostgreSQL history act as one.

One run of :func:`benchmarks.replicas.simulate` (the same run ``make bench`` section 13 prints):
the emulators run in this process on loopback and count what they served; the gateways are
``usage-gateway serve`` processes, driven round robin with no load balancer in front.
"""

from __future__ import annotations

import asyncio

from benchmarks.replicas import PERIODS, REPUTE_LIMIT, one_run_per_period, simulate
from tests.conftest import RedisServer
from tests.history_backends import new_database, pg_missing, skip_or_fail


def test_three_gateways_act_as_one(tmp_path, redis_server: RedisServer, request) -> None:
    missing = pg_missing()
    if missing:
        skip_or_fail(missing)
    history_url = new_database(request.getfixturevalue("postgres_server"))
    found = asyncio.run(simulate(redis_server.url, history_url, tmp_path))

    # (a) the same cold workload: the same vendor requests, as many, alone and over three
    assert found.cold_errors == 0
    assert found.calls_replicas == found.calls_alone
    assert set(found.calls_alone.values()) == {1}
    assert sum(found.calls_alone.values()) == 1 + 5 + 1 + 1  # a ReversingLabs read asks 5

    # (b) ReputeAPI's 30 a minute held across the replicas (snapshot reads included), no 429
    assert found.repute_received >= 1
    assert found.repute_most <= REPUTE_LIMIT, found.repute_most
    assert found.repute_429 == 0
    assert set(found.repute_states) <= {"FRESH", "RATE_LIMITED"}, found.repute_states

    # (c) one complete snapshot run per period, the killed replica's included
    assert len(found.periods) >= PERIODS
    counted = one_run_per_period(found)
    assert set(counted.values()) == {1}, (counted, found.periods)

    # (d) kill -9 of one replica mid-load: every request answered, and well
    driven = found.driven
    assert driven.lost == 0
    assert driven.answered == driven.good == found.asked, driven
    assert driven.failed_over >= 1, driven  # the dead replica's turns went to the next one
