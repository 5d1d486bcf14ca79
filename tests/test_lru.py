"""The one bounded LRU behind the gateway's in-process caches."""

from __future__ import annotations

from gateway.lru import BoundedLRU


def test_entries_past_the_count_leave_least_recently_used_first() -> None:
    lru: BoundedLRU[int] = BoundedLRU(max_entries=3, max_bytes=1_000)
    for n, key in enumerate("abc"):
        lru.set(key, n, 1)
    assert lru.get("a") == 0  # a is now the most recently used
    lru.set("d", 3, 1)
    assert lru.keys() == ["c", "a", "d"]  # b left
    assert "b" not in lru and lru.get("b") is None


def test_bytes_past_the_budget_leave_least_recently_used_first() -> None:
    lru: BoundedLRU[str] = BoundedLRU(max_entries=100, max_bytes=10)
    lru.set("a", "x", 4)
    lru.set("b", "y", 4)
    lru.set("c", "z", 4)  # 12 > 10: a leaves
    assert lru.keys() == ["b", "c"] and lru.bytes == 8
    lru.set("b", "Y", 2)  # replacing counts the new size only
    assert lru.keys() == ["c", "b"] and lru.bytes == 6
    lru.set("huge", "w", 11)  # larger than the whole budget: never kept, nothing evicted
    assert lru.keys() == ["c", "b"] and lru.bytes == 6
    lru.pop("c")
    lru.pop("missing")
    assert lru.items() == [("b", "Y")] and list(lru.values()) == ["Y"] and lru.bytes == 2
