"""The lease ledger over the real stores (embedded sqlite and etcd): grants, settles, overshoot, expiry, CAS."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.budget.grant import grant_size
from controlplane.budget.ledger import Ledger
from controlplane.budget.limits import LimitBook, LimitSpec
from controlplane.store import KV
from interlock_contracts.budget_windows import window_key
from interlock_contracts.v1 import budget_pb2

B = budget_pb2.LEASE_KIND_BUDGET
LIMIT = 1_000_000


class Clock:
    def __init__(self, t: float = 1_795_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def book(limit: int = LIMIT, window: str = "lifetime") -> LimitBook:
    return {(B, "b1"): LimitSpec(B, "b1", limit, window, "UTC", "team", "t1")}


def op(want: int = 0, settled: int = 0, overshoot: int = 0, min_grant: int = 0, window: str = "lifetime",
       limit_id: str = "b1", kind: int = B) -> budget_pb2.LeaseOp:
    return budget_pb2.LeaseOp(kind=kind, limit_id=limit_id, window_key=window, settled_delta=settled,
                              overshoot_delta=overshoot, want_total=want, min_grant=min_grant)


def ledger(kv: KV, clock: Clock, limits: LimitBook | None = None, ttl_s: float = 10.0) -> Ledger:
    lb = limits if limits is not None else book()
    return Ledger(kv, clock=clock, lease_ttl_s=ttl_s, limits=lambda: lb)


def test_grant_size_shares_and_tail() -> None:
    assert grant_size(ask=10**6, available=900, min_grant=0, limit=1000, other_holders=2) == 225
    assert grant_size(ask=10**6, available=900, min_grant=0, limit=1000, other_holders=0) == 450  # not all to one
    assert grant_size(ask=100, available=900, min_grant=0, limit=1000, other_holders=2) == 100
    assert grant_size(ask=10**6, available=40, min_grant=0, limit=1000, other_holders=5) == 40  # tail: all of it
    assert grant_size(ask=10**6, available=300, min_grant=250, limit=1000, other_holders=5) == 250
    assert grant_size(ask=10**6, available=200, min_grant=250, limit=1000, other_holders=0) == 0
    assert grant_size(ask=10**6, available=0, min_grant=0, limit=1000, other_holders=0) == 0


@pytest.mark.integration
async def test_grant_settle_return_and_figures(kv: KV) -> None:
    clock = Clock()
    led = ledger(kv, clock)
    [g] = await led.sync("n1", 1, [op(want=LIMIT)])
    assert g.status == budget_pb2.LEASE_STATUS_OK and g.lease == LIMIT // 2  # the first asker never takes it all
    [g] = await led.sync("n1", 2, [op(want=300_000)])  # asks for less than it holds: returns the difference
    assert (g.lease, g.granted_delta) == (300_000, -200_000)
    [g2] = await led.sync("n2", 1, [op(want=LIMIT)])
    assert g2.lease == 700_000 // 3  # a share of what is left, with n1 active
    [g] = await led.sync("n1", 3, [op(settled=200_000, want=50_000)])  # spent 200k of its lease, keeps 50k
    assert (g.lease, g.settled, g.leased, g.remaining) == (50_000, 200_000, 50_000 + 233_333, 516_667)
    [g2] = await led.sync("n2", 2, [op(want=233_333, min_grant=1)])  # renew at the same size: nothing moves
    assert (g2.lease, g2.granted_delta) == (233_333, 0)
    for seq in range(3, 40):  # n2 keeps asking: it converges on everything n1 does not hold
        [g2] = await led.sync("n2", seq, [op(want=LIMIT)])
    assert g2.lease == LIMIT - 200_000 - 50_000 and g2.remaining == 0


@pytest.mark.integration
async def test_overshoot_is_counted_and_retry_is_applied_once(kv: KV) -> None:
    clock = Clock()
    led = ledger(kv, clock)
    await led.sync("n1", 1, [op(want=1000)])
    [g] = await led.sync("n1", 2, [op(settled=1300, overshoot=400, want=0)])  # 900 in lease, 400 beyond reservations
    [g_retry] = await led.sync("n1", 2, [op(settled=1300, overshoot=400, want=0)])  # same seq: not applied twice
    assert g.settled == g_retry.settled == 1300
    [row] = await led.rows()
    assert row.record.overshoot == 400 and row.record.settled == 1300 and not row.record.leases


def cop(want: int = 0, settled: int = 0, overshoot: int = 0, reserved: int = 0) -> budget_pb2.LeaseOp:
    """A cumulative op (incarnation != 0): settled/overshoot are the holder's lifetime totals."""
    return budget_pb2.LeaseOp(kind=B, limit_id="b1", window_key="lifetime", settled_total=settled,
                              overshoot_total=overshoot, want_total=want, reserved=reserved)


async def _drain(led: Ledger, node: str, seqs: range, inc: int = 7) -> budget_pb2.LeaseGrant:
    for seq in seqs:
        [g] = await led.sync(node, seq, [cop(want=LIMIT)], incarnation=inc)
    return g


