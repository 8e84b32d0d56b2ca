"""Local reserve/settle against leases: all-or-nothing, exact settlement, overshoot, refusals, offline modes.

The lease client is replaced by a stand-in that grants from an in-memory amount, so these tests
exercise the gate and pools alone; tests/e2e/test_budget_cluster.py runs them against the real ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from dataplane.budget.gate import BudgetGate, PoolTable, Ticket
from dataplane.budget.index import BUDGET, CONCURRENCY, REQUESTS, build_index
from dataplane.budget.pool import LedgerView
from dataplane.dialects.anthropic import AnthropicDialect
from dataplane.dialects.base import Dialect, Usage
from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.openai import OpenAIDialect
from dataplane.pricing import Price
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import Route, RuntimeModel, RuntimeProvider
from interlock_contracts.v1 import policy_pb2

NOW = 1_795_000_000.0  # 2026-11-18
PRICE = Price(input_pico=1_000_000, output_pico=2_000_000, cached_pico=1_000_000, version="v")


def snapshot(budgets: list[dict[str, Any]] = (), rates: list[dict[str, Any]] = (), unpriced: list[str] = ()) -> Any:
    s = policy_pb2.PolicySnapshot(version=1)
    s.keys.add(id="vk_a", team_id="eng", user_id="u1", project_id="p1")
    s.keys.add(id="vk_run", team_id="eng", parent_key_id="vk_a")
    s.keys.add(id="vk_other", team_id="ops")
    for b in budgets:
        s.budget_policy.budgets.add(**{"window": "lifetime", "timezone": "UTC", "offline_mode": "safe_share", **b})
    for r in rates:
        s.budget_policy.rate_limits.add(**{"offline_mode": "safe_share", **r})
    s.budget_policy.unpriced_models.extend(unpriced)
    s.budget_policy.unpriced_price.CopyFrom(policy_pb2.Price(input_per_mtok="15", output_per_mtok="75"))
    s.budget_policy.default_max_output_tokens = 32768
    return build_index(s)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class FakeSyncer:
    """Grants up to `available` per pool on every sync; `online` toggles the offline modes."""

    def __init__(self, table: PoolTable, available: int = 0, online: bool = True) -> None:
        self.table = table
        self.available = available
        self.online = online
        self.table.online = online
        self._synced = asyncio.Event()
        self.syncs = 0

    def wake(self) -> None:
        asyncio.get_running_loop().call_soon(self.sync)

    def synced(self) -> asyncio.Event:
        return self._synced

    def sync(self) -> None:
        self.syncs += 1
        for p in self.table.pools.values():
            need = p.reserved + p.spent + p.waiting
            grant = min(max(0, need - p.lease), self.available)
            self.available -= grant
            p.lease += grant
            p.waiting = p.waiting_max = 0
            p.go_online(int(NOW * 1000) + 60_000)
        done, self._synced = self._synced, asyncio.Event()
        done.set()


PROVIDER = RuntimeProvider("p", default_providers()["openai_compatible"], "http://127.0.0.1:9", (), 60.0, "")
ROUTE = Route(RuntimeModel("m", "m", PROVIDER, PRICE, 0), "")


def body(max_tokens: int = 10) -> tuple[bytes, dict[str, Any]]:
    b = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return orjson.dumps(b), b


async def admit(gate: BudgetGate, idx: Any, key: str = "vk_a", tags: dict[str, str] | None = None,
                max_tokens: int = 10, dialect: str = "openai") -> Ticket | None:
    d: Dialect = AnthropicDialect() if dialect == "anthropic" else OpenAIDialect()
    raw, b = body(max_tokens)
    return await gate.admit(idx, key, tags or {}, "m", ROUTE, raw, b, max_tokens, d)


def worst(max_tokens: int = 10) -> int:
    raw, _ = body(max_tokens)
    return (len(raw) + 16) * PRICE.input_pico + max_tokens * PRICE.output_pico


def make(idx_budget: int, available: int, **kw: Any) -> tuple[BudgetGate, PoolTable, FakeSyncer, Clock]:
    table = PoolTable()
    syncer = FakeSyncer(table, available, **kw)
    clock = Clock()
    return BudgetGate(table, clock=clock, wait_s=0.2, syncer=syncer), table, syncer, clock


async def test_budgets_of_key_parent_team_user_project_and_tag_all_apply() -> None:
    idx = snapshot(budgets=[
        {"id": "bk", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15},
        {"id": "bt", "scope": "team", "scope_id": "eng", "limit_pico": 10**15},
        {"id": "bu", "scope": "user", "scope_id": "u1", "limit_pico": 10**15},
        {"id": "bp", "scope": "project", "scope_id": "p1", "limit_pico": 10**15},
        {"id": "btag", "scope": "tag", "scope_id": "task=T-1", "limit_pico": 10**15},
    ])
    assert {b.id for b in idx.budgets_for("vk_a", {"task": "T-1"})} == {"bk", "bt", "bu", "bp", "btag"}
    assert {b.id for b in idx.budgets_for("vk_run", {"task": "T-2"})} == {"bk", "bt"}  # parent key's budget too
    assert idx.budgets_for("vk_other", {"task": "T-1"})[0].id == "btag"


async def test_reserve_is_all_or_nothing_and_settle_bills_actual_cost() -> None:
    idx = snapshot(budgets=[{"id": "big", "scope": "team", "scope_id": "eng", "limit_pico": 10**15},
                            {"id": "small", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, table, syncer, _ = make(0, 10**12)
    t = await admit(gate, idx)
    assert t is not None and {c.spec.id for c in t.claims} == {"big", "small"}
    pools = {c.spec.id: c.pool for c in t.claims}
    assert pools["big"].reserved == pools["small"].reserved == worst()
    gate.settle(t, Usage(input_tokens=4, output_tokens=10, reported=True))
    for p in pools.values():
        assert (p.reserved, p.spent) == (0, 4 * PRICE.input_pico + 10 * PRICE.output_pico)
    # one pool's lease cannot cover the next request: neither pool keeps a reservation
    syncer.available = 0
    pools["small"].lease = pools["small"].spent + worst() - 1
    pools["big"].lease = 10**13
    with pytest.raises(GatewayError) as exc:
        await admit(gate, idx)
    assert exc.value.status == 429 and "small" in exc.value.message
    assert pools["big"].reserved == 0 and pools["small"].reserved == 0
    assert table.refused[(BUDGET, "small")] == 1


async def test_overshoot_is_the_sum_of_excesses_over_reservations() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, table, _, _ = make(0, 10**13)
    excess = 0
    for out in (5, 10, 60, 100):  # reserved for 10 output tokens each
        t = await admit(gate, idx)
        assert t is not None
        reserved = t.claims[0].amount
        actual = 4 * PRICE.input_pico + out * PRICE.output_pico
        excess += max(0, actual - reserved)
        gate.settle(t, Usage(input_tokens=4, output_tokens=out, reported=True))
    assert excess > 0 and table.overshoot[(BUDGET, "b")] == excess
    (pool,) = table.pools.values()
    assert pool.overshoot_total == excess == pool.overshoot


async def test_exhausted_budget_is_refused_at_once_with_402_scope_remaining_and_reset() -> None:
    limit = worst() * 3 // 2
    idx = snapshot(budgets=[{"id": "monthly", "scope": "team", "scope_id": "eng", "limit_pico": limit,
                             "window": "month", "limit_usd": "0.0001"}])
    gate, _, syncer, _ = make(0, limit)
    t = await admit(gate, idx)
    assert t is not None
    gate.settle(t, Usage(input_tokens=100, output_tokens=10, reported=True))
    before = syncer.syncs
    with pytest.raises(GatewayError) as exc:
        await admit(gate, idx)
    err = exc.value
    assert err.status == 402 and syncer.syncs == before  # no wait: spend can only grow within the window
    assert "team 'eng' budget 'monthly' (month 2026-11)" in err.message and "resets 2026-12-01T00:00:00Z" in err.message
    headers = dict(err.headers)
    assert headers["x-interlock-limit-scope"] == "team:eng" and int(headers["retry-after"]) > 0
    oa = orjson.loads(OpenAIDialect().error_body(err.status, err.kind, err.message))
    assert oa["error"]["type"] == "insufficient_quota" and oa["error"]["code"] == "budget_exceeded"
    an = orjson.loads(AnthropicDialect().error_body(err.status, err.kind, err.message))
    assert an["type"] == "error" and an["error"]["type"] == "billing_error"


async def test_lifetime_budget_refusal_says_it_never_resets_and_sends_no_retry_after() -> None:
    idx = snapshot(budgets=[{"id": "key:vk_run", "scope": "key", "scope_id": "vk_run", "limit_pico": worst() - 1}])
    gate, *_ = make(0, 10**15)
    with pytest.raises(GatewayError) as exc:
        await admit(gate, idx, key="vk_run")
    assert exc.value.status == 402 and "never (lifetime budget)" in exc.value.message
    assert "retry-after" not in dict(exc.value.headers)


async def test_waits_for_a_refill_then_admits() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, _table, syncer, _ = make(0, 10**13)
    assert await admit(gate, idx) is not None and syncer.syncs == 1  # an empty pool waited for one sync
    await asyncio.sleep(0)  # the low-water wake-up (lease now empty) runs its sync
    before = syncer.syncs
    t2 = await admit(gate, idx)
    assert t2 is not None and syncer.syncs > before


async def test_rate_limit_refusal_has_openai_and_anthropic_headers() -> None:
    idx = snapshot(rates=[{"id": "rpm", "scope": "key", "scope_id": "vk_a", "requests_per_minute": 2}])
    gate, table, _syncer, _ = make(0, 2)
    for _ in range(2):
        t = await admit(gate, idx)
        assert t is not None
        gate.settle(t, Usage())
    pool = next(p for p in table.pools.values() if p.key.kind == REQUESTS)
    pool.ledger = LedgerView(limit=2, settled=2, leased=0, remaining=0, resets_unix_ms=0)
    pool.lease = pool.spent = 0  # as the control plane acknowledges: spend moved from the lease to settled
    for dialect, prefix in (("openai", "x-ratelimit-"), ("anthropic", "anthropic-ratelimit-")):
        with pytest.raises(GatewayError) as exc:
            await admit(gate, idx, dialect=dialect)
        h = dict(exc.value.headers)
        assert exc.value.status == 429 and "2 requests per minute" in exc.value.message
        assert 1 <= int(h["retry-after"]) <= 60
        if dialect == "openai":
            assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "0"
            assert h["x-ratelimit-reset-requests"].endswith("s")
        else:
            assert h["anthropic-ratelimit-requests-limit"] == "2" and h["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert any(k.startswith(prefix) for k in h)


async def test_concurrency_slots_are_released_not_spent() -> None:
    idx = snapshot(rates=[{"id": "key:vk_run", "scope": "key", "scope_id": "vk_run", "max_concurrent": 2}])
    gate, table, _syncer, _ = make(0, 2)
    a, b = await admit(gate, idx, key="vk_run"), await admit(gate, idx, key="vk_run")
    assert a is not None and b is not None
    with pytest.raises(GatewayError) as exc:
        await admit(gate, idx, key="vk_run")
    assert exc.value.status == 429 and "at most 2 concurrent requests" in exc.value.message
    gate.settle(a, Usage(output_tokens=10))
    pool = next(p for p in table.pools.values() if p.key.kind == CONCURRENCY)
    assert (pool.reserved, pool.spent) == (1, 0)
    assert await admit(gate, idx, key="vk_run") is not None


async def test_offline_modes() -> None:
    idx = snapshot(budgets=[
        {"id": "closed", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15, "offline_mode": "fail_closed"},
    ])
    gate, table, syncer, clock = make(0, 10**13)
    assert await admit(gate, idx) is not None
    syncer.online = False
    for p in table.pools.values():
        p.go_offline(int(clock.now * 1000))
    with pytest.raises(GatewayError) as exc:
        await admit(gate, idx)
    assert exc.value.status == 429 and "fail_closed" in exc.value.message

    idx = snapshot(budgets=[{"id": "share", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, table, syncer, clock = make(0, 10**13)
    assert await admit(gate, idx) is not None
    syncer.online = False
    for p in table.pools.values():
        p.lease += worst()  # headroom granted before the control plane became unreachable
        p.go_offline(int(clock.now * 1000))
    assert await admit(gate, idx) is not None  # safe_share: the unexpired lease is still usable
    clock.now += 61  # lease expired
    with pytest.raises(GatewayError):
        await admit(gate, idx)

    idx = snapshot(budgets=[{"id": "opt", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15,
                             "offline_mode": "optimistic", "optimistic_overshoot_pico": 2 * worst()}])
    gate, table, syncer, clock = make(0, 0, online=False)
    assert await admit(gate, idx) is not None and await admit(gate, idx) is not None  # the bounded extra
    with pytest.raises(GatewayError):
        await admit(gate, idx)


async def test_unpriced_model_is_reserved_at_the_default_price() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**18}], unpriced=["m"])
    free_route_price = Price(0, 0, 0, "")
    assert idx.price_for("m", free_route_price).output_pico == 75_000_000
    gate, *_ = make(0, 10**16)
    raw, b = body(10)
    route = Route(RuntimeModel("m", "m", PROVIDER, free_route_price, 0), "")
    t = await gate.admit(idx, "vk_a", {}, "m", route, raw, b, 10, OpenAIDialect())
    assert t is not None and t.claims[0].amount == (len(raw) + 16) * 15_000_000 + 10 * 75_000_000


async def test_fallback_models_are_covered_and_settled_at_the_served_models_price() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**18}])
    gate, table, *_ = make(0, 10**16)
    dear_price = Price(input_pico=5_000_000, output_pico=50_000_000, cached_pico=5_000_000, version="d")
    dear = RuntimeModel("dear", "dear", PROVIDER, dear_price, 0)
    raw, b = body(10)
    t = await gate.admit(idx, "vk_a", {}, "m", ROUTE, raw, b, 10, OpenAIDialect(), alternatives=[ROUTE.model, dear])
    assert t is not None and t.claims[0].amount == (len(raw) + 16) * 5_000_000 + 10 * 50_000_000
    gate.settle(t, Usage(input_tokens=4, output_tokens=10, reported=True), "dear", dear_price)
    (pool,) = table.pools.values()
    assert pool.spent == 4 * 5_000_000 + 10 * 50_000_000 and pool.overshoot == 0


async def test_low_lease_wakes_the_lease_client_before_anyone_waits() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, table, syncer, _clock = make(0, 10**13)
    t = await admit(gate, idx)  # first request waits for the first grant (exactly its worst case)
    assert t is not None and syncer.syncs == 1
    (pool,) = table.pools.values()
    pool.lease += 3 * worst()  # plenty left: no wake-up
    woken = []
    syncer.wake = lambda: woken.append(1)  # type: ignore[method-assign]
    assert await admit(gate, idx) is not None and not woken
    assert await admit(gate, idx) is not None and not woken
    assert await admit(gate, idx) is not None and woken  # the lease is now too low for one more: refill ahead


async def test_a_waiter_whose_pool_was_dropped_by_a_sync_keeps_asking_through_the_table() -> None:
    idx = snapshot(budgets=[{"id": "b", "scope": "key", "scope_id": "vk_a", "limit_pico": 10**15}])
    gate, table, syncer, _ = make(0, 0)  # the ledger has nothing to give at first
    real_sync = syncer.sync

    def sync_dropping_idle_pools() -> None:
        real_sync()
        for k, p in list(table.pools.items()):
            if p.idle:
                del table.pools[k]  # what the lease client does with a pool holding and owing nothing
        syncer.available = 10**13  # budget handed back by another node meanwhile

    syncer.sync = sync_dropping_idle_pools  # type: ignore[method-assign]
    t = await admit(gate, idx)
    assert t is not None and t.claims[0].pool is next(iter(table.pools.values()))
