#!/usr/bin/env python3
"""Per-request cost of building the upstream request (adapter.build_request), against the inline code
the proxy ran before the adapter hook, measured in the same run.

    flock /tmp/coord/bench.lock python benchmarks/provider_requests.py [--iterations 5000] [--size-kb 76]

For each provider kind it times, per request, prepare_body + build_request on a chat/messages body of
--size-kb (URL, headers, serialisation, and for Bedrock the SigV4 signature over the final bytes):

  baseline : `[*prov.headers, *forwarded]; prov.base_url + paths[op]; orjson.dumps(body)` (the old proxy lines)
  <kind>   : adapter.prepare_body(...) + adapter.build_request(...)

and prints p50/p99, the added time vs the baseline and the ratio. Non-signing kinds should add ~nothing;
SigV4 adds the SHA-256 of the body plus botocore's canonicalisation. Single process, no I/O.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Model, PolicyDocument, Provider
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy, RuntimeProvider

SECRETS = {"KEY": "sk-test", "AWS": "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
CLIENT_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219", "user-agent": "bench"}


def providers() -> dict[str, RuntimeProvider]:
    vertex = {"project": "p", "location": "us-east5"}
    doc = PolicyDocument(
        providers=[
            Provider(name="openai", kind="openai", base_url="https://api.openai.com/v1", credential="env:KEY"),
            Provider(name="anthropic", kind="anthropic", base_url="https://api.anthropic.com", credential="env:KEY"),
            Provider(name="azure", kind="azure_openai", base_url="https://r.openai.azure.com", credential="env:KEY",
                     options={"api_version": "2024-10-21"}),
            Provider(name="vertex_anthropic", kind="vertex_anthropic", base_url="https://us-east5-aiplatform.googleapis.com",
                     credential="env:KEY", options=vertex),
            Provider(name="bedrock_anthropic", kind="bedrock_anthropic",
                     base_url="https://bedrock-runtime.us-east-1.amazonaws.com", credential="env:AWS",
                     options={"region": "us-east-1"}),
        ],
        models=[Model(name="m", provider="openai")],
    )
    snap = compile_snapshot(doc, [], version=1, now_ms=0)
    policy = CompiledPolicy.from_snapshot(snap, adapters=default_providers(),
                                          credentials=lambda ref: SECRETS.get(ref.removeprefix("env:")))
    return dict(policy.providers)


def body_of(size_kb: int) -> dict[str, Any]:
    text = ("the agent reads files, runs tests and edits code " * 40)[:2000]
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i in range(size_kb * 1024 // 2000)]
    return {"model": "m", "max_tokens": 4096, "stream": True, "messages": messages}


def timed(fn: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):
        fn()
    gc.collect()
    gc.disable()
    out = []
    try:
        for _ in range(iterations):
            t = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t) / 1000)
    finally:
        gc.enable()
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=5000)
    ap.add_argument("--size-kb", type=int, default=76)
    args = ap.parse_args()
    provs = providers()
    raw = orjson.dumps(body_of(args.size_kb))

    def baseline() -> object:
        prov = provs["anthropic"]
        body = orjson.loads(raw)
        prov.adapter.prepare_body(body, "upstream", True)
        headers = [*prov.headers, *((h, CLIENT_HEADERS[h]) for h in prov.adapter.forward_headers if h in CLIENT_HEADERS)]
        return prov.base_url + prov.adapter.paths["messages"], headers, orjson.dumps(body)

    def adapter_run(name: str, op: str) -> Callable[[], object]:
        prov = provs[name]

        def run() -> object:
            body = orjson.loads(raw)
            prov.adapter.prepare_body(body, "upstream:0", True, op)
            return prov.adapter.build_request(prov, op, "upstream:0", True, body, CLIENT_HEADERS)
        return run

    base = timed(baseline, args.iterations)
    b50 = statistics.median(base)
    print(f"body {len(raw) / 1024:.0f} KB, {args.iterations} iterations (each includes orjson.loads of the client body)")
    print(f"{'case':<20} {'p50 us':>9} {'p99 us':>9} {'added p50':>10} {'ratio':>7}")
    print(f"{'baseline (inline)':<20} {b50:9.1f} {base[int(len(base) * 0.99)]:9.1f} {'':>10} {'1.00':>7}")
    for name, op in (("anthropic", "messages"), ("openai", "chat"), ("azure", "chat"), ("vertex_anthropic", "messages"),
                     ("bedrock_anthropic", "messages")):
        t = timed(adapter_run(name, op), args.iterations)
        p50 = statistics.median(t)
        print(f"{name:<20} {p50:9.1f} {t[int(len(t) * 0.99)]:9.1f} {p50 - b50:+10.1f} {p50 / b50:7.2f}")


if __name__ == "__main__":
    main()
