"""Per-run keys and budget visibility end to end: the `interlock` CLI -> admin API (uvicorn) -> control-plane
backend on a real etcd -> the published snapshot (what data planes receive) and the ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner, Result

from controlplane.admin_api import create_admin_app
from controlplane.admin_server import serve_admin
from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.budget.runkeys import RunKeySpec
from controlplane.errors import PolicyInvalid
from controlplane.policy.model import PolicyDocument
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store
from interlock.cli.main import cli
from interlock_contracts.budget_windows import window_key
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.v1 import budget_pb2, policy_pb2
from tests.fixtures.admin import admin_cli_env
from tests.fixtures.admin import cli_ok as ok
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration
TOKEN = "admin-token-for-tests"


def policy(parent_budget: dict[str, object] | None = None) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": n, "provider": "p", "price": {"input": "1", "output": "2"}} for n in ("m1", "m2", "m3")],
        "teams": [{"id": "t1", "allowed_models": ["m1", "m2"]}],
        "budgets": [
            {"id": "t1-month", "scope": "team", "scope_id": "t1", "window": "month", "limit_usd": "100"},
            *([parent_budget] if parent_budget else []),
        ],
    })


@dataclass
class Stack:
    backend: ControlPlaneBackend
    url: str

    async def run(self, *args: str) -> Result:
        env = admin_cli_env(self.url, TOKEN, columns=160)
        # the CLI is synchronous; run it off the loop that serves the admin API
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)

    async def published(self, predicate: object) -> policy_pb2.PolicySnapshot:
        deadline = time.monotonic() + 10
        while True:
            cur = self.backend.publisher.current
            if cur is not None and predicate(cur.snapshot):  # type: ignore[operator]
                return cur.snapshot
            assert time.monotonic() < deadline, "the expected snapshot was never published"
            await asyncio.sleep(0.02)


@pytest.fixture
async def stack(etcd_url: str, store_prefix: str) -> AsyncIterator[Stack]:
    settings = ControlPlaneSettings(key_pepper=b"pepper", admin_token=TOKEN.encode(), store=etcd_url,
                                    etcd_prefix=store_prefix, grpc_port=0)
    backend = await start_backend(settings)
    port = free_port()
    app = create_admin_app(backend.service, TOKEN.encode(), extra_routers=[backend.budget_router()])
    server, task = await serve_admin(app, "127.0.0.1", port)
    yield Stack(backend, f"http://127.0.0.1:{port}")
    server.should_exit = True  # type: ignore[attr-defined]
    await task
    await backend.close(0)


async def test_mint_bounded_by_parent_reaches_the_snapshot_and_revokes_with_it(stack: Stack) -> None:
    svc = stack.backend.service
    await svc.apply(policy())
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t1", default_tags={"app": "agent"},
                                           expires_at_unix_ms=int((time.time() + 86_400) * 1000)))).record
    await svc.apply(policy({"id": "orch-life", "scope": "key", "scope_id": parent.id, "window": "lifetime",
                            "limit_usd": "50"}))

    res = ok(await stack.run("keys", "mint", "--parent", parent.id, "--budget", "20", "--ttl", "2h",
                             "--max-concurrency", "8", "--tags", "task=T-123"))
    secret = res.stdout.strip()
    assert secret.startswith("sk-il-") and "\n" not in secret  # only the secret on stdout
    assert "minted run key vk_" in res.stderr and "budget $20" in res.stderr

    def has_run_key(s: policy_pb2.PolicySnapshot) -> bool:
        return any(k.parent_key_id == parent.id for k in s.keys)

    snap = await stack.published(has_run_key)
    [run] = [k for k in snap.keys if k.parent_key_id == parent.id]
    assert run.team_id == "t1" and dict(run.default_tags) == {"app": "agent", "task": "T-123"}
    assert 0 < run.expires_at_unix_ms - time.time() * 1000 <= 2 * 3600 * 1000
    budgets = {b.id: b for b in snap.budget_policy.budgets}
    assert budgets[f"key:{run.id}"].limit_pico == 20 * 10**12 and budgets[f"key:{run.id}"].scope_id == run.id
    assert [r.max_concurrent for r in snap.budget_policy.rate_limits if r.id == f"key:{run.id}"] == [8]
    assert secret not in snap.SerializeToString().decode("latin-1")  # only the keyed hash travels

    for args, message in [
        (["--budget", "60"], "exceeds the parent key's budget 'orch-life' (50 USD per lifetime)"),
        (["--budget", "5", "--ttl", "3d"], "outlives the parent key"),
        (["--budget", "5", "--models", "m3"], "'m3' is not allowed for the parent key's team"),
        (["--budget", "5", "--tags", "app=other"], "would override the parent key's tags"),
    ]:
        bad = await stack.run("keys", "mint", "--parent", parent.id, *args)
        assert bad.exit_code != 0 and message in bad.stderr + bad.stdout, bad.stderr + bad.stdout
    missing = await stack.run("keys", "mint", "--parent", "vk_nope", "--budget", "1")
    assert missing.exit_code != 0 and "parent key 'vk_nope' does not exist" in missing.stderr + missing.stdout

    ok(await stack.run("keys", "revoke", parent.id))
    snap = await stack.published(lambda s: any(k.id == parent.id and k.revoked for k in s.keys))
    assert [k.revoked for k in snap.keys if k.id == run.id] == [True]  # revoking the parent revokes its runs
    assert f"key:{run.id}" not in {b.id for b in snap.budget_policy.budgets}
    with pytest.raises(PolicyInvalid, match="revoked"):
        await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))
    with pytest.raises(PolicyInvalid, match="an ancestor of the parent key, is revoked"):
        await svc.mint_run_key(RunKeySpec(parent=run.id, ttl_ms=60_000, budget_usd="1"))  # the run itself isn't


async def test_parallel_mints_all_succeed(stack: Stack) -> None:
    svc = stack.backend.service
    await svc.apply(policy())
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t1"))).record
    started = time.perf_counter()
    made = await asyncio.gather(*(svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000, budget_usd="2",
                                                               tags={"task": f"T-{i}"})) for i in range(12)))
    elapsed = time.perf_counter() - started
    assert len({m.record.id for m in made}) == 12 and {m.record.parent for m in made} == {parent.id}
    snap = await stack.published(lambda s: sum(k.parent_key_id == parent.id for k in s.keys) == 12)
    assert len([b for b in snap.budget_policy.budgets if b.id.startswith("key:")]) == 12
    print(f"12 parallel mints on etcd: {elapsed * 1000:.0f} ms total")


async def test_budgets_table_and_json_show_ledger_figures(stack: Stack) -> None:
    await stack.backend.service.apply(policy())
    await stack.published(lambda s: len(s.budget_policy.budgets) == 1)
    month = window_key("month", "UTC", time.time())
    led = stack.backend.ledger
    await led.sync("dp-1", 1, [budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_BUDGET, limit_id="t1-month",
                                                  window_key=month, want_total=10 * 10**12)])
    await led.sync("dp-1", 2, [budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_BUDGET, limit_id="t1-month",
                                                  window_key=month, settled_delta=1_500_000_000_000,
                                                  overshoot_delta=250_000_000_000, want_total=4 * 10**12,
                                                  reserved=3 * 10**12)])
    table = ok(await stack.run("budgets")).stdout
    for cell in ("SCOPE", "RESERVED", "REMAINING", "team t1", "t1-month", month, "$100", "$1.5", "$3", "$4", "$94.5",
                 "$0.25"):
        assert cell in table, table
    data = json.loads(ok(await stack.run("budgets", "--json")).stdout)
    [row] = data["budgets"]
    assert (row["limit"], row["settled"], row["reserved"], row["leased"], row["remaining"], row["overshoot"]) == (
        "100", "1.5", "3", "4", "94.5", "0.25")
    assert row["resets_unix_ms"] > time.time() * 1000 and row["current"] is True


async def test_ended_run_keys_are_pruned_but_named_or_parent_keys_stay(etcd_url: str, store_prefix: str) -> None:
    now = [1_795_000_000.0]
    kv = open_store(etcd_url, store_prefix)
    svc = StorePolicyService(kv, b"pepper", lambda: now[0])
    try:
        await svc.apply(policy())
        parent = (await svc.create_key(KeySpec(name="orchestrator", team="t1"))).record

        async def mint(ttl_s: int, under: str = parent.id) -> str:
            return (await svc.mint_run_key(RunKeySpec(parent=under, ttl_ms=ttl_s * 1000, budget_usd="1"))).record.id

        expired, revoked, alive = await mint(60), await mint(3600), await mint(7200)
        nested_parent = await mint(60)
        nested_child = await mint(30, under=nested_parent)
        await svc.revoke_key(revoked)
        await svc.apply(policy({"id": "watch", "scope": "key", "scope_id": expired, "limit_usd": "1"}))
        now[0] += 61 + 600
        assert await svc.prune_run_keys(older_than_ms=600_000) == sorted([nested_child, revoked])  # `expired` is named
        assert await svc.prune_run_keys(older_than_ms=600_000) == [nested_parent]  # its run is gone now
        await svc.apply(policy())
        assert await svc.prune_run_keys(older_than_ms=600_000) == [expired]
        assert {k.id for k in await svc.list_keys()} == {parent.id, alive}
        assert (await svc.policy_log(limit=1))[0].action == "prune_keys"
        await svc.current_snapshot()  # the pruned state still compiles
    finally:
        await kv.close()
