"""Local pools + the control plane's grant rules under any interleaving and fault: the provider never spends
more than the limit plus a documented, modelled bound.

Several nodes each hold a LeasePool for one budget and talk to the ledger's pure grant function
(controlplane.budget.grant.apply_op) with cumulative reports per incarnation (node id + boot epoch).
Hypothesis interleaves reservations, settlements (never above the reservation), syncs whose request or
response is lost (retried with a fresh seq and current totals), reservations made while a sync is in flight,
partitions (a node's syncs fail while it keeps serving from its lease until its own deadline), late reports
after a partition heals, crashes (kill -9: the requests in flight are still answered by the provider, in full)
and restarts with the same node id (a new incarnation).

Provider-side spend is modelled independently of the ledger: every settled request, plus every request a
crashed node had in flight (billed in full). Invariant: provider spend (+ what live nodes may still spend)
<= limit, with no allowance for anything: crashes, partitions, lost responses, retries and late reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controlplane.budget.grant import Op, apply_op, holder_of
from controlplane.budget.record import LedgerRecord
from dataplane.budget.lease_client import _want
from dataplane.budget.pool import LeasePool, PoolKey

LIMIT = 10_000
TTL = 5_000
GUARD = 1_000
RECONCILE = 10_000
NODES = ("a", "b", "c")


@dataclass
class Node:
    pool: LeasePool
    incarnation: int = 1
    seq: int = 0
    open: list[int] = field(default_factory=list)  # reservations of requests in flight
    sending: tuple[int, int, int, int] | None = None  # (seq, settled_total, overshoot_total, want) in flight
    applied: bool = False  # the ledger applied the sync in flight (its response was lost)
    alive: bool = True
    partitioned: bool = False

    @property
    def holder(self) -> str:
        return holder_of(NODE_IDS[id(self)], self.incarnation)


NODE_IDS: dict[int, str] = {}


def _pool() -> LeasePool:
    return LeasePool(PoolKey(1, "b", "lifetime"))


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000
        self.rec = LedgerRecord(limit=LIMIT)
        self.nodes = {n: Node(_pool()) for n in NODES}
        for n, node in self.nodes.items():
            NODE_IDS[id(node)] = n
        self.served = 0  # provider-side spend: every settled request + what crashed nodes had in flight
        self.reported = 0  # spend the nodes know the ledger applied

    @rule(n=st.sampled_from(NODES), amount=st.integers(1, 1500))
    def reserve(self, n: str, amount: int) -> None:
        node = self.nodes[n]
        if node.alive and node.pool.available(self.now) >= amount:
            node.pool.take(amount)
            node.open.append(amount)
        elif node.alive:
            node.pool.waiting += amount
            node.pool.waiting_max = max(node.pool.waiting_max, amount)

    @rule(n=st.sampled_from(NODES), data=st.data())
    def settle(self, n: str, data: st.DataObject) -> None:
        node = self.nodes[n]
        if not node.alive or not node.open:
            return
        reserved = node.open.pop(data.draw(st.integers(0, len(node.open) - 1)))
        actual = data.draw(st.integers(0, reserved))
        node.pool.settle(reserved, actual)
        self.served += actual

    @rule(n=st.sampled_from(NODES))
    def start_sync(self, n: str) -> None:
        """A new sync, or the retry of one whose outcome is unknown: always current totals, a fresh seq."""
        node = self.nodes[n]
        if not node.alive:
            return
        want = _want(node.pool, self.now, 500)
        settled, over = node.pool.begin_report(want)
        node.pool.waiting = node.pool.waiting_max = 0
        node.seq += 1
        node.sending = (node.seq, settled, over, want)

    @rule(n=st.sampled_from(NODES), lose_response=st.booleans(), lose_request=st.booleans())
    def deliver_sync(self, n: str, lose_response: bool, lose_request: bool) -> None:
        node = self.nodes[n]
        if not node.alive or node.sending is None:
            return
        seq, settled, over, want = node.sending
        if lose_request or node.partitioned:
            node.pool.go_offline(self.now)  # never reached the ledger; the node retries later
            return
        held = self.rec.leases.get(node.holder)
        kept = held is not None and held.expires_ms > self.now  # the ledger still counts this node's lease
        op = Op(node.holder, seq, want_total=want, reserved=node.pool.reserved, cumulative=True,
                settled_total=settled, overshoot_total=over)
        out = apply_op(self.rec, op, now_ms=self.now, ttl_ms=TTL, current=True, reconcile_ms=RECONCILE)
        node.applied = True
        if lose_response:
            node.pool.go_offline(self.now)
            return  # applied, but the node does not know: its next attempt must not count it twice
        self.reported += node.pool.in_report
        node.pool.finish_report(out.lease, None)
        if kept:  # what this node reserved or spent (even while the sync was in flight) is inside its lease
            assert node.pool.reserved + node.pool.spent <= node.pool.lease
        node.pool.go_online(out.expires_ms - GUARD if out.lease else 0)
        node.sending = None
        node.applied = False

    @rule(ms=st.integers(1, 3_000))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule(n=st.sampled_from(NODES))
    def partition(self, n: str) -> None:
        self.nodes[n].partitioned = not self.nodes[n].partitioned  # cut, or healed (then reports late)

    @precondition(lambda self: sum(n.alive for n in self.nodes.values()) > 1)
    @rule(n=st.sampled_from(NODES))
    def crash(self, n: str) -> None:
        """kill -9: the provider still answers (and bills) every request in flight, in full."""
        node = self.nodes[n]
        if not node.alive:
            return
        node.alive = False
        if node.applied:  # its last report was applied although it never learnt so
            self.reported += node.pool.in_report
        self.served += sum(node.open)
        node.open.clear()

    @rule(n=st.sampled_from(NODES))
    def restart_same_id(self, n: str) -> None:
        node = self.nodes[n]
        if node.alive:
            return
        fresh = Node(_pool(), incarnation=node.incarnation + 1)
        NODE_IDS[id(fresh)] = n
        self.nodes[n] = fresh

    @invariant()
    def provider_spend_within_the_limit(self) -> None:
        held = sum(n.pool.reserved for n in self.nodes.values() if n.alive)
        assert self.served + held <= LIMIT

    @invariant()
    def ledger_never_forgets_reported_spend(self) -> None:
        assert self.reported <= self.rec.settled


LeaseMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_lease_machine = LeaseMachine.TestCase


def test_reservations_made_while_a_sync_hands_lease_back_stay_inside_the_new_lease() -> None:
    """The race the pool's `floor` exists for: an idle node asks to keep less (returning headroom) and, while
    that call is in flight, admits a request; the control plane then shrinks the lease to what was asked."""
    m = LeaseMachine()
    pool = m.nodes["a"].pool
    m.reserve("a", 1000)  # nothing held yet: it waits
    m.start_sync("a")
    m.deliver_sync("a", lose_response=False, lose_request=False)
    m.reserve("a", 1000)
    pool.settle(m.nodes["a"].open.pop(), 500)
    m.served += 500
    m.tick(600)
    m.start_sync("a")  # busy: asks for headroom
    m.deliver_sync("a", lose_response=False, lose_request=False)
    assert pool.lease > 1000
    m.tick(600)
    m.start_sync("a")  # idle for a tick: asks to keep 0
    assert pool.available(m.now) == 0  # so nothing may be admitted against the part being handed back
    m.reserve("a", 1000)
    assert pool.reserved == 0 and pool.waiting == 1000
    m.deliver_sync("a", lose_response=False, lose_request=False)  # asserts reserved + spent <= lease inside


def _online(m: LeaseMachine, n: str) -> None:
    m.start_sync(n)
    m.deliver_sync(n, lose_response=False, lose_request=False)


def test_cut_off_node_spends_its_lease_and_the_ledger_does_not_grant_it_again() -> None:
    """The mechanism behind 1.1-1.2x the budget: a cut-off node spends its lease; the ledger must not hand the
    expired lease to others as unspent, and the late report (current totals) reconciles it exactly."""
    m = LeaseMachine()
    for _ in range(3):
        m.reserve("a", 1500)
        _online(m, "a")
    spent_by_a = 0
    while m.nodes["a"].pool.available(m.now) >= 1000:
        m.reserve("a", 1000)
    m.partition("a")
    for _ in range(len(m.nodes["a"].open)):
        reserved = m.nodes["a"].open.pop()
        m.nodes["a"].pool.settle(reserved, reserved)
        m.served += reserved
        spent_by_a += reserved
    m.start_sync("a")
    m.deliver_sync("a", lose_response=False, lose_request=False)  # fails: cut off
    m.tick(TTL + 1)  # a's lease expired in the ledger
    for _ in range(20):  # b and c drain whatever the ledger will grant
        for n in ("b", "c"):
            m.reserve(n, 1000)
            _online(m, n)
            for reserved in list(m.nodes[n].open):
                m.nodes[n].open.remove(reserved)
                m.nodes[n].pool.settle(reserved, reserved)
                m.served += reserved
    assert spent_by_a > 0 and m.served <= LIMIT
    m.partition("a")  # healed: the retry carries the current totals
    _online(m, "a")
    assert m.rec.settled == m.served and m.rec.overshoot == 0
