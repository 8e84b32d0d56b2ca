"""StorePolicyService over both stores: diffs, idempotence, validation before writes, keys."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from controlplane.errors import Conflict, NotFound, PolicyInvalid
from controlplane.policy.model import PolicyDocument, Team
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import KV
from controlplane.store.layout import VERSION_KEY, encode, item_key
from interlock_contracts.keys import hash_key

pytestmark = pytest.mark.integration
PEPPER = b"test-pepper-0123456789abcdef0123456789"
NOW = 1_750_000_000.0


def policy(**overrides: Any) -> PolicyDocument:
    base: dict[str, Any] = {
        "providers": [{"name": "openai", "base_url": "https://api.openai.com/v1", "credential": "env:OPENAI_API_KEY"}],
        "models": [
            {"name": "gpt-4o", "provider": "openai", "price": {"input": "2.5", "output": "10", "cached_input": "1.25"}},
            {"name": "gpt-4o-mini", "provider": "openai", "price": {"input": "0.15", "output": "0.6"}},
        ],
        "aliases": [{"name": "fast", "target": "gpt-4o-mini"}],
        "teams": [{"id": "core", "allowed_models": ["fast"]}, {"id": "ml"}],
        "users": [{"id": "ana", "team": "core"}],
        "projects": [{"id": "web", "team": "core"}],
    }
    base.update(overrides)
    return PolicyDocument.model_validate(base)


@pytest.fixture
def svc(kv: KV) -> StorePolicyService:
    return StorePolicyService(kv, PEPPER, lambda: NOW)


async def stored(kv: KV) -> dict[str, bytes]:
    entries, _ = await kv.get_prefix("")
    return {k: e.value for k, e in entries.items()}


async def test_apply_creates_then_is_idempotent(svc: StorePolicyService, kv: KV) -> None:
    first = await svc.apply(policy())
    assert first.version > 0 and not first.dry_run
    assert {(c.section, c.name, c.action) for c in first.changes} == {
        ("providers", "openai", "create"), ("models", "gpt-4o", "create"), ("models", "gpt-4o-mini", "create"),
        ("aliases", "fast", "create"), ("teams", "core", "create"), ("teams", "ml", "create"),
        ("users", "ana", "create"), ("projects", "web", "create"),
    }
    assert all(c.before is None and c.after for c in first.changes)
    doc, version = await svc.get_document()
    assert doc == policy() and version == first.version

    _, rev_before = await kv.get_prefix("")
    again = await svc.apply(policy())
    assert again.changes == [] and again.version == first.version
    _, rev_after = await kv.get_prefix("")
    assert rev_after == rev_before  # nothing at all was written


async def test_apply_diffs_updates_and_deletes(svc: StorePolicyService) -> None:
    v1 = (await svc.apply(policy())).version
    changed = policy(
        models=[
            {"name": "gpt-4o", "provider": "openai", "price": {"input": "3", "output": "10", "cached_input": "1.25"}},
            {"name": "gpt-4o-mini", "provider": "openai", "price": {"input": "0.15", "output": "0.6"}},
        ],
        aliases=[],
        teams=[{"id": "core"}, {"id": "ml"}],
        users=[{"id": "ana", "team": "core"}, {"id": "bo", "team": "ml"}],
    )
    res = await svc.apply(changed)
    by = {(c.section, c.name): c for c in res.changes}
    assert set(by) == {("models", "gpt-4o"), ("aliases", "fast"), ("teams", "core"), ("users", "bo")}
    assert by[("models", "gpt-4o")].action == "update"
    assert by[("models", "gpt-4o")].before["price"]["input"] == "2.5"  # type: ignore[index]
    assert by[("models", "gpt-4o")].after["price"]["input"] == "3"  # type: ignore[index]
    assert by[("aliases", "fast")].action == "delete" and by[("aliases", "fast")].after is None
    assert by[("users", "bo")].action == "create"
    assert res.version > v1
    assert (await svc.get_document())[0] == changed


async def test_dry_run_writes_nothing(svc: StorePolicyService, kv: KV) -> None:
    v1 = (await svc.apply(policy())).version
    before = await stored(kv)
    res = await svc.apply(policy(aliases=[], teams=[{"id": "core"}, {"id": "ml"}]), dry_run=True)
    assert res.dry_run and res.version == v1
    assert [(c.section, c.name, c.action) for c in res.changes] == [("aliases", "fast", "delete"), ("teams", "core", "update")]
    assert await stored(kv) == before


async def test_invalid_policy_is_rejected_with_every_error_and_nothing_written(svc: StorePolicyService, kv: KV) -> None:
    await svc.apply(policy())
    before = await stored(kv)
    bad = policy(
        models=[{"name": "gpt-4o", "provider": "azure"}],
        users=[{"id": "ana", "team": "nope"}],
        aliases=[{"name": "x", "target": "y"}, {"name": "y", "target": "x"}],
    )
    with pytest.raises(PolicyInvalid) as info:
        await svc.apply(bad)
    errs = info.value.errors
    assert any("provider 'azure'" in e for e in errs)
    assert any("team 'nope'" in e for e in errs)
    assert any("alias cycle" in e for e in errs)
    assert any("'fast'" in e for e in errs)  # team core still allows the alias this policy drops
    assert await stored(kv) == before


async def test_apply_cannot_orphan_a_key(svc: StorePolicyService) -> None:
    await svc.apply(policy())
    created = await svc.create_key(KeySpec(team="ml"))
    with pytest.raises(PolicyInvalid) as info:
        await svc.apply(policy(teams=[{"id": "core", "allowed_models": ["fast"]}]))
    assert any(created.record.id in e and "'ml'" in e for e in info.value.errors)


class RacingKV:
    """Delegates to a real store, but lets another writer win right before the first commit."""

    def __init__(self, inner: KV, race: Mapping[str, bytes] | None = None):
        self.inner = inner
        self.race = race or {VERSION_KEY: b"{}"}
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *,
                     if_revision_of: Mapping[str, int] | None = None) -> int:
        if not self.raced:
            self.raced = True
            await self.inner.commit(self.race)
        return await self.inner.commit(puts, deletes, if_revision_of=if_revision_of)


async def test_concurrent_apply_conflicts(kv: KV) -> None:
    await StorePolicyService(kv, PEPPER, lambda: NOW).apply(policy())
    # Another operator's edit (a policy item and the version key) lands between this apply's read and commit.
    edit = {item_key("teams", "ops"): encode(Team(id="ops")), VERSION_KEY: b"{}"}
    racing = StorePolicyService(RacingKV(kv, edit), PEPPER, lambda: NOW)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        await racing.apply(policy(users=[]))
    assert (await racing.apply(policy(users=[]))).changes  # a retry with fresh state succeeds


async def test_key_writes_retry_a_lost_race(kv: KV) -> None:
    await StorePolicyService(kv, PEPPER, lambda: NOW).apply(policy())
    racing = StorePolicyService(RacingKV(kv), PEPPER, lambda: NOW)  # type: ignore[arg-type]
    created = await racing.create_key(KeySpec(team="core"))
    assert [k.id for k in await racing.list_keys()] == [created.record.id]


async def test_create_key_stores_only_the_hash(svc: StorePolicyService, kv: KV, caplog: pytest.LogCaptureFixture) -> None:
    await svc.apply(policy())
    caplog.set_level(logging.DEBUG)
    created = await svc.create_key(KeySpec(name="ci", user="ana", allowed_models=["fast"], default_tags={"env": "ci"}))
    rec = created.record
    assert created.secret.startswith("sk-il-") and rec.id.startswith("vk_")
    assert rec.key_hash == hash_key(PEPPER, created.secret).hex()
    assert rec.team == "core"  # implied by the user
    assert rec.hint.endswith(created.secret[-4:]) and rec.created_at_unix_ms == int(NOW * 1000)
    assert created.secret not in repr(created)
    for key, value in (await stored(kv)).items():
        assert created.secret.encode() not in value, key
        assert created.secret[6:].encode() not in value, key  # not even without the prefix
    assert created.secret not in caplog.text
    snap = await svc.current_snapshot()
    assert [(k.id, k.key_hash) for k in snap.keys] == [(rec.id, bytes.fromhex(rec.key_hash))]
    assert await svc.list_keys() == [rec]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (KeySpec(team="nope"), "team 'nope' is not defined"),
        (KeySpec(user="ghost"), "user 'ghost' is not defined"),
        (KeySpec(project="nada"), "project 'nada' is not defined"),
        (KeySpec(team="ml", user="ana"), "user 'ana' belongs to team 'core', not 'ml'"),
        (KeySpec(team="core", allowed_models=["gpt-5"]), "allowed model 'gpt-5' is not a model or alias"),
        (KeySpec(team="core", expires_at_unix_ms=int(NOW * 1000) - 1), "expires_at is in the past"),
    ],
)
async def test_create_key_validates(svc: StorePolicyService, kv: KV, spec: KeySpec, fragment: str) -> None:
    await svc.apply(policy())
    before = await stored(kv)
    with pytest.raises(PolicyInvalid) as info:
        await svc.create_key(spec)
    assert any(fragment in e for e in info.value.errors), info.value.errors
    assert await stored(kv) == before


async def test_revoke_key_keeps_the_record(svc: StorePolicyService) -> None:
    await svc.apply(policy())
    created = await svc.create_key(KeySpec(team="core"))
    revoked = await svc.revoke_key(created.record.id)
    assert revoked.revoked and revoked.revoked_at_unix_ms == int(NOW * 1000)
    _, version = await svc.get_document()
    assert await svc.revoke_key(created.record.id) == revoked  # twice is fine, and writes nothing
    assert (await svc.get_document())[1] == version
    assert (await svc.list_keys())[0].revoked
    assert (await svc.current_snapshot()).keys[0].revoked
    with pytest.raises(NotFound):
        await svc.revoke_key("vk_doesnotexist")


async def test_list_models_includes_aliases_with_prices(svc: StorePolicyService) -> None:
    await svc.apply(policy())
    models = {m.name: m for m in await svc.list_models()}
    assert set(models) == {"gpt-4o", "gpt-4o-mini", "fast"}
    fast = models["fast"]
    assert (fast.kind, fast.target, fast.provider, fast.upstream) == ("alias", "gpt-4o-mini", "openai", "gpt-4o-mini")
    assert (fast.input_per_mtok, fast.output_per_mtok, fast.cached_input_per_mtok) == ("0.15", "0.6", "0.15")
    assert models["gpt-4o"].cached_input_per_mtok == "1.25" and models["gpt-4o"].kind == "model"


async def test_snapshot_version_is_the_policy_version(svc: StorePolicyService, kv: KV) -> None:
    v = (await svc.apply(policy())).version
    s1 = await svc.current_snapshot()
    await kv.commit({"nodes/n1": b"{}"})  # unrelated writes do not bump the version
    s2 = await svc.current_snapshot()
    assert s1.version == s2.version == v and s1.content_hash == s2.content_hash
    v2 = (await svc.apply(policy(aliases=[], teams=[{"id": "core"}, {"id": "ml"}]))).version  # a delete does
    assert (await svc.current_snapshot()).version == v2 > v


async def test_unreadable_stored_items_are_reported_and_replaced_by_apply(svc: StorePolicyService, kv: KV) -> None:
    await svc.apply(policy())
    await kv.commit({"policy/models/broken": b"{not json"})
    with pytest.raises(PolicyInvalid) as info:
        await svc.current_snapshot()
    assert any("policy/models/broken" in e for e in info.value.errors)
    res = await svc.apply(policy())
    assert [(c.section, c.name, c.action) for c in res.changes] == [("models", "broken", "delete")]
    await svc.current_snapshot()


async def test_unreadable_stored_key_blocks_apply_until_fixed(svc: StorePolicyService, kv: KV) -> None:
    await svc.apply(policy())
    await kv.commit({"policy/keys/vk_bad": b'{"id":"vk_bad","key_hash":"not-hex"}'})
    with pytest.raises(PolicyInvalid) as info:
        await svc.current_snapshot()
    assert any("policy/keys/vk_bad" in e and "key_hash" in e for e in info.value.errors)
    with pytest.raises(PolicyInvalid):  # an apply cannot remove keys, so it must not pretend the state is fine
        await svc.apply(policy(users=[]))
    assert [k.id for k in await svc.list_keys()] == []  # unreadable keys are not listed as if they were valid
