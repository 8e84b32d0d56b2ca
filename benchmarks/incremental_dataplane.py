#!/usr/bin/env python3
"""Data-plane latency while keys are minted (issue 16): what 10 mints/s with 100,000 live keys add to a real
node's p99 under open-loop traffic.

A real control plane (start_backend: etcd store, publisher, gRPC, budget and loop services) in this process;
`interlock dataplane` subscribed to it over gRPC (pinned to core 0; it boots with no snapshot file and takes the
full snapshot of every key); nginx serving recorded OpenAI responses and vegeta sending open-loop traffic
(core 1). Then alternating runs of the same length at the same rate: traffic alone (baseline) and traffic while
run keys are minted through the service at --mint-rate. The node must apply each mint as a key delta on its
event loop; what that costs shows up as added latency. After each minting run, the last minted key must serve
a request through the node (the deltas really reached it).

    PYTHONPATH=. python benchmarks/incremental_dataplane.py --store etcd://127.0.0.1:2379 \\
        [--keys 100000] [--rps 200] [--mint-rate 10] [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from incremental_scale import seed
from overhead.gateway import ALIAS, _env, _interlock_cli
from overhead.load import Point, run_vegeta, vegeta_binary, write_vegeta_target
from overhead.procs import BenchError, Procs, free_port, pinned, wait_http
from overhead.upstream import CHAT_PATH, post, start_nginx

from controlplane.backend import start_backend
from controlplane.budget.runkeys import RunKeySpec
from controlplane.policy.model import Alias, Model, PolicyDocument, Price, Provider, Team
from controlplane.service_types import KeySpec
from controlplane.store.layout import VERSION_KEY
from interlock.settings import ControlPlaneSettings

REPO = Path(__file__).resolve().parent.parent
GATEWAY_CORE, LOAD_CORE = 0, 1
BODY = orjson.dumps({"model": ALIAS, "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})


def policy(upstream_port: int) -> PolicyDocument:
    base = f"http://127.0.0.1:{upstream_port}/v1"
    return PolicyDocument(
        providers=[Provider(name="nginx", kind="openai_compatible", base_url=base, credential="env:BENCH_UPSTREAM_KEY")],
        models=[Model(name="bench-gpt", provider="nginx", upstream="gpt-4o-mini",
                      price=Price(input="0.15", output="0.60"))],
        aliases=[Alias(name=ALIAS, target="bench-gpt")],
        teams=[Team(id="bench", allowed_models=[ALIAS])],
    )


def line(name: str, pt: Point) -> str:
    return (f"  {name:<26} {pt.rps:6.0f}/s  p50 {pt.p50_ms:7.2f} ms  p90 {pt.p90_ms:7.2f} ms  p99 {pt.p99_ms:7.2f} ms"
            f"  max {pt.max_ms:7.1f} ms  failed {pt.failed}")


async def run(ns: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="il-inc-dp-"))
    procs = Procs(work)
    vegeta = vegeta_binary(REPO)
    pepper = secrets.token_hex(32)
    settings = ControlPlaneSettings(key_pepper=pepper.encode(), admin_token=secrets.token_bytes(16), store=ns.store,
                                    grpc_port=0, etcd_prefix=f"/bench-inc-dp-{time.time_ns()}")
    backend = await start_backend(settings)
    try:
        up = await asyncio.to_thread(start_nginx, procs, work, LOAD_CORE)
        svc = backend.service
        await svc.apply(policy(up.port))
        parent = await svc.create_key(KeySpec(name="orchestrator", team="bench"))
        print(f"seeding {ns.keys} live run keys into {ns.store} ...", file=sys.stderr, flush=True)
        await seed(backend.kv, parent.record, ns.keys)
        seeded = (await backend.kv.get(VERSION_KEY)).mod_revision  # type: ignore[union-attr]
        for _ in range(3000):  # the publisher compiles the seeded keys in full (minutes at 100k on a busy box)
            if backend.publisher.current is not None and backend.publisher.current.version >= seeded:
                break
            await asyncio.sleep(0.2)

        state_dir = work / "dataplane"
        port = free_port()
        env = _env(state_dir, port, pepper, f"127.0.0.1:{backend.grpc_port}", {})
        procs.start("gateway", pinned(GATEWAY_CORE, [_interlock_cli(), "dataplane"]), env=env)
        t0 = time.perf_counter()
        await asyncio.to_thread(wait_http, port, "/readyz", ns.ready_timeout, procs)
        print(f"node ready (full snapshot of {ns.keys + 1} keys over gRPC) after {time.perf_counter() - t0:.1f}s",
              file=sys.stderr, flush=True)
        auth = {"authorization": f"Bearer {parent.secret}"}
        status, body = await asyncio.to_thread(post, port, BODY, auth)
        if status != 200:
            raise BenchError(f"the node refused the benchmark request ({status}): {body[:300]!r}")
        target = write_vegeta_target(work / "target.json", f"http://127.0.0.1:{port}{CHAT_PATH}", BODY,
                                     {"Content-Type": "application/json", **auth})

        async def traffic(name: str) -> Point:
            pt, _ = await asyncio.to_thread(run_vegeta, vegeta, LOAD_CORE, target, ns.rps, ns.seconds,
                                            work / f"{name}.bin")
            return pt

        async def mint_while(load: asyncio.Task[Point]) -> tuple[int, str, list[float]]:
            interval, next_at, count, last, lat = 1.0 / ns.mint_rate, time.perf_counter(), 0, "", []
            while not load.done():
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                m0 = time.perf_counter()
                minted = await svc.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=3_600_000, budget_usd="1"))
                lat.append((time.perf_counter() - m0) * 1000)
                count, last = count + 1, minted.secret
            return count, last, lat

        await traffic("warmup")  # connections, caches, the first lease: not measured
        quiet: list[Point] = []
        busy: list[Point] = []
        minted_total = 0
        for r in range(ns.rounds):
            quiet.append(await traffic(f"quiet{r}"))
            print(line(f"round {r + 1}: no mints", quiet[-1]), file=sys.stderr, flush=True)
            load = asyncio.create_task(traffic(f"mint{r}"))
            await asyncio.sleep(0.5)  # vegeta is attacking: mint only inside the measured window
            count, last, mint_ms = await mint_while(load)
            busy.append(await load)
            minted_total += count
            print(line(f"round {r + 1}: {count} mints", busy[-1]) + f"  (mint call p50 "
                  f"{statistics.median(mint_ms):.1f} ms)", file=sys.stderr, flush=True)
            ok_at = time.perf_counter()
            while True:  # the last minted key must now work on the node: the deltas reached it
                status, body = await asyncio.to_thread(post, port, BODY, {"authorization": f"Bearer {last}"})
                if status == 200:
                    break
                if time.perf_counter() - ok_at > 5:
                    raise BenchError(f"the last minted key is refused by the node 5 s later ({status}): {body[:200]!r}")
                await asyncio.sleep(0.05)
        procs.check_alive()
        log = (work / "gateway.log").read_text(errors="replace")
        full_after_boot = log.count("applied snapshot version") - 1
    finally:
        procs.stop_all()
        await backend.close()

    def worst(points: list[Point]) -> float:
        return max(p.p99_ms for p in points)

    q99, b99 = statistics.median(p.p99_ms for p in quiet), statistics.median(p.p99_ms for p in busy)
    print(f"\ndata-plane latency while minting: {ns.keys} live keys, open loop {ns.rps} RPS x {ns.seconds:g}s per run, "
          f"{ns.rounds} round(s), mints at {ns.mint_rate:g}/s, store={ns.store} (shared 2-core machine; node on core "
          f"{GATEWAY_CORE}, nginx + vegeta on core {LOAD_CORE}, control plane unpinned)")
    for i, (q, b) in enumerate(zip(quiet, busy, strict=True), start=1):
        print(line(f"round {i} baseline", q))
        print(line(f"round {i} minting", b))
    print(f"  p99 median over rounds: baseline {q99:.2f} ms, minting {b99:.2f} ms, added {b99 - q99:+.2f} ms "
          f"(worst round: {worst(quiet):.2f} -> {worst(busy):.2f} ms); {minted_total} keys minted, full snapshots "
          f"re-sent to the node after boot: {max(0, full_after_boot)}")
    failed = sum(p.failed for p in quiet + busy)
    verdict = "PASS" if b99 - q99 <= 2.0 and failed == 0 else "SHORT"
    print(f"  bar: added p99 <= 2 ms, no failed request -> {verdict}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="etcd://127.0.0.1:2379")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rps", type=int, default=200)
    ap.add_argument("--mint-rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0, help="per run (each round = one baseline + one minting)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ready-timeout", type=float, default=600.0, help="seconds for the node's first full snapshot")
    ns = ap.parse_args()
    if not {GATEWAY_CORE, LOAD_CORE} <= os.sched_getaffinity(0):
        print("needs cores 0 and 1 (the node and the load are pinned apart)", file=sys.stderr)
        return 2
    return asyncio.run(run(ns))


if __name__ == "__main__":
    sys.exit(main())
