"""Budgets under faults, swept over seeds: provider-billed spend / budget on the production shape.

    PYTHONPATH=$PWD python3 benchmarks/budget_faults.py --seeds 10 [--baseline /path/to/old/checkout]

Each scenario runs a real cluster (etcd, control plane with a 2 s lease TTL, 3 data planes, the fake provider
with fixed usage) and closed-loop clients on every node; the figure is the fake provider's count of requests
it received x the fixed cost, divided by the budget (the bar: <= 1.0; optimistic <= 1 + nodes x allowance / B):

  crash     kill -9 of one node mid-burst, restarted at once with the same node id
  cp-<mode> control plane kill -9 for 2 x TTL, per offline mode (fail_closed, safe_share, optimistic)
  cut       one node's gRPC link black-holed for 2 x TTL through a TCP proxy

`--baseline DIR` runs the same scenarios and seeds with the code in DIR (e.g. a checkout of main) first, so
the two are measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import budget_faults as bf
from tests.fixtures.cluster import Cluster
from tests.fixtures.etcd import EtcdServer

SCENARIOS = ("crash", "cp-fail_closed", "cp-safe_share", "cp-optimistic", "cut")


def run_scenario(etcd: EtcdServer, tmp: Path, scenario: str, seeds: int) -> list[bf.Outcome]:
    c = Cluster(tmp=tmp / f"{scenario}-{uuid.uuid4().hex[:6]}", etcd=etcd, prefix=f"/bench-{uuid.uuid4().hex[:8]}")
    c.tmp.mkdir(parents=True)
    proxies = []
    try:
        proxies = bf.start_cluster(c, 3, proxied=1 if scenario == "cut" else 0)
        cost = bf.request_cost(c)
        mode = scenario.removeprefix("cp-") if scenario.startswith("cp-") else "safe_share"
        allowance = 3 * cost if mode == "optimistic" else 0
        size = (50, 90) if scenario == "crash" else (50, 80)
        limits = {s: bf.seeded(s).randint(*size) * cost for s in range(seeds)}
        bf.apply_budgets(c, [bf.budget(f"b{s}", f"b{s}", lim, mode, allowance) for s, lim in limits.items()])
        out = []
        for s in range(seeds):
            rng = bf.seeded(s)
            fault: Callable[[], None]
            if scenario == "crash":
                bf.fake_latency(c, rng.uniform(100, 300))
                fault, at, seconds, workers = bf.crash_and_restart(c, c.nodes[rng.randrange(3)]), rng.uniform(0.2, 0.8), 3.0, 6
            elif scenario == "cut":
                bf.fake_latency(c, 100)
                fault, at, seconds, workers = bf.link_cut(proxies[0], 2 * bf.TTL_S), 0.3, 2 * bf.TTL_S + 4, 5
            else:
                bf.fake_latency(c, 100)
                fault, at, seconds, workers = bf.control_plane_outage(c, 2 * bf.TTL_S), 0.3, 2 * bf.TTL_S + 6, 5
            o = bf.measure(c, f"b{s}", limits[s], cost, seconds, allowance=allowance, workers=workers, faults=[(at, fault)])
            print(f"    seed {s:2d}: provider/B {o.ratio:.4f}  clients/B {o.received / o.limit:.4f}", flush=True)
            out.append(o)
            for n in c.nodes:
                c.wait_ready(n)
            c.wait_in_sync()
        return out
    finally:
        for p in proxies:
            p.close()
        c.stop_all()


def summarise(label: str, scenario: str, outs: list[bf.Outcome]) -> None:
    ratios = [o.ratio for o in outs]
    bound = [1 + 3 * o.allowance / o.limit for o in outs]
    over = sum(r > b for r, b in zip(ratios, bound, strict=True))
    print(f"  {label:9s} {scenario:15s} provider/B min {min(ratios):.4f} mean {statistics.mean(ratios):.4f} "
          f"max {max(ratios):.4f}  seeds over the bar: {over}/{len(outs)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--baseline", type=Path, help="a checkout whose code is measured first, as the baseline")
    args = ap.parse_args()
    binary = shutil.which("etcd")
    if binary is None:
        sys.exit("etcd is not installed: run scripts/install-etcd.sh")
    tmp = Path(tempfile.mkdtemp(prefix="budget-faults-"))
    etcd = EtcdServer(binary, tmp / "etcd")
    etcd.start()
    here = str(Path(__file__).resolve().parent.parent)
    runs = [("baseline", str(args.baseline.resolve()))] if args.baseline else []
    runs.append(("this", here))
    results: dict[tuple[str, str], list[bf.Outcome]] = {}
    t0 = time.monotonic()
    try:
        for scenario in args.scenarios.split(","):
            for label, code in runs:
                os.environ["PYTHONPATH"] = code  # the cluster's processes run this code
                print(f"{scenario} ({label}: {code}), {args.seeds} seeds", flush=True)
                results[(label, scenario)] = run_scenario(etcd, tmp, scenario, args.seeds)
    finally:
        os.environ["PYTHONPATH"] = here
        etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nprovider-billed spend / budget, lease TTL {bf.TTL_S:g} s, {time.monotonic() - t0:.0f} s "
          "(shared machine: figures are indicative)")
    for (label, scenario), outs in results.items():
        summarise(label, scenario, outs)


if __name__ == "__main__":
    main()
