#!/usr/bin/env python3
"""Data-plane overhead: the gateway vs. the same upstream called directly, closed and open loop.

    python benchmarks/dataplane_overhead.py [--quick] [--duration S] [--open-duration S]
    python benchmarks/dataplane_overhead.py --observe [--rounds N]   # cost of metrics/access log/tracing
    python benchmarks/dataplane_overhead.py --guardrails [--rounds N] # default guardrail on vs off (1 KB)

Gateway (`interlock dataplane`) on core 0; nginx (recorded responses) and the load
tool on core 1. See benchmarks/README.md for the method and what each figure means.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from overhead import observe
from overhead.gateway import ALIAS, STREAM_ALIAS, Gateway, start_gateway
from overhead.kafka import start_kafka, topic_messages
from overhead.load import Point, Scenario, run_vegeta, run_wrk, vegeta_binary, write_vegeta_target, write_wrk_script
from overhead.procs import BenchError, Procs, process_tree, sample_cpu
from overhead.report import (
    closed_loop_table,
    environment,
    open_loop_table,
    summarize_closed,
    summarize_open,
    write_json,
)
from overhead.upstream import CHAT_PATH, STREAM_HEADER, Upstream, start_nginx

REPO = Path(__file__).resolve().parent.parent
GATEWAY_CORE, LOAD_CORE = 0, 1
CONNECTIONS = 64
OPEN_RATE = 200

SCENARIOS = [
    Scenario("nonstream_1k", "non-stream 1 KB", ALIAS, False, 1024, 6000),
    Scenario("stream_20", "SSE 20 chunks", STREAM_ALIAS, True, 1024, 4000, {STREAM_HEADER: "1"}),
    Scenario("body_100k", "non-stream 100 KB body", ALIAS, False, 100 * 1024, 3000),
]
OPEN_LOOP = ("nonstream_1k", "stream_20")
NOISE_PCT = 10.0  # CPU other processes may take from a benchmark core before the run is flagged as noisy
NOISE: list[str] = []


def _targets(s: Scenario, gw: Gateway, up: Upstream) -> dict[str, tuple[str, dict[str, str]]]:
    ctype = {"Content-Type": "application/json"}
    return {
        "gateway": (f"http://127.0.0.1:{gw.port}{CHAT_PATH}", {**ctype, "Authorization": f"Bearer {gw.secret}"}),
        "direct": (f"http://127.0.0.1:{up.port}{CHAT_PATH}",
                   {**ctype, "Authorization": "Bearer sk-upstream-bench", **s.direct_headers}),
    }


def _cpu_trees(gw: Gateway, up: Upstream) -> dict[str, list[int]]:
    return {"gateway": process_tree(gw.pid), "nginx": process_tree(up.pid)}


def _attach_cpu(pt: Point, percent: dict[str, float], load_cpu_s: float, seconds: float, what: str) -> None:
    """CPU per process and per core; `other*` is what processes outside the benchmark took from each core.

    Core 0 only matters when the gateway is the target (a direct run leaves it idle).
    """
    c = {**percent, "load": round(100 * load_cpu_s / seconds, 1)}
    c[f"other{GATEWAY_CORE}"] = round(max(0.0, c.get(f"core{GATEWAY_CORE}", 0) - c["gateway"]), 1)
    c[f"other{LOAD_CORE}"] = round(max(0.0, c.get(f"core{LOAD_CORE}", 0) - c["nginx"] - c["load"]), 1)
    pt.cpu = c
    watched = [f"other{LOAD_CORE}"] + ([f"other{GATEWAY_CORE}"] if what.endswith("gateway") else [])
    noisy = {k: c[k] for k in watched if c[k] > NOISE_PCT}
    if noisy:
        NOISE.append(f"{what}: " + ", ".join(f"core {k[5:]} {v:.0f}%" for k, v in noisy.items()))


def _check(p: Point, what: str) -> None:
    if p.failed or p.requests == 0:
        raise BenchError(f"{what}: {p.non_2xx} non-2xx responses and {p.socket_errors} socket errors "
                         f"in {p.requests} requests; the figures are not valid")


def closed_loop(args: argparse.Namespace, work: Path, gw: Gateway, up: Upstream, procs: Procs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SCENARIOS:
        body_path = work / f"{s.name}.json"
        body_path.write_bytes(s.body())
        points: dict[str, Point] = {}
        for target, (url, headers) in _targets(s, gw, up).items():
            script = write_wrk_script(work / f"{s.name}-{target}.lua", body_path, headers)
            run_wrk(LOAD_CORE, url, script, args.warmup, CONNECTIONS)  # warm pools, caches, allocator
            procs.check_alive()
            with sample_cpu(_cpu_trees(gw, up)) as cpu:
                pt, raw, load_cpu_s = run_wrk(LOAD_CORE, url, script, args.duration, CONNECTIONS)
            _attach_cpu(pt, cpu.percent, load_cpu_s, args.duration, f"wrk {s.title} -> {target}")
            (work / f"wrk-{s.name}-{target}.txt").write_text(raw)
            _check(pt, f"wrk {s.title} -> {target}")
            points[target] = pt
            print(f"  {s.title:<24} {target:<8} {pt.rps:>9,.0f} RPS  p50 {pt.p50_ms:6.2f} ms  p99 {pt.p99_ms:6.2f} ms"
                  f"  CPU% gw/nginx/wrk {pt.cpu['gateway']:.0f}/{pt.cpu['nginx']:.0f}/{pt.cpu['load']:.0f}"
                  f"  other c0/c1 {pt.cpu['other0']:.0f}/{pt.cpu['other1']:.0f}", flush=True)
        out[s.name] = summarize_closed(points["gateway"], points["direct"], s)
    return out


def open_loop(args: argparse.Namespace, work: Path, gw: Gateway, up: Upstream, procs: Procs) -> dict[str, Any]:
    vegeta = vegeta_binary(REPO)
    out: dict[str, Any] = {}
    for s in (s for s in SCENARIOS if s.name in OPEN_LOOP):
        points: dict[str, Point] = {}
        for target, (url, headers) in _targets(s, gw, up).items():
            tgt = write_vegeta_target(work / f"vegeta-{s.name}-{target}.json", url, s.body(), headers)
            procs.check_alive()
            with sample_cpu(_cpu_trees(gw, up)) as cpu:
                pt, load_cpu_s = run_vegeta(vegeta, LOAD_CORE, tgt, OPEN_RATE, args.open_duration,
                                            work / f"vegeta-{s.name}-{target}.bin")
            _attach_cpu(pt, cpu.percent, load_cpu_s, args.open_duration, f"vegeta {s.title} -> {target}")
            _check(pt, f"vegeta {s.title} -> {target}")
            points[target] = pt
            print(f"  {s.title:<24} {target:<8} {pt.rps:>6.0f}/s  p50 {pt.p50_ms:6.2f} ms  p99 {pt.p99_ms:6.2f} ms"
                  f"  max {pt.max_ms:6.1f} ms", flush=True)
        out[s.name] = summarize_open(points["gateway"], points["direct"])
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (about 1 minute in total)")
    ap.add_argument("--duration", type=float, help="seconds per closed-loop wrk run (default 10, quick 4)")
    ap.add_argument("--open-duration", type=float, help="seconds per open-loop vegeta run (default 15, quick 5)")
    ap.add_argument("--warmup", type=float, help="seconds of discarded wrk load before each run (default 2, quick 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, raw wrk output) for inspection")
    ap.add_argument("--usage-sink", choices=("none", "kafka"), default="none",
                    help="kafka: a real Kafka broker (pinned to the load core) receives every usage event")
    ap.add_argument("--kafka-down", action="store_true",
                    help="with --usage-sink kafka: kill the broker once the gateway is up (events go to the node's log)")
    ap.add_argument("--observe", action="store_true",
                    help="only compare observability settings (all off, metrics, access log, both, both + 1%% "
                         "tracing, tracing off, off again = noise floor), interleaved rounds, same run; prints the "
                         "issue's cost bars")
    ap.add_argument("--guardrails", action="store_true",
                    help="only compare the default guardrail (secret detectors on every request's input, redact) "
                         "off vs on, interleaved rounds, same run (--observe-scenarios, default nonstream_1k)")
    ap.add_argument("--rounds", type=int, default=3, help="with --observe/--guardrails: interleaved rounds per config")
    ap.add_argument("--observe-configs", help="with --observe: a subset of the configurations, comma-separated "
                                              "(default all; 'off' is always measured first in each round)")
    ap.add_argument("--observe-scenarios", help="with --observe (default nonstream_1k,stream_20) or --guardrails "
                                                "(default nonstream_1k): scenario names")
    args = ap.parse_args(argv)
    args.observe_scenarios = args.observe_scenarios or ("nonstream_1k" if args.guardrails else "nonstream_1k,stream_20")
    args.duration = args.duration or (4.0 if args.quick else 10.0)
    args.open_duration = args.open_duration or (5.0 if args.quick else 15.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    return args


def _observe(args: argparse.Namespace, work: Path, up: Upstream, env: dict[str, Any], started: float) -> int:
    print(f"observability cost: wrk -t1 -c{CONNECTIONS} {args.duration:g}s x {args.rounds} interleaved rounds",
          flush=True)
    scen = [s for s in SCENARIOS if s.name in args.observe_scenarios.split(",")]
    configs = observe.CONFIGS
    if args.observe_configs:
        wanted = {"off", *args.observe_configs.split(",")}
        if unknown := wanted - set(configs):
            print(f"unknown --observe-configs {sorted(unknown)}; choose from {', '.join(configs)}", file=sys.stderr)
            return 2
        configs = {k: v for k, v in configs.items() if k in wanted}
    res = observe.observe_compare(args, work, up, scen, gateway_core=GATEWAY_CORE, load_core=LOAD_CORE,
                                  connections=CONNECTIONS, rounds=args.rounds, configs=configs)
    print("\n" + observe.table(res))
    text, bars = observe.bars(res)
    print("\n" + text)
    record = {"benchmark": "dataplane_overhead_observe", "env": env, "elapsed_s": round(time.monotonic() - started, 1),
              "settings": {"duration_s": args.duration, "rounds": args.rounds, "connections": CONNECTIONS,
                           "configs": configs}, "results": res, "bars": bars}
    path = write_json(REPO / "benchmarks" / "results", record, suffix="-observe")
    print(f"\nresults: {path.relative_to(REPO)}  ({record['elapsed_s']}s)")
    return 0


GUARDRAIL_CONFIGS = {"off": observe.OFF, "guardrail": observe.OFF, "off_control": observe.OFF}


def _guardrails(args: argparse.Namespace, work: Path, up: Upstream, env: dict[str, Any], started: float) -> int:
    """Same node and settings, the only difference the default guardrail in the snapshot; rounds interleaved."""
    print(f"guardrail cost: wrk -t1 -c{CONNECTIONS} {args.duration:g}s x {args.rounds} interleaved rounds "
          "(off, default guardrail, off again)", flush=True)
    scen = [s for s in SCENARIOS if s.name in args.observe_scenarios.split(",")]
    res = observe.observe_compare(args, work, up, scen, gateway_core=GATEWAY_CORE, load_core=LOAD_CORE,
                                  connections=CONNECTIONS, rounds=args.rounds, configs=GUARDRAIL_CONFIGS,
                                  guarded=frozenset({"guardrail"}))
    print("\n" + observe.table(res))
    for name, r in res.items():
        on = r["guardrail"]
        print(f"{name}: default guardrail on/off throughput ratio {on['rps_vs_off']:.3f} "
              f"(drop {100 * (1 - on['rps_vs_off']):.1f}%; per gateway core {on['per_core_vs_off']:.3f}); "
              f"off_control/off {r['off_control']['rps_vs_off']:.3f} is the noise floor")
    record = {"benchmark": "dataplane_overhead_guardrails", "env": env,
              "elapsed_s": round(time.monotonic() - started, 1),
              "settings": {"duration_s": args.duration, "rounds": args.rounds, "connections": CONNECTIONS,
                           "guardrail": "default-secrets: detect [secrets], action redact, input, every request"},
              "results": res}
    path = write_json(REPO / "benchmarks" / "results", record, suffix="-guardrails")
    print(f"\nresults: {path.relative_to(REPO)}  ({record['elapsed_s']}s)")
    return 0


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that stops every child


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if len(os.sched_getaffinity(0)) < 2 or not {GATEWAY_CORE, LOAD_CORE} <= os.sched_getaffinity(0):
        print("needs cores 0 and 1 (the gateway and the load are pinned apart)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-"))
    procs = Procs(work)
    stoppers: list[Callable[[], None]] = []
    started = time.monotonic()
    env = environment(REPO)  # the code measured is the code at the start
    try:
        up = start_nginx(procs, work, LOAD_CORE)
        if args.observe:
            return _observe(args, work, up, env, started)
        if args.guardrails:
            return _guardrails(args, work, up, env, started)
        sink_env: dict[str, str] = {}
        if args.usage_sink == "kafka":
            broker = start_kafka(work, LOAD_CORE)
            stoppers.append(broker.stop)
            sink_env = {"INTERLOCK_USAGE_SINK": "kafka", "INTERLOCK_KAFKA_BOOTSTRAP": broker.bootstrap}
            print(f"kafka {broker.bootstrap} (core {LOAD_CORE}) receives usage events", flush=True)
        gw = start_gateway(procs, work, up.port, GATEWAY_CORE, sink_env)
        if args.usage_sink == "kafka" and args.kafka_down:
            broker.kill()
            print("kafka killed (-9): the gateway keeps serving, usage events accumulate in its write-ahead log",
                  flush=True)
        if gw.note:
            print(f"WARNING: {gw.note}", file=sys.stderr)
        print(f"nginx :{up.port} (core {LOAD_CORE}), gateway :{gw.port} (core {GATEWAY_CORE}): {gw.launcher}")
        print(f"closed loop: wrk -t1 -c{CONNECTIONS} {args.duration:g}s per run after {args.warmup:g}s warm-up", flush=True)
        closed = closed_loop(args, work, gw, up, procs)
        print(f"open loop: vegeta {OPEN_RATE} RPS for {args.open_duration:g}s per run", flush=True)
        opened = open_loop(args, work, gw, up, procs)
        if args.usage_sink == "kafka" and not args.kafka_down:
            served = sum(sc["gateway"].requests for sc in (*closed.values(), *opened.values()))
            in_kafka = topic_messages(sink_env["INTERLOCK_KAFKA_BOOTSTRAP"], "interlock.usage.v1")
            print(f"usage events in Kafka: {in_kafka:,} for {served:,} measured gateway requests "
                  "(plus warm-up and checks)", flush=True)
            if in_kafka < served:
                raise BenchError(f"only {in_kafka} usage events reached Kafka for {served} requests")
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        for name in ("gateway", "gateway-fallback", "nginx"):
            if tail := procs.log_tail(name, 15):
                print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        for stop in stoppers:
            stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nClosed loop (wrk -t1 -c{CONNECTIONS}, {args.duration:g}s; gateway on core {GATEWAY_CORE}, "
          f"nginx + wrk on core {LOAD_CORE}; CPU% = percent of one core)")
    print(closed_loop_table(closed, SCENARIOS))
    print(f"\nOpen loop (vegeta {OPEN_RATE} RPS, {args.open_duration:g}s; added = gateway - direct)")
    print(open_loop_table(opened, SCENARIOS))
    if NOISE:
        print(f"\nWARNING: other processes took more than {NOISE_PCT:g}% of a benchmark core during:\n  "
              + "\n  ".join(NOISE) + "\n  the gateway figures understate it; see `RPS/gw core` and rerun on a quiet machine.")
    record = {"benchmark": "dataplane_overhead", "env": env, "elapsed_s": round(time.monotonic() - started, 1),
              "settings": {"duration_s": args.duration, "open_duration_s": args.open_duration, "warmup_s": args.warmup,
                           "connections": CONNECTIONS, "open_rate": OPEN_RATE, "gateway_core": GATEWAY_CORE,
                           "load_core": LOAD_CORE, "launcher": gw.launcher, "launcher_note": gw.note,
                           "usage_sink": args.usage_sink, "kafka_down": args.kafka_down,
                           "upstream": {"nonstream_bytes": up.nonstream_bytes, "stream_bytes": up.stream_bytes,
                                        "stream_chunks": up.stream_chunks}},
              "noise": NOISE, "closed_loop": closed, "open_loop": opened}
    path = write_json(REPO / "benchmarks" / "results", record, suffix="" if args.usage_sink == "none" else f"-{args.usage_sink}" + ("-down" if args.kafka_down else ""))
    print(f"\nresults: {path.relative_to(REPO)}  ({record['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
