"""Budgets and rate limits across real processes: etcd, control plane (ledger + BudgetService), 3 data planes.

Every amount is checked two ways: from what clients were actually served (the usage in each 200 response,
priced exactly) and from the control plane's ledger (GET /admin/v1/budgets).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from multidict import CIMultiDict

from dataplane.budget.estimate import input_tokens_upper_bound
from tests.fixtures.cluster import Cluster, wait_until

pytestmark = pytest.mark.integration

PICO = 10**12
# m-budget: output dominates the price, so worst-case reservations stay close to actual spend
IN_PICO, OUT_PICO = 100_000, 10_000_000  # 0.1 and 10 USD per Mtok
NODE_ENV = {"INTERLOCK_BUDGET_TICK_S": "0.2", "INTERLOCK_BUDGET_WAIT_S": "1.5"}


def start(cluster_factory: Callable[..., Cluster], nodes: int, lease_ttl_s: float = 20) -> Cluster:
    return start_cluster(cluster_factory(nodes, setup=False), nodes, lease_ttl_s)


def start_cluster(c: Cluster, nodes: int, lease_ttl_s: float = 20) -> Cluster:
    """Fake provider, control plane (with `lease_ttl_s`), `nodes` data planes, one key of team eng (c.key)."""
    c.usage_env = dict(NODE_ENV)
    c.start_fake_provider()
    c.cp_env["INTERLOCK_BUDGET_LEASE_TTL_S"] = str(lease_ttl_s)
    c.start_control_plane()
    c.apply(c.policy())
    c.key = c.create_key(team="eng")  # type: ignore[attr-defined]
    for _ in range(nodes):
        c.add_node()
    for n in c.nodes:
        c.wait_ready(n)
    return c


def policy(c: Cluster, *, budgets: list[dict[str, Any]] = (), rate_limits: list[dict[str, Any]] = ()) -> dict[str, Any]:
    doc = c.policy()
    doc["models"].append({"name": "m-budget", "provider": "fake-openai", "price": {"input": "0.1", "output": "10"},
                          "max_output_tokens": 64})
    doc["models"].append({"name": "m-short", "provider": "fake-openai", "price": {"input": "0.1", "output": "10"},
                          "max_output_tokens": 5})  # the fake answers 20 tokens: reservations fall short
    doc["teams"][0]["allowed_models"] += ["m-budget", "m-short"]
    doc["budgets"] = list(budgets)
    doc["rate_limits"] = list(rate_limits)
    return doc


def fake_fault(c: Cluster, **rule: Any) -> None:
    """The gateway does not forward x-fake-* headers; faults are scheduled on the fake provider instead."""
    r = httpx.post(f"{c.fake_url}/_fake/faults", json=rule, timeout=5)
    assert r.status_code < 300, r.text


def apply(c: Cluster, doc: dict[str, Any]) -> None:
    c.apply(doc)
    c.wait_in_sync()


def budget_rows(c: Cluster) -> dict[str, dict[str, Any]]:
    r = c.admin("GET", "/budgets")
    assert r.status_code == 200, r.text
    return {f"{b['kind']}:{b['limit_id']}:{b['window_key']}": b for b in r.json()["budgets"]}


def pico(usd: str) -> int:
    return int(Decimal(usd) * PICO)


def cost_of(body: dict[str, Any]) -> int:
    u = body["usage"]
    return int(u["prompt_tokens"]) * IN_PICO + int(u["completion_tokens"]) * OUT_PICO


async def post(s: aiohttp.ClientSession, url: str, secret: str, raw: bytes, headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with s.post(f"{url}/v1/chat/completions", data=raw,
                      headers={"authorization": f"Bearer {secret}", "content-type": "application/json",
                               **(headers or {})}) as r:
        return r.status, orjson.loads(await r.read()), CIMultiDict(r.headers)  # type: ignore[return-value]


def chat_raw(rng: random.Random, max_tokens: int) -> bytes:
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(1, 12)))
    return orjson.dumps({"model": "m-budget", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})


async def burst(c: Cluster, secret: str, seed: int, n: int, tag: str) -> tuple[int, int, int]:
    """n concurrent requests spread over every node; returns (served spend in pico, served, refused)."""
    rng = random.Random(seed)
    reqs = []
    for i in range(n):
        mt = rng.randint(4, 40)
        reqs.append((c.nodes[i % len(c.nodes)].url, chat_raw(rng, mt)))
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
        results = await asyncio.gather(*(post(s, url, secret, raw, {"x-interlock-tags": f"bud={tag}"})
                                         for url, raw in reqs))
    spent = served = refused = 0
    for status, body, _ in results:
        if status == 200:
            spent += cost_of(body)
            served += 1
        else:
            assert status in (402, 429), (status, body)
            refused += 1
    return spent, served, refused


def settled_when_quiet(c: Cluster, limit_id: str, timeout: float = 20) -> dict[str, Any]:
    """The ledger row once every node has reported its spend and handed back its lease."""
    row: dict[str, Any] = {}

    def quiet() -> bool:
        nonlocal row
        row = next(b for k, b in budget_rows(c).items() if k.startswith(f"budget:{limit_id}:"))
        return pico(row["leased"]) == 0

    wait_until(quiet, timeout, f"budget {limit_id} leases returned", interval=0.2)
    return row


SEEDS = 20


def seed_budgets(c: Cluster, seeds: int) -> dict[int, int]:
    """One lifetime tag budget per seed (bud=s<N>), $0.025..$0.040: ~1.6x less than 500 requests' demand."""
    limits = {s: random.Random(1000 + s).randint(25, 40) * 10**9 for s in range(seeds)}
    apply(c, policy(c, budgets=[{"id": f"seed{s}", "scope": "tag", "scope_id": f"bud=s{s}", "window": "lifetime",
                                 "limit_usd": str(Decimal(b) / PICO)} for s, b in limits.items()]))
    return limits


