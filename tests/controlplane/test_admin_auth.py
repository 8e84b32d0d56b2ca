"""Named admin credentials with roles (controlplane/admin_auth.py), over real HTTP.

The stack is the one `interlock controlplane` serves: ControlPlaneSettings.from_env (legacy INTERLOCK_ADMIN_TOKEN
plus an INTERLOCK_ADMIN_CREDENTIALS_FILE), start_backend on the embedded sqlite store, every admin router
(policy, keys, audit, budgets + run keys, explain, usage) behind uvicorn on a loopback port.
The usage routes get a ClickHouse client that answers every query with no rows: only who may call them is
under test here (the queries themselves: tests/ingest/test_usage_queries.py on chDB)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from controlplane.admin_api import create_admin_app
from controlplane.admin_auth import PUBLIC_PATHS, AdminAuth, Role, api_routes
from controlplane.admin_server import serve_admin
from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.store.layout import AUDIT
from controlplane.usage_api import create_usage_router
from ingest.query_service import UsageQueryService
from interlock.cli.main import cli
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.controlplane import AdminCredential, ControlPlaneSettings
from tests.fixtures.admin import admin_cli_env

LEGACY = "legacy-single-admin-token-0123456789"
TOKENS = {  # identity -> token; alice and grafana are configured by hash, orchestrator as a secret file
    "alice": "alice-admin-token-abcdefghijklmnop",
    "orchestrator": "orch-operator-token-qrstuvwxyz0123",
    "grafana": "grafana-viewer-token-456789abcdef",
}
ROLES = {"admin-token": Role.ADMIN, "alice": Role.ADMIN, "orchestrator": Role.OPERATOR, "grafana": Role.VIEWER}
ALL_TOKENS = {"admin-token": LEGACY, **TOKENS}

# The role each known route needs. A route missing here still must declare SOME role (test below); this table
# catches a route whose role was lowered by mistake.
EXPECTED = {
    ("GET", "/admin/v1/whoami"): Role.VIEWER,
    ("GET", "/admin/v1/policy"): Role.ADMIN,
    ("POST", "/admin/v1/policy/apply"): Role.ADMIN,
    ("GET", "/admin/v1/keys"): Role.VIEWER,
    ("POST", "/admin/v1/keys"): Role.ADMIN,
    ("POST", "/admin/v1/keys/{key_id}/revoke"): Role.OPERATOR,
    ("POST", "/admin/v1/keys/mint"): Role.OPERATOR,
    ("GET", "/admin/v1/models"): Role.VIEWER,
    ("GET", "/admin/v1/nodes"): Role.VIEWER,
    ("GET", "/admin/v1/snapshot"): Role.VIEWER,
    ("GET", "/admin/v1/audit/policy"): Role.VIEWER,
    ("GET", "/admin/v1/budgets"): Role.VIEWER,
    ("POST", "/admin/v1/explain"): Role.VIEWER,
    ("GET", "/admin/v1/usage/spend"): Role.VIEWER,
    ("GET", "/admin/v1/usage/top"): Role.VIEWER,
    ("GET", "/admin/v1/usage/cost"): Role.VIEWER,
    ("GET", "/admin/v1/usage/audit"): Role.VIEWER,
}


class NoRowsClickHouse:
    """A ClickHouse client whose every query returns no rows (see the module docstring)."""

    def query(self, sql: str, parameters: Any = None, settings: Any = None) -> SimpleNamespace:
        return SimpleNamespace(result_rows=[])

    def close(self) -> None:
        pass


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def control_plane_env(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "orchestrator-token"
    secret.write_text(TOKENS["orchestrator"] + "\n")
    creds = tmp_path / "admins.yaml"
    creds.write_text(
        f"- {{name: alice, role: admin, token_sha256: {sha(TOKENS['alice'])}}}\n"
        "- {name: orchestrator, role: operator, token_secret: ORCH_TOKEN, teams: [t1]}\n"
        f"- {{name: grafana, role: viewer, token_sha256: {sha(TOKENS['grafana']).upper()}}}\n"
    )
    return {"INTERLOCK_KEY_PEPPER": "pepper-" * 6, "INTERLOCK_ADMIN_TOKEN": LEGACY,
            "INTERLOCK_ADMIN_CREDENTIALS_FILE": str(creds), "INTERLOCK_ORCH_TOKEN_FILE": str(secret),
            "INTERLOCK_STORE": f"sqlite:///{tmp_path / 'policy.db'}", "INTERLOCK_GRPC_PORT": "0"}


@dataclass
class Stack:
    url: str
    backend: ControlPlaneBackend
    app: Any

    def client(self, who: str | None = None, **headers: str) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {ALL_TOKENS[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers={**auth, **headers}, timeout=10)

    async def cli(self, who: str, *args: str, actor: str = "") -> Result:
        env = {**admin_cli_env(self.url, ALL_TOKENS[who], columns=200), "INTERLOCK_ACTOR": actor or None}
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = ControlPlaneSettings.from_env(control_plane_env(tmp_path))
    backend = await start_backend(settings)
    usage = UsageQueryService(NoRowsClickHouse())  # type: ignore[arg-type]
    app = create_admin_app(backend.service, settings.admin_token, credentials=settings.admin_credentials,
                           extra_routers=[*backend.admin_routers(settings.key_pepper), create_usage_router(usage)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, task = await serve_admin(app, "127.0.0.1", port)
    yield Stack(f"http://127.0.0.1:{port}", backend, app)
    server.should_exit = True  # type: ignore[attr-defined]
    await task
    await backend.close(0)


POLICY = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
    "models": [{"name": "m1", "provider": "p", "price": {"input": "1", "output": "2"}}],
    "teams": [{"id": "t1", "allowed_models": ["m1"]}],
}


async def audit_log(stack: Stack) -> list[dict[str, Any]]:
    async with stack.client("grafana") as http:
        resp = await http.get("/admin/v1/audit/policy")
        assert resp.status_code == 200, resp.text
        return list(resp.json()["records"])


# -- every route has a role, and it is enforced ----------------------------------------------------------------


async def test_every_route_declares_a_role_and_it_is_enforced_over_http(stack: Stack) -> None:
    routes = [r for r in api_routes(stack.app) if r.path not in PUBLIC_PATHS]
    served = {(m, r.path): max(r.roles, default=None) for r in routes for m in r.methods}
    assert set(EXPECTED) <= set(served), f"routes missing from the app: {set(EXPECTED) - set(served)}"
    unguarded = [k for k, role in served.items() if role is None]
    assert not unguarded, f"routes without a role requirement: {unguarded}"
    assert {k: v for k, v in served.items() if k in EXPECTED} == EXPECTED

    for (method, path), needed in sorted(served.items()):
        url = re.sub(r"\{[^}]+\}", "vk_doesnotexist", path)
        kw: dict[str, Any] = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
        kw["params"] = {"dry_run": "true"}  # a permitted apply only reports

        async with stack.client() as anon:
            r = await anon.request(method, url, **kw)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "missing admin token" in r.json()["error"]["message"]
        async with stack.client(Authorization="Bearer not-a-token") as bad:
            r = await bad.request(method, url, **kw)
            assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized", (method, path)
        for who, role in ROLES.items():
            async with stack.client(who) as http:
                r = await http.request(method, url, **kw)
            if role < needed:
                assert r.status_code == 403, (who, method, path, r.status_code)
                err = r.json()["error"]
                assert err["type"] == "Forbidden"
                assert f"needs role '{needed.name.lower()}'" in err["message"] and f"'{who}' has role" in err["message"]
            else:
                assert r.status_code not in (401, 403) and r.status_code < 500, (who, method, path, r.text)
    assert await audit_log(stack) != []  # the permitted POST /keys {} made a key; refused calls made nothing else
    assert {r["actor"] for r in await audit_log(stack)} <= {"admin-token", "alice"}


async def test_whoami_names_identity_and_role(stack: Stack) -> None:
    for who, role in ROLES.items():
        async with stack.client(who) as http:
            assert (await http.get("/admin/v1/whoami")).json() == {"name": who, "role": role.name.lower()}


# -- the audit actor is the token's identity --------------------------------------------------------------------


async def test_actor_is_the_authenticated_identity_and_the_header_only_an_unverified_note(stack: Stack) -> None:
    async with stack.client("alice", **{"X-Interlock-Actor": "mallory"}) as alice:
        assert (await alice.post("/admin/v1/policy/apply", json=POLICY)).status_code == 200
        parent = (await alice.post("/admin/v1/keys", json={"team": "t1", "name": "ci"})).json()
    async with stack.client("orchestrator", **{"X-Interlock-Actor": "ci-job-42"}) as orch:
        mint = await orch.post("/admin/v1/keys/mint", json={"parent": parent["id"], "ttl_s": 3600, "budget_usd": 5})
        assert mint.status_code == 201, mint.text
        run_key = mint.json()["id"]
        # an operator revokes run keys, not the keys they are minted from
        refused = await orch.post(f"/admin/v1/keys/{parent['id']}/revoke")
        assert refused.status_code == 403
        assert "needs role 'admin'" in refused.json()["error"]["message"]
        assert (await orch.post(f"/admin/v1/keys/{run_key}/revoke")).status_code == 200
        assert (await orch.post("/admin/v1/policy/apply", json={})).status_code == 403
    async with stack.client("grafana", **{"X-Interlock-Actor": "alice"}) as viewer:
        assert (await viewer.post("/admin/v1/keys", json={"team": "t1"})).status_code == 403
    async with stack.client("admin-token") as legacy:  # no header: nothing on behalf of
        assert (await legacy.post(f"/admin/v1/keys/{parent['id']}/revoke")).status_code == 200

    records = [(r["action"], r["subject"], r["actor"], r["actor_role"], r["on_behalf_of_unverified"])
               for r in await audit_log(stack)]
    assert records == [  # newest first; the three refused calls left no record
        ("revoke_key", parent["id"], "admin-token", "admin", ""),
        ("revoke_key", run_key, "orchestrator", "operator", "ci-job-42"),
        ("create_key", run_key, "orchestrator", "operator", "ci-job-42"),
        ("create_key", parent["id"], "alice", "admin", "mallory"),
        ("apply", "", "alice", "admin", "mallory"),
    ]
    assert all(r["actor_verified"] for r in await audit_log(stack))

    # `interlock audit policy` shows both, the claim marked unverified; INTERLOCK_ACTOR is only that claim
    res = await stack.cli("grafana", "audit", "policy")
    assert res.exit_code == 0, res.output
    assert "ON BEHALF OF*" in res.stdout and "* unverified: the name the client declared" in res.stdout
    line = next(x for x in res.stdout.splitlines() if "create key" in x and "alice" in x)
    assert line.index("alice") < line.index("mallory") and "(claimed)" not in res.stdout
    res = await stack.cli("alice", "keys", "create", "--team", "t1", "--name", "by-cli", actor="bob")
    assert res.exit_code == 0, res.output
    newest = (await audit_log(stack))[0]
    assert (newest["actor"], newest["on_behalf_of_unverified"]) == ("alice", "bob")
    res = await stack.cli("grafana", "audit", "policy", "--diff", actor="bob")
    assert "alice (admin) on behalf of bob (unverified)" in res.stdout


async def test_cli_says_which_role_is_needed(stack: Stack) -> None:
    res = await stack.cli("grafana", "keys", "create", "--team", "t1", "--name", "nope")
    assert res.exit_code == 1
    assert "needs role 'admin'" in res.output and "'grafana' has role 'viewer'" in res.output
    assert "use a token of an identity with that role" in res.output
    assert TOKENS["grafana"] not in res.output
    ok = await stack.cli("grafana", "budgets")
    assert ok.exit_code == 0, ok.output
    me = await stack.cli("orchestrator", "whoami")
    assert me.exit_code == 0 and me.stdout.startswith("orchestrator (role operator): may read, and mint")


# -- tokens never leak ----------------------------------------------------------------------------------------


async def test_tokens_never_in_logs_errors_or_audit(stack: Stack, caplog: pytest.LogCaptureFixture,
                                                    tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for who in ROLES:
        # someone pastes their own token as the "on behalf of" name: recorded masked
        async with stack.client(who, **{"X-Interlock-Actor": ALL_TOKENS[who]}) as http:
            for method, path in (("POST", "/admin/v1/policy/apply"), ("POST", "/admin/v1/keys"),
                                 ("GET", "/admin/v1/audit/policy"), ("GET", "/admin/v1/policy")):
                r = await http.request(method, path, json=POLICY if "apply" in path else {"team": "t1"})
                seen.append(r.text + json.dumps(dict(r.headers)))
    for bogus in (TOKENS["alice"][:-1], TOKENS["alice"] + "x", "x"):
        async with stack.client(Authorization=f"Bearer {bogus}") as http:
            r = await http.get("/admin/v1/keys")
            assert r.status_code == 401
            seen.append(r.text)
    records = await audit_log(stack)
    assert {r["on_behalf_of_unverified"] for r in records} == {"***"}
    # refusals are logged, by identity or client address, never by what was sent
    assert "admin API: invalid token for GET /admin/v1/keys from 127.0.0.1" in caplog.text
    assert "admin API: 'grafana' (role viewer) refused POST /admin/v1/policy/apply (needs admin)" in caplog.text
    entries, _ = await stack.backend.kv.get_prefix(AUDIT)
    settings = ControlPlaneSettings.from_env(control_plane_env(tmp_path))
    async with stack.client("alice") as http:
        openapi = (await http.get("/openapi.json")).text
    haystack = "\n".join([*seen, caplog.text, json.dumps(records), repr(settings), openapi,
                          *(e.value.decode() for e in entries.values())])
    for token in ALL_TOKENS.values():
        assert token not in haystack
        assert sha(token) not in haystack  # digests stay out too (repr=False)


# -- configuration and backward compatibility -------------------------------------------------------------------


def test_settings_credentials_file_and_errors(tmp_path: Path) -> None:
    env = control_plane_env(tmp_path)
    creds = ControlPlaneSettings.from_env(env).admin_credentials
    assert [(c.name, c.role) for c in creds] == [("admin-token", "admin"), ("alice", "admin"),
                                                 ("orchestrator", "operator"), ("grafana", "viewer")]
    assert creds[2].token_sha256 == hashlib.sha256(TOKENS["orchestrator"].encode()).digest()  # file, stripped
    # named credentials alone are enough; nothing at all is refused
    only_named = {k: v for k, v in env.items() if k != "INTERLOCK_ADMIN_TOKEN"}
    assert [c.name for c in ControlPlaneSettings.from_env(only_named).admin_credentials] == ["alice", "orchestrator", "grafana"]
    with pytest.raises(SettingsError, match="ADMIN_CREDENTIALS"):
        ControlPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p" * 32})

    def refused(yaml_text: str, **extra: str) -> str:
        with pytest.raises(SettingsError) as exc:
            ControlPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p" * 32, "INTERLOCK_ADMIN_TOKEN": LEGACY,
                                           "INTERLOCK_ADMIN_CREDENTIALS": yaml_text, **extra})
        assert LEGACY not in str(exc.value) and TOKENS["alice"] not in str(exc.value)
        return str(exc.value)

    # rotation: the same name with an old and a new token, both accepted until the old entry is removed
    rotating = ControlPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p" * 32, "INTERLOCK_ADMIN_CREDENTIALS": (
        f'[{{"name": "alice", "role": "admin", "token_sha256": "{sha("old-token")}"}}, '
        f'{{"name": "alice", "role": "admin", "token_sha256": "{sha("new-token")}"}}]')})  # JSON works too
    auth = AdminAuth(rotating.admin_credentials)
    assert [getattr(auth.authenticate(t), "name", None) for t in ("old-token", "new-token", "x")] == ["alice"] * 2 + [None]

    good = sha(TOKENS["alice"])
    assert "role must be one of viewer, operator, admin" in refused(f"[{{name: a, role: root, token_sha256: {good}}}]")
    assert "exactly one of" in refused(f"[{{name: a, role: admin, token_sha256: {good}, token_secret: X}}]")
    assert "exactly one of" in refused("[{name: a, role: admin}]")
    assert "64 hex digits" in refused("[{name: a, role: admin, token_sha256: abc}]")
    assert "set INTERLOCK_NOPE or INTERLOCK_NOPE_FILE" in refused("[{name: a, role: admin, token_secret: NOPE}]")
    assert "already used" in refused(f"[{{name: a, role: viewer, token_sha256: {sha(LEGACY)}}}]")
    assert "name must be" in refused(f"[{{role: admin, token_sha256: {good}}}]")
    assert "must be a list" in refused("name: a")
    assert "not valid YAML" in refused(f"[{{name: a, role: admin, token_sha256: {TOKENS['alice']}")
    assert "cannot be read" in refused("[]", INTERLOCK_ADMIN_CREDENTIALS_FILE=str(tmp_path / "missing.yaml"))


def test_authenticate_matches_exactly_one_identity() -> None:
    auth = AdminAuth.of(LEGACY.encode(), [AdminCredential(n, ROLES[n].name.lower(), hashlib.sha256(t.encode()).digest())
                                          for n, t in TOKENS.items()])
    for who, token in ALL_TOKENS.items():
        principal = auth.authenticate(token)
        assert principal is not None and (principal.name, principal.role) == (who, ROLES[who])
    for wrong in ("", LEGACY[:-1], LEGACY + " ", LEGACY.upper()):
        assert auth.authenticate(wrong) is None
    with pytest.raises(ValueError, match="at least one admin credential"):
        AdminAuth.of(b"", [])
    # the legacy token is added unless the same token is already listed (settings list it first)
    other = AdminAuth.of(LEGACY.encode(), [AdminCredential("admin-token", "viewer", bytes.fromhex(sha("t2")))])
    assert [getattr(other.authenticate(t), "role", None) for t in (LEGACY, "t2")] == [Role.ADMIN, Role.VIEWER]


async def test_single_legacy_token_still_is_a_full_admin(tmp_path: Path) -> None:
    """The pre-roles configuration (one INTERLOCK_ADMIN_TOKEN, old positional call) keeps working unchanged."""
    env = {k: v for k, v in control_plane_env(tmp_path).items() if k != "INTERLOCK_ADMIN_CREDENTIALS_FILE"}
    settings = ControlPlaneSettings.from_env(env)
    assert [(c.name, c.role) for c in settings.admin_credentials] == [("admin-token", "admin")]
    backend = await start_backend(settings)
    try:
        app = create_admin_app(backend.service, settings.admin_token, extra_routers=[backend.budget_router()])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                                     headers={"Authorization": f"Bearer {LEGACY}"}) as http:
            assert (await http.get("/admin/v1/whoami")).json() == {"name": "admin-token", "role": "admin"}
            assert (await http.post("/admin/v1/policy/apply", json=POLICY)).status_code == 200
            parent = (await http.post("/admin/v1/keys", json={"team": "t1"})).json()
            assert (await http.post("/admin/v1/keys/mint", json={"parent": parent["id"], "ttl_s": 60})).status_code == 201
            assert (await http.post(f"/admin/v1/keys/{parent['id']}/revoke")).status_code == 200
            log = (await http.get("/admin/v1/audit/policy")).json()["records"]
            assert {r["actor"] for r in log} == {"admin-token"} and len(log) == 4
    finally:
        await backend.close(0)


async def test_an_operator_mints_only_from_keys_of_the_teams_its_identity_may_act_for(stack: Stack) -> None:
    policy = {**POLICY, "teams": [{"id": "t1", "allowed_models": ["m1"]}, {"id": "t2", "allowed_models": ["m1"]}]}
    async with stack.client("alice") as alice:
        assert (await alice.post("/admin/v1/policy/apply", json=policy)).status_code == 200
        mine = (await alice.post("/admin/v1/keys", json={"team": "t1", "name": "ci"})).json()
        other = (await alice.post("/admin/v1/keys", json={"team": "t2", "name": "payments"})).json()
    async with stack.client("orchestrator") as orch:
        refused = await orch.post("/admin/v1/keys/mint", json={"parent": other["id"], "ttl_s": 60, "budget_usd": 1})
        assert refused.status_code == 403, refused.text
        assert "only from keys of team(s) t1" in refused.json()["error"]["message"]
        ok = await orch.post("/admin/v1/keys/mint", json={"parent": mine["id"], "ttl_s": 60, "budget_usd": 1})
        assert ok.status_code == 201 and ok.json()["team"] == "t1"
    async with stack.client("alice") as alice:  # admins act for every team
        ok = await alice.post("/admin/v1/keys/mint", json={"parent": other["id"], "ttl_s": 60, "budget_usd": 1})
        assert ok.status_code == 201
    keys = [k for k in await _keys(stack) if k.get("parent")]
    assert sorted(k["team"] for k in keys) == ["t1", "t2"]  # the refused mint created nothing


async def _keys(stack: Stack) -> list[dict[str, Any]]:
    async with stack.client("grafana") as http:
        doc = (await http.get("/admin/v1/keys")).json()
        return list(doc["keys"] if isinstance(doc, dict) else doc)
