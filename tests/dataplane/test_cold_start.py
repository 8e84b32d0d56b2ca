"""Cold start (issue 16): a node boots from its snapshot file without re-hashing every resource when it proved
those exact bytes before (dataplane/snapshot/state_sum.py), builds key entries on first use (dataplane/lazy_index.py),
and still serves exactly the control plane's state: checked against an independent full recompile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.service_types import KeySpec
from dataplane.lazy_index import LazyIndex
from tests.e2e.test_incremental_sync import Node, Plane, cp, independent_hash, wait_version

pytestmark = pytest.mark.integration
__all__ = ["cp"]  # the fixture, shared with test_incremental_sync


async def node_with_history(plane: Plane, tmp_path: Path) -> tuple[Node, list[str], str]:
    """A node that took the full snapshot, then mint and revoke deltas; stopped gracefully."""
    parent = await plane.service.create_key(KeySpec(name="orchestrator", team="t1"))
    node = Node(plane.target, tmp_path)
    node.start()
    await wait_version(plane, node)
    minted = [await plane.service.mint_run_key(RunKeySpec(parent=parent.record.id, ttl_ms=60_000, budget_usd="1"))
              for _ in range(3)]
    await plane.service.revoke_key(minted[0].record.id)
    await wait_version(plane, node)
    await node.stop(compact=True)
    return node, [m.secret for m in minted], parent.record.id


async def test_graceful_restart_boots_on_the_recorded_sum_and_follows_deltas_exactly(
        cp: Plane, tmp_path: Path) -> None:
    node, secrets, parent = await node_with_history(cp, tmp_path)
    assert not (tmp_path / "n1" / "snapshot.pb.deltas").exists()  # folded into the file at stop
    assert (tmp_path / "n1" / "snapshot.pb.sum").exists()

    restarted = Node(cp.target, tmp_path)
    assert restarted.sync.load_from_disk()
    assert restarted.sync.boot_verified == "sum"
    assert restarted.sync.applied_hash == node.sync.applied_hash == await independent_hash(cp)
    assert not restarted.accepts(secrets[0]) and restarted.accepts(secrets[1]) and restarted.accepts(secrets[2])

    # deltas on top of the lazily digested state: each is verified against the control plane's hash
    restarted.start()
    later = await cp.service.mint_run_key(RunKeySpec(parent=parent, ttl_ms=60_000, budget_usd="1"))
    await cp.service.revoke_key((await cp.service.mint_run_key(RunKeySpec(parent=parent, ttl_ms=60_000))).record.id)
    await wait_version(cp, restarted)
    assert restarted.sync.deltas_applied >= 1 and restarted.sync.updates_rejected == 0
    assert restarted.accepts(later.secret) and not restarted.accepts(secrets[0])
    await restarted.stop()


async def test_a_sum_that_does_not_match_is_never_trusted(cp: Plane, tmp_path: Path) -> None:
    node, _, _ = await node_with_history(cp, tmp_path)
    path, sum_path = tmp_path / "n1" / "snapshot.pb", tmp_path / "n1" / "snapshot.pb.sum"
    good_file, good_sum = path.read_bytes(), sum_path.read_text()

    record = json.loads(good_sum)  # a wrong digest sum for the right bytes: full verification, same state
    record["total"] = f"{int(record['total'], 16) + 1:x}"
    sum_path.write_text(json.dumps(record))
    restarted = Node(cp.target, tmp_path)
    assert restarted.sync.load_from_disk() and restarted.sync.boot_verified == "full"
    assert restarted.sync.applied_hash == node.sync.applied_hash

    sum_path.write_text(good_sum)  # the right sum, but the file's bytes changed underneath: refused
    data = bytearray(good_file)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    corrupt = Node(cp.target, tmp_path)
    assert not corrupt.sync.load_from_disk()
    assert corrupt.sync.applied_version == 0 and corrupt.holder.policy is None


def test_lazy_index_behaves_as_the_dict_it_replaces() -> None:
    built: list[int] = []

    def build(n: int) -> str | None:
        built.append(n)
        return None if n % 2 else f"v{n}"  # odd items yield no entry

    lazy: LazyIndex[str, int, str] = LazyIndex({f"k{n}": n for n in range(6)}, build)
    assert lazy.get("k2") == "v2" and built == [2]  # built on first lookup only
    assert lazy.get("k2") == "v2" and built == [2]
    assert lazy.get("k1") is None and "k1" not in lazy and lazy.get("missing", "d") == "d"
    lazy["k7"] = "new"
    lazy["k4"] = "replaced"  # never built: the replacement wins
    assert lazy.pop("k0") == "v0" and "k0" not in lazy
    assert lazy.pop("k3", None) is None
    assert bool(lazy) and 4 not in built
    assert dict(lazy) == {"k2": "v2", "k4": "replaced", "k7": "new"}
    assert len(lazy) == 3 and lazy == {"k2": "v2", "k4": "replaced", "k7": "new"}
    with pytest.raises(KeyError):
        del lazy["k1"]
    assert not LazyIndex({"a": 1}, lambda _: None)  # only items without entries: empty
