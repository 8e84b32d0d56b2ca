"""Pure SQL builders for the FinOps and audit questions over `usage_events`.

No I/O and no clock: every builder returns a `Query` (SQL text plus bound
parameters) for clickhouse-connect's server-side binding (`{name:Type}`). User
input never reaches the SQL text: dimensions come from a fixed whitelist, tag
names and every value are bound parameters, limits are bound integers. The
database name is checked by `ingest.schema.check_identifier`.

Exactness: every builder reads a ReplacingMergeTree with `FINAL`, so an event
redelivered in another batch (collapsed by ReplacingMergeTree, but double-counted by
the `spend_daily` materialized view) counts once, and windows are exact to the
microsecond. `spend_daily` is deliberately not used: it is day-granular and may
over-count redeliveries until reconciled, so it is not exact for any question here
(see ingest/schema.py).

Where: spend/top/cost read `usage_by_time` (same events, sorted by (received_at,
event_id), one partition per day; fed by a materialized view from usage_events), so a
window prunes partitions and primary-key ranges and FINAL only merges days that still
have several parts. The audit trail reads `usage_events` itself, whose sort key
(team_id, key_id, ...) serves its key filter. FINAL skips merging across partitions:
both tables partition by a function of the event, so duplicates always share one.

Skip indexes under FINAL (`BY_TIME_SETTINGS`): the tag filter of `cost --task` uses the
`mapValues(tags)` bloom filter. ClickHouse's "exact mode" widens the skipped ranges so
that a *newer version* of a row cannot be hidden by an older one that matched the
filter; here every copy of a key is the same immutable event (same tags, same
received_at), so the bloom filter (no false negatives) keeps either all copies of a
matching event or none. Exact mode measured at 10M events: 950 of 1236 granules read
instead of 206, 1.4 s instead of 0.36 s for one task's bill.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ingest.schema import check_identifier
from interlock_contracts.usage_schema import UsageSchema, audit_row_names, usage_schema

# Dimension name as users write it -> column of usage_events.
DIMENSIONS: dict[str, str] = {
    "team": "team_id", "user": "user_id", "key": "key_id", "project": "project_id", "model": "model",
    "provider": "provider", "alias": "alias", "upstream": "upstream_model", "requested": "requested_model",
    "route": "route_rule", "endpoint": "endpoint", "dialect": "dialect", "node": "node_id", "error": "error_class",
}  # fmt: skip
# Guardrail outcomes (issue 12) are on usage_events only, a JSON array with every guardrail that acted on the
# request: `audit --where guardrail=ID` matches when any of them is ID.
DIMENSIONS["guardrail"] = "arrayMap(g -> JSONExtractString(g, 'id'), JSONExtractArrayRaw(guardrail_outcome))"
AUDIT_ONLY = frozenset({"guardrail"})
ARRAY_VALUED = frozenset({"guardrail"})  # the column is an array: a filter matches any element
TAG_PREFIX = "tag:"
ORDERS: dict[str, str] = {"cost": "cost", "requests": "requests", "tokens": "in_tokens + out_tokens",
                          "errors": "errors"}
MAX_DIMENSIONS = 3
MAX_LIMIT = 10_000
MAX_WINDOW = timedelta(days=400)  # the default retention: older data is gone anyway
WINDOW_FORMAT = "a number and a unit: 30m, 24h, 7d or 2w (minutes, hours, days, weeks)"
FINAL_SETTINGS: dict[str, Any] = {"do_not_merge_across_partitions_select_final": 1}
BY_TIME_SETTINGS: dict[str, Any] = {**FINAL_SETTINGS, "use_skip_indexes_if_final": 1,
                                    "use_skip_indexes_if_final_exact_mode": 0}
BY_TIME_TABLE = "usage_by_time"  # see ingest/schema.py

_TAG_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_WINDOW = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Order = Literal["cost", "requests", "tokens", "errors"]


class InvalidQuery(ValueError):
    """A group-by, filter, window or limit the user must fix; the message says how."""


@dataclass(frozen=True)
class Dimension:
    """`team`, `model`, ... (a column) or `tag:NAME` (a key of the tags map)."""

    name: str
    column: str = ""
    tag: str = ""


@dataclass(frozen=True)
class Window:
    """[start_us, end_us) in Unix microseconds, UTC."""

    start_us: int
    end_us: int


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=lambda: dict(FINAL_SETTINGS))


class _Binder:
    """Allocates parameter names; the only way a value enters a query."""

    def __init__(self) -> None:
        self.parameters: dict[str, Any] = {}

    def __call__(self, value: Any, type_: str) -> str:
        name = f"p{len(self.parameters)}"
        self.parameters[name] = value
        return f"{{{name}:{type_}}}"


# -- parsing user input ----------------------------------------------------------------


def parse_dimension(text: str) -> Dimension:
    name = text.strip()
    if name.startswith(TAG_PREFIX):
        tag = name[len(TAG_PREFIX) :]
        if not _TAG_NAME.match(tag):
            raise InvalidQuery(f"{text!r}: a tag dimension is tag:NAME, NAME being 1-64 of A-Z a-z 0-9 _ . : / -")
        return Dimension(name, tag=tag)
    if name not in DIMENSIONS:
        raise InvalidQuery(f"unknown dimension {text!r}: use one of {', '.join(DIMENSIONS)} or tag:NAME")
    return Dimension(name, column=DIMENSIONS[name])


def parse_group_by(text: str) -> tuple[Dimension, ...]:
    """'team' or 'team,model' or 'tag:task' -> dimensions (1 to MAX_DIMENSIONS, no repeats)."""
    dims = tuple(parse_dimension(p) for p in text.split(",") if p.strip())
    if not dims:
        raise InvalidQuery(f"nothing to group by: use one of {', '.join(DIMENSIONS)} or tag:NAME")
    if len(dims) > MAX_DIMENSIONS or len({d.name for d in dims}) != len(dims):
        raise InvalidQuery(f"group by 1 to {MAX_DIMENSIONS} distinct dimensions, got {text!r}")
    return dims


def parse_where(items: Iterable[str]) -> tuple[tuple[Dimension, str], ...]:
    """['team=platform,model=gpt-4o', 'tag:env=prod'] -> filters. Repeating a dimension means OR."""
    out = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise InvalidQuery(f"filter {part!r} must look like dimension=value, e.g. team=platform")
            out.append((parse_dimension(name), value.strip()))
    return tuple(out)


def parse_window(text: str) -> timedelta:
    """'30m', '24h', '7d', '2w' -> timedelta; anything else says which formats are accepted."""
    m = _WINDOW.match(text.strip().lower())
    if not m:
        raise InvalidQuery(f"invalid time window {text!r}: use {WINDOW_FORMAT}")
    span = timedelta(**{_UNITS[m[2]]: int(m[1])})
    if not timedelta(0) < span <= MAX_WINDOW:
        raise InvalidQuery(f"time window {text!r} must be longer than 0 and at most {MAX_WINDOW.days}d")
    return span


def window_ending(span: timedelta, now_us: int) -> Window:
    return Window(now_us - span // timedelta(microseconds=1), now_us)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


# -- builders --------------------------------------------------------------------------


def _expr(dim: Dimension, bind: _Binder) -> str:
    return dim.column or f"tags[{bind(dim.tag, 'String')}]"


def _conditions(window: Window | None, where: Sequence[tuple[Dimension, str]], bind: _Binder) -> str:
    conds = []
    if window is not None:
        conds.append(f"received_at >= fromUnixTimestamp64Micro({bind(window.start_us, 'Int64')}, 'UTC')")
        conds.append(f"received_at < fromUnixTimestamp64Micro({bind(window.end_us, 'Int64')}, 'UTC')")
    grouped: dict[Dimension, list[str]] = {}
    for dim, value in where:
        grouped.setdefault(dim, []).append(value)
    for dim, values in grouped.items():
        target = _expr(dim, bind)
        if dim.name in ARRAY_VALUED:
            conds.append(f"hasAny({target}, {bind(sorted(set(values)), 'Array(String)')})")
        elif len(values) == 1:
            conds.append(f"{target} = {bind(values[0], 'String')}")
        else:
            conds.append(f"{target} IN {bind(sorted(set(values)), 'Array(String)')}")
    return " AND ".join(conds) or "1"


_SUMS = ("count() AS requests, countIf(status >= 400) AS errors, sum(input_tokens) AS in_tokens, "
         "sum(output_tokens) AS out_tokens, sum(cached_input_tokens) AS cached_tokens, "
         "sum(cost_usd) AS cost")  # fmt: skip


def spend(database: str, by: Sequence[Dimension], window: Window, where: Sequence[tuple[Dimension, str]] = (),
          limit: int = 100, order: Order = "cost") -> Query:
    """Spend per group, best first. Window functions add the totals over *all* groups (not just
    the first `limit`), so shares are of the whole. Columns: g0..gN, requests, errors,
    in_tokens, out_tokens, cached_tokens, cost, total_requests, total_errors, total_input,
    total_output, total_cost, groups."""
    if not 1 <= len(by) <= MAX_DIMENSIONS or order not in ORDERS:
        raise InvalidQuery(f"group by 1 to {MAX_DIMENSIONS} dimensions, order by one of {', '.join(ORDERS)}")
    if bad := [d.name for d in (*by, *(d for d, _ in where)) if d.name in AUDIT_ONLY]:
        raise InvalidQuery(f"{bad[0]!r} filters the audit trail only (`interlock audit --where {bad[0]}=ID`)")
    bind = _Binder()
    keys = ", ".join(f"{_expr(d, bind)} AS g{i}" for i, d in enumerate(by))
    names = ", ".join(f"g{i}" for i in range(len(by)))
    cond = _conditions(window, where, bind)
    sql = (
        f"SELECT {keys}, {_SUMS}, sum(requests) OVER () AS total_requests, sum(errors) OVER () AS total_errors, "
        "sum(in_tokens) OVER () AS total_input, sum(out_tokens) OVER () AS total_output, "
        "sum(cost) OVER () AS total_cost, "
        f"count() OVER () AS groups FROM {check_identifier(database)}.{BY_TIME_TABLE} FINAL WHERE {cond} "
        f"GROUP BY {names} ORDER BY {ORDERS[order]} DESC, {names} LIMIT {bind(check_limit(limit), 'UInt32')}"
    )
    return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))


def task_cost(database: str, task: str, tag_key: str = "task", step_key: str = "step",
              window: Window | None = None) -> Query:
    """One task's bill: every event tagged `tag_key=task`, by `step_key` tag and model, steps in
    the order they started. Columns: step, model, requests, errors, in_tokens, out_tokens,
    cached_tokens, cost, first_us, last_us, write_5m, write_1h."""
    for key in (tag_key, step_key):
        if not _TAG_NAME.match(key):
            raise InvalidQuery(f"tag key {key!r} must be 1-64 of A-Z a-z 0-9 _ . : / -")
    if not task:
        raise InvalidQuery("task must not be empty")
    bind = _Binder()
    step = _expr(Dimension(TAG_PREFIX + step_key, tag=step_key), bind)
    cond = _conditions(window, ((Dimension(TAG_PREFIX + tag_key, tag=tag_key), task),), bind)
    sql = (
        f"SELECT {step} AS step, model, {_SUMS}, toUnixTimestamp64Micro(min(received_at)) AS first_us, "
        f"toUnixTimestamp64Micro(max(received_at)) AS last_us, "
        f"sum(cache_write_5m_tokens) AS write_5m, sum(cache_write_1h_tokens) AS write_1h FROM {check_identifier(database)}.{BY_TIME_TABLE} FINAL "
        f"WHERE {cond} GROUP BY step, model ORDER BY first_us, step, model LIMIT {MAX_LIMIT}"
    )
    return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))


def audit_select(schema: UsageSchema | None = None) -> str:
    """The audit trail's select list, from the usage schema (interlock_contracts/usage_schema.py): `expr AS name, ...`."""
    out = []
    for c in (schema or usage_schema()).audited:
        a = c.audit
        assert a is not None  # audited
        name, expr = a.name or c.name, a.sql or c.name
        out.append(name if expr == name else f"{expr} AS {name}")
    return ", ".join(out)


AUDIT_COLUMNS: tuple[str, ...] = audit_row_names(usage_schema())


def audit(database: str, window: Window, where: Sequence[tuple[Dimension, str]] = (), limit: int = 100,
          schema: UsageSchema | None = None) -> Query:
    """The request trail, newest first: one row per request with the schema's audit columns (AUDIT_COLUMNS).
    Asks for limit + 1 rows so the caller can tell whether the trail was cut."""
    bind = _Binder()
    cond = _conditions(window, where, bind)
    sql = (
        f"SELECT {audit_select(schema)} "
        f"FROM {check_identifier(database)}.usage_events FINAL WHERE {cond} "
        f"ORDER BY received_at DESC, event_id DESC LIMIT {bind(check_limit(limit) + 1, 'UInt32')}"
    )
    return Query(sql, bind.parameters)
