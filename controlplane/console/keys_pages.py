"""Keys page: list, create (secret shown once), revoke, mint run keys. Same roles as the admin API:
viewer reads; operator mints and revokes per-run keys; admin creates and revokes any key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from controlplane.admin_auth import Role
from controlplane.audit import Actor
from controlplane.budget.runkeys import RunKeySpec
from controlplane.errors import ControlPlaneError
from controlplane.service_types import KeySpec

from .app import Console, Refused
from .sessions import Session


def _actor(s: Session) -> Actor:
    return Actor(name=s.name, role=s.label, on_behalf_of="console")


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def router(c: Console) -> APIRouter:
    r = APIRouter()

    async def page(s: Session, *, created: object = None, error: str = "", status: int = 200) -> Response:
        keys = sorted(await c.service.list_keys(), key=lambda k: (k.revoked, k.parent != "", -k.created_at_unix_ms))
        r = c.page("keys.html", s, status=status, keys=keys, created=created, error=error)
        if created is not None:
            r.headers["Pragma"] = "no-cache"  # the secret is on this page once; keep it out of every cache
        return r

    @r.get("/keys")
    async def keys(request: Request) -> Response:
        return await page(c.staff(request))

    @r.post("/keys")
    async def create(request: Request) -> Response:
        s = c.staff(request, Role.ADMIN)
        form = await c.form(request, s)
        spec = KeySpec(name=form.get("name", "").strip(), team=form.get("team", "").strip(),
                       user=form.get("user", "").strip(), project=form.get("project", "").strip(),
                       allowed_models=_csv(form.get("allowed_models", "")))
        try:
            created = await c.service.create_key(spec, actor=_actor(s))
        except ControlPlaneError as exc:
            return await page(s, error=f"{exc}: {'; '.join(getattr(exc, 'errors', []) or [])}", status=exc.status)
        return await page(s, created={"id": created.record.id, "secret": created.secret, "kind": "key"}, status=201)

    @r.post("/keys/mint")
    async def mint(request: Request) -> Response:
        s = c.staff(request, Role.OPERATOR)
        form = await c.form(request, s)
        try:
            ttl = int(form.get("ttl_s", "3600") or 3600)
            tags = dict(p.split("=", 1) for p in _csv(form.get("tags", "")))
            spec = RunKeySpec(parent=form.get("parent", ""), ttl_ms=ttl * 1000, budget_usd=form.get("budget_usd", ""),
                              tags=tags, name=form.get("name", ""))
            created = await c.minter.mint_run_key(spec, actor=_actor(s))
        except ValueError:
            return await page(s, error="ttl_s must be a whole number of seconds; tags name=value, comma-separated",
                              status=422)
        except ControlPlaneError as exc:
            return await page(s, error=str(exc), status=exc.status)
        return await page(s, created={"id": created.record.id, "secret": created.secret, "kind": "run key"}, status=201)

    @r.post("/keys/{key_id}/revoke")
    async def revoke(request: Request, key_id: str) -> Response:
        s = c.staff(request, Role.OPERATOR)
        await c.form(request, s)
        record = next((k for k in await c.service.list_keys() if k.id == key_id), None)
        if record is None:
            raise Refused(404, f"no key {key_id}")
        if not s.at_least(Role.ADMIN) and not record.parent:
            raise Refused(403, f"'{s.name}' (role '{s.label}') may revoke only per-run keys; revoking {key_id} "
                               "needs role 'admin'")
        await c.service.revoke_key(key_id, actor=_actor(s))
        return await page(s)

    return r
