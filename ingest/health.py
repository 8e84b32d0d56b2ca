"""Tiny HTTP health endpoint for the ingest service (aiohttp).

GET /healthz  200 when the poll loop ran recently and ClickHouse answered recently, else 503.
GET /metrics  Prometheus text (ingest/metrics.py): rows, DLQ, errors, lag per partition, batch latency.
GET /stats    the same counters as JSON: consumed, inserted, dlq, duplicates, errors, wire_batches/fallbacks,
              lag per partition, last_insert_age_s.
POST /query/v1  read-only usage queries for the control plane, when INTERLOCK_INGEST_QUERY_TOKEN is set
              (ingest/query_endpoint.py)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ingest.metrics import ingest_registry
from ingest.stats import IngestStats
from interlock_contracts.metrics.exposition import CONTENT_TYPE, Registry


@dataclass(frozen=True)
class HealthPolicy:
    loop_stale_s: float = 10.0
    clickhouse_stale_s: float = 30.0


def snapshot(stats: IngestStats, now: float | None = None, wall: float | None = None) -> dict[str, Any]:
    now = time.monotonic() if now is None else now
    wall = time.time() if wall is None else wall
    return {
        "consumed": stats.consumed,
        "inserted": stats.inserted,
        "duplicates": stats.duplicates,
        "dlq": stats.dlq,
        "batches": stats.batches,
        "wire_batches": stats.wire_batches,
        "wire_fallbacks": stats.wire_fallbacks,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "buffered": stats.buffered,
        "lag": {str(p): n for p, n in sorted(stats.lag.items())},
        "lag_total": sum(stats.lag.values()),
        "last_insert_age_s": round(wall - stats.last_insert_wall, 3) if stats.last_insert_wall else None,
        "clickhouse_ok_age_s": round(now - stats.last_ok, 3) if stats.last_ok else None,
        "loop_age_s": round(now - stats.last_loop, 3) if stats.last_loop else None,
    }


def healthy(stats: IngestStats, policy: HealthPolicy, now: float | None = None) -> tuple[bool, str]:
    now = time.monotonic() if now is None else now
    if not stats.last_loop or now - stats.last_loop > policy.loop_stale_s:
        return False, "poll loop not running"
    if not stats.last_ok or now - stats.last_ok > policy.clickhouse_stale_s:
        return False, "ClickHouse not reachable recently"
    return True, "ok"


class HealthServer:
    def __init__(self, stats: IngestStats, host: str, port: int, policy: HealthPolicy | None = None,
                 extra_routes: Callable[[web.Application], None] | None = None) -> None:
        self._stats, self._host, self._port = stats, host, port
        self._policy = policy or HealthPolicy()
        self._extra_routes = extra_routes  # e.g. the usage query endpoint (ingest/query_endpoint.py)
        self._runner: web.AppRunner | None = None
        self._registry: Registry | None = None
        self.port = port

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, why = healthy(self._stats, self._policy)
        return web.json_response({"ok": ok, "reason": why}, status=200 if ok else 503)

    async def _stats_json(self, request: web.Request) -> web.Response:
        return web.json_response(snapshot(self._stats))

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._registry is None:
            self._registry = ingest_registry(self._stats)
        return web.Response(body=self._registry.render(), headers={"content-type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/stats", self._stats_json)
        if self._extra_routes is not None:
            self._extra_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the bound port when 0 was asked for
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
