"""SnapshotState (interlock_contracts/snapshot_state.py): the O(change) content hash, diff, apply and compose, against the
whole-snapshot hash computed from scratch."""

from __future__ import annotations

import itertools

import pytest

from interlock_contracts.snapshot_hash import snapshot_content_hash
from interlock_contracts.snapshot_state import DeltaMismatch, SnapshotState, compose
from interlock_contracts.v1 import control_pb2, policy_pb2


def snap(version: int, keys: dict[str, bool], models: tuple[str, ...] = ("m1",),
         budgets: tuple[str, ...] = ()) -> policy_pb2.PolicySnapshot:
    s = policy_pb2.PolicySnapshot(version=version, key_hash_scheme="hmac-sha256")
    for name in models:
        s.models.add(name=name, provider="p")
    for kid, revoked in sorted(keys.items()):
        s.keys.add(id=kid, key_hash=kid.encode().ljust(32, b"\0"), revoked=revoked, team_id="t")
    for b in budgets:
        s.budget_policy.budgets.add(id=b, scope="key", scope_id=b[4:], limit_pico=10)
    s.budget_policy.default_max_output_tokens = 100
    s.content_hash = snapshot_content_hash(s)
    return s


def state(s: policy_pb2.PolicySnapshot) -> SnapshotState:
    return SnapshotState.from_snapshot(s)


def test_hash_is_order_independent_and_changes_with_any_resource() -> None:
    a = snap(1, {"k1": False, "k2": False})
    b = policy_pb2.PolicySnapshot()
    b.CopyFrom(a)
    b.keys[0].CopyFrom(a.keys[1])
    b.keys[1].CopyFrom(a.keys[0])
    assert snapshot_content_hash(b) == a.content_hash
    assert snapshot_content_hash(snap(1, {"k1": False, "k2": True})) != a.content_hash
    assert snapshot_content_hash(snap(1, {"k1": False})) != a.content_hash
    assert snapshot_content_hash(snap(9, {"k1": False, "k2": False})) == a.content_hash  # version excluded
    assert state(a).computed_hash() == a.content_hash


def test_diff_then_apply_reaches_exactly_the_new_state() -> None:
    old = state(snap(1, {"k1": False, "k2": False}, budgets=("key:k1",)))
    new_snap = snap(2, {"k2": True, "k3": False}, models=("m1", "m2"), budgets=("key:k3",))
    delta = old.delta_to(state(new_snap))
    assert {k.id for k in delta.upsert_keys} == {"k2", "k3"} and list(delta.removed_keys) == ["k1"]
    assert list(delta.removed_budgets) == ["key:k1"] and [b.id for b in delta.upsert_budgets] == ["key:k3"]
    assert list(delta.replaced_sections) == ["models"]  # the only other section that changed
    old.apply(delta)
    assert old.content_hash == new_snap.content_hash == old.computed_hash()
    rebuilt = old.to_snapshot()
    assert snapshot_content_hash(rebuilt) == new_snap.content_hash
    assert rebuilt.SerializeToString(deterministic=True) == new_snap.SerializeToString(deterministic=True)


def test_a_tampered_or_misbased_delta_is_refused_and_leaves_the_state_untouched() -> None:
    old = state(snap(1, {"k1": False}))
    delta = old.delta_to(state(snap(2, {"k1": True})))
    tampered = control_pb2.PolicyDelta()
    tampered.CopyFrom(delta)
    tampered.upsert_keys[0].revoked = False  # "un-revoke" in transit: the hash no longer matches
    with pytest.raises(DeltaMismatch, match="content hash mismatch"):
        old.apply(tampered)
    assert old.version == 1 and old.computed_hash() == old.content_hash
    wrong_base = control_pb2.PolicyDelta()
    wrong_base.CopyFrom(delta)
    wrong_base.base_version = 7
    with pytest.raises(DeltaMismatch, match="based on version 7"):
        old.apply(wrong_base)
    unknown = control_pb2.PolicyDelta()
    unknown.CopyFrom(delta)
    unknown.replaced_sections.append("no_such_section")
    with pytest.raises(DeltaMismatch, match="unknown section"):
        old.apply(unknown)
    old.apply(delta)
    assert old.version == 2


def test_composed_deltas_equal_applying_them_one_by_one() -> None:
    versions = [snap(1, {"k1": False}), snap(2, {"k1": False, "k2": False}), snap(3, {"k1": True, "k2": False}),
                snap(4, {"k1": True}, models=("m9",)), snap(5, {"k1": True, "k5": False}, models=("m9",))]
    states = [state(v) for v in versions]
    deltas = [a.delta_to(b) for a, b in itertools.pairwise(states)]
    stepwise = state(versions[0])
    for d in deltas:
        stepwise.apply(d)
    composed = state(versions[0])
    composed.apply(compose(deltas))
    assert composed.content_hash == stepwise.content_hash == versions[-1].content_hash
    # a key added then removed inside the window is not something the node ever held: still applies
    mid = state(versions[1])
    mid.apply(compose(deltas[1:]))
    assert mid.content_hash == versions[-1].content_hash