@pytest.mark.integration
async def test_expired_lease_is_held_until_a_late_report_reconciles_it(kv: KV) -> None:
    clock = Clock()
    led = Ledger(kv, clock=clock, lease_ttl_s=10, limits=lambda: book(), reconcile_s=30)
    [g] = await led.sync("cut", 1, [cop(want=LIMIT // 2, reserved=1000)], incarnation=5)
    assert g.lease == LIMIT // 2
    clock.t += 10.001  # expired: NOT back in the pool, the cut-off node may have spent it
    g = await _drain(led, "live", range(1, 40))
    assert g.lease == LIMIT // 2 and g.remaining == 0
    [row] = [r for r in await led.rows()]
    assert row.record.stranded["cut@5"].amount == LIMIT // 2 and row.record.reclaimed == 0
    clock.t += 5
    # late report (cumulative: what it spent while cut off) reconciles it: in-flight stays covered, the rest returns
    [late] = await led.sync("cut", 2, [cop(settled=200_000, want=0)], incarnation=5)
    assert late.settled == 200_000 and late.lease == 0
    rec = (await led.rows())[0].record
    assert rec.overshoot == 0 and rec.reclaimed == LIMIT // 2 - 200_000 and not rec.stranded
    g = await _drain(led, "live", range(40, 80))
    assert g.lease == LIMIT - 200_000  # the unspent rest is usable again
    # a retry of the same report (or a later one with the same totals) is never counted twice
    [again] = await led.sync("cut", 3, [cop(settled=200_000, want=0)], incarnation=5)
    assert again.settled == 200_000


@pytest.mark.integration
async def test_crash_and_restart_with_same_id_never_inherits_the_lease(kv: KV) -> None:
    clock = Clock()
    led = Ledger(kv, clock=clock, lease_ttl_s=10, limits=lambda: book(), reconcile_s=30)
    [g] = await led.sync("dp-1", 1, [cop(want=LIMIT // 2, settled=0, reserved=100_000)], incarnation=5)
    assert g.lease == LIMIT // 2
    clock.t += 1  # kill -9; restarted as a new incarnation with the same node id
    [g] = await led.sync("dp-1", 2, [cop(want=LIMIT)], incarnation=6)
    assert 0 < g.lease < LIMIT // 2 and g.leased == LIMIT // 2 + g.lease  # a share of the rest, not the old half
    clock.t += 9.5  # the old lease expires: superseded, so it is resolved at once, presumed spent (an upper bound)
    [g] = await led.sync("dp-1", 3, [cop(want=LIMIT)], incarnation=6)
    rec = (await led.rows())[0].record
    assert rec.settled == LIMIT // 2 and rec.presumed_total == LIMIT // 2 and not rec.stranded
    assert g.remaining + g.leased + g.settled == LIMIT


@pytest.mark.integration
async def test_a_node_of_unknown_fate_is_presumed_to_have_spent_its_lease(kv: KV) -> None:
    clock = Clock()
    led = Ledger(kv, clock=clock, lease_ttl_s=10, limits=lambda: book(), reconcile_s=30)
    await led.sync("gone", 1, [cop(want=LIMIT // 2)], incarnation=5)
    clock.t += 40.01  # expired + reconciliation window, no report
    g = await _drain(led, "live", range(1, 30))
    assert g.settled == LIMIT // 2 and g.lease == LIMIT // 2
    # it was only cut off: its report undoes the presumption (but the pool it freed meanwhile is spoken for)
    [late] = await led.sync("gone", 2, [cop(settled=10_000, want=0)], incarnation=5)
    rec = (await led.rows())[0].record
    assert late.settled == 10_000 and rec.presumed_total == 0 and rec.overshoot == 0


@pytest.mark.integration
async def test_legacy_delta_node_lease_is_held_then_presumed_spent(kv: KV) -> None:
    clock = Clock()
    led = ledger(kv, clock, ttl_s=10)  # reconciliation window defaults to 3 x TTL
    [g] = await led.sync("dead", 1, [op(want=LIMIT // 2)])
    assert g.lease == LIMIT // 2 and g.lease_expires_unix_ms == int(clock.t * 1000) + 10_000
    clock.t += 10.001
    for seq in range(1, 40):
        [g] = await led.sync("live", seq, [op(want=LIMIT)])
    assert g.lease == LIMIT // 2  # expired but still held
    clock.t += 30
    [g] = await led.sync("live", 40, [op(want=LIMIT)])
    assert g.settled == LIMIT // 2 and g.leased + g.remaining == LIMIT // 2  # presumed spent, never re-granted


@pytest.mark.integration
async def test_window_rollover_and_unknown_limits(kv: KV) -> None:
    clock = Clock(1_795_000_000.0)  # 2026-11-18 in UTC
    led = ledger(kv, clock, limits=book(window="day"))
    [g] = await led.sync("n1", 1, [op(want=100, window="2026-11-18")])
    assert g.status == budget_pb2.LEASE_STATUS_OK and g.lease == 100 and g.window_resets_unix_ms == 1_795_046_400_000
    clock.t += 86_400
    [g_old, g_new] = await led.sync("n1", 2, [op(settled=60, window="2026-11-18"), op(want=100, window="2026-11-19")])
    assert g_old.status == budget_pb2.LEASE_STATUS_WINDOW_CLOSED and g_old.lease == 0 and g_old.settled == 60
    assert g_new.status == budget_pb2.LEASE_STATUS_OK and g_new.lease == 100 and g_new.settled == 0
    [g_unknown, g_bad] = await led.sync("n1", 3, [op(want=5, limit_id="gone"), op(want=-1, window="2026-11-19")])
    assert g_unknown.status == budget_pb2.LEASE_STATUS_UNKNOWN_LIMIT
    assert g_bad.status == budget_pb2.LEASE_STATUS_INVALID and "negative" in g_bad.error


@pytest.mark.integration
async def test_two_replicas_racing_never_over_grant(kv: KV, tmp_path, store_prefix: str) -> None:
    """Two Ledger instances (two control-plane replicas) on one store, 12 nodes grabbing concurrently."""
    clock = Clock()
    replicas = [ledger(kv, clock, limits=book(limit=10_000)), ledger(kv, clock, limits=book(limit=10_000))]

    async def node(i: int) -> int:
        held = 0
        for seq in range(1, 6):
            [g] = await replicas[i % 2].sync(f"n{i}", seq, [op(want=held + 2_000, min_grant=1)])
            held = g.lease
        return held

    held = await asyncio.gather(*(node(i) for i in range(12)))
    [row] = await replicas[0].rows()
    assert sum(held) == row.record.leased(int(clock.t * 1000)) == 10_000  # all of it granted, never more


@pytest.mark.integration
async def test_closed_rate_limit_minutes_are_collected(kv: KV) -> None:
    base = 1_795_000_020.0  # a minute boundary
    clock = Clock(base)
    rpm = budget_pb2.LEASE_KIND_REQUESTS
    limits = {(rpm, "r"): LimitSpec(rpm, "r", 100, "minute", "UTC", "team", "t1"), **book()}
    led = ledger(kv, clock, limits=limits)
    for minute in range(3):
        clock.t = base + 60 * minute
        wk = window_key("minute", "UTC", clock.t)
        await led.sync("n1", minute + 1, [op(want=10, settled=5, kind=rpm, limit_id="r", window=wk),
                                          op(want=10, settled=5)])
    clock.t = base + 400  # minute 0 closed 340 s ago (> 300 s kept); minute 1 closed 280 s ago; minute 2 is open
    assert await led.collect() == 1
    left = sorted(r.window_key for r in await led.rows() if r.kind == rpm)
    assert left == [window_key("minute", "UTC", base + 60), window_key("minute", "UTC", base + 120)]
    assert [r.limit_id for r in await led.rows() if r.kind == B] == ["b1"]  # budget windows are history: kept


@pytest.mark.integration
async def test_a_node_with_hundreds_of_leases_syncs_in_one_call(kv: KV) -> None:
    """More leases than etcd allows operations in one transaction (128): applied in chunks, one grant per op."""
    clock = Clock()
    limits = {(B, f"b{i}"): LimitSpec(B, f"b{i}", 1000, "lifetime", "UTC", "key", f"vk_{i}") for i in range(250)}
    led = ledger(kv, clock, limits=limits)
    ops = [op(want=100, limit_id=f"b{i}") for i in range(250)] + [op(want=1, limit_id="b7")]  # one named twice
    grants = await led.sync("n1", 1, ops)
    assert [g.lease for g in grants[:250]] == [100] * 250 and [g.limit_id for g in grants[:3]] == ["b0", "b1", "b2"]
    assert grants[250].status == budget_pb2.LEASE_STATUS_INVALID and "twice" in grants[250].error
    assert len(await led.rows()) == 250


@pytest.mark.integration
async def test_new_incarnation_seen_anywhere_supersedes_the_old_lease(kv: KV) -> None:
    clock = Clock()
    led = Ledger(kv, clock=clock, lease_ttl_s=10, limits=lambda: book(), reconcile_s=60)
    await led.sync("dp-1", 1, [cop(want=LIMIT // 2, reserved=50_000)], incarnation=5)
    clock.t += 1
    assert await led.sync("dp-1", 2, [], incarnation=6) == []  # restarted; announces itself, holds nothing yet
    clock.t += 9.5  # the old lease expired; no need to wait for the reconciliation window
    g = await _drain(led, "other", range(1, 30))
    assert g.settled == LIMIT // 2 and g.lease == LIMIT // 2  # resolved at expiry, not after the 60 s window
    # a control plane restarted meanwhile knows it too (the latest incarnation is in the store)
    led2 = Ledger(kv, clock=clock, lease_ttl_s=10, limits=lambda: book(), reconcile_s=60)
    await led2.sync("dp-2", 1, [], incarnation=1)
    assert led2._latest("dp-1") == 6
