"""One bounded least-recently-used store, used by every in-process cache of the gateway."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedLRU(Generic[V]):
    """Values by key, least recently used evicted first once there are more than
    ``max_entries`` of them or their sizes add up to more than ``max_bytes``.

    A value larger than ``max_bytes`` on its own is never kept. Values have no expiry here: the
    caller judges whether a value it gets is still good.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """The sizes of every kept value, added up."""
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        return list(self._items)

    def values(self) -> Iterator[V]:
        """Values from least to most recently used (without touching their order)."""
        return (value for value, _ in self._items.values())

    def items(self) -> list[tuple[str, V]]:
        """(key, value) from least to most recently used (without touching their order)."""
        return [(key, value) for key, (value, _) in self._items.items()]

    def get(self, key: str) -> V | None:
        """The value, now the most recently used; ``None`` when there is none."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def set(self, key: str, value: V, size: int) -> None:
        """Keep ``value`` as the most recently used; ``size`` counts toward ``max_bytes``."""
        self.pop(key)
        if size > self.max_bytes:
            return
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self.pop(next(iter(self._items)))

    def pop(self, key: str) -> None:
        """Forget ``key`` (nothing happens when it is not kept)."""
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]
