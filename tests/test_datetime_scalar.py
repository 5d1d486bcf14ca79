"""The DateTime scalar writes every moment as UTC with a ``Z``, whatever its offset, and the
same moment the same way every time (each UTC moment's text is kept once written)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gateway.graphql.schema import schema

SERIALIZE = schema._schema.type_map["DateTime"].serialize  # type: ignore[union-attr]

moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(moments, offsets)
def test_every_moment_is_written_as_utc_whatever_its_offset(moment: datetime, offset) -> None:
    expected = moment.replace(tzinfo=None).isoformat() + "Z"
    assert SERIALIZE(moment) == expected
    assert SERIALIZE(moment) == expected  # again: the kept text
    elsewhere = moment.astimezone(offset)
    assert SERIALIZE(elsewhere) == expected


def test_examples() -> None:
    assert SERIALIZE(datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)) == "2026-01-31T23:59:59Z"
    plus_two = timezone(timedelta(hours=2))
    assert SERIALIZE(datetime(2026, 2, 1, 1, 0, 0, 5, tzinfo=plus_two)) == (
        "2026-01-31T23:00:00.000005Z"
    )
