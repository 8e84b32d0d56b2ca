"""A policy apply succeeds while run keys are minted concurrently (issue 16), over etcd and the embedded store.

Every mint rewrites the version key `apply` is guarded on. The apply must catch up on the minted keys alone
(controlplane/apply_retry.py) instead of returning 409 forever, lose no mint, apply its edit, still refuse to
commit a document that a concurrently written key contradicts, and still conflict with another policy edit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.errors import Conflict, PolicyInvalid
from controlplane.policy.model import KeyRecord, PolicyDocument, Team
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import KV
from controlplane.store.layout import KEYS, POLICY, VERSION_KEY, encode, item_key

pytestmark = pytest.mark.integration
PEPPER = b"test-pepper-0123456789abcdef0123456789"


def policy(**overrides: Any) -> PolicyDocument:
    base: dict[str, Any] = {
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t"}],
        "users": [{"id": "ana", "team": "t"}],
    }
    base.update(overrides)
    return PolicyDocument.model_validate(base)


class RaceBeforeApplyCommit:
    """A real store; before each of the apply's first `times` commits, another writer commits first."""

    def __init__(self, inner: KV, racer: Callable[[], Awaitable[object]], times: int):
        self.inner, self.racer, self.left = inner, racer, times
        self.raced = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *,
                     if_revision_of: Mapping[str, int] | None = None) -> int:
        if self.left and VERSION_KEY in (if_revision_of or {}):  # the apply's guarded commit
            self.left -= 1
            self.raced += 1
            await self.racer()
        return await self.inner.commit(puts, deletes, if_revision_of=if_revision_of)


async def stored_keys(kv: KV) -> dict[str, KeyRecord]:
    entries, _ = await kv.get_prefix(item_key(KEYS, ""))
    return {k: KeyRecord.model_validate_json(e.value) for k, e in entries.items()}


async def test_apply_catches_up_on_mints_that_land_before_each_commit(kv: KV) -> None:
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy())
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t"))).record
    minted: list[str] = []

    async def mint() -> None:
        minted.append((await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))).record.id)

    racing = RaceBeforeApplyCommit(kv, mint, times=5)
    applier = StorePolicyService(racing, PEPPER, time.time)  # type: ignore[arg-type]
    result = await applier.apply(policy(teams=[{"id": "t"}, {"id": "ops"}]))
    assert racing.raced == 5 and len(minted) == 5  # five commits lost the race, the sixth won
    assert [(c.section, c.name, c.action) for c in result.changes] == [("teams", "ops", "create")]
    doc, version = await svc.get_document()
    assert {t.id for t in doc.teams} == {"t", "ops"} and version == result.version
    keys = await stored_keys(kv)
    assert {item_key(KEYS, i) for i in [parent.id, *minted]} == set(keys)  # no mint lost


async def test_apply_succeeds_under_concurrent_mint_load(kv: KV) -> None:
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy())
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t"))).record
    minted: list[str] = []
    stop = asyncio.Event()

    async def minter() -> None:
        while not stop.is_set():
            created = await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))
            minted.append(created.record.id)
            await asyncio.sleep(0.2)  # about 10 mints/s in all: the steady load

    minters = [asyncio.create_task(minter()) for _ in range(2)]
    try:
        await asyncio.sleep(0.2)
        results = []
        for n in range(3):  # each edit reads the policy while mints keep landing
            teams = [{"id": "t"}, *({"id": f"extra{i}"} for i in range(n + 1))]
            results.append(await svc.apply(policy(teams=teams)))
    finally:
        stop.set()
        await asyncio.gather(*minters)
    assert [len(r.changes) for r in results] == [1, 1, 1]
    doc, _ = await svc.get_document()
    assert {t.id for t in doc.teams} == {"t", "extra0", "extra1", "extra2"}
    keys = await stored_keys(kv)
    assert len(minted) > 0 and {item_key(KEYS, i) for i in [parent.id, *minted]} == set(keys)


async def test_apply_refuses_a_document_a_concurrent_key_contradicts(kv: KV) -> None:
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy())
    created: list[str] = []

    async def create_ana_key() -> None:  # lands after the apply validated the keys it read
        created.append((await svc.create_key(KeySpec(name="ana's", user="ana"))).record.id)

    applier = StorePolicyService(RaceBeforeApplyCommit(kv, create_ana_key, times=1), PEPPER, time.time)  # type: ignore[arg-type]
    with pytest.raises(PolicyInvalid) as info:
        await applier.apply(policy(users=[]))  # removes user ana, whom the new key belongs to
    assert any(created[0] in e and "'ana'" in e for e in info.value.errors)
    doc, _ = await svc.get_document()
    assert [u.id for u in doc.users] == ["ana"]  # nothing was committed


async def test_apply_still_conflicts_with_another_policy_edit_under_mints(kv: KV) -> None:
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy())
    parent = (await svc.create_key(KeySpec(name="orchestrator", team="t"))).record

    async def mint_then_edit() -> None:
        await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))
        await kv.commit({item_key("teams", "rival"): encode(Team(id="rival")), VERSION_KEY: b"{}"})

    applier = StorePolicyService(RaceBeforeApplyCommit(kv, mint_then_edit, times=1), PEPPER, time.time)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        await applier.apply(policy(teams=[{"id": "t"}, {"id": "ops"}]))
    entries, _ = await kv.get_prefix(POLICY + "teams/")
    assert set(entries) == {item_key("teams", "t"), item_key("teams", "rival")}  # the rival edit stands alone


async def test_a_concurrent_delete_of_a_policy_item_is_seen_and_conflicts(kv: KV) -> None:
    # In one transaction the version key is written before the delete: the catch-up must not stop at the marker.
    svc = StorePolicyService(kv, PEPPER, time.time)
    await svc.apply(policy())

    async def delete_user() -> None:
        await kv.commit({VERSION_KEY: b"{}"}, [item_key("users", "ana")])

    applier = StorePolicyService(RaceBeforeApplyCommit(kv, delete_user, times=1), PEPPER, time.time)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        await applier.apply(policy(teams=[{"id": "t"}, {"id": "ops"}]))
    doc, _ = await svc.get_document()
    assert [t.id for t in doc.teams] == ["t"] and doc.users == []
