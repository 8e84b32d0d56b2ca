"""Usage (FinOps and audit) routes for the admin API, over `ingest.query_service`.

    GET /admin/v1/usage/spend?by=team&since=7d&where=team=platform,model=gpt-4o&limit=100&order=cost
    GET /admin/v1/usage/top?by=key&since=24h&limit=10&order=cost
    GET /admin/v1/usage/cost?task=T-123&tag_key=task&step_key=step[&since=30d]
    GET /admin/v1/usage/audit?key=vk_..&since=1h&limit=100[&where=...]

Mount with `create_admin_app(service, token, extra_routers=[create_usage_router(qs)])`,
which renders errors in the admin shape; every route needs role viewer
(controlplane/admin_auth.py). Costs are exact decimal strings (12 places), never floats. Routes are
plain `def`: queries block, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ingest.audit_row import AuditRow, AuditRowBase, iso_time, money_text
from ingest.clickhouse_writer import IngestError
from ingest.queries import (
    MAX_LIMIT,
    WINDOW_FORMAT,
    InvalidQuery,
    Window,
    parse_dimension,
    parse_group_by,
    parse_where,
    parse_window,
)
from ingest.query_service import AuditTrail, Counts, SpendReport, Totals, UsageQueryService, UsageStoreMissing, share

from .admin_api import PREFIX
from .admin_auth import Role, requires
from .admin_schemas import ErrorOut
from .errors import ControlPlaneError

OrderParam = Literal["cost", "requests", "tokens", "errors"]


class UsageQueryInvalid(ControlPlaneError):
    status = 422


class UsageStoreUnavailable(ControlPlaneError):
    status = 503


class UsageQueryFailed(ControlPlaneError):
    status = 500


class WindowOut(BaseModel):
    since: str
    start: str
    end: str

    @classmethod
    def of(cls, since: str, w: Window) -> WindowOut:
        return cls(since=since, start=iso_time(w.start_us), end=iso_time(w.end_us))


class TotalsOut(BaseModel):
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: str

    @classmethod
    def of(cls, t: Totals) -> TotalsOut:
        return cls(requests=t.requests, errors=t.errors, input_tokens=t.input_tokens, output_tokens=t.output_tokens,
                   cost_usd=money_text(t.cost_usd))


class CountsOut(BaseModel):
    """The part every usage group reports (a spend row, a task step)."""

    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: str
    share_pct: str

    @staticmethod
    def fields(c: Counts, share_pct: Decimal) -> dict[str, Any]:
        return {"requests": c.requests, "errors": c.errors, "input_tokens": c.input_tokens,
                "output_tokens": c.output_tokens, "cached_input_tokens": c.cached_input_tokens,
                "cost_usd": money_text(c.cost_usd), "share_pct": str(share_pct)}


class SpendRowOut(CountsOut):
    group: dict[str, str]


class SpendOut(BaseModel):
    by: list[str]
    window: WindowOut
    where: list[str]
    groups: int
    total: TotalsOut
    rows: list[SpendRowOut]

    @classmethod
    def of(cls, r: SpendReport, since: str, where: list[str]) -> SpendOut:
        rows = [SpendRowOut(group=dict(zip(r.by, row.group, strict=True)), **CountsOut.fields(row, row.share_pct))
                for row in r.rows]
        return cls(by=list(r.by), window=WindowOut.of(since, r.window), where=where, groups=r.groups,
                   total=TotalsOut.of(r.total), rows=rows)


class StepOut(CountsOut):
    step: str
    model: str
    first: str
    last: str
    cache_write_tokens: int = 0  # 5-minute + 1-hour prompt-cache writes


class TaskCostOut(BaseModel):
    task: str
    tag_key: str
    step_key: str
    total: TotalsOut
    rows: list[StepOut]


R = TypeVar("R", bound=AuditRowBase)


class AuditOutOf(BaseModel, Generic[R]):
    """The trail: its rows are ingest.audit_row's type itself, which serializes under the API names."""

    window: WindowOut
    where: list[str]
    truncated: bool
    rows: list[R]

    @classmethod
    def model_parametrized_name(cls, params: tuple[type[Any], ...]) -> str:
        return "AuditOut"  # the OpenAPI schema's name, whichever row type

    @classmethod
    def of(cls, t: AuditTrail, since: str, where: list[str]) -> Self:
        return cls(window=WindowOut.of(since, t.window), where=where, truncated=t.truncated, rows=list(t.rows))  # type: ignore[arg-type]


AuditOut = AuditOutOf[AuditRow]


def _fail(exc: Exception) -> ControlPlaneError:
    """The one translation of query errors into admin-API errors."""
    if isinstance(exc, InvalidQuery):
        return UsageQueryInvalid(str(exc))
    if isinstance(exc, UsageStoreMissing):
        return UsageStoreUnavailable(str(exc))
    if isinstance(exc, IngestError) and exc.retryable:
        return UsageStoreUnavailable(f"the usage store is unreachable: {exc}")
    return UsageQueryFailed(str(exc))


