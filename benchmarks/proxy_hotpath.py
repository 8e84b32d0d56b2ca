"""In-process cost of one request through Proxy.handle (µs per request), with a stub upstream and client.

No sockets, no event-loop I/O: what the gateway's own Python costs per request on the hot path
(auth, body parse, routing, budget admission when no limit applies, provider request building, relay,
usage capture, event). The same loop with a do-nothing handler is measured in the same run as the baseline.

    python benchmarks/proxy_hotpath.py            # ~10 s
    python benchmarks/proxy_hotpath.py --n 20000 --profile nonstream   # + cProfile top functions
    python benchmarks/proxy_hotpath.py --observe   # + the same proxy with metrics + access log (+ 1% traces)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import pstats
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Alias, KeyRecord, Model, PolicyDocument, Price, Provider, Team
from dataplane.dialects.registry import default_dialects
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.proxy import Endpoint, Proxy
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy, env_and_file_credentials
from dataplane.translate.registry import default_translations
from interlock.fakeprovider.recorded import OPENAI_CHAT, OPENAI_CHAT_STREAM, render_recorded_responses
from interlock_contracts.keys import hash_key, new_key_id, new_secret

PEPPER = b"bench-pepper"


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for c in self._chunks:
            yield c


class _Response:
    def __init__(self, payload: bytes, chunks: list[bytes]) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream" if chunks else "application/json"}
        self.content = _Body(chunks)
        self._payload = payload

    async def read(self) -> bytes:
        return self._payload

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Upstream:
    def __init__(self, payload: bytes, chunks: list[bytes]) -> None:
        self._payload = payload
        self._chunks = chunks

    def post(self, url: str, headers: Any, data: bytes, timeout_s: float, provider: str) -> _Response:
        return _Response(self._payload, self._chunks if b'"stream":true' in data else [])


class _Conn:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


class _Sink:
    def emit(self, event: Any) -> None:
        pass


def _policy(other_limits: bool = False) -> tuple[CompiledPolicy, str]:
    price = Price(input="0.15", output="0.60")
    limits: dict[str, Any] = {}
    if other_limits:  # a budget and a rate limit on another team: none applies to the benchmark's requests
        limits = {"budgets": [{"id": "b-other", "scope": "team", "scope_id": "other", "limit_usd": "100"}],
                  "rate_limits": [{"id": "r-other", "scope": "team", "scope_id": "other", "requests_per_minute": 10}]}
    doc = PolicyDocument(**limits,
        providers=[Provider(name="up", kind="openai_compatible", base_url="http://127.0.0.1:1/v1", credential="env:K")],
        models=[Model(name="bench-gpt", provider="up", upstream="gpt-4o-mini", price=price)],
        aliases=[Alias(name="fast", target="bench-gpt")],
        teams=[Team(id="bench", allowed_models=["fast"], default_tags={"env": "bench"}), Team(id="other")],
    )
    secret = new_secret()
    key = KeyRecord(id=new_key_id(), key_hash=hash_key(PEPPER, secret).hex(), team="bench", name="bench")
    snap = compile_snapshot(doc, [key], version=1, now_ms=int(time.time() * 1000))
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(),
                                        credentials=env_and_file_credentials({"K": "sk-up"})), secret


def _observed(policy: CompiledPolicy, recorded: Any, chunks: list[bytes], dialects: Any,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Proxies with the observer (metrics + JSON access log into /dev/null), and with 1% tracing as well."""
    import io

    from dataplane.observe.access_log import AccessLog
    from dataplane.observe.metrics import RequestMetrics
    from dataplane.observe.node import RequestObserver
    from interlock_contracts.metrics.exposition import Registry

    class _Null(io.RawIOBase):
        def write(self, b: Any) -> int:
            return len(b)

    out: dict[str, Any] = {}
    for name, trace in (("metrics+access_log", 0.0), ("metrics+access_log+trace1%", 0.01)):
        observer = RequestObserver(RequestMetrics(Registry()), AccessLog("json", "bench", _Null()))  # type: ignore[arg-type]
        kw: dict[str, Any] = {"observer": observer}
        if trace:
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            from dataplane.observe.tracing import Tracing

            kw["tracing"] = Tracing(sample=trace, node_id="bench", exporter=InMemorySpanExporter())
        p = Proxy(policy=lambda: policy, pepper=PEPPER, upstream=_Upstream(recorded[OPENAI_CHAT], chunks),  # type: ignore[arg-type]
                  sink=_Sink(), node_id="bench", translations=default_translations(dialects), **extra, **kw)
        out[name] = p.handle
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", choices=["nonstream", "stream", "big"])
    ap.add_argument("--other-limits", action="store_true", help="the policy has limits, none for these requests")
    ap.add_argument("--observe", action="store_true",
                    help="also measure proxies with metrics + access log (to /dev/null) and with 1%% tracing")
    args = ap.parse_args()
    policy, secret = _policy(args.other_limits)
    dialects = default_dialects()
    recorded = render_recorded_responses()
    chunks = [e + b"\n\n" for e in recorded[OPENAI_CHAT_STREAM].split(b"\n\n") if e]  # one read per event
    extra: dict[str, Any] = {}
    if "budgets" in inspect.signature(Proxy).parameters:  # so the same script runs on older commits (PYTHONPATH=...)
        from dataplane.budget.gate import BudgetGate, PoolTable

        extra["budgets"] = BudgetGate(PoolTable(), clock=time.time, wait_s=1.0)  # no limit applies: admission's fast path
    proxy = Proxy(policy=lambda: policy, pepper=PEPPER, upstream=_Upstream(recorded[OPENAI_CHAT], chunks),  # type: ignore[arg-type]
                  sink=_Sink(), node_id="bench", translations=default_translations(dialects), **extra)
    variants: dict[str, Any] = {"plain": proxy.handle}
    if args.observe:
        variants.update(_observed(policy, recorded, chunks, dialects, extra))
    ep = Endpoint(dialects["openai"], "chat", "/v1/chat/completions")
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    msgs = [{"role": "user", "content": "x" * 900}]
    bodies = {
        "nonstream": orjson.dumps({"model": "fast", "messages": msgs}),
        "stream": orjson.dumps({"model": "fast", "messages": msgs, "stream": True}),
        "big": orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 100_000}]}),
    }

    async def run(body: bytes, n: int, handler: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            req = Request("POST", "/v1/chat/completions", "", headers, body, True)
            resp = Responder(_Conn(), True)  # type: ignore[arg-type]
            await handler(req, resp, ep)
        return (time.perf_counter() - t0) / n * 1e6

    async def nothing(req: Request, resp: Responder, ep: Endpoint) -> None:
        resp.send(200, "application/json", b"{}")

    async def bench() -> None:
        for name, body in bodies.items():
            base = min([await run(body, args.n, nothing) for _ in range(args.rounds)])
            for h in variants.values():
                await run(body, 200, h)  # warm up, and check it answers
            us: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.rounds):  # interleaved: drift hits every variant alike
                for v, h in variants.items():
                    us[v].append(await run(body, args.n, h))
            plain = min(us["plain"])
            for v, xs in us.items():
                extra_us = f", +{min(xs) - plain:5.2f} µs vs plain" if v != "plain" else ""
                print(f"{name:10s} {v:24s} {min(xs):7.2f} µs/req (median {statistics.median(xs):7.2f}), "
                      f"loop baseline {base:5.2f} µs, ratio {min(xs) / base:5.1f}x{extra_us}")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await run(bodies[args.profile], args.n, proxy.handle)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)

    asyncio.run(bench())


if __name__ == "__main__":
    main()
