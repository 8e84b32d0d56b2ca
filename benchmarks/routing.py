#!/usr/bin/env python3
"""Cost of routing per request, against the pre-routing lookup measured in the same run.

    flock /tmp/coord/bench.lock python benchmarks/routing.py [--iterations 200000] [--rules 50]

Per request, what the proxy does on the hot path (single process, no I/O):

  lookup  : the foundation's resolve: routes[name] + the key's allowlist check
  routing : plan_for (request facts + first-match rule selection when rules may apply: --rules rules,
            none matching, the worst case for a name they apply to; none built with --rules 0) + attempt
            planner + breaker allow/record + attempt record + the x-interlock-* headers

Prints mean ns per request for both, the added time and the ratio. The end-to-end throughput bar is
checked by benchmarks/dataplane_overhead.py; this isolates the routing code from machine noise.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import PolicyDocument
from dataplane.providers.registry import default_providers
from dataplane.routing.attempts import AttemptPlanner
from dataplane.routing.breaker import Breakers
from dataplane.routing.report import AttemptRecord, route_headers
from dataplane.routing.select import plan_for, session_of
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry


def policy(rules: int) -> CompiledPolicy:
    doc: dict[str, Any] = {
        "providers": [{"name": f"p{i}", "kind": "openai", "base_url": f"http://p{i}.invalid/v1"} for i in range(3)],
        "models": [{"name": "gpt-x", "deployments": [{"provider": "p0", "weight": 3}, {"provider": "p1", "weight": 1}],
                    "fallback": ["gpt-y"]},
                   {"name": "gpt-y", "provider": "p2"}],
        "aliases": [{"name": "gpt-5", "target": "gpt-x"}],
        "teams": [{"id": "eng"}],
        # rules that apply to the name (model glob matches) but fail on a later condition: all evaluated
        "routes": [{"id": f"r{i}", "priority": i, "match": {"models": ["gpt-*"], "headers": {"x-env": f"env-{i}"},
                                                              "tags": {"task": "T-*"}}, "target": "gpt-y"}
                   for i in range(rules)],
    }
    snap = compile_snapshot(PolicyDocument.model_validate(doc), [], version=1, now_ms=0)
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda _r: None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200_000)
    ap.add_argument("--rules", type=int, default=50)
    args = ap.parse_args()
    p = policy(args.rules)
    key = KeyEntry(id="vk_1", team_id="eng", user_id="", project_id="", allowed=frozenset({"gpt-5", "gpt-x"}),
                   expires_at_ms=0, revoked=False, tags={})
    headers = {"x-env": "prod", "content-type": "application/json", "authorization": "Bearer x"}
    tags = {"task": "T-1", "cost-center": "42"}
    body = {"model": "gpt-5", "messages": []}
    breakers = Breakers(time.monotonic)
    rng = random.Random(1)
    n = args.iterations

    def lookup() -> None:
        route = p.routes["gpt-5"]  # the pre-routing lookup: one dict get and the allowlist check
        assert key.allowed is None or "gpt-5" in key.allowed
        assert route.model.name

    def routing() -> None:
        plan = plan_for(p, key, "gpt-5", headers, tags, body, 1024)  # as dataplane/pipeline/proxy.py does
        planner = AttemptPlanner(plan, constraint=p.routing.constraints.get(key.team_id), breakers=breakers, rng=rng,
                                 session=session_of(headers, tags) if plan.sticky else "")
        nxt = planner.next(time.monotonic())
        assert nxt is not None
        dep = nxt.deployment
        b = breakers.get(dep.id, dep.breaker)
        if b is not None and b.allow(time.monotonic()):
            b.record(True, time.monotonic())
        attempts = [AttemptRecord(dep.model.provider.name, dep.id, dep.model.upstream_name, 200, "", 1)]
        route_headers(plan.rule_id, attempts)

    results = {}
    gc.disable()
    for name, fn in (("lookup", lookup), ("routing", routing)) * 2:  # second round counts (warm)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        results[name] = (time.perf_counter_ns() - t0) / n
    gc.enable()
    base, routed = results["lookup"], results["routing"]
    print(f"routing per request ({args.rules} rules evaluated, 2 deployments + 1 fallback, {n} iterations)")
    print(f"  lookup (before routing)  {base:8.0f} ns")
    print(f"  routing                  {routed:8.0f} ns")
    print(f"  added                    {routed - base:8.0f} ns   ratio {routed / base:.1f}x")


if __name__ == "__main__":
    main()