_BY = "Dimensions, comma-separated (up to 3): team, user, key, project, model, provider, alias, upstream, " \
      "requested, route, endpoint, dialect, node, error, or tag:NAME"
_WHERE = "Filters dimension=value, comma-separated or repeated; a repeated dimension means OR (tag:NAME=value too)"
_SINCE = f"Time window ending now: {WINDOW_FORMAT}"

Since = Annotated[str, Query(description=_SINCE)]
Where = Annotated[list[str], Query(description=_WHERE)]


NOT_CONFIGURED = ("usage queries are not configured on this control plane: set INTERLOCK_USAGE_STORE to "
                  "ingest+http://HOST:PORT (interlock ingest's health port, with INTERLOCK_USAGE_STORE_TOKEN) or "
                  "http(s)://CLICKHOUSE:8123 (see docs/console.md)")


class _Unconfigured:
    """Stands in for the query service when no usage store is configured: every question is a 503."""

    def __getattr__(self, name: str) -> Any:
        raise UsageStoreMissing(NOT_CONFIGURED)


def create_usage_router(query_service: UsageQueryService | None) -> APIRouter:
    """Routes under /admin/v1/usage; pass to create_admin_app(extra_routers=...) for auth and errors.
    Without a query service (no INTERLOCK_USAGE_STORE) the routes exist and answer 503 with what to set."""
    qs: Any = query_service if query_service is not None else _Unconfigured()
    # the trail's rows are the query service's own row type (its usage schema's)
    audit_out: Any = AuditOutOf[getattr(query_service, "audit_row", AuditRow)]  # type: ignore[misc]
    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorOut} for c in (422, 503)}
    r = APIRouter(prefix=f"{PREFIX}/usage", tags=["usage"], responses=errors, dependencies=[requires(Role.VIEWER)])

    @r.get("/spend", summary="Spend per group over a window, exact (usage_events FINAL), with shares")
    def spend(by: Annotated[str, Query(description=_BY)] = "team", since: Since = "7d", where: Where = [],  # noqa: B006
              limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100, order: OrderParam = "cost") -> SpendOut:
        try:
            report = qs.spend(parse_group_by(by), parse_window(since), parse_where(where), limit, order)
        except (InvalidQuery, IngestError) as exc:
            raise _fail(exc) from exc
        return SpendOut.of(report, since, where)

    @r.get("/top", summary="The heaviest groups (default: keys by cost over the last 24h)")
    def top(by: Annotated[str, Query(description=_BY)] = "key", since: Since = "24h", where: Where = [],  # noqa: B006
            limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10, order: OrderParam = "cost") -> SpendOut:
        try:
            report = qs.top(parse_group_by(by), parse_window(since), limit, order, parse_where(where))
        except (InvalidQuery, IngestError) as exc:
            raise _fail(exc) from exc
        return SpendOut.of(report, since, where)

    @r.get("/cost", summary="One task's bill by step tag and model (all retained data unless `since`)")
    def cost(task: Annotated[str, Query(min_length=1, description="The task id, e.g. T-123")],
             tag_key: Annotated[str, Query(description="Tag holding the task id")] = "task",
             step_key: Annotated[str, Query(description="Tag holding the step name")] = "step",
             since: Annotated[str | None, Query(description=_SINCE)] = None) -> TaskCostOut:
        try:
            bill = qs.task_cost(task, tag_key, step_key, parse_window(since) if since else None)
        except (InvalidQuery, IngestError) as exc:
            raise _fail(exc) from exc
        total = bill.total.cost_usd
        rows = [StepOut(step=s.step, model=s.model, **CountsOut.fields(s, share(s.cost_usd, total)),
                        first=iso_time(s.first_us), last=iso_time(s.last_us),
                        cache_write_tokens=s.cache_write_5m_tokens + s.cache_write_1h_tokens) for s in bill.rows]
        return TaskCostOut(task=task, tag_key=tag_key, step_key=step_key, total=TotalsOut.of(bill.total), rows=rows)

    @r.get("/audit", summary="The request trail, newest first: routing, status, tokens, cost, latency",
           response_model=audit_out)
    def audit(key: Annotated[str | None, Query(description="Virtual key id (vk_…)")] = None,
              since: Since = "1h", where: Where = [],  # noqa: B006
              limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> Any:
        try:
            filters = parse_where(where) + (((parse_dimension("key"), key),) if key else ())
            trail = qs.audit(parse_window(since), filters, limit)
        except (InvalidQuery, IngestError) as exc:
            raise _fail(exc) from exc
        return audit_out.of(trail, since, [*where, f"key={key}"] if key else where)

    return r
