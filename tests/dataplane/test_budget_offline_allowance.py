"""The optimistic offline allowance is per node per window: not renewed by a second outage, nor by a restart."""

from __future__ import annotations

from pathlib import Path

from dataplane.budget.allowance import AllowanceBook
from dataplane.budget.pool import LeasePool, PoolKey

KEY = (1, "b", "2026-12-06")


def _pool(book: AllowanceBook) -> LeasePool:
    p = LeasePool(PoolKey(*KEY), mode="optimistic", optimistic=1000)
    p.allowance_used = book.used(KEY)
    p.on_draw = lambda amount: book.draw(KEY, amount)
    return p


def _drain(p: LeasePool, now_ms: int, step: int = 100) -> int:
    taken = 0
    while p.available(now_ms) >= step:
        p.take(step, now_ms)
        p.settle(step, step)
        taken += step
    return taken


def test_allowance_is_drawn_once_per_window_across_outages_and_restarts(tmp_path: Path) -> None:
    book = AllowanceBook(tmp_path / "allowance.json")
    p = _pool(book)
    p.lease = 500
    p.go_online(10_000)
    assert _drain(p, 1_000) == 500  # online: the lease only
    p.go_offline(2_000)
    assert _drain(p, 2_000) == 1000  # offline: the allowance on top
    p.finish_report(0, None)
    p.go_online(20_000)  # back online (spend reported), then a second outage past the lease deadline
    p.go_offline(30_000)
    assert p.available(30_000) == 0 and _drain(p, 30_000) == 0
    restarted = _pool(AllowanceBook(tmp_path / "allowance.json"))  # kill -9 and restart: read back from disk
    restarted.go_offline(40_000)
    assert restarted.available(40_000) == 0


def test_partial_draw_then_second_outage_gets_only_the_rest(tmp_path: Path) -> None:
    book = AllowanceBook(tmp_path / "a.json")
    p = _pool(book)
    p.go_offline(0)
    p.take(300, 0)
    p.settle(300, 300)
    p.go_online(0)
    p.go_offline(1)
    assert p.available(1) == 700 and book.used(KEY) == 300
    other = (1, "b", "2026-12-07")
    assert book.used(other) == 0  # a new window starts with the whole allowance


def test_unreadable_book_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert AllowanceBook(path).used(KEY) == 0
