"""Fault scenarios against a real cluster (etcd, control plane, 3 nodes, fake provider with fixed usage).

Shared by tests/e2e/test_budget_faults_cluster.py (few seeds, CI) and benchmarks/budget_faults.py (seed sweep).
The truth is independent of the ledger: the fake provider's count of requests it received (each one billed
at the fixed cost, whether or not the client ever saw the answer) and what clients received.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import orjson

from tests.fixtures.cluster import Cluster, Node
from tests.fixtures.tcp_proxy import CuttableProxy

PICO = 10**12
TTL_S = 2.0  # short lease TTL: faults of 2 x TTL stay fast
NODE_ENV = {"INTERLOCK_BUDGET_TICK_S": "0.2", "INTERLOCK_BUDGET_WAIT_S": "1.0"}
PROMPT = orjson.dumps({"model": "m-fixed", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20})


@dataclass
class Outcome:
    limit: int  # pico-USD
    cost: int  # of one request (fixed usage)
    provider_requests: int  # received by the fake provider during the run
    received: int  # pico-USD clients got 200s for
    refused: int
    allowance: int = 0  # optimistic: per node per window

    @property
    def provider_spend(self) -> int:
        return self.provider_requests * self.cost

    @property
    def ratio(self) -> float:
        return self.provider_spend / self.limit


def start_cluster(c: Cluster, nodes: int = 3, *, proxied: int = 0) -> list[CuttableProxy]:
    """Fake provider, control plane (lease TTL TTL_S), `nodes` data planes; the first `proxied` of them reach
    the control plane through a CuttableProxy (returned)."""
    c.usage_env = dict(NODE_ENV)
    c.start_fake_provider()
    c.cp_env["INTERLOCK_BUDGET_LEASE_TTL_S"] = str(TTL_S)
    c.start_control_plane()
    c.apply(_policy(c, []))
    c.key = c.create_key(team="eng")  # type: ignore[attr-defined]
    proxies = []
    for i in range(nodes):
        if i < proxied:
            proxies.append(CuttableProxy("127.0.0.1", c.grpc_port).start())
            c.add_node(control_plane=f"127.0.0.1:{proxies[-1].port}")
        else:
            c.add_node()
    apply_budgets(c, [])
    return proxies


def _policy(c: Cluster, budgets: list[dict[str, Any]]) -> dict[str, Any]:
    doc = c.policy()
    doc["models"].append({"name": "m-fixed", "provider": "fake-openai", "price": {"input": "0.1", "output": "10"},
                          "max_output_tokens": 64})
    doc["teams"][0]["allowed_models"] += ["m-fixed"]
    doc["budgets"] = budgets
    return doc


def apply_budgets(c: Cluster, budgets: list[dict[str, Any]]) -> None:
    c.apply(_policy(c, budgets))
    for n in c.nodes:
        c.wait_ready(n)
    c.wait_in_sync()


def request_cost(c: Cluster) -> int:
    """The fixed cost of PROMPT (the fake answers 20 output tokens), from an unbudgeted request."""
    r = httpx.post(f"{c.nodes[0].url}/v1/chat/completions", content=PROMPT, timeout=10,
                   headers={"authorization": f"Bearer {c.key['secret']}", "content-type": "application/json"})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert u["completion_tokens"] == 20
    return int(u["prompt_tokens"]) * 100_000 + int(u["completion_tokens"]) * 10_000_000


def budget(bid: str, tag: str, limit: int, mode: str = "safe_share", allowance: int = 0) -> dict[str, Any]:
    return {"id": bid, "scope": "tag", "scope_id": f"bud={tag}", "window": "day",
            "limit_usd": str(Decimal(limit) / PICO), "offline_mode": mode,
            "optimistic_overshoot_usd": str(Decimal(allowance) / PICO)}


def fake_total(c: Cluster) -> int:
    return int(httpx.get(f"{c.fake_url}/_fake/stats", timeout=5).json()["total"])


def fake_latency(c: Cluster, ms: float | None) -> None:
    httpx.delete(f"{c.fake_url}/_fake/faults", timeout=5)
    if ms:
        r = httpx.post(f"{c.fake_url}/_fake/faults", json={"latency_ms": ms, "count": None}, timeout=5)
        assert r.status_code < 300, r.text


async def _worker(s: aiohttp.ClientSession, node: Node, secret: str, tag: str, end: float,
                  tally: dict[str, int]) -> None:
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json", "x-interlock-tags": f"bud={tag}"}
    while time.monotonic() < end:
        try:
            async with s.post(f"{node.url}/v1/chat/completions", data=PROMPT, headers=headers) as r:
                body = await r.read()
                if r.status == 200:
                    u = orjson.loads(body)["usage"]
                    tally["received"] += int(u["prompt_tokens"]) * 100_000 + int(u["completion_tokens"]) * 10_000_000
                    continue
                assert r.status in (402, 429, 503), (r.status, body[:300])
                tally["refused"] += 1
        except (TimeoutError, aiohttp.ClientError):
            pass  # the node is down (killed, restarting): a closed-loop client just retries
        await asyncio.sleep(0.05)


def run_load(c: Cluster, tag: str, seconds: float, *, workers: int = 8,
             faults: list[tuple[float, Callable[[], None]]] = ()) -> dict[str, int]:
    """Closed-loop clients (`workers` per node) for `seconds`; each fault runs in a thread at its offset."""
    tally = {"received": 0, "refused": 0}
    secret = c.key["secret"]  # type: ignore[attr-defined]

    def fire(at: float, fn: Callable[[], None], t0: float) -> None:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        fn()

    async def main() -> None:
        end = time.monotonic() + seconds
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
            await asyncio.gather(*(_worker(s, n, secret, tag, end, tally) for n in c.nodes for _ in range(workers)))

    t0 = time.monotonic()
    threads = [threading.Thread(target=fire, args=(at, fn, t0)) for at, fn in faults]
    for t in threads:
        t.start()
    asyncio.run(main())
    for t in threads:
        t.join(60)
    return tally


def measure(c: Cluster, tag: str, limit: int, cost: int, seconds: float, allowance: int = 0,
            **kw: Any) -> Outcome:
    before = fake_total(c)
    tally = run_load(c, tag, seconds, **kw)
    return Outcome(limit, cost, fake_total(c) - before, tally["received"], tally["refused"], allowance)


# ---- faults ------------------------------------------------------------------------------------------------
def crash_and_restart(c: Cluster, node: Node) -> Callable[[], None]:
    def fn() -> None:
        node.proc.kill()  # kill -9
        c.start_node(node, wait_ready=False)  # same node id, same state dir
    return fn


def control_plane_outage(c: Cluster, seconds: float) -> Callable[[], None]:
    def fn() -> None:
        assert c.cp is not None
        c.cp.kill()
        time.sleep(seconds)
        c.start_control_plane()
    return fn


def link_cut(proxy: CuttableProxy, seconds: float) -> Callable[[], None]:
    def fn() -> None:
        proxy.cut()
        time.sleep(seconds)
        proxy.restore()
    return fn


def seeded(seed: int) -> random.Random:
    return random.Random(9000 + seed)
