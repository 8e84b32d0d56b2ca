"""Property test (issue 16): random interleavings of mints, revokes, policy edits, prunes and node
disconnects/reconnects (at random versions, with a short delta history so some reconnects are gaps that need
the full snapshot). Real control plane (embedded store), real gRPC, real SnapshotSync + PolicyHolder nodes.

Checked against independent truth: every node ends with the hash of a fresh full compile of the store, its
key index equals a from-scratch compile, and once a node has acked a version that revokes a key, that key's
secret is never accepted by that node again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.budget.runkeys import RunKeySpec
from controlplane.delta_history import DeltaHistory
from controlplane.errors import NotFound, PolicyInvalid
from controlplane.grpc_server import start_control_plane_grpc
from controlplane.policy.model import PolicyDocument
from controlplane.publisher import SnapshotPublisher
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store
from controlplane.store.layout import compile_state, load_state
from dataplane.providers.registry import default_providers
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts import keys as vkeys
from interlock_contracts.snapshot_hash import snapshot_content_hash

pytestmark = pytest.mark.integration
PEPPER = b"pepper"
NODES = 3


def policy(extra_model: bool) -> PolicyDocument:
    models = ["m1", "m2"] if extra_model else ["m1"]
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": n, "provider": "p"} for n in models],
        "teams": [{"id": "t1"}, {"id": "t2"}],
    })


ops = st.lists(st.one_of(
    st.tuples(st.just("mint"), st.integers(0, 3)),
    st.tuples(st.just("revoke"), st.integers(0, 50)),
    st.tuples(st.just("edit"), st.booleans()),
    st.tuples(st.just("prune"), st.just(0)),
    st.tuples(st.just("disconnect"), st.integers(0, NODES - 1)),
    st.tuples(st.just("reconnect"), st.integers(0, NODES - 1)),
    st.tuples(st.just("settle"), st.just(0)),
), min_size=4, max_size=20)


class Node:
    def __init__(self, target: str, path: Path, name: str):
        self.target, self.path, self.name = target, path, name
        self.holder = PolicyHolder(default_providers(), lambda _ref: None)
        self.sync = self._new_sync()
        self.task: asyncio.Task[None] | None = None
        self.stops = 0

    def _new_sync(self) -> SnapshotSync:
        return SnapshotSync(self.target, self.name, self.holder.apply, self.path / self.name / "snapshot.pb",
                            holder=self.holder, backoff_min_s=0.02, backoff_max_s=0.1)

    def connect(self, restart: bool) -> None:
        if self.task is None:
            if restart:  # a fresh process: boots from its snapshot file + delta log
                self.holder = PolicyHolder(default_providers(), lambda _ref: None)
                self.sync = self._new_sync()
                self.sync.load_from_disk()
            self.task = asyncio.get_running_loop().create_task(self.sync.run())

    async def disconnect(self) -> None:
        if self.task is not None:
            self.stops += 1  # every other stop is graceful (delta log folded into the file), the rest as a crash
            await self.sync.stop(compact=self.stops % 2 == 0)
            self.task = None

    def accepts(self, secret: str) -> bool:
        policy = self.holder.policy
        entry = policy.keys.get(vkeys.hash_key(PEPPER, secret)) if policy else None
        return entry is not None and not entry.revoked


async def scenario(tmp: Path, steps: list[tuple[str, object]]) -> None:
    kv = open_store(f"sqlite:///{tmp}/policy.db", "/prop")
    publisher = SnapshotPublisher(kv, retry_s=0.05)
    publisher.history = DeltaHistory(max_versions=3)  # short history: some reconnects fall off it (gap -> full)
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy(False))
    parents = [(await svc.create_key(KeySpec(name=f"o{i}", team="t1" if i % 2 else "t2"))) for i in range(2)]
    await publisher.start()
    server, port = await start_control_plane_grpc(publisher, kv, port=0, heartbeat_s=0.2)
    nodes = [Node(f"127.0.0.1:{port}", tmp, f"n{i}") for i in range(NODES)]
    for n in nodes:
        n.connect(restart=False)
    minted: list[vkeys_secret] = []
    revoked_at: dict[str, int] = {}  # secret -> store version that revoked it

    async def truth() -> str:
        return snapshot_content_hash(compile_state(await load_state(kv), 0))

    def check_revocations() -> None:
        for n in nodes:
            for secret, version in revoked_at.items():
                if n.sync.applied_version >= version:
                    assert not n.accepts(secret), f"{n.name} accepts a key revoked at v{version}"

    try:
        for op, arg in steps:
            if op == "mint":
                parent = parents[int(arg) % 2].record.id
                live = [m for m in minted if m[1] not in revoked_at]
                if int(arg) >= 2 and live:  # a run key of a run key
                    parent = live[-1][0]
                try:
                    created = await svc.mint_run_key(RunKeySpec(parent=parent, ttl_ms=600_000, budget_usd="1",
                                                                max_concurrency=int(arg) % 3))
                    minted.append((created.record.id, created.secret))
                except PolicyInvalid:  # e.g. its parent was revoked: refused, as it should be
                    pass
            elif op == "revoke" and minted:
                kid, secret = minted[int(arg) % len(minted)]
                try:
                    await svc.revoke_key(kid)
                except NotFound:  # pruned already: gone everywhere, nothing to revoke
                    continue
                version = (await svc.get_document())[1]
                revoked_at.setdefault(secret, version)
                # revoking a key revokes the run keys minted from it
                records = {k.id: k for k in await svc.list_keys()}
                for other_id, other_secret in minted:
                    cur = records.get(other_id)
                    while cur is not None and cur.parent:
                        cur = records.get(cur.parent)
                        if cur is not None and cur.id == kid:
                            revoked_at.setdefault(other_secret, version)
            elif op == "edit":
                await svc.apply(policy(bool(arg)))
            elif op == "prune":
                await svc.prune_run_keys(older_than_ms=-1)
            elif op == "disconnect":
                await nodes[int(arg)].disconnect()
            elif op == "reconnect":
                nodes[int(arg)].connect(restart=True)
            elif op == "settle":
                await asyncio.sleep(0.05)
            check_revocations()
        for n in nodes:
            n.connect(restart=False)
        want = await truth()
        async with asyncio.timeout(20):
            while any(n.sync.applied_hash != want for n in nodes) or publisher.current is None \
                    or publisher.current.content_hash != want:
                await asyncio.sleep(0.02)
                check_revocations()
        check_revocations()
        assert publisher.current is not None
        fresh = PolicyHolder(default_providers(), lambda _ref: None)
        fresh.apply(compile_state(await load_state(kv), 0))
        assert fresh.policy is not None
        for n in nodes:
            assert n.holder.policy is not None
            assert dict(n.holder.policy.keys) == dict(fresh.policy.keys), n.name
            assert dict(n.holder.policy.budgets.budgets_by_key) == dict(fresh.policy.budgets.budgets_by_key)
            assert dict(n.holder.policy.budgets.rates_by_key) == dict(fresh.policy.budgets.rates_by_key)
    finally:
        for n in nodes:
            await n.disconnect()
        await server.stop(0)
        await publisher.stop()
        await kv.close()


vkeys_secret = tuple[str, str]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_random_interleavings_converge_and_never_resurrect_a_revoked_key(tmp_path_factory: pytest.TempPathFactory,
                                                                         steps: list[tuple[str, object]]) -> None:
    asyncio.run(scenario(tmp_path_factory.mktemp("prop"), steps))
