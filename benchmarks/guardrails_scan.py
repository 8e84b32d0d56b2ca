"""Guardrail detectors: recall and false positives per type on the labelled corpus, and scan speed.

Corpus: tests/guardrail_corpus.py (deterministic). Speed: the input-guardrail work (walk the JSON strings + one
multi-pattern scan with the default secret set), p50 over many runs, each against the same run's baseline of
parsing that body (what the proxy already does): a ~100 KB coding-agent request seen for the first time (the
bar), an agent session resending its growing conversation every turn (the scan cache's case), the 1 KB body of
dataplane_overhead.py; RE2 vs Python re.

    python benchmarks/guardrails_scan.py            # ~20 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, benchmarks/ as packages

import orjson

from benchmarks.overhead.load import Scenario
from dataplane.guardrails.catalog import expand
from dataplane.guardrails.engine import Scanner
from dataplane.guardrails.evaluate import evaluate
from dataplane.guardrails.scancache import ScanCache, scan_index
from dataplane.guardrails.walk import TextIndex
from tests.guardrail_corpus import benign_samples, secret_samples


def _p50(fn: Callable[[], object], n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def big_request(size: int = 100_000) -> bytes:
    """A Claude Code-shaped request of ~size bytes built from benign corpus tool results."""
    msgs: list[object] = []
    for s in benign_samples():
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                  "content": orjson.dumps(s.body).decode()}]})
        if len(orjson.dumps(msgs)) >= size:
            break
    return orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": msgs})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    rules = expand(["secrets"])
    scanner = Scanner(rules)
    t = time.perf_counter()
    r = evaluate(scanner, secret_samples(), benign_samples())
    print(f"corpus evaluated in {time.perf_counter() - t:.1f} s ({scanner.engine}, {len(rules)} secret rules)")
    hit, total = r["hit"], r["total"]
    print(f"\n{'type':34s} {'recall':>8s}")
    for k in sorted(total):
        print(f"{k:34s} {hit[k]:>3d}/{total[k]:<3d} {100 * hit[k] / total[k]:6.1f}%")
    print(f"{'OVERALL':34s} {sum(hit.values())}/{sum(total.values())} "
          f"{100 * sum(hit.values()) / sum(total.values()):6.2f}%")
    fp, seen = r["fp"], r["seen"]
    print(f"\n{'benign shape':34s} {'false positives':>16s}")
    for k in sorted(seen):
        print(f"{k:34s} {fp[k]:>5d}/{seen[k]:<5d} {100 * fp[k] / seen[k]:6.2f}%")
    print(f"{'OVERALL':34s} {sum(fp.values())}/{sum(seen.values())} "
          f"{100 * sum(fp.values()) / sum(seen.values()):6.3f}%  rules: {dict(r['fp_rules'])}")

    rounds = args.runs
    print(f"\nspeed: p50 over {rounds} runs; baseline = orjson.loads of the same body (the proxy parses it anyway); "
          "'added' = walk + scan, what the input guardrail adds")
    raw = big_request()
    body = orjson.loads(raw)
    parse = _p50(lambda: orjson.loads(raw), rounds)
    walk = _p50(lambda: TextIndex(body), rounds)
    text = TextIndex(body).text
    scan = _p50(lambda: scanner.scan(text), rounds)
    plain = _p50(lambda: scan_index(scanner, None, TextIndex(body)), rounds)
    cold = _p50(lambda: scan_index(scanner, ScanCache(), TextIndex(body)), rounds)  # first seen: a fresh cache
    warm_cache = ScanCache()
    warm = _p50(lambda: scan_index(scanner, warm_cache, TextIndex(body)), rounds)
    print(f"cold {len(raw) / 1000:.0f} KB request (first seen), one parsed body walked again and again: parse "
          f"{parse:.3f} ms (baseline); walk {walk:.3f} ms; scan {scan:.3f} ms; added: walk+scan {plain:.3f} ms "
          f"without the cache, {cold:.3f} ms with it (hashing and storing every string) = {cold / parse:.1f}x the "
          f"parse; same body again {warm:.3f} ms")
    fparse, fplain, fcold = _fresh(raw, scanner, rounds)
    print(f"cold {len(raw) / 1000:.0f} KB request, freshly parsed each time (as the proxy sees it: new objects, "
          f"colder CPU caches): parse {fparse:.3f} ms (baseline); added: walk+scan {fplain:.3f} ms without the "
          f"cache, {fcold:.3f} ms with it  <- the bar (<= 1 ms)")
    agent(scanner, max(5, rounds // 10))
    small = orjson.loads(Scenario("nonstream_1k", "", "m", False, 1024, 0).body())
    sraw = orjson.dumps(small)
    sparse = _p50(lambda: orjson.loads(sraw), rounds * 10)
    scold = _p50(lambda: scan_index(scanner, ScanCache(), TextIndex(small)), rounds * 10)
    splain = _p50(lambda: scan_index(scanner, None, TextIndex(small)), rounds * 10)
    small_cache = ScanCache()
    swarm = _p50(lambda: scan_index(scanner, small_cache, TextIndex(small)), rounds * 10)
    print(f"1 KB request (dataplane_overhead.py's body): parse {sparse * 1000:.1f} us (baseline); added: "
          f"{splain * 1000:.1f} us without the cache, {scold * 1000:.1f} us first seen, {swarm * 1000:.1f} us repeated "
          "(wrk repeats one body, so the end-to-end figure is the repeated one)")
    py = Scanner(rules, engine="re")
    slow = _p50(lambda: py.scan(text), max(3, rounds // 40))
    print(f"engine: RE2 {scan:.3f} ms vs Python re {slow:.1f} ms on the same text ({slow / scan:.0f}x)")


def _fresh(raw: bytes, scanner: Scanner, rounds: int) -> tuple[float, float, float]:
    """p50 of parse, then walk+scan without and with a (fresh) cache, each on a newly parsed body."""
    ts: list[tuple[float, float, float]] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        a = orjson.loads(raw)
        t1 = time.perf_counter()
        scan_index(scanner, None, TextIndex(a))
        t2 = time.perf_counter()
        b = orjson.loads(raw)
        t3 = time.perf_counter()
        scan_index(scanner, ScanCache(), TextIndex(b))
        ts.append((t1 - t0, t2 - t1, time.perf_counter() - t3))
    return tuple(statistics.median(x[i] for x in ts) * 1000 for i in range(3))  # type: ignore[return-value]


def agent(scanner: Scanner, reps: int) -> None:
    """The realistic agent case: each turn resends the whole conversation plus one new tool result and answer.
    Per turn, p50 over `reps` replays of the whole conversation, each replay with a fresh cache (so turn 1 is
    cold and every later turn finds the earlier strings in the cache, as one session on one node would)."""
    turns = conversation()
    bodies = [orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": turns[:n]})
              for n in range(2, len(turns) + 1, 2)]
    per: list[list[tuple[float, float, float]]] = [[] for _ in bodies]
    for _ in range(reps):
        cache = ScanCache()
        for k, b in enumerate(bodies):
            t0 = time.perf_counter()
            parsed = orjson.loads(b)
            t1 = time.perf_counter()
            scan_index(scanner, None, TextIndex(parsed))
            t2 = time.perf_counter()
            scan_index(scanner, cache, TextIndex(parsed))
            t3 = time.perf_counter()
            per[k].append((t1 - t0, t2 - t1, t3 - t2))
    med = [[statistics.median(x[i] for x in runs) * 1000 for i in range(3)] for runs in per]
    total = [sum(m[i] for m in med) for i in range(3)]
    last = med[-1]
    print(f"agent session: {len(bodies)} turns growing to {len(bodies[-1]) / 1000:.0f} KB, p50 of {reps} replays "
          f"(fresh cache each): last turn parse {last[0]:.3f} ms (baseline), added {last[1]:.3f} ms without the "
          f"cache, {last[2]:.3f} ms with it; whole session parse {total[0]:.1f} ms, added {total[1]:.1f} ms "
          f"without the cache, {total[2]:.1f} ms with it ({total[1] / max(total[2], 1e-9):.1f}x less)")


def conversation(size: int = 100_000) -> list[object]:
    """Tool results from the benign corpus, each followed by a short assistant answer, ~size bytes in all."""
    msgs: list[object] = []
    n = 0
    for s in benign_samples():
        part = orjson.dumps(s.body).decode()
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{n}", "content": part}]})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": f"Read it; next step {n}."}]})
        n += len(part) + 120
        if n >= size:
            break
    return msgs


if __name__ == "__main__":
    main()
