"""Per-run key minting cost as the key count grows, next to `keys create` (which reads and validates every key)
measured in the same run on the same store.

    PYTHONPATH=. python benchmarks/run_key_mint.py --store etcd://127.0.0.1:2379 [--keys 2000] [--n 50]

An orchestrator mints one key per task, so minting must not slow down as keys accumulate: it reads the parent,
its team, the model names and the budgets, and writes one key in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from controlplane.budget.runkeys import RunKeySpec
from controlplane.policy.model import PolicyDocument
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store


def p50(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2] * 1000


async def run(store: str, keys: int, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = store if store.startswith("etcd://") else f"sqlite:///{Path(tmp) / 'policy.db'}"
        kv = open_store(url, f"/bench-mint-{time.time_ns()}")
        svc = StorePolicyService(kv, b"bench-pepper", time.time)
        try:
            await svc.apply(PolicyDocument.model_validate({
                "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
                "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
                "teams": [{"id": "t"}],
            }))
            parent = (await svc.create_key(KeySpec(name="orchestrator", team="t"))).record
            print(f"store: {store}")
            print(f"{'existing keys':>14}{'mint p50 ms':>13}{'create p50 ms':>15}{'mint / create':>15}")
            made = 1
            for target in (10, keys // 4, keys):
                while made < target:  # grow the key set with run keys, 20 at a time
                    batch = min(20, target - made)
                    await asyncio.gather(*(svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000,
                                                                       budget_usd="1")) for _ in range(batch)))
                    made += batch
                mint, create = [], []
                for _ in range(n):
                    t = time.perf_counter()
                    await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000, budget_usd="1"))
                    mint.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await svc.create_key(KeySpec(name="baseline", team="t"))
                    create.append(time.perf_counter() - t)
                made += 2 * n
                print(f"{made:>14}{p50(mint):>13.2f}{p50(create):>15.2f}{p50(mint) / p50(create):>15.2f}")
        finally:
            await kv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="sqlite", help="sqlite (embedded, temp dir) or etcd://host:port")
    ap.add_argument("--keys", type=int, default=2000, help="grow the key set up to this many keys")
    ap.add_argument("--n", type=int, default=30, help="timed mints (and creates) per step")
    ns = ap.parse_args()
    asyncio.run(run(ns.store, ns.keys, ns.n))


if __name__ == "__main__":
    main()
