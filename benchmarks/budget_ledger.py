"""Budget ledger cost on the control plane: what one BudgetService Sync costs against the store, next to the
store's own guarded read-modify-write measured in the same run (the floor any CAS ledger pays).

    python benchmarks/budget_ledger.py                                 # embedded sqlite
    python benchmarks/budget_ledger.py --store etcd://127.0.0.1:2379    # a running etcd

Scenarios (each repeated --n times):
  baseline     kv.get + guarded kv.commit of one key (one CAS round trip pair)
  sync-1       one node, one budget op per Sync
  sync-20      one node, 20 budgets batched in one Sync (one transaction)
  contended-3  three nodes syncing the same budget concurrently (CAS conflicts + retries)
Not on the request path: data planes call Sync from a background tick (see README "Budgets and rate limits").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from controlplane.budget.ledger import Ledger
from controlplane.budget.limits import LimitBook, LimitSpec
from controlplane.store import KV, open_store
from interlock_contracts.v1 import budget_pb2

B = budget_pb2.LEASE_KIND_BUDGET


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def op(limit_id: str, want: int, settled: int = 0) -> budget_pb2.LeaseOp:
    return budget_pb2.LeaseOp(kind=B, limit_id=limit_id, window_key="lifetime", want_total=want, settled_delta=settled)


async def baseline(kv: KV, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        e = await kv.get("bench/base")
        await kv.commit({"bench/base": str(i).encode()}, if_revision_of={"bench/base": e.mod_revision if e else 0})
        out.append(time.perf_counter() - t)
    return out


async def sync_loop(led: Ledger, node: str, ids: list[str], n: int, seq0: int = 0) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await led.sync(node, seq0 + i + 1, [op(x, want=1000 + (i % 7), settled=3) for x in ids])
        out.append(time.perf_counter() - t)
    return out


async def run(store: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = store if store.startswith("etcd://") else f"sqlite:///{Path(tmp) / 'ledger.db'}"
        kv = open_store(url, f"/bench-budget-{time.time_ns()}")
        book: LimitBook = {(B, f"b{i}"): LimitSpec(B, f"b{i}", 10**15, "lifetime", "UTC", "team", "t") for i in range(20)}
        led = Ledger(kv, clock=time.time, lease_ttl_s=20, limits=lambda: book)
        try:
            base = await baseline(kv, n)
            one = await sync_loop(led, "n1", ["b0"], n)
            twenty = await sync_loop(led, "n2", [f"b{i}" for i in range(20)], n)
            started = time.perf_counter()
            contended = await asyncio.gather(*(sync_loop(led, f"c{i}", ["b1"], n) for i in range(3)))
            wall = time.perf_counter() - started
        finally:
            await kv.close()
    flat = [x for xs in contended for x in xs]
    b50 = pct(base, 0.5)
    print(f"store: {store}  n={n}")
    print(f"{'scenario':<14}{'p50 ms':>9}{'p99 ms':>9}{'x baseline p50':>16}")
    for name, xs in (("baseline", base), ("sync-1", one), ("sync-20", twenty), ("contended-3", flat)):
        print(f"{name:<14}{pct(xs, 0.5):>9.2f}{pct(xs, 0.99):>9.2f}{pct(xs, 0.5) / b50:>16.2f}")
    print(f"contended-3 throughput: {3 * n / wall:.0f} Syncs/s (mean {statistics.mean(flat) * 1000:.2f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="sqlite", help="sqlite (embedded, temp dir) or etcd://host:port")
    ap.add_argument("--n", type=int, default=300, help="Syncs per scenario and node")
    ns = ap.parse_args()
    asyncio.run(run(ns.store, ns.n))


if __name__ == "__main__":
    main()
