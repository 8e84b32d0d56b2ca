"""Policy change -> applied on every subscribed data plane: latency over repeated changes.

Runs a real control plane (store, publisher, gRPC) and N real SnapshotSync
subscribers in one process, each compiling snapshots into its own PolicyHolder.
Baseline in the same run: the control plane's own apply() time, so the figure
shows what distribution adds on top of the write itself.

    python benchmarks/policy_propagation.py [--nodes 20] [--changes 50] [--store sqlite|etcd://...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from controlplane.backend import start_backend
from controlplane.policy.model import Alias, Model, PolicyDocument, Provider, Team
from dataplane.providers.registry import default_providers
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts.settings.controlplane import ControlPlaneSettings


def doc(i: int) -> PolicyDocument:
    return PolicyDocument(
        providers=[Provider(name="p", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")],
        models=[Model(name=f"m{j}", provider="p") for j in range(20)],
        aliases=[Alias(name="fast", target=f"m{i % 20}")],
        teams=[Team(id="t", allowed_models=["fast"])],
    )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(nodes: int, changes: int, store: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    url = store if store.startswith("etcd://") else f"sqlite:///{tmp / 'policy.db'}"
    settings = ControlPlaneSettings(key_pepper=b"x" * 32, admin_token=b"t", store=url, grpc_port=0,
                                    etcd_prefix=f"/bench-{time.time_ns()}")
    backend = await start_backend(settings)
    await backend.service.apply(doc(0))
    holders, syncs, tasks = [], [], []
    for n in range(nodes):
        h = PolicyHolder(default_providers(), lambda _ref: None)
        s = SnapshotSync(f"127.0.0.1:{backend.grpc_port}", f"bench-{n}", h.apply, tmp / f"n{n}" / "snapshot.pb")
        holders.append(h)
        syncs.append(s)
        tasks.append(asyncio.create_task(s.run()))
    first = (await backend.service.current_snapshot()).version
    await asyncio.gather(*(s.wait_for_version(first, 30.0) for s in syncs))
    apply_ms, all_ms = [], []
    for i in range(1, changes + 1):
        t0 = time.perf_counter()
        result = await backend.service.apply(doc(i))
        t1 = time.perf_counter()
        done = await asyncio.gather(*(s.wait_for_version(result.version, 10.0) for s in syncs))
        t2 = time.perf_counter()
        if not all(done):
            raise SystemExit(f"change {i}: not every node applied version {result.version} within 10 s")
        apply_ms.append((t1 - t0) * 1000)
        all_ms.append((t2 - t0) * 1000)
    for s in syncs:
        await s.stop()
    await backend.close()
    print(f"policy propagation: {nodes} subscribers, {changes} changes, store={url.split(':')[0]}")
    print(f"{'':32} {'p50':>9} {'p99':>9} {'max':>9}")
    print(f"{'apply() alone (baseline)':32} {statistics.median(apply_ms):8.1f}ms {pct(apply_ms, .99):8.1f}ms {max(apply_ms):8.1f}ms")
    print(f"{'apply -> applied on ALL nodes':32} {statistics.median(all_ms):8.1f}ms {pct(all_ms, .99):8.1f}ms {max(all_ms):8.1f}ms")
    ratio = statistics.median(all_ms) / max(statistics.median(apply_ms), 1e-9)
    print(f"ratio all-nodes / apply-alone (p50): {ratio:.2f}x")
    verdict = "PASS" if pct(all_ms, .99) <= 1000 else "SHORT"
    print(f"bar: p99 <= 1000 ms -> {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--store", default="sqlite")
    ns = ap.parse_args()
    asyncio.run(run(ns.nodes, ns.changes, ns.store))


if __name__ == "__main__":
    main()
