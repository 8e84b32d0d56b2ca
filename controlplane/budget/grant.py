"""The lease rules, as a pure function over one ledger record (no I/O, no clock of its own).

Invariant kept by `apply_op`: settled + sum(unexpired leases) <= limit + overshoot. Grants only ever come out
of `available = limit - settled - leased`; the only way past the limit is spend a node reports beyond what it
reserved (overshoot), which is counted so it can be exported and checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .record import Lease, LedgerRecord, Stranded

TAIL_FRACTION = 20  # when at most 1/20 (5%) of the limit is left, a node may take all of it (up to its ask)
SEQ_MEMORY_MIN_MS = 600_000  # how long a node's last applied seq is remembered (retry window)
PRESUMED_MEMORY_MS = 7 * 86_400_000  # how long a presumption waits for a very late report to correct it


@dataclass(frozen=True, slots=True)
class Op:
    node_id: str  # the lease holder: "node@incarnation" for cumulative reporters, the bare node id for legacy ones
    seq: int
    settled_delta: int = 0
    overshoot_delta: int = 0
    want_total: int = 0
    min_grant: int = 0
    reserved: int = 0
    cumulative: bool = False  # settled_total/overshoot_total are this holder's lifetime figures (deltas ignored)
    settled_total: int = 0
    overshoot_total: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    lease: int
    granted_delta: int
    expires_ms: int  # 0 when the node holds no lease


def invalid_reason(op: Op) -> str:
    """Why an op is malformed, or ""."""
    if min(op.settled_delta, op.overshoot_delta, op.want_total, op.min_grant, op.reserved, op.settled_total,
           op.overshoot_total) < 0:
        return "amounts must not be negative"
    if op.overshoot_delta > op.settled_delta:
        return "overshoot_delta is part of settled_delta, so it cannot exceed it"
    if op.overshoot_total > op.settled_total:
        return "overshoot_total is part of settled_total, so it cannot exceed it"
    return ""


def holder_of(node_id: str, incarnation: int) -> str:
    """The ledger's lease holder: one per process lifetime, so a restarted node never inherits a lease."""
    return f"{node_id}@{incarnation}" if incarnation else node_id


def _superseded(holder: str, rec: LedgerRecord, latest: Callable[[str], int] | None = None) -> bool:
    """A later incarnation of the same node has synced (this record, or, per `latest`, anything): the holder's
    process is gone for good."""
    node, sep, inc = holder.rpartition("@")
    if not sep:
        return False
    if latest is not None and latest(node) > int(inc):
        return True
    for other in rec.seqs:
        o_node, o_sep, o_inc = other.rpartition("@")
        if o_sep and o_node == node and int(o_inc) > int(inc):
            return True
    return False


