"""Incremental snapshots at scale (issue 16): what one mint costs with many live keys and many nodes.

A real control plane (etcd store, publisher, gRPC server) in this process; N subscribed nodes spread over
--subscriber-procs child processes, so the control plane's CPU is measured alone: --real-nodes full nodes
(SnapshotSync + PolicyHolder + files), the rest simulated nodes (benchmarks/incremental_sim_node.py: real
streams, every delta decoded, applied and hash-checked on a copy-on-write view of one shared base key set).
K live run keys are seeded straight into etcd, then keys are minted through StorePolicyService at a fixed rate
(and, in phase 2, as fast as C concurrent callers can). Reported, each with the bar it is held to:

  - propagation of each mint to ALL nodes (mint call start -> every node applied a version holding it), p50/p99
  - in the burst, each key usable on ALL nodes after its caller got it (returned -> every node applied it), p99
  - control-plane CPU per mint (process CPU time of this process / mints; includes the mint calls themselves),
    in total and above the idle CPU of the same connected nodes measured before the mints
  - policy bytes sent per mint per node (deltas; heartbeats excluded)
  - mint throughput with C concurrent callers, how many Conflict (409) reached a caller, and when the last
    minted key was on all nodes
  - the subscriber processes' event-loop lag while deltas apply (max lateness of a 1 ms timer), against the
    same probe while no mints happen (baseline, same run)
  - cold start: a fresh process loads the snapshot file + delta log of node 0 and node 1 and compiles it

    PYTHONPATH=. python benchmarks/incremental_scale.py --store etcd://127.0.0.1:2379 \\
        [--keys 100000] [--nodes 100] [--rate 10] [--seconds 60] [--callers 16] [--burst-seconds 10] \\
        [--burst-rate 0] \\
        [--subscriber-procs 4] [--real-nodes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controlplane.budget.runkeys import RunKeySpec
from controlplane.errors import Conflict
from controlplane.grpc_server import build_server
from controlplane.policy.model import KeyRecord, PolicyDocument
from controlplane.publisher import SnapshotPublisher
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store
from controlplane.store.layout import KEYS, VERSION_KEY, encode, item_key, version_marker

PEPPER = b"bench-pepper"


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name of this process (where the control plane's CPU goes: loop vs gRPC threads)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# -- subscriber process -----------------------------------------------------------------------------------


async def subscribers(target: str, first: int, nodes: int, real: int, base: Path, want_version: int,
                      stop_file: Path, ack_interval_s: float) -> None:
    """Nodes first..first+nodes-1 of the fleet: the first `real` are full nodes (PolicyHolder, snapshot file,
    delta log: the cold start below boots from nodes 0 and 1), the rest simulated (incremental_sim_node.py)."""
    from benchmarks.incremental_sim_node import SharedBases, SimNode, touched
    from dataplane.providers.registry import default_providers
    from dataplane.snapshot.holder import PolicyHolder
    from dataplane.snapshot.sync import SnapshotSync

    bases = SharedBases()
    paced: dict[str, Any] = {"ack_interval_s": ack_interval_s} if ack_interval_s else {}
    syncs: list[SnapshotSync] = []
    for n in range(first, first + nodes):
        if n - first < real:
            h = PolicyHolder(default_providers(), lambda _ref: None)
            syncs.append(SnapshotSync(target, f"bench-{n}", h.apply, base / f"n{n}" / "snapshot.pb", holder=h,
                                      idle_timeout_s=120.0, **paced))
        else:
            syncs.append(SimNode(target, f"bench-{n}", bases, idle_timeout_s=120.0, **paced))
    tasks = [asyncio.create_task(s.run()) for s in syncs]
    seen: list[dict[int, float]] = [{} for _ in syncs]

    async def track(i: int) -> None:
        s = syncs[i]
        while True:
            await s.wait_for_version(s.applied_version + 1)
            seen[i][s.applied_version] = time.time()

    trackers = [asyncio.create_task(track(i)) for i in range(nodes)]
    t0 = time.time()
    await asyncio.gather(*(s.wait_for_version(want_version, 1800.0) for s in syncs))
    print(json.dumps({"ready_s": time.time() - t0}), flush=True)
    lags: list[tuple[float, float]] = []  # (wall time, lateness of a 1 ms timer)
    loop = asyncio.get_running_loop()
    probes = 0
    while probes % 500 or not await asyncio.to_thread(stop_file.exists):
        probes += 1
        t = loop.time()
        await asyncio.sleep(0.001)
        lags.append((time.time(), loop.time() - t - 0.001))
    for tracker in trackers:
        tracker.cancel()
    for n, s in enumerate(syncs, start=first):
        await s.stop(compact=n != 1)  # node 1 stops as if it crashed: its delta log stays, replayed at boot
    for task in tasks:
        task.cancel()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seen": [{str(v): ts for v, ts in d.items()} for d in seen], "lags": lags,
                      "deltas": sum(s.deltas_applied for s in syncs), "rejected": sum(s.updates_rejected for s in syncs),
                      "own": max((touched(s._state) for s in syncs if isinstance(s, SimNode)), default=0),
                      "bases": bases.verified, "rss_mb": rss_mb}), flush=True)


# -- control plane ------------------------------------------------------------------------------------------


async def seed(kv, parent: KeyRecord, count: int) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    made = 0
    t0 = time.time()
    while made < count:
        batch = {}
        for _ in range(min(100, count - made)):
            kid = "vk_" + secrets.token_hex(8)
            rec = KeyRecord(id=kid, key_hash=secrets.token_hex(32), name="seeded run", team=parent.team,
                            parent=parent.id, expires_at_unix_ms=now + 86_400_000, created_at_unix_ms=now,
                            budget_usd="1", max_concurrency=2)
            batch[item_key(KEYS, kid)] = encode(rec)
        await kv.commit(batch)
        made += len(batch)
        if made % 10_000 == 0:
            print(f"  seeded {made}/{count} keys ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    await kv.commit({VERSION_KEY: version_marker(now, "bench seed")})


async def run(ns: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="il-inc-"))
    kv = open_store(ns.store, f"/bench-inc-{time.time_ns()}")
    publisher = SnapshotPublisher(kv, retry_s=0.2, **({"batch_s": ns.publish_window_s, "max_batch_s": ns.publish_window_s} if ns.publish_window_s else {}))
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t"}],
    }))
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t"))).record
    print(f"seeding {ns.keys} live run keys into {ns.store} ...", file=sys.stderr, flush=True)
    await seed(kv, parent, ns.keys)
    t = time.perf_counter()
    await publisher.start()
    print(f"initial full compile + index: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    server, servicer, port = build_server(publisher, kv, host="127.0.0.1", port=0, heartbeat_s=5.0)
    await server.start()
    assert publisher.current is not None
    stop_file = tmp / "stop"
    procs = max(1, min(ns.subscriber_procs, ns.nodes))
    shares = [ns.nodes // procs + (1 if i < ns.nodes % procs else 0) for i in range(procs)]
    children = []
    for i, count in enumerate(shares):
        first = sum(shares[:i])
        real = max(0, min(count, ns.real_nodes - first))
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--subscribe", f"127.0.0.1:{port}", "--first", str(first), "--nodes",
            str(count), "--real-nodes", str(real), "--ack-interval-s", str(ns.ack_interval_s), "--dir", str(tmp), "--want", str(publisher.current.version),
            stdout=subprocess.PIPE, env={**os.environ}, limit=1 << 30))
    for child in children:
        assert child.stdout is not None
        ready = json.loads(await child.stdout.readline())
    print(f"{ns.nodes} nodes ({min(ns.real_nodes, ns.nodes)} full, the rest simulated) in {procs} process(es) hold "
          f"the initial snapshot after {ready['ready_s']:.1f}s", file=sys.stderr, flush=True)
    await asyncio.sleep(3.0)  # let the initial snapshots' sends and acks settle before the idle baseline
    idle_cpu0, idle_t0 = time.process_time(), time.perf_counter()
    idle_profile = cProfile.Profile() if ns.profile else None
    if idle_profile is not None:
        idle_profile.enable()
    await asyncio.sleep(ns.idle_seconds)  # quiet baseline: loop-lag probe, the control plane's idle CPU (heartbeats)
    idle_cpu_per_s = (time.process_time() - idle_cpu0) / (time.perf_counter() - idle_t0)
    if idle_profile is not None:
        idle_profile.disable()
        print("--- control plane profile while idle ---", file=sys.stderr)
        pstats.Stats(idle_profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    quiet_end = time.time()

    # Phase 1: steady minting at --rate for --seconds.
    mints: list[tuple[float, int]] = []  # (start wall time, version: read after the phase, not counted)
    minted: list[tuple[float, str]] = []
    bytes0, cpu0, full0 = servicer.policy_bytes_sent, time.process_time(), publisher.full_compiles
    threads0 = thread_cpu()
    gc_time = [0.0, 0.0]  # seconds in cyclic GC during phase 1, start of the running collection

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.process_time()
        else:
            gc_time[0] += time.process_time() - gc_time[1]

    gc.callbacks.append(on_gc)
    profile = cProfile.Profile() if ns.profile else None
    if profile is not None:
        profile.enable()
    phase1_start = time.time()
    interval = 1.0 / ns.rate
    next_at = time.perf_counter()
    for _ in range(int(ns.rate * ns.seconds)):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        t0 = time.time()
        key = await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000, budget_usd="1"))
        minted.append((t0, key.record.id))
    await asyncio.sleep(1.5)
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(on_gc)
    threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
    print("control-plane CPU by thread during phase 1: " + ", ".join(
        f"{k} {v:.2f}s" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v > 0.005)
        + f"; in cyclic GC {gc_time[0]:.2f}s",
        file=sys.stderr, flush=True)
    if profile is not None:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(40)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
    cpu_above_idle = cpu - idle_cpu_per_s * (time.time() - phase1_start)
    sent = servicer.policy_bytes_sent - bytes0
    full = publisher.full_compiles - full0
    phase1_end = time.time()
    for t0, kid in minted:  # a mint's key is written in the same transaction as its version
        mints.append((t0, (await kv.get(item_key(KEYS, kid))).mod_revision))  # type: ignore[union-attr]

    # Phase 2: mint throughput with --callers concurrent callers for --burst-seconds.
    conflicts = 0
    burst: list[tuple[float, str]] = []  # (when the caller got the key, key id)
    deadline = time.perf_counter() + ns.burst_seconds

    async def caller(i: int) -> None:
        nonlocal conflicts
        # --burst-rate R: the callers together aim at R mints/s (each one 1/callers of it, staggered); 0 = flat out
        gap = ns.callers / ns.burst_rate if ns.burst_rate > 0 else 0.0
        next_at = time.perf_counter() + gap * i / ns.callers
        while time.perf_counter() < deadline:
            if gap:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += gap
            try:
                key = await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000, budget_usd="1"))
            except Conflict:
                conflicts += 1
                continue
            burst.append((time.time(), key.record.id))

    b0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(ns.callers)))
    burst_s = time.perf_counter() - b0
    burst_end = time.time()
    burst_version = (await kv.get(VERSION_KEY)).mod_revision  # type: ignore[union-attr]
    await asyncio.sleep(10.0)
    # each burst key's version (read now, after the nodes caught up: the reads are not in anything measured)
    burst_keys = [(got, (await kv.get(item_key(KEYS, kid))).mod_revision)  # type: ignore[union-attr]
                  for got, kid in burst]
    stop_file.touch()
    outs = []
    for child in children:
        assert child.stdout is not None
        outs.append(json.loads(await child.stdout.readline()))
        await child.wait()
    await server.stop(0)
    await publisher.stop()
    await kv.close()

    seen = [{int(v): t for v, t in d.items()} for out in outs for d in out["seen"]]

    def all_nodes_at(version: int) -> float:
        return max(min((t for v, t in d.items() if v >= version), default=float("inf")) for d in seen)

    prop = [(all_nodes_at(v) - t0) * 1000 for t0, v in mints]
    lags = [lag for out in outs for lag in out["lags"]]
    quiet = [lag * 1000 for t, lag in lags if t < quiet_end]
    busy = [lag * 1000 for t, lag in lags if phase1_start <= t <= phase1_end]
    n = len(mints)
    print(f"\nincremental snapshots at scale: {ns.keys} live keys, {ns.nodes} nodes, store={ns.store} "
          f"(shared 2-core machine)")
    print(f"phase 1: {n} mints at {ns.rate}/s; full compiles on the control plane during it: {full}")
    print(f"  propagation mint -> ALL nodes: p50 {statistics.median(prop):.0f} ms, p99 {pct(prop, .99):.0f} ms, "
          f"max {max(prop):.0f} ms   bar p99 <= 1000 ms -> {'PASS' if pct(prop, .99) <= 1000 else 'SHORT'}")
    print(f"  control-plane CPU per mint: {cpu_above_idle / n * 1000:.2f} ms above idle ({cpu / n * 1000:.2f} ms "
          f"total; idle = {idle_cpu_per_s * 1000:.0f} ms CPU/s for heartbeats and node status)   bar <= 5 ms -> "
          f"{'PASS' if cpu_above_idle / n * 1000 <= 5 else 'SHORT'}")
    print(f"  policy bytes per mint per node: {sent / n / ns.nodes:.0f} B   bar <= 2048 B -> "
          f"{'PASS' if sent / n / ns.nodes <= 2048 else 'SHORT'}")
    print(f"  full snapshot for comparison: {len(publisher.history.full_message())} B per node")
    print(f"  subscribers: {procs} process(es), {sum(o['deltas'] for o in outs)} deltas applied, "
          f"{sum(o['rejected'] for o in outs)} rejected, full snapshots indexed per process "
          f"{[o['bases'] for o in outs]}, peak RSS per process {[round(o['rss_mb']) for o in outs]} MB, "
          f"most resources one simulated node holds of its own {max(o['own'] for o in outs)}")
    print(f"  subscriber loop lag (1 ms timer lateness, all processes): quiet p99 "
          f"{pct(quiet, .99):.2f} ms max {max(quiet, default=0):.2f} ms | minting p99 {pct(busy, .99):.2f} ms "
          f"max {max(busy, default=0):.2f} ms | added p99 {pct(busy, .99) - pct(quiet, .99):+.2f} ms")
    rate = len(burst) / burst_s
    at = all_nodes_at(burst_version)
    paced = f" paced at {ns.burst_rate:g}/s" if ns.burst_rate > 0 else " flat out"
    print(f"phase 2: {ns.callers} concurrent callers{paced} for {burst_s:.1f}s: {len(burst)} mints = {rate:.0f} mints/s, "
          f"{conflicts} Conflict (409) reached a caller; last minted version on all nodes "
          f"{(at - burst_end) * 1000:.0f} ms after the burst ended")
    print(f"  bar >= 200 mints/s with no 409 -> {'PASS' if rate >= 200 and conflicts == 0 else 'SHORT'}")
    usable = [(all_nodes_at(v) - got) * 1000 for got, v in burst_keys]  # key returned -> applied on every node
    print(f"  each burst key usable on ALL nodes after its caller got it: p50 {statistics.median(usable):.0f} ms, "
          f"p99 {pct(usable, .99):.0f} ms, max {max(usable):.0f} ms over {len(usable)} keys   bar p99 <= 1000 ms -> "
          f"{'PASS' if pct(usable, .99) <= 1000 else 'SHORT'}")

    # Cold start: a fresh process boots node 0 (stopped gracefully) and node 1 (stopped as after a crash) from
    # their snapshot file (+ delta log); timed up to the first key lookup answered, before anything else.
    for n, how in ((0, "graceful stop"), (min(1, ns.nodes - 1), "crash: delta log replayed")):
        code = ("import time,sys;t=time.perf_counter();"
                "from dataplane.snapshot.holder import PolicyHolder;"
                "from dataplane.providers.registry import default_providers;"
                "from dataplane.snapshot.sync import SnapshotSync;h=PolicyHolder(default_providers(),lambda r:None);"
                f"s=SnapshotSync('127.0.0.1:9','cold',h.apply,'{tmp}/n{n}/snapshot.pb',holder=h);"
                "ok=s.load_from_disk();h.policy.keys.get(b'x'*32);e=time.perf_counter()-t;c=time.process_time();"
                "print(ok,len(h.policy.keys) if h.policy else 0,e,c,s.boot_verified or '-')")
        res = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True)
        ok, nkeys, secs, cpu_s, verified = res.stdout.split()
        log = tmp / f"n{n}" / "snapshot.pb.deltas"
        print(f"cold start from disk, node {n} after a {how} (new process incl. imports): {float(secs):.2f}s "
              f"({float(cpu_s):.2f}s CPU) for "
              f"{nkeys} keys (verified by: {verified}; delta log {log.stat().st_size if log.exists() else 0} B)   "
              f"bar <= 2 s -> {'PASS' if ok == 'True' and float(secs) <= 2 else 'SHORT'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="etcd://127.0.0.1:2379")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--burst-seconds", type=float, default=10.0)
    ap.add_argument("--burst-rate", type=float, default=0.0,
                    help="phase 2: the callers together aim at this many mints/s (default 0: as fast as they can)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="quiet baseline before the mints")
    ap.add_argument("--profile", action="store_true", help="cProfile the control plane while idle and during phase 1 "
                    "(stderr)")
    ap.add_argument("--publish-window-s", type=float, default=0.0, help="a fixed publish window instead of the "
                    "control plane's default (experiments)")
    ap.add_argument("--ack-interval-s", type=float, default=0.0, help="nodes' ack coalescing interval (0 = the "
                    "node's default)")
    ap.add_argument("--subscriber-procs", type=int, default=4, help="processes the nodes are spread over")
    ap.add_argument("--real-nodes", type=int, default=2, help="full nodes (compiled policy, files; the rest are "
                    "simulated: benchmarks/incremental_sim_node.py); the cold start boots nodes 0 and 1")
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--subscribe", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--want", type=int, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.subscribe:
        base = Path(ns.dir)
        asyncio.run(subscribers(ns.subscribe, ns.first, ns.nodes, ns.real_nodes, base, ns.want, base / "stop",
                                ns.ack_interval_s))
    else:
        asyncio.run(run(ns))


if __name__ == "__main__":
    main()
