"""What the ledger needs to know about each limit, indexed once per published snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

from interlock_contracts.budget_windows import Window, current_window
from interlock_contracts.snapshot_hash import KIND_BUDGET, KIND_RATE
from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import budget_pb2, policy_pb2

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


class LimitLookup(Protocol):
    """What the ledger asks: the spec of one (lease kind, limit id), or None. A LimitBook is one."""

    def get(self, key: tuple[int, str], /) -> LimitSpec | None: ...


def _budget_spec(b: policy_pb2.Budget) -> LimitSpec:
    return LimitSpec(budget_pb2.LEASE_KIND_BUDGET, b.id, b.limit_pico, b.window, b.timezone or "UTC", b.scope,
                     b.scope_id)


def _rate_specs(r: policy_pb2.RateLimit) -> Iterator[LimitSpec]:
    for kind, limit, window in (
        (budget_pb2.LEASE_KIND_REQUESTS, r.requests_per_minute, MINUTE),
        (budget_pb2.LEASE_KIND_TOKENS, r.tokens_per_minute, MINUTE),
        (budget_pb2.LEASE_KIND_CONCURRENCY, r.max_concurrent, "lifetime"),
    ):
        if limit:
            yield LimitSpec(kind, r.id, int(limit), window, "UTC", r.scope, r.scope_id)


def limit_book(policy: policy_pb2.BudgetPolicy) -> LimitBook:
    """Every (lease kind, limit id) a node may ask about under this policy."""
    book: LimitBook = {(budget_pb2.LEASE_KIND_BUDGET, b.id): _budget_spec(b) for b in policy.budgets}
    for r in policy.rate_limits:
        book.update(((spec.kind, spec.limit_id), spec) for spec in _rate_specs(r))
    return book


class StateLimits:
    """Limits looked up in a published SnapshotState's indexed resources, one at a time: O(1) per ask, and
    nothing to rebuild when a key delta changes the state (at 100,000 run keys a rebuilt book cost more than
    the mint itself, issue 16)."""

    def __init__(self, state: SnapshotState):
        self._budgets = state.resources[KIND_BUDGET]
        self._rates = state.resources[KIND_RATE]

    def get(self, key: tuple[int, str], /) -> LimitSpec | None:
        kind, limit_id = key
        if kind == budget_pb2.LEASE_KIND_BUDGET:
            budget = self._budgets.get(limit_id)
            return _budget_spec(cast(policy_pb2.Budget, budget)) if budget is not None else None
        rate = self._rates.get(limit_id)
        if rate is None:
            return None
        return next((s for s in _rate_specs(cast(policy_pb2.RateLimit, rate)) if s.kind == kind), None)


class PublishedLimits:
    """The limits of whatever state is published now (the state is updated in place by key deltas)."""

    def __init__(self, current: Callable[[], SnapshotState | None]):
        self._current = current
        self._empty: LimitBook = {}

    def __call__(self) -> LimitLookup:
        state = self._current()
        return self._empty if state is None else StateLimits(state)