def grant_size(*, ask: int, available: int, min_grant: int, limit: int, other_holders: int) -> int:
    """How much more lease to give a node that asks for `ask` more.

    A share of what is left (available // (other active nodes + 2): never all of it to the first asker, since
    more nodes may be about to ask) so every node gets some, at least `min_grant`
    (the reservation the node is waiting for), and the whole tail once little is left, so the last few
    percent of a budget are usable rather than fragmented across nodes. Never more than available."""
    if ask <= 0 or available <= 0:
        return 0
    size = max(min_grant, available // (other_holders + 2))
    if available * TAIL_FRACTION <= limit:
        size = available
    size = min(size, ask, available)
    return size if size >= min_grant else 0


def expire(rec: LedgerRecord, now_ms: int, ttl_ms: int, reconcile_ms: int = 0,
           latest: Callable[[str], int] | None = None) -> None:
    """Leases of holders that stopped renewing are NOT returned as unspent: they are stranded (still counted as
    held) until the holder reports late, or `reconcile_ms` after expiry, when the holder is presumed to have
    spent the whole lease (a node never commits more than its lease, so this is an upper bound: what it settled
    unreported plus what it had in flight, which the provider may bill although no client got the answer).
    A holder superseded by a later incarnation of its node (it crashed and restarted: no report can ever come)
    is resolved as soon as its lease expires, without waiting for the window.
    A presumption is undone by a later report from the holder (`apply_op`). Stale retry seqs are forgotten."""
    for node in [n for n, lease in rec.leases.items() if lease.expires_ms <= now_ms]:
        lease = rec.leases.pop(node)
        rec.stranded[node] = Stranded(lease.amount, min(lease.reserved, lease.amount), lease.expires_ms + reconcile_ms)
    for node in list(rec.stranded):
        s = rec.stranded[node]
        dead = _superseded(node, rec, latest)
        if s.until_ms > now_ms and not dead:
            continue
        del rec.stranded[node]
        spent = s.amount
        rec.settled += spent
        rec.presumed_total += spent
        rec.presumed[node] = rec.presumed.get(node, 0) + spent
        rec.reclaimed += s.amount - spent
    keep_ms = max(SEQ_MEMORY_MIN_MS, 10 * ttl_ms, 2 * reconcile_ms)
    for node in [n for n, (_, seen) in rec.seqs.items()
                 if seen + (PRESUMED_MEMORY_MS if n in rec.presumed else keep_ms) < now_ms
                 and n not in rec.leases and n not in rec.stranded]:
        del rec.seqs[node]
        rec.reported.pop(node, None)
        rec.presumed.pop(node, None)


def _deltas(rec: LedgerRecord, op: Op) -> tuple[int, int]:
    """The spend this op adds: its deltas, or (cumulative) what its totals add to the holder's last applied ones."""
    if not op.cumulative:
        return op.settled_delta, op.overshoot_delta
    prev_settled, prev_over = rec.reported.get(op.node_id, (0, 0))
    settled = max(0, op.settled_total - prev_settled)
    over = min(settled, max(0, op.overshoot_total - prev_over))
    rec.reported[op.node_id] = (max(prev_settled, op.settled_total), max(prev_over, op.overshoot_total))
    return settled, over


def apply_op(rec: LedgerRecord, op: Op, *, now_ms: int, ttl_ms: int, current: bool, reconcile_ms: int = 0,
             latest: Callable[[str], int] | None = None) -> Outcome:
    """Apply one node's report and request to `rec` (mutated). `current` = the op's window is the open one;
    for a closed window the spend is recorded and the node's lease returned."""
    expire(rec, now_ms, ttl_ms, reconcile_ms, latest)
    held = rec.leases.get(op.node_id)
    before = held.amount if held else 0
    last = rec.seqs.get(op.node_id)
    if last is None or op.seq > last[0]:
        settled_delta, overshoot_delta = _deltas(rec, op)
        # A late report reconciles an expired lease (or a presumption made for it): its spend is taken from that
        # money first; what the holder still has in flight stays covered, the unspent rest returns to the pool.
        late = 0
        if op.node_id in rec.stranded:
            late = rec.stranded.pop(op.node_id).amount
        elif op.node_id in rec.presumed:
            late = rec.presumed.pop(op.node_id)
            rec.settled -= late
            rec.presumed_total -= late
        cover = before + late
        in_lease = settled_delta - overshoot_delta
        consumed = min(in_lease, cover)
        rec.settled += settled_delta
        rec.overshoot += overshoot_delta + (in_lease - consumed)  # settles for a lease already gone
        rec.seqs[op.node_id] = (op.seq, now_ms)
        own = cover - consumed
        if late:
            kept = min(own, max(op.reserved, before))
            rec.reclaimed += own - kept
            own = kept
    else:
        own = before  # a retry of an applied call: its deltas are already in
        rec.seqs[op.node_id] = (last[0], now_ms)
    if not current or op.want_total <= own:
        new = op.want_total if current else 0
    else:
        held_by_others = sum(x.amount for n, x in rec.leases.items() if n != op.node_id)
        available = rec.limit - rec.settled - held_by_others - sum(x.amount for x in rec.stranded.values()) - own
        # active = holding a lease, or synced recently (it may ask again any moment)
        active = {n for n in rec.leases} | {n for n, (_, seen) in rec.seqs.items() if seen + 3 * ttl_ms > now_ms}
        new = own + grant_size(ask=op.want_total - own, available=available, min_grant=op.min_grant,
                               limit=rec.limit, other_holders=len(active - {op.node_id}))
    if new > 0:
        rec.leases[op.node_id] = Lease(new, now_ms + ttl_ms, min(op.reserved, new))
    else:
        rec.leases.pop(op.node_id, None)
    return Outcome(lease=new, granted_delta=new - before, expires_ms=now_ms + ttl_ms if new > 0 else 0)
