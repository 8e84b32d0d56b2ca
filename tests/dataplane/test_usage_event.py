"""Usage event ids: unique across processes, time-ordered, no syscall per id."""

from __future__ import annotations

from dataplane.usage.event import EventIds


def test_event_ids_are_unique_sortable_and_fixed_width() -> None:
    a, b = EventIds(), EventIds()
    ids = [a.next(1000.0 + i / 1000) for i in range(5000)] + [b.next(1000.0) for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 for i in ids)
    assert a.next(2000.0) > a.next(1999.0)  # time-ordered prefix
