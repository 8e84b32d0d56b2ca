"""The web console at /ui on the control plane's admin port (FinOps, platform admins, developers).

    mount_console(admin_app, backend, queries, key_pepper)

Pages: overview, spend explorer, budgets & rate limits, task cost, request trail, keys, policy, and a
self-service page for a developer signed in with a virtual key. Stack and reasons: docs/console.md.
"""

from __future__ import annotations

import time

from fastapi import FastAPI

from controlplane.admin_auth import AdminAuth
from controlplane.backend import ControlPlaneBackend
from controlplane.budget.visibility import BudgetRow, budget_rows
from ingest.query_service import UsageQueryService

from .app import Console, environment
from .data import ConsoleData
from .sessions import SessionStore
from .site import create_console_app


def mount_console(admin_app: FastAPI, backend: ControlPlaneBackend, queries: UsageQueryService | None,
                  key_pepper: bytes, *, sessions: SessionStore | None = None) -> Console:
    """Mount the console at /ui on an app built by create_admin_app (its admin identities sign in)."""
    auth = admin_app.state.admin_auth
    assert isinstance(auth, AdminAuth)
    service = backend.service

    async def budgets() -> list[BudgetRow]:
        snap = await service.current_snapshot()
        ledger_rows = [(x.kind, x.limit_id, x.window_key, x.record) for x in await backend.ledger.rows()]
        return budget_rows(snap.budget_policy, ledger_rows, now_s=time.time())

    console = Console(service=service, data=ConsoleData(queries) if queries is not None else None, auth=auth,
                      pepper=key_pepper, budgets=budgets, minter=service, sessions=sessions or SessionStore(),
                      env=environment())
    admin_app.mount("/ui", create_console_app(console), name="console")
    return console
