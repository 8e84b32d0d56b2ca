"""Admin API over an in-memory PolicyService (real compiler and key hashing). Tests use only HTTP and the
PolicyService protocol, so overriding the `service` fixture runs them against the store-backed service."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
from fastapi import APIRouter

from controlplane.admin_api import create_admin_app
from controlplane.admin_auth import Role, requires
from controlplane.errors import Conflict, NotFound, StoreUnavailable
from controlplane.model_listing import model_infos
from controlplane.policy.compiler import compile_snapshot, validate
from controlplane.policy.model import SECTIONS, KeyRecord, PolicyDocument, record_key
from controlplane.service_types import ApplyResult, Change, CreatedKey, KeySpec, ModelInfo, NodeStatus
from interlock_contracts.keys import display_hint, hash_key, new_key_id, new_secret
from interlock_contracts.v1 import policy_pb2

TOKEN = "test-admin-token"
API = "/admin/v1"


class MemoryPolicyService:
    """A small but real PolicyService: state in memory, the real compiler and key hashing."""

    def __init__(self, pepper: bytes = b"pepper-" * 5) -> None:
        self.pepper = pepper
        self.doc = PolicyDocument()
        self.keys: dict[str, KeyRecord] = {}
        self.version = 1
        self.nodes: list[NodeStatus] = []  # set by tests; the real service learns these over gRPC

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    async def get_document(self) -> tuple[PolicyDocument, int]:
        return self.doc, self.version

    async def apply(self, doc: PolicyDocument, *, dry_run: bool = False, actor: str = "admin") -> ApplyResult:
        validate(doc, self.keys.values())
        changes = []
        for section in SECTIONS:
            old = {record_key(section, i): i.model_dump(mode="json") for i in getattr(self.doc, section)}
            new = {record_key(section, i): i.model_dump(mode="json") for i in getattr(doc, section)}
            for name in sorted(old.keys() | new.keys()):
                b, a = old.get(name), new.get(name)
                if b != a:
                    action: Literal["create", "update", "delete"] = "create" if b is None else "delete" if a is None else "update"
                    changes.append(Change(section, name, action, b, a))
        if changes and not dry_run:
            self.doc, self.version = doc, self.version + 1
        return ApplyResult(changes=changes, version=self.version, dry_run=dry_run)

    async def create_key(self, spec: KeySpec, *, actor: str = "admin") -> CreatedKey:
        secret = new_secret()
        record = KeyRecord(
            id=new_key_id(), key_hash=hash_key(self.pepper, secret).hex(), hint=display_hint(secret),
            name=spec.name, team=spec.team, user=spec.user, project=spec.project,
            allowed_models=list(spec.allowed_models), expires_at_unix_ms=spec.expires_at_unix_ms,
            created_at_unix_ms=self.now_ms(), default_tags=dict(spec.default_tags),
        )
        validate(self.doc, [*self.keys.values(), record])
        self.keys[record.id], self.version = record, self.version + 1
        return CreatedKey(record=record, secret=secret)

    async def list_keys(self) -> list[KeyRecord]:
        return list(self.keys.values())

    async def revoke_key(self, key_id: str, *, actor: str = "admin") -> KeyRecord:
        if key_id not in self.keys:
            raise NotFound(f"virtual key {key_id!r} does not exist")
        if not self.keys[key_id].revoked:
            revoked = {"revoked": True, "revoked_at_unix_ms": self.now_ms()}
            self.keys[key_id] = self.keys[key_id].model_copy(update=revoked)
            self.version += 1
        return self.keys[key_id]

    async def list_models(self) -> list[ModelInfo]:
        return model_infos(self.doc)  # the real service's listing, catalog prices included

    async def node_status(self) -> list[NodeStatus]:
        return list(self.nodes)

    async def current_snapshot(self) -> policy_pb2.PolicySnapshot:
        return compile_snapshot(self.doc, self.keys.values(), version=self.version, now_ms=self.now_ms())


def policy(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providers": [{"name": "openai", "base_url": "https://api.openai.com/v1", "credential": "env:OPENAI_API_KEY"}],
        "models": [
            {"name": "gpt-4.1", "provider": "openai", "price": {"input": "2", "output": "8", "cached_input": "0.5"}},
            {"name": "gpt-4.1-mini", "provider": "openai", "price": {"input": "0.4", "output": "1.6"}},
        ],
        "aliases": [{"name": "fast", "target": "gpt-4.1-mini"}],
        "teams": [{"id": "platform", "allowed_models": ["fast", "gpt-4.1"]}],
        "users": [{"id": "alice", "team": "platform"}],
        "projects": [{"id": "gateway", "team": "platform"}],
    }
    return doc | overrides


@pytest.fixture
def service() -> MemoryPolicyService:
    return MemoryPolicyService()


@pytest.fixture
async def client(service: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_admin_app(service, TOKEN.encode()))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


ROUTES = [("GET", "/policy"), ("POST", "/policy/apply"), ("GET", "/keys"), ("POST", "/keys"),
          ("POST", "/keys/vk_x/revoke"), ("GET", "/models"), ("GET", "/nodes"), ("GET", "/snapshot")]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer "])
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_admin_route_requires_the_token(client: httpx.AsyncClient, method: str, path: str,
                                                    auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    client.headers.pop("Authorization")
    r = await client.request(method, API + path, headers=headers, json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "Unauthorized" and "admin token" in r.json()["error"]["message"]


async def test_healthz_and_docs_need_no_token(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/healthz")).json() == {"status": "ok"} and (await client.get("/docs")).status_code == 404
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {f"{API}/policy/apply", f"{API}/keys/{{key_id}}/revoke", f"{API}/nodes"} <= set(paths)


async def test_apply_dry_run_then_apply_then_idempotent(client: httpx.AsyncClient) -> None:
    v0 = (await client.get(f"{API}/policy")).json()["version"]
    body = (await client.post(f"{API}/policy/apply", params={"dry_run": "true"}, json=policy())).json()
    assert body["dry_run"] is True and body["version"] == v0
    assert {(c["section"], c["name"], c["action"]) for c in body["changes"]} >= {
        ("providers", "openai", "create"), ("aliases", "fast", "create"), ("teams", "platform", "create")}
    assert (await client.get(f"{API}/policy")).json()["document"]["models"] == []

    applied = (await client.post(f"{API}/policy/apply", json=policy())).json()
    assert len(applied["changes"]) == 7 and applied["version"] > v0
    got = (await client.get(f"{API}/policy")).json()
    assert got["version"] == applied["version"] and got["document"]["aliases"] == [{"name": "fast", "target": "gpt-4.1-mini"}]

    again = (await client.post(f"{API}/policy/apply", json=policy())).json()
    assert again == {"changes": [], "version": applied["version"], "dry_run": False}

    edited = policy(users=[])
    edited["models"][0]["price"]["input"] = "2.5"
    by_name = {c["name"]: c for c in (await client.post(f"{API}/policy/apply", json=edited)).json()["changes"]}
    assert by_name["alice"]["action"] == "delete" and by_name["alice"]["after"] is None
    upd = by_name["gpt-4.1"]
    assert upd["action"] == "update" and (upd["before"]["price"]["input"], upd["after"]["price"]["input"]) == ("2", "2.5")


async def test_invalid_policy_returns_every_error_with_field_paths(client: httpx.AsyncClient) -> None:
    v0 = (await client.get(f"{API}/policy")).json()["version"]
    bad = policy(models=[{"name": "m", "provider": "nope"}], aliases=[{"name": "fast", "target": "missing"}],
                 users=[{"id": "alice", "team": "ghosts"}])
    r = await client.post(f"{API}/policy/apply", json=bad)
    err = r.json()["error"]
    assert r.status_code == 422 and err["type"] == "PolicyInvalid" and "problems" in err["message"], err
    for needle in ("provider 'nope' is not defined", "'missing'", "team 'ghosts' is not defined", "'gpt-4.1'"):
        assert any(needle in e for e in err["errors"]), needle
    assert (await client.get(f"{API}/policy")).json()["version"] == v0

    malformed = policy(providers=[{"name": "openai", "base_url": "https://x", "credential": "sk-live-abc"}], extra=1)
    err = (await client.post(f"{API}/policy/apply", json=malformed)).json()["error"]
    assert err["type"] == "RequestInvalid" and any(e.startswith("extra: Extra inputs") for e in err["errors"])
    assert any(e.startswith("providers[0].credential: credential must be a reference") for e in err["errors"])


LEAKY = Change("keys", "vk_1", "update", {"id": "vk_1", "key_hash": "ab" * 32}, {"id": "vk_1", "key_hash": "cd"})


@pytest.mark.parametrize(("outcome", "status"), [(Conflict("store revision moved"), 409),
                                                 (StoreUnavailable("etcd is down"), 503),
                                                 (ApplyResult([LEAKY], 7, False), 200)])
async def test_service_outcomes_map_to_http(client: httpx.AsyncClient, service: Any, monkeypatch: pytest.MonkeyPatch,
                                            outcome: Any, status: int) -> None:
    async def apply(*a: Any, **kw: Any) -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(service, "apply", apply)
    r = await client.post(f"{API}/policy/apply", json=policy())
    assert r.status_code == status and "key_hash" not in r.text  # scrubbed even if a service reports it
    if isinstance(outcome, Exception):
        assert r.json() == {"error": {"type": type(outcome).__name__, "message": str(outcome), "errors": []}}
    else:
        assert r.json()["changes"][0]["before"] == {"id": "vk_1"}


async def test_key_secret_is_returned_once_and_never_again(client: httpx.AsyncClient, service: Any) -> None:
    await client.post(f"{API}/policy/apply", json=policy())
    spec = {"name": "ci", "team": "platform", "user": "alice", "allowed_models": ["fast"], "default_tags": {"a": "b"}}
    r = await client.post(f"{API}/keys", json=spec)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store", r.text
    created = r.json()
    secret, key_id = created["secret"], created["id"]
    assert secret.startswith("sk-il-") and created["hint"].endswith(secret[-4:])
    assert "key_hash" not in created and created["team"] == "platform" and created["allowed_models"] == ["fast"]

    key_hash = (await service.current_snapshot()).keys[0].key_hash.hex()
    for path in ("/keys", "/snapshot", "/policy", "/nodes", "/models"):
        text = (await client.get(API + path)).text
        assert secret not in text and key_hash not in text and "\"key_hash\"" not in text, path
    listed = (await client.get(f"{API}/keys")).json()["keys"]
    assert [k["id"] for k in listed] == [key_id] and {"hint", "team", "user", "project", "allowed_models",
                                                      "expires_at_unix_ms", "revoked", "created_at_unix_ms"} <= set(listed[0])
    assert (await client.get(f"{API}/snapshot")).json()["counts"]["keys"] == 1


async def test_key_for_unknown_team_or_bad_spec_is_422(client: httpx.AsyncClient) -> None:
    await client.post(f"{API}/policy/apply", json=policy())
    for spec, kind in (({"team": "ghosts"}, "PolicyInvalid"), ({"key_hash": "00"}, "RequestInvalid")):
        r = await client.post(f"{API}/keys", json={"name": "x", **spec})
        assert r.status_code == 422 and r.json()["error"]["type"] == kind
    assert (await client.get(f"{API}/keys")).json()["keys"] == []


async def test_revoke_is_idempotent_and_unknown_ids_404(client: httpx.AsyncClient) -> None:
    await client.post(f"{API}/policy/apply", json=policy())
    key_id = (await client.post(f"{API}/keys", json={"name": "laptop", "team": "platform"})).json()["id"]
    first = (await client.post(f"{API}/keys/{key_id}/revoke")).json()
    assert first["revoked"] is True and first["revoked_at_unix_ms"] > 0 and "secret" not in first
    again = await client.post(f"{API}/keys/{key_id}/revoke")
    assert again.status_code == 200 and (await client.get(f"{API}/keys")).json()["keys"][0]["revoked"] is True
    missing = await client.post(f"{API}/keys/vk_nope/revoke")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"


async def test_models_lists_models_and_aliases_with_prices(client: httpx.AsyncClient) -> None:
    await client.post(f"{API}/policy/apply", json=policy())
    models = {m["name"]: m for m in (await client.get(f"{API}/models")).json()["models"]}
    assert set(models) == {"gpt-4.1", "gpt-4.1-mini", "fast"}
    assert models["gpt-4.1"].items() >= {"kind": "model", "provider": "openai", "input_per_mtok": "2",
                                         "output_per_mtok": "8", "cached_input_per_mtok": "0.5"}.items()
    assert models["fast"]["kind"] == "alias" and models["fast"]["target"] == "gpt-4.1-mini"
    assert models["fast"]["cached_input_per_mtok"] == "0.4"  # defaults to the input price


async def test_nodes_and_snapshot_report_current_version(client: httpx.AsyncClient, service: Any) -> None:
    if not isinstance(service, MemoryPolicyService):
        pytest.skip("seeding node status needs a connected data plane")
    await client.post(f"{API}/policy/apply", json=policy())
    snap = await service.current_snapshot()
    now = service.now_ms()
    service.nodes = [
        NodeStatus("dp-1", snap.version, snap.content_hash, True, now - 3000, address="10.0.0.1:8080"),
        NodeStatus("dp-2", snap.version - 1, "old", False, now - 90_000, rejected_version=snap.version,
                   reject_reason="provider kind 'bedrock' unknown"),
    ]
    body = (await client.get(f"{API}/nodes")).json()
    assert (body["version"], body["content_hash"]) == (snap.version, snap.content_hash)
    assert abs(body["server_time_unix_ms"] - now) < 60_000
    nodes = {n["node_id"]: n for n in body["nodes"]}
    assert nodes["dp-1"]["in_sync"] is True and nodes["dp-1"]["address"] == "10.0.0.1:8080"
    assert nodes["dp-2"]["in_sync"] is False and nodes["dp-2"]["reject_reason"].startswith("provider kind")

    summary = (await client.get(f"{API}/snapshot")).json()  # counts only: never key hashes
    assert (summary["version"], summary["content_hash"]) == (snap.version, snap.content_hash) and summary["counts"].items() >= {"providers": 1, "models": 2, "aliases": 1, "teams": 1, "keys": 0}.items()


async def test_extra_routers_are_behind_the_token_and_a_token_is_required(service: Any) -> None:
    extra = APIRouter(prefix="/admin/v1/usage", dependencies=[requires(Role.VIEWER)])

    @extra.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app = create_admin_app(service, TOKEN.encode(), extra_routers=[extra])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as c:
        assert (await c.get("/admin/v1/usage/ping")).status_code == 401
        ok = await c.get("/admin/v1/usage/ping", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.json() == {"pong": "yes"}
        assert (await c.get("/nowhere")).json()["error"]["type"] == "HTTPError"
    unguarded = APIRouter(prefix="/admin/v1/usage")
    unguarded.add_api_route("/open", ping)
    with pytest.raises(ValueError, match=r"without a role requirement.*GET /admin/v1/usage/open"):
        create_admin_app(service, TOKEN.encode(), extra_routers=[unguarded])
    with pytest.raises(ValueError, match="at least one admin credential"):
        create_admin_app(service, b"")

