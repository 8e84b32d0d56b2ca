"""Property-based state machine over the real ledger: nodes reserve, settle, sync (renew/return), retry, crash,
and time passes (leases expire), in any interleaving, with two control-plane replicas on one store.

Invariants after every step (the budget's "reserved" is in-use lease, "leased" is lease in total):
- settled + sum(unexpired leases) <= limit + overshoot, where overshoot is exactly what nodes reported beyond their
  reservations plus settles that arrived after their lease was reclaimed (and 0 if neither happened);
- every live node's local reservations plus unreported in-lease spend fit inside the lease the ledger holds for it;
- the ledger's settled spend equals the sum of the settles nodes got acknowledged (retries are applied once)
  plus the spend it presumes for leases that expired and were never reported on (a lease is presumed spent in
  full, an upper bound; a late report replaces the presumption with what was reported);
- draining: once nodes return their leases and crashed nodes' leases expire, everything unspent is grantable again.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controlplane.budget.ledger import Ledger
from controlplane.budget.limits import LimitSpec
from controlplane.store import KV, open_store
from interlock_contracts.v1 import budget_pb2

B = budget_pb2.LEASE_KIND_BUDGET
LIMIT = 10_000
TTL_S = 10.0
NODES = ("n0", "n1", "n2")
ASKS = st.one_of(st.sampled_from([0, 1, LIMIT // 3, LIMIT // 2, LIMIT]), st.integers(0, LIMIT))  # edges + spread


@dataclass
class Node:
    seq: int
    lease: int = 0               # as last acknowledged by the ledger
    expires_ms: int = 0
    reserved: list[int] = field(default_factory=list)
    settled_unreported: int = 0
    overshoot_unreported: int = 0
    last_request: budget_pb2.LeaseOp | None = None  # for retries with the same seq
    lost_lease_with_reservations: bool = False

    @property
    def consumed(self) -> int:
        """In-lease part of settles not yet acknowledged (each settle consumes min(actual, reserved))."""
        return self.settled_unreported - self.overshoot_unreported

    def free(self, now_ms: int) -> int:
        return self.lease - sum(self.reserved) - self.consumed if now_ms < self.expires_ms else 0


class LedgerMachine(RuleBasedStateMachine):
    store_url: str | None = None  # None = embedded sqlite in a temp dir

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        url = self.store_url or f"sqlite:///{self.tmp.name}/ledger.db"
        self.kv: KV = open_store(url, f"/prop-{os.urandom(6).hex()}")
        self.now = 1_795_000_000.0
        spec = {(B, "b"): LimitSpec(B, "b", LIMIT, "lifetime", "UTC", "team", "t")}
        self.replicas = [Ledger(self.kv, clock=lambda: self.now, lease_ttl_s=TTL_S, limits=lambda: spec)
                         for _ in range(2)]
        self.nodes = {n: Node(seq=1) for n in NODES}
        self.acked_settled = 0
        self.leased_total = 0  # every lease increase the ledger acknowledged, summed: what could be presumed spent
        self.reported_overshoot = 0
        self.late_possible = False

    def teardown(self) -> None:
        self.loop.run_until_complete(self.kv.close())
        self.loop.close()
        self.tmp.cleanup()

    @property
    def now_ms(self) -> int:
        return int(self.now * 1000)

    def _record(self):  # type: ignore[no-untyped-def]
        rows = self.loop.run_until_complete(self.replicas[0].rows())
        return rows[0].record if rows else None

    def _op(self, node: Node, extra: int, min_grant: int) -> budget_pb2.LeaseOp:
        return budget_pb2.LeaseOp(
            kind=B, limit_id="b", window_key="lifetime", settled_delta=node.settled_unreported,
            overshoot_delta=node.overshoot_unreported, want_total=sum(node.reserved) + extra, min_grant=min_grant,
        )

    async def _sync(self, name: str, op: budget_pb2.LeaseOp, replica: int, seq: int) -> None:
        node = self.nodes[name]
        [g] = await self.replicas[replica].sync(name, seq, [op])
        assert g.status == budget_pb2.LEASE_STATUS_OK
        if node.last_request is None:  # first delivery of these deltas (a retry re-acknowledges the same ones)
            self.acked_settled += op.settled_delta
            self.reported_overshoot += op.overshoot_delta
        node.last_request = op
        node.settled_unreported -= op.settled_delta
        node.overshoot_unreported -= op.overshoot_delta
        # in-flight reservations are covered again only if they fit in what the ledger now holds for the node
        node.lost_lease_with_reservations = sum(node.reserved) + node.consumed > g.lease
        self.late_possible |= node.lost_lease_with_reservations
        self.leased_total += max(0, g.lease - node.lease)
        node.lease, node.expires_ms = g.lease, g.lease_expires_unix_ms

    def _prepare(self, name: str) -> int:
        node = self.nodes[name]
        node.seq += 1
        node.last_request = None
        return node.seq

    @rule(name=st.sampled_from(NODES), extra=ASKS, min_grant=st.sampled_from([0, 0, 1, 500, 2_000]),
          replica=st.integers(0, 1))
    def sync(self, name: str, extra: int, min_grant: int, replica: int) -> None:
        seq = self._prepare(name)
        self.loop.run_until_complete(self._sync(name, self._op(self.nodes[name], extra, min_grant), replica, seq))

    @rule(extras=st.lists(ASKS, min_size=3, max_size=3))
    def concurrent_syncs(self, extras: list[int]) -> None:
        """All nodes at once through both replicas: real CAS conflicts on the one record."""
        seqs = {n: self._prepare(n) for n in NODES}
        ops = {n: self._op(self.nodes[n], x, 0) for n, x in zip(NODES, extras, strict=True)}

        async def go() -> None:
            await asyncio.gather(*(self._sync(n, ops[n], i % 2, seqs[n]) for i, n in enumerate(NODES)))

        self.loop.run_until_complete(go())

    @precondition(lambda self: any(n.last_request is not None for n in self.nodes.values()))
    @rule(name=st.sampled_from(NODES))
    def retry_last_sync(self, name: str) -> None:
        """The response of the last call was lost; the node re-sends it with the same seq."""
        node = self.nodes[name]
        if node.last_request is None:
            return
        op = node.last_request
        # the deltas were already subtracted locally; re-add so _sync's bookkeeping nets to zero
        node.settled_unreported += op.settled_delta
        node.overshoot_unreported += op.overshoot_delta
        self.loop.run_until_complete(self._sync(name, op, 1, node.seq))

    @rule(name=st.sampled_from(NODES), amount=st.integers(1, 3_000))
    def reserve(self, name: str, amount: int) -> None:
        node = self.nodes[name]
        if amount <= node.free(self.now_ms):
            node.reserved.append(amount)

    @rule(name=st.sampled_from(NODES), pick=st.integers(0, 100), ratio=st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.5]))
    def settle(self, name: str, pick: int, ratio: float) -> None:
        node = self.nodes[name]
        if not node.reserved:
            return
        r = node.reserved.pop(pick % len(node.reserved))
        actual = int(r * ratio)
        node.settled_unreported += actual
        node.overshoot_unreported += max(0, actual - r)

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 11.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes.values():
            if sum(node.reserved) + node.consumed > 0 and node.expires_ms <= self.now_ms:
                # not renewed in time (a partition, in real life): the ledger reclaims the lease while requests
                # are still in flight; their settles arrive late and are counted as overshoot
                node.lost_lease_with_reservations = True
                self.late_possible = True

    @rule(name=st.sampled_from(NODES))
    def crash(self, name: str) -> None:
        """kill -9: reservations and unreported spend vanish; it restarts with a fresh, higher seq."""
        self.nodes[name] = Node(seq=self.nodes[name].seq + 1_000)

    @invariant()
    def ledger_and_nodes_agree(self) -> None:
        rec = self._record()  # one read per step keeps examples cheap, so more interleavings get explored
        self._nodes_stay_inside_their_leases(rec)
        if rec is None:
            return
        assert rec.settled + rec.leased(self.now_ms) <= rec.limit + rec.overshoot
        assert rec.settled == self.acked_settled + rec.presumed_total
        assert rec.presumed_total <= self.leased_total  # nothing presumed beyond what was ever leased
        assert rec.overshoot >= self.reported_overshoot
        if not self.late_possible:
            assert rec.overshoot == self.reported_overshoot

    def _nodes_stay_inside_their_leases(self, rec) -> None:  # type: ignore[no-untyped-def]
        for name, node in self.nodes.items():
            in_use = sum(node.reserved) + node.consumed
            if node.lost_lease_with_reservations or in_use == 0:
                continue
            held = rec.leases.get(name) if rec else None
            assert held is not None and held.expires_ms > self.now_ms, f"{name} uses {in_use} without a lease"
            assert in_use <= held.amount

    @rule()
    def drain_and_reuse(self) -> None:
        """Everyone settles and returns; crashed nodes' leases expire; the unspent rest is grantable in full."""
        for name, node in self.nodes.items():
            node.settled_unreported += sum(node.reserved)
            node.reserved.clear()
            seq = self._prepare(name)
            self.loop.run_until_complete(self._sync(name, self._op(node, 0, 0), 0, seq))
        self.now += 3 * TTL_S + 0.001  # crashed nodes' leases expired, and nobody counts as active any more
        rec = self._record()
        expected = max(0, rec.limit - rec.settled) if rec else LIMIT
        fresh = f"fresh-{os.urandom(3).hex()}"
        for seq in range(1, 12):  # half of what is left per ask, then the whole tail: converges in a few asks
            [g] = self.loop.run_until_complete(self.replicas[1].sync(fresh, seq, [
                budget_pb2.LeaseOp(kind=B, limit_id="b", window_key="lifetime", want_total=LIMIT)]))
        assert g.lease == expected
        self.loop.run_until_complete(self.replicas[1].sync(fresh, 12, [
            budget_pb2.LeaseOp(kind=B, limit_id="b", window_key="lifetime", want_total=0)]))


LedgerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerSqlite = LedgerMachine.TestCase


@pytest.mark.integration
def test_ledger_state_machine_on_etcd(etcd_url: str) -> None:
    """Fewer examples against a real etcd: same rules, real transactions."""

    class EtcdLedgerMachine(LedgerMachine):
        store_url = etcd_url

    EtcdLedgerMachine.TestCase.settings = settings(
        max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    EtcdLedgerMachine.TestCase("runTest").runTest()
