"""Read-only usage queries served by `interlock ingest` for the control plane (the one-machine shape).

Why here: an embedded chDB directory can be opened by one process only, and the ingest service is the
process that owns it. So ingest answers the control plane's queries on its health port:

    POST /query/v1   Authorization: Bearer <INTERLOCK_INGEST_QUERY_TOKEN>
                     {"sql": "SELECT ...", "parameters": {...}, "settings": {...}}  ->  {"rows": [...]}

Guards, each enough on its own to keep the store safe from a caller with the token:
- the token is compared in constant time against a SHA-256 digest; without a configured token the
  route does not exist (404);
- the statement must be one SELECT (no `;`: values arrive as bound parameters, never in the text);
- it runs with `readonly=2` (ClickHouse refuses writes and DDL) and only whitelisted settings;
- one query at a time (a chDB client serializes anyway) with a row cap.
The SQL comes from `ingest.queries` builders on the control plane: the same code that runs against a
ClickHouse server over http(s):// in the cluster shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import clickhouse_connect
from aiohttp import web

from ingest.clickhouse_writer import IngestError, redact_dsn, translate_errors
from ingest.query_wire import MAX_BODY, PATH, encode_rows

log = logging.getLogger(__name__)

ALLOWED_SETTINGS = frozenset({"do_not_merge_across_partitions_select_final", "use_skip_indexes_if_final",
                              "use_skip_indexes_if_final_exact_mode", "max_execution_time"})
MAX_ROWS = 100_000

Runner = Callable[[str, dict[str, Any], dict[str, Any]], Sequence[Sequence[Any]]]


class QueryRefused(ValueError):
    pass


def check_query(body: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate a request body; raises QueryRefused saying what is wrong."""
    if not isinstance(body, dict):
        raise QueryRefused("body must be a JSON object {sql, parameters, settings}")
    sql, params, settings = body.get("sql"), body.get("parameters") or {}, body.get("settings") or {}
    if not isinstance(sql, str) or not isinstance(params, dict) or not isinstance(settings, dict):
        raise QueryRefused("sql must be a string, parameters and settings objects")
    if not sql.lstrip().upper().startswith("SELECT ") or ";" in sql:
        raise QueryRefused("only a single SELECT statement is served")
    unknown = sorted(set(settings) - ALLOWED_SETTINGS)
    if unknown:
        raise QueryRefused(f"settings not allowed: {', '.join(unknown)}")
    return sql, params, {**settings, "readonly": 2}


class QueryEndpoint:
    """The POST /query/v1 handler; `run` executes one query (blocking, called in a worker thread)."""

    def __init__(self, token_sha256: bytes, run: Runner, close: Callable[[], None] = lambda: None) -> None:
        if len(token_sha256) != 32:
            raise ValueError("the query endpoint needs the SHA-256 digest of a token")
        self._digest, self._run, self.close = token_sha256, run, close
        self._lock = asyncio.Lock()

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        digest = hashlib.sha256(token.encode()).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(digest, self._digest)

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            log.warning("ingest query endpoint: invalid token from %s", request.remote)
            return _error(401, "missing or invalid token: send 'Authorization: Bearer <INTERLOCK_INGEST_QUERY_TOKEN>'")
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, f"query body larger than {MAX_BODY} bytes")
        try:
            sql, params, settings = check_query(json.loads(await request.read()))
        except (ValueError, QueryRefused) as exc:
            return _error(400, str(exc))
        try:
            async with self._lock:
                rows = await asyncio.to_thread(self._run, sql, params, settings)
        except IngestError as exc:
            return _error(503 if exc.retryable else 422, str(exc), code=exc.code)
        if len(rows) > MAX_ROWS:
            return _error(422, f"more than {MAX_ROWS} rows: narrow the query")
        return web.json_response({"rows": encode_rows(rows)})

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)


def _error(status: int, message: str, code: int | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


def client_runner(client: Any) -> Runner:
    """A Runner over a clickhouse-connect client (the ingest writer's chDB path)."""

    def run(sql: str, params: dict[str, Any], settings: dict[str, Any]) -> Sequence[Sequence[Any]]:
        with translate_errors("usage query"):
            return list(client.query(sql, parameters=params, settings=settings).result_rows)

    return run


def query_endpoint_from_env(dsn: str, env: Mapping[str, str] | None = None) -> QueryEndpoint | None:
    """The endpoint when INTERLOCK_INGEST_QUERY_TOKEN(_FILE) is set, reading the store at `dsn` through its
    own client (on chDB: same path as the writer, one engine per process); else None (no route)."""
    from interlock_contracts.settings.common import _secret

    token = _secret(os.environ if env is None else env, "INGEST_QUERY_TOKEN")
    if not token:
        return None
    with translate_errors(f"opening {redact_dsn(dsn)} for queries"):
        client = clickhouse_connect.get_client(dsn=dsn)
    return QueryEndpoint(hashlib.sha256(token).digest(), client_runner(client), client.close)
