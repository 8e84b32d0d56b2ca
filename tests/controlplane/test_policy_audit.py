"""The policy audit log over both real stores: atomic with the change, masked, queryable by API and CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from controlplane.admin_api import create_admin_app
from controlplane.audit import (
    MASK,
    MAX_RECORD_BYTES,
    AuditQueryInvalid,
    PolicyAuditRecord,
    build_record,
    clean_actor,
    encode_record,
    mask_item,
    parse_since,
)
from controlplane.errors import Conflict, PolicyInvalid
from controlplane.policy.model import User
from controlplane.service import StorePolicyService
from controlplane.service_types import Change, KeySpec
from controlplane.store import KV, open_store
from controlplane.store.layout import AUDIT, VERSION_KEY, encode, item_key
from interlock.cli.main import cli
from tests.controlplane.test_policy_service import NOW, PEPPER, RacingKV, policy
from tests.fixtures.admin import admin_cli_env, serve_admin

pytestmark = pytest.mark.integration
TOKEN = "audit-test-token"
HEADERS = {"Authorization": "Bearer sk-upstream-0123456789abcdef", "X-Api-Key": "plain", "X-Team": "core",
           "X-Org": "ghp_abcdefghij0123456789", "X-Trace": "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRva2VuMTIz"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(kv: KV, clock: Clock) -> StorePolicyService:
    return StorePolicyService(kv, PEPPER, clock)


async def raw_audit(kv: KV) -> dict[str, bytes]:
    entries, _ = await kv.get_prefix(AUDIT)
    return {k: e.value for k, e in entries.items()}


async def test_apply_is_recorded_with_its_diff_and_version(svc: StorePolicyService, kv: KV) -> None:
    res = await svc.apply(policy(), actor="ci@deploy")
    [rec] = await svc.policy_log()
    assert (rec.action, rec.actor, rec.subject, rec.base_version) == ("apply", "ci@deploy", "", 0)
    entry = await kv.get(VERSION_KEY)
    assert entry is not None and rec.version == res.version == entry.mod_revision  # same transaction
    assert rec.at_unix_ms == int(NOW * 1000)
    assert [(c.section, c.name, c.action, c.before, c.after) for c in rec.changes] == [
        (c.section, c.name, c.action, c.before, c.after) for c in res.changes]

    upd = await svc.apply(policy(aliases=[], teams=[{"id": "core"}, {"id": "ml"}]))
    newest = (await svc.policy_log())[0]
    assert newest.base_version == res.version and newest.version == upd.version > res.version
    assert newest.actor == "admin"  # the default when no actor is threaded through
    assert {(c.section, c.name, c.action) for c in newest.changes} == {("aliases", "fast", "delete"),
                                                                        ("teams", "core", "update")}
    team = next(c for c in newest.changes if c.section == "teams")
    assert team.before and team.after and (team.before["allowed_models"], team.after["allowed_models"]) == (["fast"], [])


async def test_no_record_for_noop_dry_run_or_invalid_apply(svc: StorePolicyService, kv: KV) -> None:
    await svc.apply(policy())
    before = await raw_audit(kv)
    assert (await svc.apply(policy())).changes == []  # idempotent
    assert (await svc.apply(policy(users=[]), dry_run=True)).changes  # dry run
    with pytest.raises(PolicyInvalid):
        await svc.apply(policy(models=[{"name": "gpt-4o", "provider": "azure"}]))
    with pytest.raises(PolicyInvalid):
        await svc.create_key(KeySpec(team="nope"))
    assert await raw_audit(kv) == before and len(before) == 1


async def test_key_create_and_revoke_name_the_key_never_its_secret_or_hash(svc: StorePolicyService, kv: KV) -> None:
    await svc.apply(policy())
    created = await svc.create_key(KeySpec(name="ci", team="core"), actor="alice")
    key_id, key_hash = created.record.id, created.record.key_hash
    await svc.revoke_key(key_id, actor="bob")
    await svc.revoke_key(key_id, actor="bob")  # already revoked: no write, no record
    revoke, create, _ = await svc.policy_log()
    assert (create.action, create.subject, create.actor) == ("create_key", key_id, "alice")
    assert [(c.section, c.name, c.action) for c in create.changes] == [("keys", key_id, "create")]
    assert create.changes[0].after and create.changes[0].after["team"] == "core"
    assert (revoke.action, revoke.subject, revoke.actor) == ("revoke_key", key_id, "bob")
    [change] = revoke.changes
    assert change.before and change.after and (change.before["revoked"], change.after["revoked"]) == (False, True)
    for raw in (await raw_audit(kv)).values():
        for leak in (created.secret, created.secret[6:], key_hash, "key_hash"):
            assert leak.encode() not in raw


async def test_provider_headers_that_look_secret_are_masked(svc: StorePolicyService, kv: KV) -> None:
    provider = {"name": "openai", "base_url": "https://api.openai.com/v1", "credential": "env:OPENAI_API_KEY",
                "headers": HEADERS}
    await svc.apply(policy(providers=[provider]))
    [rec] = await svc.policy_log()
    after = next(c for c in rec.changes if c.section == "providers").after
    assert after is not None and after["credential"] == "env:OPENAI_API_KEY"  # a reference, kept
    assert after["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "X-Team": "core", "X-Org": MASK,
                                "X-Trace": MASK}
    raw = b"".join((await raw_audit(kv)).values())
    for name, value in HEADERS.items():
        assert name == "X-Team" or value.encode() not in raw


async def test_conflict_leaves_neither_change_nor_record(kv: KV, clock: Clock) -> None:
    await StorePolicyService(kv, PEPPER, clock).apply(policy())
    # Another operator's write of a policy item (same content here) lands between the apply's read and commit.
    edit = {item_key("users", "ana"): encode(User(id="ana", team="core")), VERSION_KEY: b"{}"}
    racing = StorePolicyService(RacingKV(kv, edit), PEPPER, clock)  # type: ignore[arg-type]
    before = await raw_audit(kv)
    with pytest.raises(Conflict):
        await racing.apply(policy(users=[]), actor="loser")
    assert await raw_audit(kv) == before
    assert (await racing.get_document())[0] == policy()
    assert (await racing.apply(policy(users=[]), actor="retry")).changes
    assert [r.actor for r in await racing.policy_log()] == ["retry", "admin"]


async def test_log_is_newest_first_with_since_and_limit(svc: StorePolicyService, clock: Clock, kv: KV) -> None:
    await svc.apply(policy())
    for i in range(4):
        clock.now += 3600
        await svc.create_key(KeySpec(name=f"k{i}", team="core"), actor=f"u{i}")
    log = await svc.policy_log()
    assert [r.actor for r in log] == ["u3", "u2", "u1", "u0", "admin"]
    assert [r.version for r in log] == sorted((r.version for r in log), reverse=True)
    assert sorted(await raw_audit(kv)) == [f"{AUDIT}{r.base_version:020d}-{r.id}" for r in reversed(log)]
    assert [r.actor for r in await svc.policy_log(limit=2)] == ["u3", "u2"]
    since = int(clock.now * 1000) - 2 * 3600 * 1000
    assert [r.actor for r in await svc.policy_log(since_ms=since)] == ["u3", "u2", "u1"]


# -- pure parts ---------------------------------------------------------------------------


def test_masking_building_and_size_cap() -> None:
    assert mask_item("keys", {"id": "vk_1", "key_hash": "ab" * 32, "secret": "x"}) == {"id": "vk_1"}
    assert mask_item("providers", None) is None
    assert clean_actor(" ci\x1b[31m\n", "d") == "ci[31m" and clean_actor("", "d") == "d"
    assert clean_actor("x" * 500, "d") == "x" * 128
    assert parse_since("7d", 10 * 86_400_000) == 3 * 86_400_000 and parse_since(None, 1) is None
    for bad in ("7 days", "0h", "-1d", "d"):
        with pytest.raises(AuditQueryInvalid):
            parse_since(bad, 0)
    huge = [Change("models", f"m{i}", "create", after={"name": f"m{i}", "pad": "x" * 1000}) for i in range(400)]
    rec = build_record(action="apply", actor="a", changes=huge, base_version=7, now_ms=1)
    slim = PolicyAuditRecord.model_validate_json(encode_record(rec))
    assert len(encode_record(rec)) <= MAX_RECORD_BYTES and slim.values_omitted
    assert [c.name for c in slim.changes] == [c.name for c in huge] and slim.changes[0].after is None


# -- admin API ----------------------------------------------------------------------------


async def test_api_records_actor_and_lists_newest_first(svc: StorePolicyService, clock: Clock) -> None:
    transport = httpx.ASGITransport(app=create_admin_app(svc, TOKEN.encode()))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=auth) as http:
        assert (await http.post("/admin/v1/policy/apply", json=policy().model_dump(mode="json"),
                                headers={"X-Interlock-Actor": "deploy-bot"})).status_code == 200
        clock.now += 86400 * 3
        key = (await http.post("/admin/v1/keys", json={"team": "core"})).json()
        assert (await http.post(f"/admin/v1/keys/{key['id']}/revoke", headers={"X-Interlock-Actor": "sec"})).is_success

        unauth = await http.get("/admin/v1/audit/policy", headers={"Authorization": ""})
        assert unauth.status_code == 401 and unauth.json()["error"]["type"] == "Unauthorized"
        body = (await http.get("/admin/v1/audit/policy")).json()
        # The actor is the token's identity; the header is only an unverified "on behalf of" note.
        assert [(r["action"], r["actor"], r["on_behalf_of_unverified"]) for r in body["records"]] == [
            ("revoke_key", "admin-token", "sec"), ("create_key", "admin-token", ""), ("apply", "admin-token", "deploy-bot")]
        assert all(r["actor_verified"] and r["actor_role"] == "admin" for r in body["records"])
        assert body["truncated"] is False and body["records"][0]["subject"] == key["id"]
        assert body["records"][0]["at"].endswith("Z") and key["secret"] not in json.dumps(body)
        assert all("key_hash" not in (c["after"] or {}) for r in body["records"] for c in r["changes"])
        two = (await http.get("/admin/v1/audit/policy", params={"limit": 2})).json()
        assert len(two["records"]) == 2 and two["truncated"] is True
        # The service clock is frozen in the past, so a window ending at the real now is empty.
        assert (await http.get("/admin/v1/audit/policy", params={"since": "1h"})).json()["records"] == []
        bad = await http.get("/admin/v1/audit/policy", params={"since": "a week"})
        assert bad.status_code == 422 and "30m, 24h, 7d, 2w" in bad.json()["error"]["message"]


# -- CLI against a real server -------------------------------------------------------------


@pytest.fixture
def admin_url(tmp_path: Any) -> Iterator[str]:
    store = open_store(f"sqlite:///{tmp_path}/policy.db", "/interlock")
    app = create_admin_app(StorePolicyService(store, PEPPER, time.time), TOKEN.encode())
    with serve_admin(app) as url:
        yield url
    asyncio.run(store.close())


def test_cli_audit_policy(admin_url: str) -> None:
    with httpx.Client(base_url=admin_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        http.post("/admin/v1/policy/apply", json=policy().model_dump(mode="json"),
                  headers={"X-Interlock-Actor": "deploy-bot"}).raise_for_status()
        http.post("/admin/v1/keys", json={"team": "core", "name": "ci"}).raise_for_status()
    env = admin_cli_env(admin_url, TOKEN, columns=120)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    out = run("audit", "policy", "--since", "7d")
    assert "policy audit, last 7d: 2 changes, newest first" in out
    for needle in ("TIME (UTC)", "VERSION", "ACTOR", "deploy-bot", "admin-token", "create key", "+keys/vk_",
                   "+providers/openai", "(+4 more)"):
        assert needle in out, needle
    assert out.index("admin-token") < out.index("deploy-bot")  # newest first
    data = json.loads(run("audit", "policy", "-o", "json", "--limit", "1"))
    assert data["truncated"] and [r["action"] for r in data["records"]] == ["create_key"]
    assert "gpt-4o" in run("audit", "policy", "--diff")
    bad = CliRunner().invoke(cli, ["audit", "policy", "--since", "forever"], env=env)
    assert bad.exit_code == 2 and "30m, 24h, 7d, 2w" in bad.stderr
    helptext = run("audit", "--help")
    assert "--key" in helptext and "policy" in helptext  # the request trail keeps its options
