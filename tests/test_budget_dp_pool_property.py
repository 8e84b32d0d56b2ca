"""Local pools + the control plane's grant rules under any interleaving: spend never exceeds the limit.

Several nodes each hold a LeasePool for one budget and talk to the ledger's pure grant function
(controlplane.budget.grant.apply_op). Hypothesis interleaves reservations, settlements (never above the
reservation), syncs whose request or response is lost (retried with the same seq), reservations made while
a sync is in flight, and node crashes (leases expire after the TTL). Invariants: the spend of every request
ever served stays <= the limit (plus what a crashed node never reported); after each sync, what a node
reserved or spent (also while the sync was in flight) lies within its lease; the ledger's settled lies between
what nodes know they reported and what was served."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controlplane.budget.grant import Op, apply_op
from controlplane.budget.record import LedgerRecord
from dataplane.budget.lease_client import _want
from dataplane.budget.pool import LeasePool, PoolKey

LIMIT = 10_000
TTL = 5_000
NODES = ("a", "b", "c")


@dataclass
class Node:
    pool: LeasePool
    seq: int = 0
    open: list[int] = field(default_factory=list)  # reservations of requests in flight
    sending: tuple[int, int, int] | None = None  # (seq, settled_delta, want) of the sync in flight
    applied: bool = False  # the ledger applied the sync in flight (its response was lost)
    alive: bool = True


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000
        self.rec = LedgerRecord(limit=LIMIT)
        self.nodes = {n: Node(LeasePool(PoolKey(1, "b", "lifetime"))) for n in NODES}
        for node in self.nodes.values():
            node.pool.go_online(self.now + TTL)
        self.served = 0  # actual spend of every request that settled on any node
        self.reported = 0
        self.lost = 0  # spend a crashed node settled but never reported: the ledger cannot know it

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
        node = self.nodes[n]
        if not node.alive or node.sending is not None:
            return
        want = _want(node.pool, self.now, 500)
        settled, _ = node.pool.begin_report(want)
        node.pool.waiting = node.pool.waiting_max = 0
        node.seq += 1
        node.sending = (node.seq, settled, want)

    @rule(n=st.sampled_from(NODES), lose_response=st.booleans(), lose_request=st.booleans())
    def deliver_sync(self, n: str, lose_response: bool, lose_request: bool) -> None:
        node = self.nodes[n]
        if not node.alive or node.sending is None:
            return
        seq, settled, want = node.sending
        if lose_request:
            return  # never reached the ledger; the node retries the same call later
        held = self.rec.leases.get(n)
        kept = held is not None and held.expires_ms > self.now  # the ledger still counts this node's lease
        out = apply_op(self.rec, Op(n, seq, settled, 0, want, 0), now_ms=self.now, ttl_ms=TTL, current=True)
        node.applied = True
        if lose_response:
            return  # applied, but the node does not know: the retry (same seq) must not apply it twice
        if node.pool.in_report:
            self.reported += node.pool.in_report
        node.pool.finish_report(out.lease, None)
        if kept:  # what this node reserved or spent (even while the sync was in flight) is inside its lease
            assert node.pool.reserved + node.pool.spent <= node.pool.lease
        node.pool.go_online(out.expires_ms - 1_000 if out.lease else 0)
        node.sending = None
        node.applied = False

    @rule(ms=st.integers(1, 3_000))
    def tick(self, ms: int) -> None:
        self.now += ms

    @precondition(lambda self: sum(n.alive for n in self.nodes.values()) > 1)
    @rule(n=st.sampled_from(NODES))
    def crash(self, n: str) -> None:
        node = self.nodes[n]
        node.alive = False  # its in-flight requests die with it (never billed in this model)
        self.lost += node.pool.spent - (node.pool.in_report if node.applied else 0)

    @invariant()
    def never_beyond_the_limit(self) -> None:
        # what was spent plus what requests in flight may still spend; a crash can only add what it never reported
        held = sum(n.pool.reserved for n in self.nodes.values() if n.alive)
        assert self.served + held <= LIMIT + self.lost

    @invariant()
    def ledger_settled_is_what_nodes_reported(self) -> None:
        assert self.reported <= self.rec.settled <= self.served


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
