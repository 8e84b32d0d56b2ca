"""The simulated nodes of benchmarks/incremental_scale.py (issue 16) apply deltas exactly as a fully indexed state
does, on a view of a shared base that none of them changes."""

from __future__ import annotations

import pytest

from benchmarks.incremental_sim_node import Overlay, SharedBases, touched
from interlock_contracts.snapshot_state import DeltaMismatch, SnapshotState
from interlock_contracts.v1 import control_pb2
from tests.contracts.test_snapshot_state import snap


def test_nodes_sharing_a_base_reach_the_same_hash_as_a_full_state_and_leave_the_base_alone() -> None:
    v1 = snap(1, {"k1": False, "k2": False}, budgets=("key:k1",))
    v2 = snap(2, {"k2": True, "k3": False}, models=("m1", "m2"), budgets=("key:k3",))
    delta = SnapshotState.from_snapshot(v1).delta_to(SnapshotState.from_snapshot(v2))
    bases = SharedBases()
    a, b = bases.overlay(v1), bases.overlay(v1)
    assert bases.verified == 1  # one base indexed and verified for both nodes
    a.apply(delta)  # checks the resulting content hash itself
    assert a.content_hash == v2.content_hash == a.computed_hash()
    assert b.computed_hash() == v1.content_hash and "k1" in b.resources["key"] and "k3" not in b.resources["key"]
    assert touched(a) == 5 and touched(b) == 0  # k1 removed, k2 + k3 upserted, budget key:k1 out, key:k3 in
    tampered = control_pb2.PolicyDelta()
    tampered.CopyFrom(delta)
    tampered.upsert_keys[0].revoked = not tampered.upsert_keys[0].revoked
    with pytest.raises(DeltaMismatch):
        b.apply(tampered)
    assert b.computed_hash() == v1.content_hash and touched(b) == 0


def test_overlay_reads_writes_and_deletes_without_touching_its_base() -> None:
    base = {"a": 1, "b": 2}
    view = Overlay(base)
    view["c"] = 3
    del view["a"]
    view["b"] = 20
    assert dict(view) == {"b": 20, "c": 3} and len(view) == 2 and "a" not in view
    assert base == {"a": 1, "b": 2}
    view["a"] = 10
    assert view["a"] == 10 and sorted(view) == ["a", "b", "c"]
    with pytest.raises(KeyError):
        del view["zz"]
