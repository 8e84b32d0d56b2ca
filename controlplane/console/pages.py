"""Read-only console pages: overview, spend explorer (+CSV), budgets, task cost, request trail, policy, self-service."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from controlplane.audit import mask_item
from ingest.clickhouse_writer import IngestError
from ingest.console_queries import GRANULARITIES
from ingest.queries import InvalidQuery, parse_dimension, parse_where, parse_window

from .app import Console, Refused, secure
from .budgets import budget_views
from .data import PERIODS, ConsoleData

BY_CHOICES = ("team", "user", "key", "project", "model", "provider", "route", "error")
STATUS_CHOICES = ("", "ok", "error")


def _need(c: Console) -> ConsoleData:
    if c.data is None:
        raise Refused(503, "usage queries are not configured on this control plane: set INTERLOCK_USAGE_STORE "
                           "(see docs/console.md)")
    return c.data


async def _ask(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run a blocking usage question in a worker thread; bad input is 422, a store problem 503."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except InvalidQuery as exc:
        raise Refused(422, str(exc)) from exc
    except IngestError as exc:
        raise Refused(503, f"the usage store did not answer: {exc}") from exc


def _window(since: str) -> timedelta:
    try:
        return parse_window(since)
    except InvalidQuery as exc:
        raise Refused(422, str(exc)) from exc


def _filters(where: list[str]) -> tuple[Any, ...]:
    try:
        return parse_where([w for w in where if w.strip()])
    except InvalidQuery as exc:
        raise Refused(422, str(exc)) from exc


def router(c: Console) -> APIRouter:
    r = APIRouter()

    @r.get("/")
    async def overview(request: Request) -> Response:
        s = c.staff(request)
        d = _need(c)
        periods, health, (teams, team_chart), (_, model_chart) = await asyncio.gather(
            _ask(d.periods), _ask(d.health, timedelta(hours=24)),
            _ask(d.top_series, "team", timedelta(days=7), "hour"), _ask(d.top_series, "model", timedelta(days=7), "hour"))
        return c.page("overview.html", s, periods=periods, health=health, teams=teams, team_chart=team_chart,
                      model_chart=model_chart)

    @r.get("/spend")
    async def spend(request: Request, by: str = "team", since: str = "7d", gran: str = "hour",
                    where: Annotated[list[str], Query()] = [], order: str = "cost",  # noqa: B006
                    tag: str = "") -> Response:
        s = c.staff(request)
        d = _need(c)
        if tag.strip():
            by = tag.strip() if tag.strip().startswith("tag:") else f"tag:{tag.strip()}"
        if gran not in GRANULARITIES:
            raise Refused(422, f"granularity must be one of {', '.join(GRANULARITIES)}")
        if order not in ("cost", "requests", "tokens", "errors"):
            raise Refused(422, "order must be cost, requests, tokens or errors")
        span, filters = _window(since), _filters(where)
        try:
            dim = parse_dimension(by)
        except InvalidQuery as exc:
            raise Refused(422, str(exc)) from exc
        report = await _ask(d.spend, (dim,), span, filters, 100, order)
        chart = await _ask(d.series, dim, span, gran, [x.group[0] for x in report.rows[:8]], filters)
        return c.page("spend.html", s, by=by, since=since, gran=gran, where=[w for w in where if w.strip()],
                      order=order, report=report, spend_chart=chart, by_choices=BY_CHOICES, grans=list(GRANULARITIES))

    @r.get("/spend.csv")
    async def spend_csv(request: Request, by: str = "team", since: str = "7d",
                        where: Annotated[list[str], Query()] = [], order: str = "cost") -> Response:  # noqa: B006
        c.staff(request)
        d = _need(c)
        try:
            dims = (parse_dimension(by),)
        except InvalidQuery as exc:
            raise Refused(422, str(exc)) from exc
        report = await _ask(d.spend, dims, _window(since), _filters(where), 10_000, order)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow([by, "requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd",
                    "share_pct"])
        for x in report.rows:
            w.writerow([x.group[0], x.requests, x.errors, x.input_tokens, x.output_tokens, x.cached_input_tokens,
                        format(x.cost_usd, "f"), x.share_pct])
        name = f"interlock-spend-by-{by.replace(':', '-')}-{since}.csv"
        return secure(Response(out.getvalue(), media_type="text/csv",
                               headers={"Content-Disposition": f'attachment; filename="{name}"'}))

    @r.get("/budgets")
    async def budgets(request: Request) -> Response:
        s = c.staff(request)
        views = await budget_views(c, await c.budgets())
        return c.page("budgets.html", s, views=views)

    @r.get("/tasks")
    async def tasks(request: Request, task: str = "", since: str = "7d") -> Response:
        s = c.staff(request)
        d = _need(c)
        span = _window(since)
        top = await _ask(d.spend, (parse_dimension("tag:task"),), span, (), 20, "cost")
        bill = await _ask(d.task, task, None) if task else None
        return c.page("tasks.html", s, task=task, since=since, top=top, bill=bill)

    @r.get("/requests")
    async def requests(request: Request, since: str = "24h", key: str = "", team: str = "", model: str = "",
                       route: str = "", status: str = "", fallback: str = "", guardrail: str = "",
                       limit: int = 100) -> Response:
        s = c.session(request)
        d = _need(c)
        if not s.staff:
            key, team = s.key_id, ""  # self-service: only this key's requests, whatever the URL says
        if status not in STATUS_CHOICES or fallback not in ("", "yes", "no") or not 1 <= limit <= 1000:
            raise Refused(422, "status is ok|error, fallback yes|no, limit 1-1000")
        filters = _filters([f"{k}={v}" for k, v in (("key", key), ("team", team), ("model", model),
                                                        ("route", route)) if v])
        trail = await _ask(d.trail, _window(since), filters, status=status,  # type: ignore[arg-type]
                           fallback={"yes": True, "no": False}.get(fallback), guardrail=guardrail, limit=limit)
        return c.page("requests.html", s, trail=trail, f={"since": since, "key": key, "team": team, "model": model,
                                                          "route": route, "status": status, "fallback": fallback,
                                                          "guardrail": guardrail})

    @r.get("/requests/{event_id}")
    async def request_detail(request: Request, event_id: str) -> Response:
        s = c.session(request)
        d = _need(c)
        scope = () if s.staff else _filters([f"key={s.key_id}"])
        row = await _ask(d.detail, event_id, scope)
        if row is None:
            raise Refused(404, f"no request {event_id}" + ("" if s.staff else " for your key"))
        return c.page("request.html", s, r=row)

    @r.get("/policy")
    async def policy(request: Request) -> Response:
        s = c.staff(request)
        doc, version = await c.service.get_document()
        raw = doc.model_dump(mode="json", exclude_defaults=True)
        masked = {sec: [mask_item(sec, i) for i in items] if isinstance(items, list) else items
                  for sec, items in raw.items()}  # header values and credentials never reach the page
        log = await c.service.policy_log(limit=50)
        snap = await c.service.current_snapshot()
        nodes = await c.service.node_status()
        return c.page("policy.html", s, version=version, yaml=yaml.safe_dump(masked, sort_keys=False), log=log,
                      nodes=nodes, snap=snap, dump=lambda v: yaml.safe_dump(v, sort_keys=True) if v else "")

    @r.get("/me")
    async def me(request: Request, since: str = "7d") -> Response:
        s = c.session(request)
        if s.staff:
            raise Refused(404, "the self-service page is for virtual-key sign-ins; staff see every key")
        d = _need(c)
        mine = _filters([f"key={s.key_id}"])
        span = _window(since)
        report, chart = await _ask(d.top_series, "model", span, "hour", mine)
        trail = await _ask(d.trail, span, mine, limit=50)
        keys = await c.service.list_keys()
        run_keys = [k for k in keys if k.parent == s.key_id]
        own = {s.key_id, *(k.id for k in run_keys)}
        views = await budget_views(c, [b for b in await c.budgets() if b.scope == "key" and b.scope_id in own])
        return c.page("me.html", s, since=since, report=report, my_chart=chart, trail=trail, run_keys=run_keys,
                      views=views, periods=PERIODS)

    return r
