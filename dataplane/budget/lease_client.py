"""Background lease client: one BudgetService/Sync call per tick for every lease this node holds.

Off the request path. Each tick it reports the spend settled locally since the last acknowledged report,
asks for the lease it wants to hold (reserved + waiting + headroom; lower = hand back unused budget;
0 when idle = return everything) and renews every lease it names. A request that finds its lease short
wakes it early. Reports are cumulative per process incarnation (node id + boot epoch): a call whose outcome
is unknown (timeout, control plane down) is retried with a new seq and CURRENT totals, and the ledger applies
only what the totals add, so spend is never reported twice nor reported stale. Until a call succeeds every
pool follows its offline mode (fail_closed: refuse; safe_share: only the unexpired lease; optimistic: a
bounded extra). The node stops using a lease a safety margin before the ledger's expiry (docs/budget-faults.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc
import grpc.aio

from dataplane.budget.gate import PoolTable
from dataplane.budget.index import CONCURRENCY
from dataplane.budget.pool import LeasePool, LedgerView
from interlock_contracts.v1 import budget_pb2, budget_pb2_grpc

log = logging.getLogger(__name__)

EXPIRY_GUARD_MS = 1000  # stop using a lease this long (at most TTL/4) before the ledger's expiry
# gRPC's default reconnect backoff grows to minutes; leases expire in seconds, so reconnect promptly instead.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class LeaseClient:
    def __init__(
        self, table: PoolTable, *, target: str, node_id: str, tick_s: float = 0.5, rpc_timeout_s: float = 2.0,
        min_interval_s: float = 0.02,
        clock: Callable[[], float] = time.time, credentials: grpc.ChannelCredentials | None = None,
        incarnation: int | None = None,
    ) -> None:
        self._table = table
        self._target = target
        self._node_id = node_id
        self._tick_s = tick_s
        self._min_interval_s = min_interval_s  # waiters wake the loop; this spaces their syncs
        self._rpc_timeout_s = rpc_timeout_s
        self._clock = clock
        self._credentials = credentials
        self._seq = int(clock() * 1000)
        # Boot epoch: larger after every restart, so the ledger treats a restarted node as a new lease holder.
        self.incarnation = incarnation if incarnation is not None else time.time_ns() // 1000
        self._pending: tuple[budget_pb2.LeaseSyncRequest, list[LeasePool]] | None = None
        self._closing = False  # the final call of a graceful shutdown: hand every lease back
        self.last_ok_s = 0.0  # local time of the last successful Sync
        self.last_ok_monotonic: float | None = None  # time.monotonic() of it (staleness)
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._stub: budget_pb2_grpc.BudgetServiceStub | None = None
        # Reachable until a sync fails: a fresh node waits for its first lease rather than refusing outright.
        self.online = table.online = True
        self.syncs = 0
        self.failures = 0

    # ---- what the gate uses ------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def synced(self) -> asyncio.Event:
        """Set after the next sync attempt completes (successful or not)."""
        return self._synced

    # ---- loop ------------------------------------------------------------------------------------------------
    def _connect(self) -> budget_pb2_grpc.BudgetServiceStub:
        if self._stub is None:
            self._channel = (grpc.aio.secure_channel(self._target, self._credentials, options=CHANNEL_OPTIONS)
                             if self._credentials else grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS))
            self._stub = budget_pb2_grpc.BudgetServiceStub(self._channel)
        return self._stub

    async def run(self) -> None:
        """Sync every tick (or sooner when woken) until cancelled; then call close()."""
        while True:
            try:
                async with asyncio.timeout(self._tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._table.pools or self._pending is not None or not self.syncs:  # first: announce this incarnation
                try:
                    await self.sync_once()
                except Exception:  # a bug here must not stop lease renewal for the node's lifetime
                    log.exception("budget lease sync crashed; retrying on the next tick")
                await asyncio.sleep(self._min_interval_s)

    async def sync_once(self) -> None:
        stub = self._connect()
        self._pending = self._build()  # a retry too: current cumulative totals, a fresh seq
        req, pools = self._pending
        sent_ms = int(self._clock() * 1000)
        try:
            resp = await stub.Sync(req, timeout=self._rpc_timeout_s)
        except (grpc.aio.AioRpcError, OSError) as exc:
            self.failures += 1
            if self.online or self.failures == 1:
                log.warning("budget lease sync failed (%s); limits follow their offline modes",
                            exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else exc)
            self._set_offline(sent_ms)
        else:
            self._pending = None
            self.last_ok_s = sent_ms / 1000
            self.last_ok_monotonic = time.monotonic()
            self._apply(resp, pools, sent_ms, req)
        finally:
            done, self._synced = self._synced, asyncio.Event()
            done.set()

    def _build(self) -> tuple[budget_pb2.LeaseSyncRequest, list[LeasePool]]:
        ops, pools = [], []
        now_ms = int(self._clock() * 1000)
        tick_ms = int(self._tick_s * 1000)
        for pool in self._table.pools.values():
            want = _want(pool, now_ms, tick_ms)
            settled, overshoot = pool.begin_report(want)
            # smallest useful increase: what the largest waiting request lacks (a smaller grant would not admit it)
            min_grant = max(0, pool.waiting_max - max(0, pool.lease - pool.reserved - pool.spent)) if pool.waiting else 0
            pool.waiting = pool.waiting_max = 0
            k = pool.key
            ops.append(budget_pb2.LeaseOp(kind=k.kind, limit_id=k.limit_id, window_key=k.window_key,  # type: ignore[arg-type]
                                          settled_total=settled, overshoot_total=overshoot, want_total=want,
                                          min_grant=min_grant, reserved=pool.reserved))
            pools.append(pool)
        if self._closing:
            for op in ops:
                op.want_total = 0
        self._seq += 1
        return budget_pb2.LeaseSyncRequest(node_id=self._node_id, ops=ops, seq=self._seq,
                                           incarnation=self.incarnation), pools

    def _apply(self, resp: budget_pb2.LeaseSyncResponse, pools: list[LeasePool], sent_ms: int,
               req: budget_pb2.LeaseSyncRequest) -> None:
        self.syncs += 1
        if not self.online:
            log.info("budget lease sync restored after %d failed attempts", self.failures)
        self.online = self._table.online = True
        self.failures = 0
        skew = sent_ms - resp.server_time_unix_ms  # local clock minus server clock (upper bound incl. latency)
        for pool, g in zip(pools, resp.grants, strict=False):
            ok = g.status == budget_pb2.LEASE_STATUS_OK
            if not ok and g.status != budget_pb2.LEASE_STATUS_WINDOW_CLOSED:
                log.warning("lease %s/%s rejected: %s %s", pool.key.limit_id, pool.key.window_key,
                            budget_pb2.LeaseStatus.Name(g.status), g.error)
            ledger = LedgerView(g.limit, g.settled, g.leased, g.remaining, g.window_resets_unix_ms) if ok else None
            pool.finish_report(g.lease if ok else 0, ledger)
            # The lease is good until the server's expiry, measured from when we SENT the call (conservative).
            guard = min(EXPIRY_GUARD_MS, resp.lease_ttl_ms // 4) if resp.lease_ttl_ms else EXPIRY_GUARD_MS
            expires_local = g.lease_expires_unix_ms + min(skew, 0) - guard if ok else 0
            pool.go_online(expires_local)
        # Drop pools that held, owed and asked for nothing. One that asked and got nothing is kept a round: its
        # ledger view (e.g. "spent out") is what lets its waiters be refused with the right answer.
        sent = {id(p) for p, op in zip(pools, req.ops, strict=False) if op.want_total == 0}
        for key, pool in list(self._table.pools.items()):
            if pool.idle and id(pool) in sent:
                self._table.drop(key)  # nothing held, nothing owed: stop renewing it

    def _set_offline(self, now_ms: int) -> None:
        self.online = self._table.online = False
        for pool in self._table.pools.values():
            pool.go_offline(now_ms)

    async def close(self) -> None:
        """Graceful shutdown (after run() is cancelled and requests drained): report the last spend and hand
        every lease back in one call; then close the channel."""
        try:
            if self._stub is not None and self._table.pools:
                self._closing = True
                await self.sync_once()
        finally:
            if self._channel is not None:
                await self._channel.close()


def _want(pool: LeasePool, now_ms: int, tick_ms: int) -> int:
    """The lease to hold after this sync: what is reserved, what waiters need, and headroom for the next two
    ticks at the recent demand rate (measured over at least a tick, so early syncs don't shrink it)."""
    if not pool.flow_since_ms:
        pool.flow_since_ms = now_ms - tick_ms
    elapsed = max(1, now_ms - pool.flow_since_ms)
    flow = pool.reserved_flow
    if elapsed >= tick_ms:
        pool.reserved_flow, pool.flow_since_ms = 0, now_ms
    if pool.key.kind == CONCURRENCY:
        headroom = 1 if flow else 0  # one free slot while busy; none when idle
    else:
        headroom = max(2 * pool.largest, flow * 2 * tick_ms // elapsed) if flow else 0
    return pool.reserved + pool.waiting + headroom
