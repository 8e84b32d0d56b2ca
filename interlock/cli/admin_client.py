"""A small typed client for the control plane's admin API, used by the CLI.

Every failure becomes an `AdminError` whose message says what to do next
(start the control plane, set INTERLOCK_ADMIN_TOKEN, fix the listed policy errors).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx
from pydantic import BaseModel, ValidationError

from controlplane import admin_schemas as schemas
from controlplane.admin_api import WhoAmIOut
from controlplane.alerts.api import DeliveryListOut, TestOut
from controlplane.audit_api import PolicyAuditLogOut
from controlplane.budget.admin_routes import BudgetListOut, RunKeyIn, RunKeyOut
from controlplane.policy.model import PolicyDocument

M = TypeVar("M", bound=BaseModel)
API = "/admin/v1"


class AdminError(click.ClickException):
    """An admin API failure; click prints the message and exits 1."""

    def __init__(self, message: str, *, status: int = 0, errors: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class AdminClient:
    def __init__(
        self, url: str, token: str, *, actor: str = "", timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ):
        self.url = url.rstrip("/")
        self._token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if actor:
            # Recorded next to the token's identity as an unverified "on behalf of" note, never as the actor.
            headers["X-Interlock-Actor"] = actor
        try:
            self._http = httpx.Client(
                base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
            )
        except (httpx.InvalidURL, TypeError) as exc:
            raise AdminError(f"INTERLOCK_ADMIN_URL={url!r} is not a valid URL: {exc}") from exc

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._http.close()

    # -- endpoints ---------------------------------------------------------

    def get_policy(self) -> schemas.PolicyOut:
        return self._call(schemas.PolicyOut, "GET", "/policy")

    def apply(self, doc: PolicyDocument, *, dry_run: bool) -> schemas.ApplyOut:
        params = {"dry_run": "true" if dry_run else "false"}
        return self._call(schemas.ApplyOut, "POST", "/policy/apply", json=doc.model_dump(mode="json"), params=params)

    def list_keys(self) -> list[schemas.KeyOut]:
        return self._call(schemas.KeyList, "GET", "/keys").keys

    def create_key(self, spec: schemas.KeyCreateIn) -> schemas.KeyCreatedOut:
        return self._call(schemas.KeyCreatedOut, "POST", "/keys", json=spec.model_dump(mode="json"))

    def revoke_key(self, key_id: str) -> schemas.KeyOut:
        return self._call(schemas.KeyOut, "POST", f"/keys/{quote(key_id, safe='')}/revoke")

    def list_models(self) -> list[schemas.ModelOut]:
        return self._call(schemas.ModelList, "GET", "/models").models

    def nodes(self) -> schemas.NodeList:
        return self._call(schemas.NodeList, "GET", "/nodes")

    def whoami(self) -> WhoAmIOut:
        return self._call(WhoAmIOut, "GET", "/whoami")

    def snapshot(self) -> schemas.SnapshotOut:
        return self._call(schemas.SnapshotOut, "GET", "/snapshot")

    def policy_log(self, *, since: str | None, limit: int) -> PolicyAuditLogOut:
        params: dict[str, Any] = {"limit": limit, **({"since": since} if since else {})}
        return self._call(PolicyAuditLogOut, "GET", "/audit/policy", params=params)

    def explain(self, query: dict[str, Any]) -> dict[str, Any]:
        """POST /explain (controlplane/explain_api.py): the route a request would take; nothing is sent."""
        from controlplane.explain_api import ExplainOut  # lazy: pulls in the data plane's routing code

        return self._call(ExplainOut, "POST", "/explain", json=query).explanation

    def mint_run_key(self, body: RunKeyIn) -> RunKeyOut:
        return self._call(RunKeyOut, "POST", "/keys/mint", json=body.model_dump(mode="json"))

    def budgets(self, *, history: bool = False) -> BudgetListOut:
        return self._call(BudgetListOut, "GET", "/budgets", params={"history": "true" if history else "false"})

    def resume_key(self, key_id: str) -> schemas.KeyOut:
        return self._call(schemas.KeyOut, "POST", f"/keys/{quote(key_id, safe='')}/resume")

    def alerts(self, *, limit: int) -> DeliveryListOut:
        return self._call(DeliveryListOut, "GET", "/alerts", params={"limit": limit})

    def alert_test(self, destination: str) -> TestOut:
        return self._call(TestOut, "POST", "/alerts/test", json={"destination": destination})

    # -- plumbing ----------------------------------------------------------

    def _call(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        resp = self._send(method, API + path, **kw)
        if not resp.is_success:
            raise self._failure(resp)
        try:
            return model.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise AdminError(
                f"unexpected response from the admin API at {self.url} ({method} {path}): is it an Interlock "
                f"control plane of the same version as this CLI? ({exc.__class__.__name__})"
            ) from exc

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            raise AdminError(
                f"cannot reach the admin API at {self.url} — is `interlock controlplane` (or `interlock dev`) "
                "running? Set INTERLOCK_ADMIN_URL (or pass --admin-url) if it listens elsewhere."
            ) from exc
        except httpx.TimeoutException as exc:
            raise AdminError(f"the admin API at {self.url} did not answer in time ({exc.__class__.__name__}); "
                             "check the control plane's health and its policy store") from exc
        except httpx.UnsupportedProtocol as exc:
            raise AdminError(f"INTERLOCK_ADMIN_URL={self.url!r} must start with http:// or https://") from exc
        except httpx.HTTPError as exc:
            raise AdminError(f"request to the admin API at {self.url} failed: {exc}") from exc

    def _failure(self, resp: httpx.Response) -> AdminError:
        try:
            err = resp.json()["error"]
            message, errors = str(err.get("message", "")), [str(e) for e in err.get("errors", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            message, errors = resp.text.strip()[:300] or resp.reason_phrase, []
        status = resp.status_code
        if status == 401:
            if not self._token:
                message = ("no admin token given: set INTERLOCK_ADMIN_TOKEN (or pass --admin-token) "
                           "to the control plane's admin token")
            else:
                message = (f"the admin API at {self.url} rejected the admin token: set INTERLOCK_ADMIN_TOKEN "
                           "(or pass --admin-token) to a token the control plane accepts (its INTERLOCK_ADMIN_TOKEN "
                           "or one listed in its INTERLOCK_ADMIN_CREDENTIALS)")
        elif status == 403:
            message += " — use a token of an identity with that role (INTERLOCK_ADMIN_TOKEN or --admin-token)"
        elif status == 409:
            message += " — the policy changed concurrently; re-run the command"
        elif status == 503:
            message += " — the control plane cannot reach its policy store; check etcd (or the sqlite path)"
        elif status >= 500:
            message = f"the admin API failed ({status}): {message}; see the control plane's logs"
        if errors:
            message += "\n" + "\n".join(f"  - {e}" for e in errors)
        return AdminError(message, status=status, errors=errors)
