"""The authoritative budget ledger: lease Sync calls applied to the store with compare-and-swap.

One Sync (one node, many ops) is one store transaction per up to TXN_OPS leases, guarded on the mod revision of
every record it touches, so two control-plane replicas (or two nodes racing on one budget) can never both grant the same
money: the loser gets Conflict, re-reads and re-applies. The grant rules themselves are in `grant`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from interlock_contracts.v1 import budget_pb2

from ..errors import Conflict, ControlPlaneError
from ..store.base import KV, Entry
from .grant import Op, apply_op, expire, holder_of, invalid_reason
from .limits import LimitLookup
from .record import KIND_NAMES, LEDGER, LedgerRecord, ledger_key, parse_ledger_key

log = logging.getLogger(__name__)
WINDOW_KEY_RE = re.compile(r"^[0-9A-Za-z:TZW-]{1,32}$")
SYNC_ATTEMPTS = 30  # contention between nodes on one hot budget is expected; each retry re-reads fresh state
NODES = "budget-nodes/"  # {node_id} -> latest incarnation (outside budget/: not a ledger record)
TXN_OPS = 100  # leases per transaction: etcd allows 128 operations per transaction by default


@dataclass(frozen=True)
class LedgerRow:
    """One record as read for visibility: which limit, which window, and its figures."""

    kind: int
    limit_id: str
    window_key: str
    record: LedgerRecord


class Ledger:
    def __init__(self, kv: KV, *, clock: Callable[[], float], lease_ttl_s: float, limits: Callable[[], LimitLookup],
                 reconcile_s: float | None = None):
        if lease_ttl_s <= 0:
            raise ValueError("the budget lease TTL must be more than 0 s (INTERLOCK_BUDGET_LEASE_TTL_S)")
        self._kv = kv
        self._clock = clock
        self._ttl_ms = int(lease_ttl_s * 1000)
        # How long an expired lease waits for its holder's late report before a presumption is made (grant.expire)
        self._reconcile_ms = int((3 * lease_ttl_s if reconcile_s is None else reconcile_s) * 1000)
        self._limits = limits
        self._incarnations: dict[str, int] | None = None  # node id -> latest incarnation seen (loaded lazily)
        self._next_collect = 0.0
        self._collecting: asyncio.Task[None] | None = None

    @property
    def lease_ttl_ms(self) -> int:
        return self._ttl_ms

    @property
    def reconcile_ms(self) -> int:
        return self._reconcile_ms

    async def sync(self, node_id: str, seq: int, ops: Sequence[budget_pb2.LeaseOp],
                   incarnation: int = 0) -> list[budget_pb2.LeaseGrant]:
        """Apply one node's batch; one grant per op, same order. Each run of up to TXN_OPS leases is one
        transaction (etcd caps operations per transaction), retried on a lost CAS race. With an incarnation the
        holder is node_id@incarnation and the ops carry cumulative totals (grant.apply_op)."""
        holder = holder_of(node_id, incarnation)
        cumulative = incarnation != 0
        if incarnation:
            await self._note_incarnation(node_id, incarnation)
        seen: set[str] = set()
        reasons = [self._check(op, seen) for op in ops]
        grants = [budget_pb2.LeaseGrant(kind=op.kind, limit_id=op.limit_id, window_key=op.window_key) for op in ops]
        for i, why in enumerate(reasons):
            if why:
                grants[i].status, grants[i].error = budget_pb2.LEASE_STATUS_INVALID, why
        valid = [i for i, why in enumerate(reasons) if not why]
        for start in range(0, len(valid), TXN_OPS):
            chunk = valid[start:start + TXN_OPS]
            for attempt in range(SYNC_ATTEMPTS):
                try:
                    applied = await self._apply(holder, seq, [ops[i] for i in chunk], cumulative)
                    break
                except Conflict:
                    if attempt + 1 == SYNC_ATTEMPTS:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # de-synchronise racing writers
            for i, grant in zip(chunk, applied, strict=True):
                grants[i] = grant
        return grants

    def _latest(self, node_id: str) -> int:
        return (self._incarnations or {}).get(node_id, 0)

    async def _note_incarnation(self, node_id: str, incarnation: int) -> None:
        """Remember the newest incarnation of every node (in the store, so a restarted control plane knows too):
        a lease of an older one can never be reported on again, so it is reconciled as soon as it expires."""
        if self._incarnations is None:
            entries, _ = await self._kv.get_prefix(NODES)
            self._incarnations = {k.removeprefix(NODES): int(e.value) for k, e in entries.items() if e.value.isdigit()}
        if incarnation > self._incarnations.get(node_id, 0):
            self._incarnations[node_id] = incarnation
            await self._kv.commit({f"{NODES}{node_id}": str(incarnation).encode()})

    def _check(self, op: budget_pb2.LeaseOp, seen: set[str]) -> str:
        if op.kind not in (budget_pb2.LEASE_KIND_BUDGET, budget_pb2.LEASE_KIND_REQUESTS, budget_pb2.LEASE_KIND_TOKENS,
                           budget_pb2.LEASE_KIND_CONCURRENCY):
            return "unknown lease kind"
        if not WINDOW_KEY_RE.match(op.window_key) or not op.limit_id or "/" in op.limit_id:
            return "malformed limit_id or window_key"
        key = ledger_key(op.kind, op.limit_id, op.window_key)
        if key in seen:
            return "the same lease is named twice in one call"
        seen.add(key)
        if op.kind == budget_pb2.LEASE_KIND_CONCURRENCY and op.settled_delta:
            return "concurrency slots are never settled: return them by lowering want_total"
        return invalid_reason(_op("", 0, op, cumulative=True))

    async def _apply(self, node_id: str, seq: int, ops: Sequence[budget_pb2.LeaseOp],
                     cumulative: bool) -> list[budget_pb2.LeaseGrant]:
        """Read, apply and commit (guarded on every record's revision) valid ops naming distinct records."""
        now_s = self._clock()
        now_ms = int(now_s * 1000)
        book = self._limits()
        keys = [ledger_key(op.kind, op.limit_id, op.window_key) for op in ops]
        stored: dict[str, Entry | None] = dict(zip(keys, await asyncio.gather(*map(self._kv.get, keys)), strict=True))
        puts: dict[str, bytes] = {}
        guards: dict[str, int] = {}
        grants: list[budget_pb2.LeaseGrant] = []
        for op, key in zip(ops, keys, strict=True):
            grant = budget_pb2.LeaseGrant(kind=op.kind, limit_id=op.limit_id, window_key=op.window_key)
            grants.append(grant)
            entry = stored[key]
            spec = book.get((op.kind, op.limit_id))
            if spec is None and entry is None:
                grant.status = budget_pb2.LEASE_STATUS_UNKNOWN_LIMIT
                grant.error = "no such budget or rate limit in the current policy"
                continue
            rec = LedgerRecord.decode(entry.value) if entry else LedgerRecord(limit=spec.limit if spec else 0)
            window = spec.window_at(now_s) if spec else None
            current = spec is not None and window is not None and window.key == op.window_key
            if current and spec is not None:
                rec.limit = spec.limit  # a changed limit applies from the next grant on
            out = apply_op(rec, _op(node_id, seq, op, cumulative), now_ms=now_ms, ttl_ms=self._ttl_ms, current=current,
                           reconcile_ms=self._reconcile_ms, latest=self._latest)
            if entry is not None or rec.settled or rec.leases:  # idle asks create no empty records
                puts[key] = rec.encode()
                guards[key] = entry.mod_revision if entry else 0
            if spec is None:
                grant.status = budget_pb2.LEASE_STATUS_UNKNOWN_LIMIT
                grant.error = "no such budget or rate limit in the current policy; spend recorded, lease returned"
            elif not current:
                grant.status = budget_pb2.LEASE_STATUS_WINDOW_CLOSED
                grant.error = f"window {op.window_key!r} is not the current one; spend recorded, lease returned"
            self._fill(grant, rec, out.lease, out.granted_delta, out.expires_ms, now_ms)
            if window is not None:
                grant.window_resets_unix_ms = window.reset_unix_ms
        if puts:
            await self._kv.commit(puts, if_revision_of=guards)
        return grants

    @staticmethod
    def _fill(grant: budget_pb2.LeaseGrant, rec: LedgerRecord, lease: int, delta: int, expires_ms: int,
              now_ms: int) -> None:
        grant.lease, grant.granted_delta, grant.lease_expires_unix_ms = lease, delta, expires_ms
        grant.limit, grant.settled = rec.limit, rec.settled
        grant.leased = rec.leased(now_ms)
        grant.remaining = rec.remaining(now_ms)

    async def collect(self, keep_s: float = 300.0) -> int:
        """Delete rate-limit records of minute windows that closed more than `keep_s` ago and hold no live lease
        (one record per limit per minute would otherwise pile up forever). Budget windows are kept as history.
        Each delete is guarded on the record's revision, so a late Sync wins over the collector."""
        now_s = self._clock()
        now_ms = int(now_s * 1000)
        deleted = 0
        for kind in (budget_pb2.LEASE_KIND_REQUESTS, budget_pb2.LEASE_KIND_TOKENS):
            prefix = f"{LEDGER}{KIND_NAMES[kind]}/"
            entries, _ = await self._kv.get_prefix(prefix)
            for key, entry in entries.items():
                parsed = parse_ledger_key(key)
                start = _minute_start_s(parsed[2]) if parsed else None
                if start is None or start + 60 + keep_s > now_s:
                    continue
                try:
                    if LedgerRecord.decode(entry.value).leased(now_ms):
                        continue
                    await self._kv.commit({}, [key], if_revision_of={key: entry.mod_revision})
                    deleted += 1
                except Conflict:
                    continue  # written meanwhile: keep it this round
                except (ValueError, KeyError, TypeError):
                    log.warning("leaving unreadable ledger record %s", key)
        return deleted

    def maybe_collect(self, every_s: float = 60.0) -> None:
        """Start `collect` in the background at most every `every_s` (called from Sync: no timer task to own)."""
        now = self._clock()
        if now < self._next_collect or (self._collecting is not None and not self._collecting.done()):
            return
        self._next_collect = now + every_s
        self._collecting = asyncio.get_running_loop().create_task(self._collect_quietly())

    async def _collect_quietly(self) -> None:
        try:
            n = await self.collect()
            if n:
                log.info("budget ledger: removed %d closed rate-limit windows", n)
        except ControlPlaneError as exc:
            log.warning("budget ledger collection failed (retried later): %s", exc)

    async def close(self) -> None:
        if self._collecting is not None:
            self._collecting.cancel()
            with suppress(asyncio.CancelledError):
                await self._collecting

    async def rows(self) -> list[LedgerRow]:
        """Every ledger record, with expired leases already returned (as a read would see them)."""
        entries, _ = await self._kv.get_prefix(LEDGER)
        now_ms = int(self._clock() * 1000)
        out = []
        for key, entry in sorted(entries.items()):
            parsed = parse_ledger_key(key)
            if parsed is None:
                log.warning("ignoring %s: not a ledger record key", key)
                continue
            try:
                rec = LedgerRecord.decode(entry.value)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable ledger record %s: %s", key, exc)
                continue
            expire(rec, now_ms, self._ttl_ms, self._reconcile_ms, self._latest)
            out.append(LedgerRow(*parsed, rec))
        return out


def _op(holder: str, seq: int, op: budget_pb2.LeaseOp, cumulative: bool) -> Op:
    return Op(holder, seq, op.settled_delta, op.overshoot_delta, op.want_total, op.min_grant, op.reserved,
              cumulative=cumulative, settled_total=op.settled_total, overshoot_total=op.overshoot_total)


def _minute_start_s(window_key: str) -> float | None:
    """Unix seconds of a "2026-11-23T22:47Z" window key; None for anything else."""
    try:
        return datetime.strptime(window_key, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