def run_seed(c: Cluster, secret: str, seed: int, limit: int) -> tuple[int, int, int, dict[str, Any]]:
    """500 concurrent requests over every node against budget `seed`; (served spend, served, refused, ledger row)."""
    spent, served, refused = asyncio.run(burst(c, secret, seed, 500, f"s{seed}"))
    return spent, served, refused, settled_when_quiet(c, f"seed{seed}")


def test_three_nodes_never_exceed_a_budget_and_use_at_least_95_percent(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """3 nodes x 500 concurrent requests per seed, demand ~1.6x the budget; a fresh tag budget per seed."""
    c = start(cluster_factory, 3)
    secret = c.key["secret"]  # type: ignore[attr-defined]
    limits = seed_budgets(c, SEEDS)
    ratios = []
    for s in range(SEEDS):
        spent, served, refused, row = run_seed(c, secret, s, limits[s])
        limit = limits[s]
        assert spent <= limit, f"seed {s}: served ${spent / PICO} > budget ${limit / PICO}"
        assert pico(row["settled"]) == spent, (s, row, spent)  # the ledger saw exactly what was served
        assert refused > 0, f"seed {s}: demand did not exceed the budget"
        assert spent >= 0.95 * limit, f"seed {s}: only {spent / limit:.3f} of the budget used ({served} served)"
        assert pico(row["overshoot"]) == 0
        ratios.append(spent / limit)
    print(f"settled/B over {SEEDS} seeds: min {min(ratios):.4f} max {max(ratios):.4f}")


def metric(text: str, name: str, **labels: str) -> int:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += int(line.rsplit(" ", 1)[1])
    assert want, "labels required"
    return total


def test_provider_output_is_bounded_by_the_reservation(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """No max_tokens: the reservation uses the model's max_output_tokens (5) and the request sent upstream is
    bounded to it (the fake would otherwise answer 20 tokens), so nothing overshoots (dataplane/budget/bound.py)."""
    c = start(cluster_factory, 2)
    secret = c.key["secret"]  # type: ignore[attr-defined]
    apply(c, policy(c, budgets=[{"id": "big", "scope": "team", "scope_id": "eng", "window": "day", "limit_usd": "100"}]))
    rng = random.Random(7)

    async def run() -> int:
        spent = 0
        async with aiohttp.ClientSession() as s:
            for i in range(20):
                text = "word " * rng.randint(1, 30)
                raw = orjson.dumps({"model": "m-short", "messages": [{"role": "user", "content": text}]})
                status, body, _ = await post(s, c.nodes[i % 2].url, secret, raw)
                assert status == 200, body
                assert body["usage"]["completion_tokens"] == 5  # bounded upstream to the reserved output
                spent += cost_of(body)
        return spent

    spent = asyncio.run(run())
    last = httpx.get(f"{c.fake_url}/_fake/stats").json()["last"]["body"]
    assert last.get("max_completion_tokens") == 5 and "max_tokens" not in last
    exported = sum(metric(httpx.get(f"{n.url}/metrics").text, "interlock_budget_overshoot_total", kind="budget",
                          limit_id="big") for n in c.nodes)
    assert exported == 0
    wait_until(lambda: pico(next(b for k, b in budget_rows(c).items() if k.startswith("budget:big:"))["settled"])
               == spent, 10, "the ledger's settled spend")


def test_killed_node_with_open_reservations_frees_the_budget_within_ttl(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """kill -9 with 110 requests in flight, restarted with the same id: the dead incarnation's in-flight
    reservations are presumed spent (the provider may bill them), the rest of its lease is usable again within
    the lease TTL (docs/budget-faults.md)."""
    ttl = 6.0
    c = start(cluster_factory, 2, lease_ttl_s=ttl)
    secret = c.key["secret"]  # type: ignore[attr-defined]
    rng = random.Random(3)
    raw_small = chat_raw(rng, 8)
    worst_small = input_tokens_upper_bound(raw_small) * IN_PICO + 8 * OUT_PICO
    limit = 120 * worst_small
    apply(c, policy(c, budgets=[{"id": "crash", "scope": "key", "scope_id": c.key["id"], "window": "lifetime",  # type: ignore[attr-defined]
                                 "limit_usd": str(Decimal(limit) / PICO)}]))
    victim, survivor = c.nodes

    async def hang_requests() -> list[asyncio.Task[Any]]:
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        fake_fault(c, latency_ms=60_000, count=110)
        tasks = [asyncio.create_task(post(s, victim.url, secret, raw_small)) for _ in range(110)]

        def open_reservations() -> int:
            return metric(httpx.get(f"{victim.url}/metrics").text, "interlock_budget_pool", kind="budget",
                          limit_id="crash", field="reserved") // worst_small

        for _ in range(200):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(open_reservations) >= 100:
                break
        assert await asyncio.to_thread(open_reservations) >= 100
        victim.proc.kill()
        c.start_node(victim, wait_ready=False)  # same node id: a new incarnation
        await asyncio.gather(*tasks, return_exceptions=True)
        await s.close()
        return tasks

    asyncio.run(hang_requests())
    killed_at = time.monotonic()
    httpx.delete(f"{c.fake_url}/_fake/faults")
    c.wait_ready(victim)
    row = next(b for k, b in budget_rows(c).items() if k.startswith("budget:crash:"))
    assert pico(row["leased"]) >= 100 * worst_small  # the dead incarnation's lease is held, not returned as unspent
    old_lease = pico(row["leased"])
    # the dead incarnation's lease is presumed spent (an upper bound on what the provider may bill for it);
    # everything else stays usable: a request needing half of the rest fits once the old lease expired
    big = orjson.dumps({"model": "m-a", "messages": [{"role": "user", "content": "x"}],  # m-a: $2 per Mtok output
                        "max_tokens": int(((limit - old_lease) * 0.5) // 2_000_000)})

    async def try_big() -> int:
        async with aiohttp.ClientSession() as s:
            status, _, _ = await post(s, survivor.url, secret, big)
            return status

    asyncio.run(try_big())  # makes the victim's new incarnation sync this budget (it supersedes the old one)
    deadline = killed_at + ttl + 30
    while True:
        status = asyncio.run(try_big())
        if status == 200:
            break
        assert time.monotonic() < deadline, ("budget not usable again within lease TTL + 30 s", old_lease, limit,
                                             budget_rows(c))
        time.sleep(0.5)
    print(f"budget usable again {time.monotonic() - killed_at:.1f} s after kill -9 (lease TTL {ttl} s)")

    def resolved() -> bool:  # the old incarnation's lease: presumed spent at its expiry, no longer held
        asyncio.run(try_big())  # keeps the record touched (resolution happens on the next Sync)
        r = next(b for k, b in budget_rows(c).items() if k.startswith("budget:crash:"))
        return pico(r["settled"]) >= old_lease and pico(r["leased"]) < old_lease

    wait_until(resolved, ttl + 15, "the dead incarnation's lease to be resolved", interval=0.5)
    print(f"old lease resolved {time.monotonic() - killed_at:.1f} s after kill -9")


def test_requests_per_minute_hold_within_5_percent_across_nodes(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c = start(cluster_factory, 3)
    secret = c.key["secret"]  # type: ignore[attr-defined]
    rpm = 240
    apply(c, policy(c, rate_limits=[{"id": "rpm", "scope": "team", "scope_id": "eng", "requests_per_minute": rpm}]))
    # run inside one UTC minute with >= 20 s left
    if time.time() % 60 > 38:
        time.sleep(60 - time.time() % 60 + 0.5)
    minute = int(time.time() // 60)
    raw = orjson.dumps({"model": "m-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})

    async def run() -> tuple[int, int, dict[str, str]]:
        ok = refused = 0
        refusal: dict[str, str] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            async def worker(i: int) -> None:
                nonlocal ok, refused, refusal
                while time.time() % 60 < 55 and int(time.time() // 60) == minute:
                    status, body, headers = await post(s, c.nodes[i % 3].url, secret, raw)
                    if int(time.time() // 60) != minute:
                        return
                    if status == 200:
                        ok += 1
                    else:
                        assert status == 429, body
                        refused += 1
                        refusal = headers
                        await asyncio.sleep(0.05)
                    if ok >= rpm and refused > 30:
                        return
            await asyncio.gather(*(worker(i) for i in range(30)))
        return ok, refused, refusal

    ok, refused, headers = asyncio.run(run())
    assert refused > 0
    assert 0.95 * rpm <= ok <= 1.05 * rpm, f"{ok} requests admitted in one minute for a limit of {rpm}"
    assert headers["x-ratelimit-limit-requests"] == str(rpm) and int(headers["retry-after"]) >= 1, headers


def test_per_run_key_budget_and_max_concurrency(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c = start(cluster_factory, 2)
    apply(c, policy(c))
    parent = c.key  # type: ignore[attr-defined]
    r = c.admin("POST", "/keys/mint", json={"parent": parent["id"], "ttl_s": 3600, "budget_usd": "0.002",
                                            "max_concurrency": 3, "tags": {"task": "T-1"}})
    assert r.status_code == 201, r.text
    run = r.json()
    c.wait_in_sync()
    raw = orjson.dumps({"model": "m-budget", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10})

    async def concurrency() -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            res = await asyncio.gather(*(post(s, c.nodes[i % 2].url, run["secret"], raw) for i in range(8)))
        return [(status, body) for status, body, _ in res]

    fake_fault(c, latency_ms=4000, count=8)
    results = asyncio.run(concurrency())
    httpx.delete(f"{c.fake_url}/_fake/faults")
    statuses = [st for st, _ in results]
    assert statuses.count(200) == 3 and statuses.count(429) == 5, results

    async def spend() -> tuple[int, int, dict[str, Any], dict[str, str]]:
        """Spend until the budget says 402; a 429 (the last spend is still in flight/unreported) is retried."""
        total = n = 0
        async with aiohttp.ClientSession() as s:
            for _ in range(30):
                status, body, headers = await post(s, c.nodes[n % 2].url, run["secret"], raw)
                if status == 429:
                    await asyncio.sleep(float(headers["retry-after"]))
                    continue
                if status != 200:
                    return total, n, body, headers
                total += cost_of(body)
                n += 1
        raise AssertionError("the run key's budget never refused")

    total, n, refusal, headers = asyncio.run(spend())
    assert n > 5 and total <= pico("0.002")
    assert "insufficient_quota" == refusal["error"]["type"] and f"key:{run['id']}" in refusal["error"]["message"]
    assert "never (lifetime budget)" in refusal["error"]["message"] and headers["x-interlock-limit-id"] == f"key:{run['id']}"


def test_offline_modes_when_the_control_plane_dies(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """fail_closed refuses once a Sync fails; safe_share keeps spending only its unexpired lease; both recover."""
    c = start(cluster_factory, 1, lease_ttl_s=6)
    other = c.create_key(team="eng")
    closed_key, share_key = c.key, other  # type: ignore[attr-defined]
    apply(c, policy(c, budgets=[
        {"id": "closed", "scope": "key", "scope_id": closed_key["id"], "window": "day", "limit_usd": "100",
         "offline_mode": "fail_closed"},
        {"id": "share", "scope": "key", "scope_id": share_key["id"], "window": "day", "limit_usd": "100"},
    ]))
    node = c.nodes[0]
    raw = orjson.dumps({"model": "m-budget", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})

    async def traffic(seconds: float) -> dict[str, list[tuple[float, int, str]]]:
        """Both keys send a request every 50 ms; (time, status, message) per key."""
        out: dict[str, list[tuple[float, int, str]]] = {"closed": [], "share": []}
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < end:
                for name, key in (("closed", closed_key), ("share", share_key)):
                    status, body, _ = await post(s, node.url, key["secret"], raw)
                    out[name].append((time.monotonic(), status, str(body.get("error", ""))))
                await asyncio.sleep(0.05)
        return out

    before = asyncio.run(traffic(1.5))
    assert all(st == 200 for _, st, _ in before["closed"] + before["share"])
    assert c.cp is not None
    c.cp.kill()
    killed = time.monotonic()
    during = asyncio.run(traffic(9))
    closed_ok_after = [t - killed for t, st, _ in during["closed"] if st == 200]
    assert max(closed_ok_after, default=0) < 3, "fail_closed kept admitting after Syncs started failing"
    assert any("fail_closed" in msg for _, st, msg in during["closed"] if st == 429)
    share_ok = [t - killed for t, st, _ in during["share"] if st == 200]
    assert share_ok, "safe_share refused at once although its lease was unexpired"
    assert max(share_ok) < 6 + 1, "safe_share admitted past its lease expiry"
    assert during["share"][-1][1] == 429
    c.start_control_plane()
    c.wait_in_sync()
    after = asyncio.run(traffic(3))
    assert after["closed"][-1][1] == 200 and after["share"][-1][1] == 200
