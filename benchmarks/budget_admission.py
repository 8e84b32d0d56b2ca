"""Budget admission: hot-path cost of budget checks, and budget accuracy over many seeded 3-node runs.

    python benchmarks/budget_admission.py hotpath [--iterations 50000]
    python benchmarks/budget_admission.py cluster [--seeds 100]      # needs the etcd binary

hotpath: the request admission path the proxy runs before forwarding (authenticate, parse the body, tags,
resolve the model) timed per request, alternately WITHOUT budgets (baseline) and WITH the budget gate
(reserve worst case on 3 budgets + a requests/min + a concurrency limit, then settle), in the same run,
in steady state (leases held: no I/O). Reports p50/p90/p99 of both and the added cost (target: <= 50 us p50).

cluster: etcd + control plane + 3 data planes + fake provider as separate processes; per seed a fresh
lifetime budget B and 500 concurrent requests (demand ~1.6x B) spread over the 3 nodes. Reports served
spend / B per run (must be <= 1 always; >= 0.95 means no stuck reservations) and the ledger's agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests` helpers for the cluster mode

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import (
    Budget,
    KeyRecord,
    Model,
    PolicyDocument,
    Price,
    Provider,
    RateLimit,
    Team,
)
from dataplane.budget.gate import BudgetGate, PoolTable
from dataplane.dialects.base import Usage
from dataplane.dialects.openai import OpenAIDialect
from dataplane.pipeline.admission import authenticate, presented_key
from dataplane.pipeline.tags import request_tags
from dataplane.providers.registry import default_providers
from dataplane.routing.select import plan_for
from dataplane.snapshot.policy import CompiledPolicy, Route
from interlock_contracts.keys import hash_key, new_secret

PEPPER = b"bench-pepper"


class SteadyLeases:
    """The lease client in steady state: every pool already holds a large unexpired lease."""

    online = True

    def __init__(self, table: PoolTable) -> None:
        self._table = table
        self._event = asyncio.Event()

    def wake(self) -> None:
        for p in self._table.pools.values():
            p.lease = 10**30
            p.go_online(2**62)
        done, self._event = self._event, asyncio.Event()
        done.set()

    def synced(self) -> asyncio.Event:
        return self._event


def hotpath_policy(secret: str) -> CompiledPolicy:
    doc = PolicyDocument(
        providers=[Provider(name="p", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")],
        models=[Model(name=f"m{i}", provider="p", price=Price(input="1", output="2")) for i in range(20)],
        teams=[Team(id="eng")],
        budgets=[Budget(id="team-month", scope="team", scope_id="eng", window="month", limit_usd="1000000"),
                 Budget(id="key-day", scope="key", scope_id="vk_bench", window="day", limit_usd="1000000"),
                 Budget(id="task", scope="tag", scope_id="task=T-1", window="lifetime", limit_usd="1000000")],
        rate_limits=[RateLimit(id="team-rpm", scope="team", scope_id="eng", requests_per_minute=10**9,
                               max_concurrent=10**6)],
    )
    key = KeyRecord(id="vk_bench", key_hash=hash_key(PEPPER, secret).hex(), team="eng")
    snap = compile_snapshot(doc, [key], version=1, now_ms=0)
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda _r: None)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def hotpath(iterations: int) -> None:
    secret = new_secret()
    policy = hotpath_policy(secret)
    table = PoolTable()
    gate = BudgetGate(table, clock=time.time, syncer=SteadyLeases(table))
    dialect = OpenAIDialect()
    headers = {"authorization": f"Bearer {secret}", "x-interlock-tags": "task=T-1,agent=bench"}
    raw = orjson.dumps({"model": "m3", "max_tokens": 256, "messages": [
        {"role": "system", "content": "You are a careful coding agent. " * 20},
        *({"role": "user" if i % 2 else "assistant", "content": "edit the file and run the tests " * 8} for i in range(12)),
    ]})
    usage = Usage(input_tokens=900, output_tokens=120, reported=True)
    clock = time.perf_counter_ns

    def admission() -> tuple[Any, Any, dict[str, Any], Any]:
        key = authenticate(policy, PEPPER, presented_key(headers), int(time.time() * 1000))
        body = orjson.loads(raw)
        tags = request_tags(key.tags, headers, body)
        plan = plan_for(policy, key, body["model"], headers, tags, body, len(raw))  # as the proxy routes it
        route = Route(plan.targets[0].deployments[0].model, "")
        return key, tags, body, route

    async def with_budgets() -> None:
        key, tags, body, route = admission()
        ticket = await gate.admit(policy.budgets, key.id, tags, body["model"], route, raw, body,
                                  dialect.max_output_tokens(body), dialect.name, "chat")
        assert ticket is not None and len(ticket.claims) == 5
        gate.settle(ticket, usage)

    await with_budgets()  # first request: pools created, "leases" granted
    base, full, gate_only = [], [], []
    for _ in range(2000):  # warm-up
        admission()
        await with_budgets()
    for _ in range(iterations):
        t0 = clock()
        admission()
        t1 = clock()
        await with_budgets()
        t2 = clock()
        key, tags, body, route = admission()
        t3 = clock()
        ticket = await gate.admit(policy.budgets, key.id, tags, body["model"], route, raw, body,
                                  dialect.max_output_tokens(body), dialect.name, "chat")
        gate.settle(ticket, usage)  # type: ignore[arg-type]
        t4 = clock()
        base.append((t1 - t0) / 1000)
        full.append((t2 - t1) / 1000)
        gate_only.append((t4 - t3) / 1000)
    body_kib = len(raw) / 1024
    print(f"hot path, {iterations} requests, body {body_kib:.1f} KiB, 3 budgets + requests/min + concurrency")
    for name, xs in (("admission without budgets (baseline)", base), ("admission with budgets", full),
                     ("budget gate alone (admit+settle)", gate_only)):
        print(f"  {name:40s} p50 {pct(xs, 0.5):7.2f} us  p90 {pct(xs, 0.9):7.2f} us  p99 {pct(xs, 0.99):7.2f} us")
    added = pct(full, 0.5) - pct(base, 0.5)
    print(f"  added by budgets at p50: {added:.2f} us (target <= 50 us); with/without ratio "
          f"{pct(full, 0.5) / pct(base, 0.5):.2f}x")
    print(f"  overshoot recorded: {table.overshoot or 0}; pools: {len(table.pools)}")


def cluster(seeds: int) -> None:
    from tests.e2e.test_budget_cluster import PICO, pico, run_seed, seed_budgets, start_cluster
    from tests.fixtures.cluster import Cluster
    from tests.fixtures.etcd import EtcdServer

    binary = shutil.which("etcd")
    if binary is None:
        sys.exit("etcd is not installed: run scripts/install-etcd.sh")
    tmp = Path(tempfile.mkdtemp(prefix="budget-bench-"))
    etcd = EtcdServer(binary, tmp / "etcd")
    etcd.start()
    c = Cluster(tmp=tmp / "cluster", etcd=etcd, prefix=f"/bench-{uuid.uuid4().hex[:8]}")
    c.tmp.mkdir(parents=True)
    try:
        start_cluster(c, 3)
        secret = c.key["secret"]  # type: ignore[attr-defined]
        limits = seed_budgets(c, seeds)
        ratios, over, ledger_mismatch = [], 0, 0
        t0 = time.monotonic()
        for s in range(seeds):
            spent, served, refused, row = run_seed(c, secret, s, limits[s])
            r = spent / limits[s]
            ratios.append(r)
            over += spent > limits[s]
            ledger_mismatch += pico(row["settled"]) != spent
            print(f"  seed {s:3d}: B ${limits[s] / PICO:.3f}  served {served:3d}  refused {refused:3d}  "
                  f"settled/B {r:.4f}  ledger settled/B {pico(row['settled']) / limits[s]:.4f}", flush=True)
        print(f"3 nodes x 500 concurrent requests, {seeds} seeds, {time.monotonic() - t0:.0f} s")
        print(f"  settled/B: min {min(ratios):.4f}  mean {statistics.mean(ratios):.4f}  max {max(ratios):.4f}")
        print(f"  runs above B: {over}   runs below 0.95 B: {sum(r < 0.95 for r in ratios)}   "
              f"ledger != served: {ledger_mismatch}")
    finally:
        c.stop_all()
        etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    hp = sub.add_parser("hotpath")
    hp.add_argument("--iterations", type=int, default=50_000)
    cl = sub.add_parser("cluster")
    cl.add_argument("--seeds", type=int, default=100)
    args = ap.parse_args()
    if args.mode == "hotpath":
        asyncio.run(hotpath(args.iterations))
    else:
        cluster(args.seeds)


if __name__ == "__main__":
    main()
