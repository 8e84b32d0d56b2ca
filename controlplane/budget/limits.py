"""What the ledger needs to know about each limit, indexed once per published snapshot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from interlock.v1 import budget_pb2, policy_pb2
from interlock.windows import Window, current_window

MINUTE = "minute"


@dataclass(frozen=True, slots=True)
class LimitSpec:
    kind: int
    limit_id: str
    limit: int
    window: str  # lifetime | day | week | month | minute
    timezone: str
    scope: str
    scope_id: str

    def window_at(self, now_s: float) -> Window:
        return current_window(self.window, self.timezone, now_s)


LimitBook = dict[tuple[int, str], LimitSpec]


def limit_book(policy: policy_pb2.BudgetPolicy) -> LimitBook:
    """Every (lease kind, limit id) a node may ask about under this policy."""
    book: LimitBook = {}
    for b in policy.budgets:
        book[budget_pb2.LEASE_KIND_BUDGET, b.id] = LimitSpec(
            budget_pb2.LEASE_KIND_BUDGET, b.id, b.limit_pico, b.window, b.timezone or "UTC", b.scope, b.scope_id
        )
    for r in policy.rate_limits:
        for kind, limit, window in (
            (budget_pb2.LEASE_KIND_REQUESTS, r.requests_per_minute, MINUTE),
            (budget_pb2.LEASE_KIND_TOKENS, r.tokens_per_minute, MINUTE),
            (budget_pb2.LEASE_KIND_CONCURRENCY, r.max_concurrent, "lifetime"),
        ):
            if limit:
                book[kind, r.id] = LimitSpec(kind, r.id, int(limit), window, "UTC", r.scope, r.scope_id)
    return book


class PublishedLimits:
    """The limit book of whatever snapshot is published now, rebuilt only when the snapshot changes."""

    def __init__(self, current: Callable[[], policy_pb2.PolicySnapshot | None]):
        self._current = current
        self._hash = ""
        self._book: LimitBook = {}

    def __call__(self) -> LimitBook:
        snapshot = self._current()
        if snapshot is None:
            return {}
        if snapshot.content_hash != self._hash:
            self._book, self._hash = limit_book(snapshot.budget_policy), snapshot.content_hash
        return self._book
