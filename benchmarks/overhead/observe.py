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
    # tracing configured (endpoint set) but off: the "zero cost when off" bar, read against off_control
    "trace_off": {**OFF, "INTERLOCK_TRACE_SAMPLE": "0", "INTERLOCK_OTLP_ENDPOINT": "{otlp}"},
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
                # each round against the same round's "off": how far apart neighbours in time land
                paired = [p.rps / b.rps for p, b in zip(pts, base, strict=True) if b.rps]
                res[name] = {"rps": round(rps), "rps_per_core": round(core),
                             "rps_vs_off": round(rps / base_rps, 4) if base_rps else None,
                             "per_core_vs_off": round(core / base_core, 4) if base_core else None,
                             "rounds": [round(p.rps) for p in pts],
                             "round_ratios": [round(x, 4) for x in paired]}
            out[s.name] = res
        return out
    finally:
        for p in procs:
            p.stop_all()
        sink_procs.stop_all()


def table(results: dict[str, Any]) -> str:
    lines = [f"{'scenario':<14} {'config':<30} {'RPS':>8} {'vs off':>7} {'RPS/core':>9} {'vs off':>7}  per round vs off"]
    for scen, res in results.items():
        for name, r in res.items():
            spread = " ".join(f"{x:.3f}" for x in r.get("round_ratios", []))
            lines.append(f"{scen:<14} {name:<30} {r['rps']:>8,} {r['rps_vs_off']:>7.3f} {r['rps_per_core']:>9,} "
                         f"{r['per_core_vs_off']:>7.3f}  {spread}")
    return "\n".join(lines)


def _verdict(drop: float, bar: float, floor: float) -> str:
    if floor > bar:
        return f"not decidable in this run, the noise floor {100 * floor:.1f}% is wider than the bar"
    return "met" if drop <= bar else "NOT met"


def bars(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The issue's cost bars, read from one run: each figure beside the noise floor measured with it.

    noise floor = how far the second "off" (off_control) lands from "off": median ratio, and the widest
    single-round gap. A difference inside it is not a measurable cost.
    """
    lines, out = [], {}
    for scen, res in results.items():
        if "off_control" not in res:
            continue
        ctl = res["off_control"]
        floor = abs(1 - ctl["rps_vs_off"])
        widest = max((abs(1 - x) for x in ctl.get("round_ratios", [])), default=0.0)
        b: dict[str, Any] = {"noise_floor": round(floor, 4), "noise_widest_round": round(widest, 4)}
        lines.append(f"{scen}: noise floor off_control/off {ctl['rps_vs_off']:.3f} (|1 - x| = {100 * floor:.1f}%; "
                     f"widest single round {100 * widest:.1f}%)")
        if "metrics+access_log" in res:
            both = res["metrics+access_log"]
            drop = 1 - both["rps_vs_off"]
            b["metrics_access_log_drop"] = round(drop, 4)
            lines.append(f"  metrics + access log vs all off: {both['rps_vs_off']:.3f}, drop {100 * drop:.1f}% "
                         f"(bar <= 5%: {_verdict(drop, 0.05, floor)}); per gateway core {both['per_core_vs_off']:.3f}")
            if "metrics+access_log+trace_1pct" in res:
                tr = res["metrics+access_log+trace_1pct"]
                more = 1 - tr["rps"] / both["rps"] if both["rps"] else 0.0
                b["trace_1pct_further_drop"] = round(more, 4)
                core_more = 1 - tr["rps_per_core"] / both["rps_per_core"] if both["rps_per_core"] else 0.0
                lines.append(f"  + tracing at 1%: {tr['rps_vs_off']:.3f} of all off, a further {100 * more:.1f}% "
                             f"(bar <= 3%: {_verdict(more, 0.03, floor)}); per gateway core a further "
                             f"{100 * core_more:.1f}%")
        if "trace_off" in res:
            off = res["trace_off"]
            diff = abs(1 - off["rps_vs_off"])
            b["trace_off_diff"] = round(diff, 4)
            lines.append(f"  tracing off (endpoint set, sample 0) vs all off: {off['rps_vs_off']:.3f} "
                         f"(|diff| {100 * diff:.1f}% vs noise floor {100 * max(floor, widest):.1f}%: "
                         f"{'not measurable' if diff <= max(floor, widest) else 'MEASURABLE'})")
        out[scen] = b
    return "\n".join(lines), out
