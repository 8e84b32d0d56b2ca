"""Pure SQL builders for the web console's questions beyond spend/top/cost/audit (ingest.queries).

Same rules as ingest.queries: every value is a bound parameter, dimensions come from its whitelist,
reads are FINAL (exact under redelivery). All aggregation happens in ClickHouse; the console only
formats the rows. Costs and time series read `usage_by_time` (time-sorted); request health (fallback,
latency) and the request trail read `usage_events`, the only table with those columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from ingest.queries import (
    BY_TIME_SETTINGS,
    BY_TIME_TABLE,
    Dimension,
    InvalidQuery,
    Query,
    Window,
    _Binder,
    _conditions,
    _expr,
    audit_select,
    check_limit,
)
from ingest.schema import check_identifier

Filters = Sequence[tuple[Dimension, str]]
GRANULARITIES: dict[str, int] = {"5m": 300, "hour": 3600, "day": 86_400, "week": 7 * 86_400}
StatusClass = Literal["", "ok", "error"]
OTHER = "(other)"


def _us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def periods(database: str, now_us: int, spans: Sequence[timedelta], where: Filters = ()) -> Query:
    """Cost in each [now-span, now) and the period before it, [now-2*span, now-span): one row,
    columns cur0, prev0, cur1, prev1, ... in the order of `spans`."""
    bind = _Binder()
    start = now_us - 2 * _us(max(spans))
    cond = _conditions(Window(start, now_us), where, bind)
    cols = []
    for i, span in enumerate(spans):
        a, b = bind(now_us - _us(span), "Int64"), bind(now_us - 2 * _us(span), "Int64")
        cols.append(f"sumIf(cost_usd, received_at >= fromUnixTimestamp64Micro({a}, 'UTC')) AS cur{i}")
        cols.append(f"sumIf(cost_usd, received_at >= fromUnixTimestamp64Micro({b}, 'UTC') AND "
                    f"received_at < fromUnixTimestamp64Micro({a}, 'UTC')) AS prev{i}")
    sql = f"SELECT {', '.join(cols)} FROM {check_identifier(database)}.{BY_TIME_TABLE} FINAL WHERE {cond}"
    return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))


def health(database: str, window: Window, where: Filters = ()) -> Query:
    """requests, errors, fallbacks, p50 and p99 latency (ms) over the window: one row."""
    bind = _Binder()
    cond = _conditions(window, where, bind)
    sql = ("SELECT count() AS requests, countIf(status >= 400) AS errors, countIf(fallback) AS fallbacks, "
           "quantileExactIf(0.5)(latency_ms, status < 400) AS p50, quantileExactIf(0.99)(latency_ms, status < 400) AS p99 "
           f"FROM {check_identifier(database)}.usage_events FINAL WHERE {cond}")
    return Query(sql, bind.parameters)


def series(database: str, dim: Dimension, window: Window, step_s: int, groups: Sequence[str],
           where: Filters = ()) -> Query:
    """Cost per time bucket and group; groups not in `groups` (the top N) fold into OTHER.
    Columns: bucket_us, group, requests, cost."""
    if step_s not in GRANULARITIES.values():
        raise InvalidQuery(f"granularity must be one of {', '.join(GRANULARITIES)}")
    bind = _Binder()
    g = _expr(dim, bind)
    cond = _conditions(window, where, bind)
    sql = (f"SELECT toUnixTimestamp64Micro(toDateTime64(toStartOfInterval(received_at, INTERVAL "
           f"{bind(step_s, 'UInt32')} SECOND), 6, 'UTC')) AS bucket_us, "
           f"if(has({bind(list(groups), 'Array(String)')}, {g}), {g}, {bind(OTHER, 'String')}) AS grp, "
           f"count() AS requests, sum(cost_usd) AS cost FROM {check_identifier(database)}.{BY_TIME_TABLE} FINAL "
           f"WHERE {cond} GROUP BY bucket_us, grp ORDER BY bucket_us, grp")
    return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))


def trail(database: str, window: Window, where: Filters = (), *, status: StatusClass = "",
          fallback: bool | None = None, guardrail: str = "", limit: int = 100) -> Query:
    """ingest.queries.audit plus the console's filters: status class, fallback, guardrail outcome.
    Same columns (AUDIT_COLUMNS); asks for limit + 1 rows so the caller can tell it was cut."""
    bind = _Binder()
    conds = [_conditions(window, where, bind)]
    if status:
        conds.append("status < 400" if status == "ok" else "status >= 400")
    if fallback is not None:
        conds.append(f"fallback = {bind(fallback, 'Bool')}")
    if guardrail:
        conds.append(f"guardrail_outcome = {bind(guardrail, 'String')}")
    sql = (f"SELECT {audit_select()} "
           f"FROM {check_identifier(database)}.usage_events FINAL WHERE {' AND '.join(conds)} "
           f"ORDER BY received_at DESC, event_id DESC LIMIT {bind(check_limit(limit) + 1, 'UInt32')}")
    return Query(sql, bind.parameters)


DETAIL_COLUMNS: tuple[str, ...] = (
    "event_id", "time_us", "node_id", "key_id", "team_id", "user_id", "project_id", "tags", "dialect", "endpoint",
    "requested_model", "alias", "provider", "upstream_model", "model", "route_rule", "attempts", "fallback", "status",
    "error_class", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "usage_estimated",
    "cost_usd", "price_version", "latency_ms", "ttfb_ms", "stream", "client_disconnected", "policy_version",
    "guardrail_outcome", "request_bytes", "response_bytes",
)  # fmt: skip  # metadata only: the store has no prompt or response content, and neither does this


def detail(database: str, event_id: str, where: Filters = ()) -> Query:
    """One request with its attempts; `where` scopes it (self-service: key=...)."""
    bind = _Binder()
    cond = _conditions(None, ((Dimension("id", column="event_id"), event_id), *where), bind)
    cols = ", ".join(DETAIL_COLUMNS).replace("time_us", "toUnixTimestamp64Micro(received_at) AS time_us")
    sql = f"SELECT {cols} FROM {check_identifier(database)}.usage_events FINAL WHERE {cond} LIMIT 1"
    return Query(sql, bind.parameters)


def cumulative(database: str, window: Window, step_s: int, where: Filters = ()) -> Query:
    """Spend per bucket and running total since window start (burn-down). Columns: bucket_us, cost, running."""
    bind = _Binder()
    cond = _conditions(window, where, bind)
    sql = (f"SELECT toUnixTimestamp64Micro(toDateTime64(toStartOfInterval(received_at, INTERVAL "
           f"{bind(step_s, 'UInt32')} SECOND), 6, 'UTC')) AS bucket_us, sum(cost_usd) AS cost, "
           f"sum(cost) OVER (ORDER BY bucket_us) AS running FROM {check_identifier(database)}.{BY_TIME_TABLE} FINAL "
           f"WHERE {cond} GROUP BY bucket_us ORDER BY bucket_us")
    return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))
