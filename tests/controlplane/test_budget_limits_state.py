"""The ledger's limit lookups read the published state (issue 16): same answers as the limit book built from
the full snapshot, before and after a key delta applied in place, with nothing rebuilt per version."""

from __future__ import annotations

import time

from controlplane.budget.limits import PublishedLimits, limit_book
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, PolicyDocument
from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import budget_pb2, policy_pb2

KINDS = (budget_pb2.LEASE_KIND_BUDGET, budget_pb2.LEASE_KIND_REQUESTS, budget_pb2.LEASE_KIND_TOKENS,
         budget_pb2.LEASE_KIND_CONCURRENCY)


def snapshot(run_ids: list[str], version: int) -> policy_pb2.PolicySnapshot:
    now = int(time.time() * 1000)
    doc = PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t"}],
        "budgets": [{"id": "team-day", "scope": "team", "scope_id": "t", "limit_usd": "5", "window": "day",
                     "timezone": "Europe/Paris"}],
        "rate_limits": [{"id": "rpm", "scope": "team", "scope_id": "t", "requests_per_minute": 60,
                         "tokens_per_minute": 1000}],
    })
    keys = [KeyRecord(id="vk_parent", key_hash="a" * 64, name="orchestrator", team="t", created_at_unix_ms=now)]
    keys += [KeyRecord(id=i, key_hash=f"{n:064x}", name="run", team="t", parent="vk_parent", created_at_unix_ms=now,
                       expires_at_unix_ms=now + 3_600_000, budget_usd="1", max_concurrency=2)
             for n, i in enumerate(run_ids, start=1)]
    return compile_snapshot(doc, keys, version=version, now_ms=now)


def answers(lookup: object, names: set[str]) -> dict[tuple[int, str], object]:
    return {(kind, name): lookup.get((kind, name)) for kind in KINDS for name in names}  # type: ignore[attr-defined]


def test_state_lookups_match_the_book_and_follow_deltas_in_place() -> None:
    old = snapshot(["vk_r1", "vk_r2"], version=3)
    state = SnapshotState.from_snapshot(old)
    published: list[SnapshotState | None] = [None]
    limits = PublishedLimits(lambda: published[0])
    assert limits().get((budget_pb2.LEASE_KIND_BUDGET, "team-day")) is None  # nothing published yet
    published[0] = state
    book = limit_book(old.budget_policy)
    names = {lid for _, lid in book} | {"missing", "key:vk_r3"}
    assert len(book) > 4 and answers(limits(), names) == answers(book, names)

    new = snapshot(["vk_r2", "vk_r3"], version=4)  # r1 ended, r3 minted
    delta = state.delta_to(SnapshotState.from_snapshot(new))
    state.apply(delta)  # what the publisher does with a key delta: the same object, updated in place
    new_book = limit_book(new.budget_policy)
    assert answers(limits(), names) == answers(new_book, names)
    assert limits().get((budget_pb2.LEASE_KIND_BUDGET, "key:vk_r3")) is not None
    assert limits().get((budget_pb2.LEASE_KIND_BUDGET, "key:vk_r1")) is None
    spec = limits().get((budget_pb2.LEASE_KIND_BUDGET, "team-day"))
    assert spec is not None and (spec.window, spec.timezone, spec.scope) == ("day", "Europe/Paris", "team")
