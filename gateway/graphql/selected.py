"""What a selection set asks for, with fragments and ``@skip``/``@include`` applied.

Used to leave out work nobody reads: a ``usage`` field builds each bucket's endpoint split only
where its selection shows ``series { endpoints }`` (:func:`wants_splits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

Selection = SelectedField | FragmentSpread | InlineFragment


def fields(selections: Iterable[Selection]) -> Iterable[SelectedField]:
    """The fields of one selection set, through fragments, that ``@skip``/``@include`` keep."""
    for selection in selections:
        if not included(selection.directives):
            continue
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from fields(selection.selections)


def included(directives: Mapping[str, Mapping[str, Any]]) -> bool:
    if "skip" in directives and directives["skip"].get("if") is True:
        return False
    return not ("include" in directives and directives["include"].get("if") is not True)


def wants_splits(usage: Selection) -> bool:
    """Whether a ``usage`` field's selection shows any bucket's endpoint split
    (``series { endpoints }``)."""
    return any(
        point.name == "endpoints"
        for series in fields(usage.selections)
        if series.name == "series"
        for point in fields(series.selections)
    )
