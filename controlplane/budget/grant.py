"""The lease rules, as a pure function over one ledger record (no I/O, no clock of its own).

Invariant kept by `apply_op`: settled + sum(unexpired leases) <= limit + overshoot. Grants only ever come out
of `available = limit - settled - leased`; the only way past the limit is spend a node reports beyond what it
reserved (overshoot), which is counted so it can be exported and checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from .record import Lease, LedgerRecord

TAIL_FRACTION = 20  # when at most 1/20 (5%) of the limit is left, a node may take all of it (up to its ask)
SEQ_MEMORY_MIN_MS = 600_000  # how long a node's last applied seq is remembered (retry window)


@dataclass(frozen=True, slots=True)
class Op:
    node_id: str
    seq: int
    settled_delta: int = 0
    overshoot_delta: int = 0
    want_total: int = 0
    min_grant: int = 0
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    lease: int
    granted_delta: int
    expires_ms: int  # 0 when the node holds no lease


def invalid_reason(op: Op) -> str:
    """Why an op is malformed, or ""."""
    if min(op.settled_delta, op.overshoot_delta, op.want_total, op.min_grant, op.reserved) < 0:
        return "amounts must not be negative"
    if op.overshoot_delta > op.settled_delta:
        return "overshoot_delta is part of settled_delta, so it cannot exceed it"
    return ""


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


def expire(rec: LedgerRecord, now_ms: int, ttl_ms: int) -> None:
    """Return the leases of nodes that stopped renewing to the pool; forget stale retry sequence numbers."""
    for node in [n for n, lease in rec.leases.items() if lease.expires_ms <= now_ms]:
        rec.reclaimed += rec.leases.pop(node).amount
    keep_ms = max(SEQ_MEMORY_MIN_MS, 10 * ttl_ms)
    for node in [n for n, (_, seen) in rec.seqs.items() if seen + keep_ms < now_ms and n not in rec.leases]:
        del rec.seqs[node]


def apply_op(rec: LedgerRecord, op: Op, *, now_ms: int, ttl_ms: int, current: bool) -> Outcome:
    """Apply one node's report and request to `rec` (mutated). `current` = the op's window is the open one;
    for a closed window the spend is recorded and the node's lease returned."""
    expire(rec, now_ms, ttl_ms)
    held = rec.leases.get(op.node_id)
    before = held.amount if held else 0
    last = rec.seqs.get(op.node_id)
    if last is None or op.seq > last[0]:
        in_lease = op.settled_delta - op.overshoot_delta
        consumed = min(in_lease, before)
        rec.settled += op.settled_delta
        rec.overshoot += op.overshoot_delta + (in_lease - consumed)  # settles for a lease already gone
        rec.seqs[op.node_id] = (op.seq, now_ms)
        own = before - consumed
    else:
        own = before  # a retry of an applied call: its deltas are already in
        rec.seqs[op.node_id] = (last[0], now_ms)
    if not current or op.want_total <= own:
        new = op.want_total if current else 0
    else:
        available = rec.limit - rec.settled - sum(x.amount for n, x in rec.leases.items() if n != op.node_id) - own
        # active = holding a lease, or synced recently (it may ask again any moment)
        active = {n for n in rec.leases} | {n for n, (_, seen) in rec.seqs.items() if seen + 3 * ttl_ms > now_ms}
        new = own + grant_size(ask=op.want_total - own, available=available, min_grant=op.min_grant,
                               limit=rec.limit, other_holders=len(active - {op.node_id}))
    if new > 0:
        rec.leases[op.node_id] = Lease(new, now_ms + ttl_ms, min(op.reserved, new))
    else:
        rec.leases.pop(op.node_id, None)
    return Outcome(lease=new, granted_delta=new - before, expires_ms=now_ms + ttl_ms if new > 0 else 0)
