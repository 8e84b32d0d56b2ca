"""`dataplane_overhead.py --observe`: what metrics, the access log (and tracing) cost on the request path.

One gateway per configuration, all started up front on the gateway core (idle ones use no CPU), measured in
interleaved rounds (off, on, off, on, ...) so drift on a shared machine hits every configuration alike.
Figures: median RPS and median RPS per gateway core (RPS / gateway CPU share), and both relative to "off".
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .gateway import Gateway, start_gateway
from .load import Point, Scenario, run_wrk, write_wrk_script
from .procs import Procs, free_port, pinned, process_tree, sample_cpu
from .upstream import CHAT_PATH, Upstream

OFF = {"INTERLOCK_METRICS": "false", "INTERLOCK_ACCESS_LOG": "off"}
ON = {"INTERLOCK_METRICS": "true", "INTERLOCK_ACCESS_LOG": "json"}
CONFIGS: dict[str, dict[str, str]] = {
    "off": OFF, "metrics": {**OFF, "INTERLOCK_METRICS": "true"}, "access_log": {**OFF, "INTERLOCK_ACCESS_LOG": "json"},
    "metrics+access_log": ON,
    # {otlp} is replaced by the in-harness OTLP/gRPC sink's address (spans are received and dropped)
    "metrics+access_log+trace_1pct": {**ON, "INTERLOCK_TRACE_SAMPLE": "0.01", "INTERLOCK_OTLP_ENDPOINT": "{otlp}"},
    "off_control": OFF,  # a second "off" measured last in each round: the order/noise floor of the comparison
}


def _per_core(pt: Point) -> float:
    share = pt.cpu.get("gateway", 0.0) / 100
    return pt.rps / share if share > 0 else 0.0


def observe_compare(args: Any, work: Path, up: Upstream, scenarios: Sequence[Scenario], *, gateway_core: int,
                    load_core: int, connections: int, rounds: int,
                    configs: dict[str, dict[str, str]] | None = None,
                    guarded: frozenset[str] = frozenset()) -> dict[str, Any]:
    """guarded: the configurations whose snapshot carries the default guardrail (the rest have none)."""
    configs = configs or CONFIGS
    gateways: dict[str, Gateway] = {}
    procs: list[Procs] = []
    sink_procs = Procs(work)
    sink_port = free_port()
    sink_procs.start("otlp-sink", pinned(load_core, [sys.executable, str(Path(__file__).with_name("otlp_sink.py")),
                                                     str(sink_port)]))
    try:
        for name, env in configs.items():
            env = {k: v.replace("{otlp}", f"http://127.0.0.1:{sink_port}") for k, v in env.items()}
            d = work / f"gw-{name.replace('+', '-').replace('%', 'pct')}"
            d.mkdir()
            p = Procs(d)
            procs.append(p)
            gateways[name] = start_gateway(p, d, up.port, gateway_core, env, guardrail=name in guarded)
        out: dict[str, Any] = {}
        for s in scenarios:
            body_path = work / f"{s.name}.json"
            body_path.write_bytes(s.body())
            points: dict[str, list[Point]] = {n: [] for n in configs}
            for r in range(rounds):
                for name, gw in gateways.items():
                    url = f"http://127.0.0.1:{gw.port}{CHAT_PATH}"
                    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gw.secret}"}
                    script = write_wrk_script(work / f"{s.name}-{name}.lua", body_path, headers)
                    if r == 0:
                        run_wrk(load_core, url, script, args.warmup, connections)
                    with sample_cpu({"gateway": process_tree(gw.pid)}) as cpu:
                        pt, _, _ = run_wrk(load_core, url, script, args.duration, connections)
                    pt.cpu = dict(cpu.percent)
                    points[name].append(pt)
                    print(f"  {s.title:<22} round {r + 1} {name:<20} {pt.rps:>8,.0f} RPS  gw CPU "
                          f"{pt.cpu.get('gateway', 0):.0f}%  RPS/gw-core {_per_core(pt):>8,.0f}", flush=True)
            base = points["off"]
            base_rps = statistics.median(p.rps for p in base)
            base_core = statistics.median(_per_core(p) for p in base)
            res = {}
            for name, pts in points.items():
                rps = statistics.median(p.rps for p in pts)
                core = statistics.median(_per_core(p) for p in pts)
                res[name] = {"rps": round(rps), "rps_per_core": round(core),
                             "rps_vs_off": round(rps / base_rps, 4) if base_rps else None,
                             "per_core_vs_off": round(core / base_core, 4) if base_core else None,
                             "rounds": [round(p.rps) for p in pts]}
            out[s.name] = res
        return out
    finally:
        for p in procs:
            p.stop_all()
        sink_procs.stop_all()


def table(results: dict[str, Any]) -> str:
    lines = [f"{'scenario':<14} {'config':<22} {'RPS':>9} {'vs off':>7} {'RPS/core':>9} {'vs off':>7}"]
    for scen, res in results.items():
        for name, r in res.items():
            lines.append(f"{scen:<14} {name:<22} {r['rps']:>9,} {r['rps_vs_off']:>7.3f} {r['rps_per_core']:>9,} "
                         f"{r['per_core_vs_off']:>7.3f}")
    return "\n".join(lines)
