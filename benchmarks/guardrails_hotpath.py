"""What the default guardrail adds on the request path: Proxy.handle with guardrails off vs on, same run.

In-process, stub upstream and client (as benchmarks/proxy_hotpath.py): 1 KB non-streamed chat requests
(throughput, µs/request) with no guardrail vs the default secret guardrail on input (redact); and time to
first byte of a stream with input + output redaction vs none. Rounds alternate off/on so machine noise
hits both alike.

    python benchmarks/guardrails_hotpath.py           # ~20 s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, benchmarks/ as packages

import orjson

from benchmarks.proxy_hotpath import PEPPER, _Sink, _Upstream
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.guardrails import Guardrail
from controlplane.policy.model import Alias, KeyRecord, Model, PolicyDocument, Price, Provider, Team
from dataplane.dialects.registry import default_dialects
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.guardrail_stage import Guardrails
from dataplane.pipeline.proxy import Endpoint, Proxy
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy, env_and_file_credentials
from dataplane.translate.registry import default_translations
from interlock.fakeprovider.recorded import OPENAI_CHAT, OPENAI_CHAT_STREAM, render_recorded_responses
from interlock_contracts.keys import hash_key, new_key_id, new_secret


class _FirstWrite:
    closed = False

    def __init__(self) -> None:
        self.first = 0.0

    def write(self, data: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter()

    async def drain(self) -> None:
        pass


def _policy(direction: str | None) -> tuple[CompiledPolicy, str]:
    guardrails = [] if direction is None else [
        Guardrail(id="default-secrets", detect=["secrets"], action="redact", direction=direction)]  # type: ignore[arg-type]
    doc = PolicyDocument(
        providers=[Provider(name="up", kind="openai_compatible", base_url="http://127.0.0.1:1/v1", credential="env:K")],
        models=[Model(name="bench-gpt", provider="up", upstream="gpt-4o-mini", price=Price(input="0.15", output="0.6"))],
        aliases=[Alias(name="fast", target="bench-gpt")], teams=[Team(id="bench")], guardrails=guardrails)
    secret = new_secret()
    key = KeyRecord(id=new_key_id(), key_hash=hash_key(PEPPER, secret).hex(), team="bench", name="bench")
    snap = compile_snapshot(doc, [key], version=1, now_ms=int(time.time() * 1000))
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(),
                                        credentials=env_and_file_credentials({"K": "sk-up"})), secret


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    dialects = default_dialects()
    recorded = render_recorded_responses()
    chunks = [e + b"\n\n" for e in recorded[OPENAI_CHAT_STREAM].split(b"\n\n") if e]
    ep = Endpoint(dialects["openai"], "chat", "/v1/chat/completions")
    text = ("def handler(event):\n    # checksum 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
            "    token = event['headers'].get('authorization')\n    return {'id': '3f2b8c1e-4d5a-4e6f-8a7b'}\n") * 6
    msgs = [{"role": "user", "content": text[:900]}]
    nonstream = orjson.dumps({"model": "fast", "messages": msgs})
    stream = orjson.dumps({"model": "fast", "messages": msgs, "stream": True})

    def proxy(direction: str | None) -> tuple[Proxy, str]:
        policy, secret = _policy(direction)
        return Proxy(policy=lambda: policy, pepper=PEPPER, upstream=_Upstream(recorded[OPENAI_CHAT], chunks),  # type: ignore[arg-type]
                     sink=_Sink(), node_id="bench", translations=default_translations(dialects),  # type: ignore[arg-type]
                     guardrails=Guardrails()), secret

    async def per_request(p: Proxy, secret: str, body: bytes, n: int) -> float:
        headers = {"authorization": f"Bearer {secret}"}
        t0 = time.perf_counter()
        for _ in range(n):
            await p.handle(Request("POST", ep.path, "", headers, body, True), Responder(_FirstWrite(), True), ep)  # type: ignore[arg-type]
        return (time.perf_counter() - t0) / n * 1e6

    async def ttfb(p: Proxy, secret: str, n: int) -> float:
        headers = {"authorization": f"Bearer {secret}"}
        ts = []
        for _ in range(n):
            conn = _FirstWrite()
            t0 = time.perf_counter()
            await p.handle(Request("POST", ep.path, "", headers, stream, True), Responder(conn, True), ep)  # type: ignore[arg-type]
            ts.append((conn.first - t0) * 1e6)
        return statistics.median(ts)

    async def bench() -> None:
        (off, s_off), (on, s_on), (both, s_both) = proxy(None), proxy("input"), proxy("both")
        for p, s in ((off, s_off), (on, s_on), (both, s_both)):
            await per_request(p, s, nonstream, 200)
        r_off: list[float] = []
        r_on: list[float] = []
        t_off: list[float] = []
        t_on: list[float] = []
        for _ in range(args.rounds):
            r_off.append(await per_request(off, s_off, nonstream, args.n))
            r_on.append(await per_request(on, s_on, nonstream, args.n))
            t_off.append(await ttfb(off, s_off, args.n // 5))
            t_on.append(await ttfb(both, s_both, args.n // 5))
        a, b = statistics.median(r_off), statistics.median(r_on)
        print(f"1 KB non-stream: guardrails off {a:7.2f} µs/req, default secret guardrail on {b:7.2f} µs/req "
              f"(median of {args.rounds} alternating rounds): throughput drop {100 * (1 - a / b):5.1f}%")
        c, d = statistics.median(t_off), statistics.median(t_on)
        print(f"stream time to first byte (in-process): off {c:7.2f} µs, input+output redaction {d:7.2f} µs: "
              f"added {d - c:6.2f} µs ({(d - c) / 1000:.3f} ms)")

    asyncio.run(bench())


if __name__ == "__main__":
    main()
