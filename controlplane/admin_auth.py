"""Who is calling the admin API: named admin credentials, each bound to an identity and a role.

Roles are ordered, each including the ones below it:
    viewer    read-only: status, nodes, models, key list, budgets, usage/spend/audit queries, explain
    operator  + mint per-run keys and revoke per-run keys (what an agent orchestrator needs)
    admin     + read and change the policy, create and revoke any key

Credentials come from interlock_contracts/settings/ (INTERLOCK_ADMIN_TOKEN is the admin identity "admin-token";
INTERLOCK_ADMIN_CREDENTIALS adds named ones). Only SHA-256 digests of tokens are held; a presented token is
hashed and compared with EVERY digest in constant time, so timing says nothing about which (if any) matched.
Tokens never appear in errors or logs: messages name the identity and roles only.

Every route declares the role it needs with `requires(role)` (a FastAPI dependency returning the caller's
`Principal`); `assert_guarded` refuses to build an app with an API route that declares none.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from interlock_contracts.settings.controlplane import LEGACY_ADMIN_NAME, AdminCredential, admin_token_digest

from .audit import MASK, Actor, clean_actor
from .errors import ControlPlaneError

log = logging.getLogger(__name__)

ACTOR_HEADER = "x-interlock-actor"  # the client's unverified "on behalf of" claim
PUBLIC_PATHS = frozenset({"/healthz", "/metrics"})  # the only API routes without a role (probes, scrapes)


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Unauthorized(ControlPlaneError):
    status = 401


class Forbidden(ControlPlaneError):
    status = 403


class AuthNotConfigured(ControlPlaneError):
    status = 500


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the identity its token is bound to, and that identity's role."""

    name: str
    role: Role
    teams: frozenset[str] | None = None  # teams this identity may mint run keys for; None = every team

    def actor(self, request: Request) -> Actor:
        """The audit actor: this identity, plus the client's declared name as an unverified extra."""
        claim = clean_actor(request.headers.get(ACTOR_HEADER), "")
        auth = getattr(request.app.state, "admin_auth", None)
        if claim and isinstance(auth, AdminAuth) and auth.authenticate(claim) is not None:
            claim = MASK  # someone sent an admin token as their name: never record it
        return Actor(name=self.name, role=self.role.label, on_behalf_of=claim if claim != self.name else "")


def _teams(c: AdminCredential) -> frozenset[str] | None:
    return None if c.role == "admin" or "*" in c.teams else frozenset(c.teams)


class AdminAuth:
    """The set of admin credentials an app accepts."""

    def __init__(self, credentials: Iterable[AdminCredential]):
        self._creds = tuple((c.token_sha256, Principal(c.name, Role[c.role.upper()], _teams(c))) for c in credentials)
        if not self._creds:
            raise ValueError("the admin API needs at least one admin credential: it controls policy and keys")

    @classmethod
    def of(cls, admin_token: bytes = b"", credentials: Iterable[AdminCredential] = ()) -> AdminAuth:
        """The single legacy token (identity "admin-token", role admin) plus named credentials."""
        creds = list(credentials)
        legacy = admin_token_digest(admin_token) if admin_token else b""
        if legacy and not any(hmac.compare_digest(c.token_sha256, legacy) for c in creds):  # settings add it too
            creds.insert(0, AdminCredential(LEGACY_ADMIN_NAME, "admin", legacy))
        return cls(creds)

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for expected, principal in self._creds:  # no early exit: every digest is compared
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


class RoleRequirement:
    """Dependency: the caller must present a valid admin token whose role is at least `role`."""

    def __init__(self, role: Role):
        self.role = role

    async def __call__(
        self, request: Request,
        creds: HTTPAuthorizationCredentials | None = Depends(HTTPBearer(auto_error=False,
                                                                         description="An admin API token")),
    ) -> Principal:
        auth = getattr(request.app.state, "admin_auth", None)
        if not isinstance(auth, AdminAuth):  # fail closed: a router mounted outside create_admin_app
            raise AuthNotConfigured("the admin API has no credentials configured")
        if creds is None:
            raise Unauthorized("missing admin token: send 'Authorization: Bearer <token>' (INTERLOCK_ADMIN_TOKEN "
                               "or a token from the control plane's INTERLOCK_ADMIN_CREDENTIALS)")
        principal = auth.authenticate(creds.credentials)
        where = f"{request.method} {request.url.path}"
        if principal is None:
            # Who tried, never what they sent: the token may be a real one with a typo.
            log.warning("admin API: invalid token for %s from %s", where, request.client.host if request.client else "?")
            raise Unauthorized("invalid admin token: it matches none of the control plane's admin credentials")
        if principal.role < self.role:
            log.info("admin API: %r (role %s) refused %s (needs %s)", principal.name, principal.role.label, where,
                     self.role.label)
            raise Forbidden(f"{where} needs role '{self.role.label}'; "
                            f"'{principal.name}' has role '{principal.role.label}'")
        return principal


def requires(role: Role) -> Any:
    """`dependencies=[requires(Role.VIEWER)]`, or `p: Annotated[Principal, requires(Role.ADMIN)]` to get the caller."""
    return Depends(RoleRequirement(role))


@dataclass(frozen=True)
class GuardedRoute:
    path: str
    methods: tuple[str, ...]
    roles: tuple[Role, ...]  # every role requirement on the route (router- and route-level); max() applies


def _roles(dependant: Dependant | None) -> tuple[Role, ...]:
    found: list[Role] = []
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RoleRequirement):
            found.append(dep.call.role)
        stack.extend(dep.dependencies)
    return tuple(found)


def api_routes(app: FastAPI) -> list[GuardedRoute]:
    """Every API route the app serves, as mounted (FastAPI 0.16x resolves included routers lazily, so the
    effective route, with the include's dependencies, comes from iter_route_contexts)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI < 0.16x copies included routes into app.routes
        return [GuardedRoute(r.path, tuple(sorted(r.methods or ())), _roles(r.dependant))
                for r in app.routes if isinstance(r, APIRoute)]
    return [GuardedRoute(str(ctx.path), tuple(sorted(ctx.methods or ())), _roles(ctx.dependant))
            for ctx in iter_route_contexts(app.routes) if isinstance(ctx.original_route, APIRoute)]


def assert_guarded(app: FastAPI) -> None:
    """Every API route declares a role (except PUBLIC_PATHS), so a forgotten guard fails at start-up."""
    missing = [f"{','.join(r.methods)} {r.path}" for r in api_routes(app) if r.path not in PUBLIC_PATHS and not r.roles]
    if missing:
        raise ValueError(f"admin routes without a role requirement (add requires(Role...)): {', '.join(missing)}")
