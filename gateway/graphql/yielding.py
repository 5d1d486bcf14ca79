"""Long lists are completed in slices, letting the event loop run between them.

graphql-core completes a list of plain values in one go: a year of daily points across many
accounts would hold up every other request meanwhile. A list longer than :data:`SLICE` is handed
to graphql-core as an async iterator instead, which completes it item by item and gives other
tasks a turn after every slice. The answer is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from strawberry.extensions import SchemaExtension

SLICE = 500
"""Items completed between two turns of the event loop."""


async def in_slices(items: list[Any]) -> AsyncIterator[Any]:
    """``items``, one at a time, yielding to the event loop after every :data:`SLICE`."""
    for start in range(0, len(items), SLICE):
        if start:
            await asyncio.sleep(0)
        for item in items[start : start + SLICE]:
            yield item


class LongListsInSlices(SchemaExtension):
    """Resolves every list longer than :data:`SLICE` to :func:`in_slices` of it."""

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: Any,  # GraphQLResolveInfo, generic in some graphql-core versions only
        *args: str,
        **kwargs: Any,
    ) -> Any:
        result = _next(root, info, *args, **kwargs)
        if type(result) is list and len(result) > SLICE:
            return in_slices(result)
        return result
