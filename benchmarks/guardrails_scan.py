"""Guardrail detectors: recall and false positives per type on the labelled corpus, and scan speed.

Corpus: tests/guardrail_corpus.py (deterministic). Speed: the input-guardrail work on a ~100 KB coding-agent
request (walk the JSON strings + one multi-pattern scan with the default secret set), p50 over many runs,
against the same run's baseline of just parsing that body (what the proxy already does); RE2 vs Python re.

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

from dataplane.guardrails.catalog import expand
from dataplane.guardrails.engine import Scanner
from dataplane.guardrails.evaluate import evaluate
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

    raw = big_request()
    body = orjson.loads(raw)
    parse = _p50(lambda: orjson.loads(raw), args.runs)
    walk = _p50(lambda: TextIndex(body), args.runs)
    text = TextIndex(body).text
    scan = _p50(lambda: scanner.scan(text), args.runs)

    def stage() -> None:  # what the input stage does: walk, one DFA pre-check, then the scan only on a candidate
        t = TextIndex(body).text
        if scanner.maybe(t.encode("utf-8", "surrogatepass")):
            scanner.scan(t)
    both = _p50(stage, args.runs)
    print(f"\n{len(raw) / 1000:.0f} KB request: parse (baseline, the proxy does it anyway) {parse:.3f} ms p50; "
          f"walk {walk:.3f} ms; scan {scan:.3f} ms; walk+scan (added by the input guardrail) {both:.3f} ms p50 "
          f"= {both / parse:.1f}x the parse")
    py = Scanner(rules, engine="re")
    slow = _p50(lambda: py.scan(text), max(3, args.runs // 40))
    print(f"engine: RE2 {scan:.3f} ms vs Python re {slow:.1f} ms on the same text ({slow / scan:.0f}x)")


if __name__ == "__main__":
    main()
