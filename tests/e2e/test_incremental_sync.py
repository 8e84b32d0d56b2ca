"""Incremental snapshots (issue 16) end to end: a real control plane (embedded store, real gRPC) streams deltas to
real SnapshotSync + PolicyHolder nodes; checked against what the node's key index actually answers and against
an independent full recompile of the control plane's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.grpc_server import start_control_plane_grpc
from controlplane.policy.model import PolicyDocument
from controlplane.publisher import SnapshotPublisher
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import KV, open_store
from controlplane.store.layout import compile_state, load_state
from dataplane.providers.registry import default_providers
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts import keys as vkeys
from interlock_contracts.snapshot_hash import snapshot_content_hash

pytestmark = pytest.mark.integration
PEPPER = b"pepper"


def policy(models: tuple[str, ...] = ("m1",)) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": n, "provider": "p"} for n in models],
        "teams": [{"id": "t1", "name": "T1"}],
    })


@dataclass
class Plane:
    kv: KV
    service: StorePolicyService
    publisher: SnapshotPublisher
    target: str


@pytest.fixture(params=["sqlite", "etcd"])
async def cp(request: pytest.FixtureRequest, tmp_path: Path, store_prefix: str) -> AsyncIterator[Plane]:
    if request.param == "etcd":
        kv = open_store(request.getfixturevalue("etcd_url"), store_prefix)
    else:
        kv = open_store(f"sqlite:///{tmp_path}/policy.db", store_prefix)
    publisher = SnapshotPublisher(kv, retry_s=0.1)
    service = StorePolicyService(kv, PEPPER, time.time)
    await service.apply(policy())
    await publisher.start()
    server, port = await start_control_plane_grpc(publisher, kv, port=0, heartbeat_s=0.2)
    yield Plane(kv, service, publisher, f"127.0.0.1:{port}")
    await server.stop(0)
    await publisher.stop()
    await kv.close()


class Node:
    def __init__(self, target: str, path: Path, name: str = "n1"):
        self.holder = PolicyHolder(default_providers(), lambda _ref: None)
        self.sync = SnapshotSync(target, name, self.holder.apply, path / name / "snapshot.pb", holder=self.holder,
                                 backoff_min_s=0.05, backoff_max_s=0.2)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.sync.run())

    async def stop(self, compact: bool = False) -> None:
        await self.sync.stop(compact=compact)  # default: as after a crash, the delta log stays to be replayed

    def accepts(self, secret: str) -> bool:
        policy = self.holder.policy
        entry = policy.keys.get(vkeys.hash_key(PEPPER, secret)) if policy else None
        return entry is not None and not entry.revoked


async def wait_version(plane: Plane, node: Node, timeout_s: float = 10.0) -> None:
    """Until the node holds what the store holds (after the publisher caught up with the last write)."""
    want = await independent_hash(plane)
    async with asyncio.timeout(timeout_s):
        while node.sync.applied_hash != want:
            await node.sync.wait_for_version(node.sync.applied_version + 1, 0.05)


async def independent_hash(plane: Plane) -> str:
    """The hash of a fresh full compile of what the store holds: independent of the delta machinery."""
    return snapshot_content_hash(compile_state(await load_state(plane.kv), 0))


async def test_mints_and_revokes_arrive_as_deltas_and_the_node_holds_exactly_the_control_planes_state(
        cp: Plane, tmp_path: Path) -> None:
    parent = await cp.service.create_key(KeySpec(name="orchestrator", team="t1"))
    node = Node(cp.target, tmp_path)
    node.start()
    await wait_version(cp, node)
    full_before = node.sync.updates_applied
    minted = [await cp.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000, budget_usd="1",
                                                       max_concurrency=2)) for _ in range(5)]
    await wait_version(cp, node)
    assert cp.publisher.key_deltas >= 1  # compiled alone on the control plane, not by a full recompile
    assert all(node.accepts(m.secret) for m in minted)
    assert node.sync.deltas_applied >= 1 and node.sync.updates_applied > full_before
    policy = node.holder.policy
    assert policy is not None
    # the run key's implicit budget and concurrency limit were indexed in place too
    rid = minted[0].record.id
    assert [b.id for b in policy.budgets.budgets_for(rid, {})] == [f"key:{rid}"]
    assert [r.max_concurrent for r in policy.budgets.rates_for(rid, "m1", "m1")] == [2]

    await cp.service.revoke_key(minted[0].record.id)
    await wait_version(cp, node)
    assert not node.accepts(minted[0].secret) and node.accepts(minted[1].secret)
    assert policy.budgets.budgets_for(rid, {}) == ()  # a revoked run key's limits are gone
    # revoking the parent revokes every run key minted from it
    await cp.service.revoke_key(parent.record.id)
    await wait_version(cp, node)
    assert not any(node.accepts(m.secret) for m in minted) and not node.accepts(parent.secret)
    assert node.sync.applied_hash == await independent_hash(cp)
    # the in-place indexes equal a from-scratch compile of the same content
    fresh = PolicyHolder(default_providers(), lambda _ref: None)
    assert cp.publisher.current is not None
    fresh.apply(cp.publisher.current.snapshot)
    assert fresh.policy is not None and node.holder.policy is not None
    assert dict(node.holder.policy.keys) == dict(fresh.policy.keys)
    assert dict(node.holder.policy.budgets.budgets_by_key) == dict(fresh.policy.budgets.budgets_by_key)
    assert dict(node.holder.policy.budgets.rates_by_key) == dict(fresh.policy.budgets.rates_by_key)
    await node.stop()


async def test_policy_edit_is_a_section_delta_and_recompiles(cp: Plane, tmp_path: Path) -> None:
    node = Node(cp.target, tmp_path)
    node.start()
    await wait_version(cp, node)
    applied = node.sync.deltas_applied
    await cp.service.apply(policy(("m1", "m2")))
    await wait_version(cp, node)
    assert node.sync.deltas_applied == applied + 1
    assert node.holder.policy is not None and "m2" in node.holder.policy.routes
    assert node.sync.applied_hash == await independent_hash(cp)
    await node.stop()


async def test_reconnect_gets_a_delta_from_its_version_and_restart_replays_the_delta_log(
        cp: Plane, tmp_path: Path) -> None:
    parent = await cp.service.create_key(KeySpec(name="orchestrator", team="t1"))
    node = Node(cp.target, tmp_path)
    node.start()
    await wait_version(cp, node)
    first = await cp.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000))
    await wait_version(cp, node)
    await node.stop()
    # while the node is away: more mints, a revoke
    later = [await cp.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000)) for _ in range(3)]
    await cp.service.revoke_key(first.record.id)

    # a restarted node boots from its snapshot file + delta log, exactly at the version it had acked
    restarted = Node(cp.target, tmp_path)
    assert restarted.sync.load_from_disk()
    assert restarted.sync.applied_hash == node.sync.applied_hash
    assert restarted.accepts(first.secret) and not restarted.accepts(later[0].secret)
    fulls = restarted.sync.updates_applied - restarted.sync.deltas_applied
    restarted.start()
    await wait_version(cp, restarted)
    assert restarted.sync.deltas_applied >= 1  # caught up by (composed) deltas, not the full snapshot
    assert restarted.sync.updates_applied - restarted.sync.deltas_applied == fulls
    assert not restarted.accepts(first.secret) and all(restarted.accepts(m.secret) for m in later)
    assert restarted.sync.applied_hash == await independent_hash(cp)
    await restarted.stop()


async def test_a_tampered_delta_log_is_not_replayed_past_the_tampering(cp: Plane, tmp_path: Path) -> None:
    parent = await cp.service.create_key(KeySpec(name="orchestrator", team="t1"))
    node = Node(cp.target, tmp_path)
    node.start()
    await wait_version(cp, node)
    base = node.sync.applied_hash
    await cp.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000))
    await wait_version(cp, node)
    log = tmp_path / "n1" / "snapshot.pb.deltas"
    async with asyncio.timeout(10):  # appended (in a thread) right after the delta is applied
        while not await asyncio.to_thread(log.exists):
            await node.sync.wait_for_version(node.sync.applied_version + 1, 0.05)
    await node.stop()
    data = bytearray(log.read_bytes())
    data[-3] ^= 0xFF  # flip a byte inside the key record: the hash no longer matches
    log.write_bytes(bytes(data))
    restarted = Node(cp.target, tmp_path)
    assert restarted.sync.load_from_disk()
    assert restarted.sync.applied_hash == base  # the snapshot file's state, not the tampered one


async def test_pruned_run_keys_leave_the_node_and_the_control_plane_follows_deletes(cp: Plane, tmp_path: Path) -> None:
    parent = await cp.service.create_key(KeySpec(name="orchestrator", team="t1"))
    node = Node(cp.target, tmp_path)
    node.start()
    await wait_version(cp, node)
    runs = [await cp.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000, budget_usd="1"))
            for _ in range(3)]
    await cp.service.revoke_key(runs[0].record.id)
    await wait_version(cp, node)
    full = cp.publisher.full_compiles
    pruned = await cp.service.prune_run_keys(older_than_ms=-1)
    assert pruned == [runs[0].record.id]
    await wait_version(cp, node)
    assert cp.publisher.full_compiles == full  # the delete was followed as a key delta
    policy = node.holder.policy
    assert policy is not None
    assert runs[0].record.id not in {e.id for e in policy.keys.values()}  # gone from memory, not just revoked
    assert all(node.accepts(r.secret) for r in runs[1:])
    assert node.sync.applied_hash == await independent_hash(cp)
    await node.stop()
