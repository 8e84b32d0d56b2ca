#!/usr/bin/env python3
"""In-process CPU per request of metrics, the access log and tracing, through Proxy.handle (stub upstream,
no sockets), interleaved in one process; optionally against the observe modules of an older commit.

    python benchmarks/observe_hotpath.py                      # ~1 min
    python benchmarks/observe_hotpath.py --baseline e7619ea   # + the access log and tracing of that commit

Figures: CPU µs per request (process time, so other processes' load counts less than in wall time), min and
median over interleaved rounds, and the µs each variant adds to `plain` (no observer, tracing off). The
access log writes to a null stream; spans are encoded as the OTLP exporter would, not sent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's dataplane/, whatever is installed

import orjson
import proxy_hotpath as ph

from dataplane.budget.gate import BudgetGate, PoolTable
from dataplane.dialects.registry import default_dialects
from dataplane.observe import access_log, tracing
from dataplane.observe.metrics import RequestMetrics
from dataplane.observe.node import RequestObserver
from dataplane.translate.registry import default_translations
from interlock_contracts.metrics.exposition import Registry

REPO = Path(__file__).resolve().parent.parent


class _Null(io.RawIOBase):
    def write(self, b: Any) -> int:
        return len(b)


class _PerRequest:
    """The observer as it was before records were batched: metrics recorded and the line captured per request."""

    def __init__(self, metrics: Any, access: Any) -> None:
        self._metrics, self._access = metrics, access

    def done(self, rec: Any) -> None:
        if self._metrics is not None:
            self._metrics.record(rec)
        if self._access is not None:
            self._access.write(rec)


def _exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Encoding(SpanExporter):  # the OTLP exporter's CPU work, without the network
        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    return Encoding()


def _module_at(rev: str, path: str, name: str, tmp: Path) -> ModuleType:
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True).stdout
    f = tmp / f"{name}.py"
    f.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, f)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="requests per variant per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--baseline", help="a commit whose dataplane/observe access_log.py and tracing.py to compare")
    args = ap.parse_args()
    policy, secret = ph._policy()
    dialects = default_dialects()
    recorded = ph.render_recorded_responses()

    def proxy(observer: Any = None, trace: Any = None) -> Any:
        return ph.Proxy(policy=lambda: policy, pepper=ph.PEPPER, upstream=ph._Upstream(recorded[ph.OPENAI_CHAT], []),  # type: ignore[arg-type]
                        sink=ph._Sink(), node_id="bench", translations=default_translations(dialects),  # type: ignore[arg-type]
                        budgets=BudgetGate(PoolTable(), clock=time.time, wait_s=1.0), observer=observer,
                        tracing=trace).handle

    def observer(al_mod: Any, metrics: bool = True, log: bool = True) -> Any:
        m = RequestMetrics(Registry()) if metrics else None
        a = al_mod.AccessLog("json", "bench", _Null()) if log else None
        if hasattr(al_mod.AccessLog, "write_batch"):
            return RequestObserver(m, a)
        return _PerRequest(m, a)  # an access log from before the batching observer: what the node did then

    variants: dict[str, Any] = {
        "plain": proxy(),
        "metrics": proxy(observer(access_log, log=False)),
        "access_log": proxy(observer(access_log, metrics=False)),
        "metrics+access_log": proxy(observer(access_log)),
        "metrics+access_log+trace_1pct": proxy(observer(access_log),
                                               tracing.Tracing(sample=0.01, node_id="b", exporter=_exporter())),
        "trace_on_unsampled": proxy(None, tracing.Tracing(sample=1e-9, node_id="b", exporter=_exporter())),
    }
    tmp = Path(tempfile.mkdtemp(prefix="observe-baseline-"))
    if args.baseline:
        old_al = _module_at(args.baseline, "dataplane/observe/access_log.py", "baseline_access_log", tmp)
        old_tr = _module_at(args.baseline, "dataplane/observe/tracing.py", "baseline_tracing", tmp)
        variants["baseline access_log"] = proxy(observer(old_al, metrics=False))
        variants["baseline metrics+access_log"] = proxy(observer(old_al))
        variants["baseline metrics+access_log+trace_1pct"] = proxy(
            observer(old_al), old_tr.Tracing(sample=0.01, node_id="b", exporter=_exporter()))
    ep = ph.Endpoint(dialects["openai"], "chat", "/v1/chat/completions")
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    body = orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 900}]})

    async def run(handler: Any, n: int) -> float:
        t0 = time.process_time()
        for i in range(n):
            await handler(ph.Request("POST", "/v1/chat/completions", "", headers, body, True),
                          ph.Responder(ph._Conn(), True), ep)  # type: ignore[arg-type]
            if i % 200 == 0:
                await asyncio.sleep(0)  # timers run (the access log's flush), as on a serving loop
        return (time.process_time() - t0) / n * 1e6

    async def bench() -> None:
        for h in variants.values():
            await run(h, 300)  # warm up, and check it answers
        us: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v, h in variants.items():
                us[v].append(await run(h, args.n))
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        p_min, p_med = min(us["plain"]), statistics.median(us["plain"])
        print(f"{'variant':<40} {'min µs':>8} {'median':>8} {'+min':>7} {'+median':>8}")
        for v, xs in us.items():
            print(f"{v:<40} {min(xs):8.2f} {statistics.median(xs):8.2f} {min(xs) - p_min:7.2f} "
                  f"{statistics.median(xs) - p_med:8.2f}")

    asyncio.run(bench())


if __name__ == "__main__":
    main()
