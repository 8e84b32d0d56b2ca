"""Answers spend / periods / series / burn-down from the exact rollups where they are valid.

Same questions, same columns, same numbers as the raw builders (ingest.queries.spend,
ingest.console_queries.periods/series/cumulative): each query is rewritten over a *source* that is
the UNION ALL of
- rollup rows for the whole buckets inside the window that are valid: covered by the rebuild that
  wrote them and with no mark newer than its rolled_at (ingest.rollup_schema), and that no cut
  point of the question (window edges, period boundaries) splits;
- usage_by_time FINAL rows (one per event) for everything else: the partial-hour or partial-day
  edges, the open hour, hours with late events since their rebuild.
Both branches give the same columns (t, g0.., r_requests, r_errors, r_in, r_out, r_cached, r_cost),
so one outer aggregate serves both. A question no rollup can answer (a dimension it lacks, a 5m
series on an hourly rollup, tag filters, no valid bucket) gets the raw builder's query unchanged.

Deciding validity costs one small query (per-day rollup state plus per-hour marks of the window);
if it fails because the rollup tables do not exist (a store not yet migrated to v154), the raw
query is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ingest import console_queries as cq
from ingest import queries
from ingest.clickhouse_writer import IngestError
from ingest.queries import BY_TIME_SETTINGS, BY_TIME_TABLE, ORDERS, Dimension, Query, Window, _Binder, _conditions
from ingest.rollup_schema import MARKS_TABLE, ROLLUPS, TAG_TOTALS, Rollup
from ingest.schema import check_identifier

Filters = Sequence[tuple[Dimension, str]]
Runner = Callable[[Query, str], list[Sequence[Any]]]
Ranges = list[tuple[int, int]]  # [start, end) in Unix microseconds
_HOUR_US = 3600 * 10**6
_OUT = ("r_requests", "r_errors", "r_in", "r_out", "r_cached", "r_cost")
_RAW_MEASURES = ("toInt64(1)", "toInt64(status >= 400)", "toInt64(input_tokens)", "toInt64(output_tokens)",
                 "toInt64(cached_input_tokens)", "cost_usd")
_ROLL_MEASURES = ("toInt64(requests)", "toInt64(errors)", "toInt64(in_tokens)", "toInt64(out_tokens)",
                  "toInt64(cached_tokens)", "cost")


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _complement(window: Window, covered: Ranges) -> Ranges:
    out, pos = [], window.start_us
    for a, b in covered:
        if a > pos:
            out.append((pos, a))
        pos = b
    if pos < window.end_us:
        out.append((pos, window.end_us))
    return out


class RollupReader:
    """Builds rollup-backed queries; `run` executes the validity lookup (the service's runner)."""

    def __init__(self, run: Runner, database: str, *, enabled: bool = True,
                 rollups: Sequence[Rollup] = ROLLUPS) -> None:
        self._run = run
        self._db = check_identifier(database)
        self.enabled = enabled
        self._rollups = tuple(rollups)

    # -- planning --------------------------------------------------------------------------

    def _eligible(self, r: Rollup, by: Sequence[Dimension], where: Filters, step_s: int) -> bool:
        if step_s % r.step_s:
            return False
        if r.tags:
            return len(by) == 1 and bool(by[0].tag) and not where
        return all(d.column in r.dims for d in (*by, *(d for d, _ in where)))

    def _covered(self, r: Rollup, window: Window, cuts: Sequence[int]) -> Ranges:
        """Whole, valid, uncut buckets of `r` inside the window, merged into ranges (microseconds)."""
        step = r.step_s * 10**6
        first = -(-window.start_us // step) * step
        last = window.end_us // step * step  # buckets [b, b + step) with first <= b < last
        if first >= last:
            return []
        lo_s, hi_s = first // 10**6, last // 10**6
        bind = _Binder()
        lo, hi = bind(lo_s, "Int64"), bind(hi_s, "Int64")
        sql = (f"SELECT 0, toUnixTimestamp(toStartOfDay(bucket)) AS k, min(toUnixTimestamp64Micro(rolled_at)), "
               f"min(toUnixTimestamp(covered_until)) FROM {self._db}.{r.table} WHERE bucket >= toDateTime({lo}, 'UTC') "
               f"AND bucket < toDateTime({hi}, 'UTC') GROUP BY k UNION ALL "
               f"SELECT 1, toUnixTimestamp(hour) AS k, max(toUnixTimestamp64Micro(marked_at)), 0 FROM "
               f"{self._db}.{MARKS_TABLE} WHERE hour >= toDateTime({lo}, 'UTC') AND hour < toDateTime({hi}, 'UTC') "
               "GROUP BY k")
        try:
            rows = self._run(Query(sql, bind.parameters, {}), "rollup state")
        except IngestError:
            return []  # no rollup tables (store before v154) or a transient failure: answer from raw
        days = {int(k): (int(rolled), int(until)) for kind, k, rolled, until in rows if kind == 0}
        marks = {int(k): int(m) for kind, k, m, _ in rows if kind == 1}
        covered = []
        for b in range(first, last, step):
            if any(b < c < b + step for c in cuts):
                continue
            b_s = b // 10**6
            state = days.get(b_s - b_s % 86_400)
            if state is None or b_s + r.step_s > state[1]:
                continue
            if all(marks.get(h // 10**6, -1) < state[0] for h in range(b, b + step, _HOUR_US)):
                covered.append((b, b + step))
        return _merge(covered)

    def _plan(self, by: Sequence[Dimension], where: Filters, window: Window, step_s: int = 0,
              cuts: Sequence[int] = ()) -> tuple[Rollup, Ranges] | None:
        if not self.enabled:
            return None
        for r in self._rollups:
            if self._eligible(r, by, where, step_s):
                covered = self._covered(r, window, cuts)
                if covered:
                    return r, covered
        return None

    # -- the source ------------------------------------------------------------------------

    def _source(self, r: Rollup, covered: Ranges, window: Window, by: Sequence[Dimension], where: Filters,
                bind: _Binder, top: Sequence[str] = ()) -> str:
        """`top` (tag rollup only, without ''): only those values keep their own group; everything else,
        the untagged events too, lands in cq.OTHER as total minus top, so only the top rows are read."""
        raw = _complement(window, covered)
        parts = []
        if raw:
            span = " OR ".join(f"(received_at >= fromUnixTimestamp64Micro({bind(a, 'Int64')}, 'UTC') AND "
                               f"received_at < fromUnixTimestamp64Micro({bind(b, 'Int64')}, 'UTC'))" for a, b in raw)
            keys = "".join(f"CAST({queries._expr(d, bind)} AS String) AS g{i}, " for i, d in enumerate(by))
            cols = ", ".join(f"{m} AS {o}" for m, o in zip(_RAW_MEASURES, _OUT, strict=True))
            parts.append(f"SELECT received_at AS t, {keys}{cols} FROM {self._db}.{BY_TIME_TABLE} FINAL "
                         f"WHERE ({span}) AND {_conditions(None, where, bind)}")
        span = " OR ".join(f"(bucket >= toDateTime({bind(a // 10**6, 'Int64')}, 'UTC') AND "
                           f"bucket < toDateTime({bind(b // 10**6, 'Int64')}, 'UTC'))" for a, b in covered)
        if r.tags:
            # Per bucket: the totals row to group '', each tagged (name=K, value!='') row to its value
            # and, negated, out of group '' - so '' holds the events without a value for K, as raw does.
            tag = bind(by[0].tag, "String")
            rest = bind(cq.OTHER if top else "", "String")
            values = f"tag_value IN {bind(list(top), 'Array(String)')}" if top else "tag_value != ''"
            cols = ", ".join(f"{m} * sg.1 AS {o}" for m, o in zip(_ROLL_MEASURES, _OUT, strict=True))
            parts.append(
                f"SELECT toDateTime64(bucket, 6, 'UTC') AS t, sg.2 AS g0, {cols} FROM {self._db}.{r.table} "
                f"ARRAY JOIN if(tag_key = '{TAG_TOTALS}', [(toInt8(1), {rest})], [(toInt8(1), tag_value), "
                f"(toInt8(-1), {rest})]) AS sg WHERE ({span}) AND (tag_key = '{TAG_TOTALS}' OR "
                f"(tag_key = {tag} AND {values}))")
        else:
            keys = "".join(f"CAST({d.column} AS String) AS g{i}, " for i, d in enumerate(by))
            cols = ", ".join(f"{m} AS {o}" for m, o in zip(_ROLL_MEASURES, _OUT, strict=True))
            parts.append(f"SELECT toDateTime64(bucket, 6, 'UTC') AS t, {keys}{cols} FROM {self._db}.{r.table} "
                         f"WHERE ({span}) AND {_conditions(None, where, bind)}")
        return " UNION ALL ".join(parts)

    # -- the questions (same columns as the raw builders) ------------------------------------

    def spend(self, by: Sequence[Dimension], window: Window, where: Filters = (), limit: int = 100,
              order: queries.Order = "cost") -> Query:
        raw = queries.spend(self._db, by, window, where, limit, order)  # validates everything first
        plan = self._plan(by, where, window, cuts=())
        if plan is None:
            return raw
        bind = _Binder()
        src = self._source(plan[0], plan[1], window, by, where, bind)
        names = ", ".join(f"g{i}" for i in range(len(by)))
        sql = (f"SELECT {names}, sum(r_requests) AS requests, sum(r_errors) AS errors, sum(r_in) AS in_tokens, "
               "sum(r_out) AS out_tokens, sum(r_cached) AS cached_tokens, sum(r_cost) AS cost, "
               "sum(requests) OVER () AS total_requests, sum(errors) OVER () AS total_errors, "
               "sum(in_tokens) OVER () AS total_input, sum(out_tokens) OVER () AS total_output, "
               f"sum(cost) OVER () AS total_cost, count() OVER () AS groups FROM ({src}) GROUP BY {names} "
               f"HAVING requests > 0 ORDER BY {ORDERS[order]} DESC, {names} "
               f"LIMIT {bind(queries.check_limit(limit), 'UInt32')}")
        return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))

    def periods(self, now_us: int, spans: Sequence[timedelta], where: Filters = ()) -> Query:
        raw = cq.periods(self._db, now_us, spans, where)
        us = [s // timedelta(microseconds=1) for s in spans]
        window = Window(now_us - 2 * max(us), now_us)
        cuts = [now_us - k * u for u in us for k in (1, 2)]
        plan = self._plan((), where, window, cuts=cuts)
        if plan is None:
            return raw
        bind = _Binder()
        src = self._source(plan[0], plan[1], window, (), where, bind)
        cols = []
        for i, u in enumerate(us):
            a, b = bind(now_us - u, "Int64"), bind(now_us - 2 * u, "Int64")
            cols.append(f"sumIf(r_cost, t >= fromUnixTimestamp64Micro({a}, 'UTC')) AS cur{i}")
            cols.append(f"sumIf(r_cost, t >= fromUnixTimestamp64Micro({b}, 'UTC') AND "
                        f"t < fromUnixTimestamp64Micro({a}, 'UTC')) AS prev{i}")
        return Query(f"SELECT {', '.join(cols)} FROM ({src})", bind.parameters, dict(BY_TIME_SETTINGS))

    def series(self, dim: Dimension, window: Window, step_s: int, groups: Sequence[str],
               where: Filters = ()) -> Query:
        raw = cq.series(self._db, dim, window, step_s, groups, where)
        plan = self._plan((dim,), where, window, step_s)
        bind = _Binder()
        foldable = bool(dim.tag) and bool(groups) and "" not in groups and cq.OTHER not in groups
        if plan is None and foldable:
            # Finer than the tag rollup (hourly): per bucket, the totals from a dimensionless rollup and only
            # the top values' events from raw (the tags bloom filter finds them); the rest is total minus top.
            total = self._plan((), where, window, step_s)
            if total is None:
                return raw
            src = self._top_from_raw(total[0], total[1], window, dim, groups, where, bind)
        elif plan is None:
            return raw
        else:
            top = groups if plan[0].tags and foldable else ()
            src = self._source(plan[0], plan[1], window, (dim,), where, bind, top)
        sql = (f"SELECT toUnixTimestamp64Micro(toDateTime64(toStartOfInterval(t, INTERVAL {bind(step_s, 'UInt32')} "
               f"SECOND), 6, 'UTC')) AS bucket_us, if(has({bind(list(groups), 'Array(String)')}, g0), g0, "
               f"{bind(cq.OTHER, 'String')}) AS grp, sum(r_requests) AS requests, sum(r_cost) AS cost FROM ({src}) "
               "GROUP BY bucket_us, grp HAVING requests > 0 ORDER BY bucket_us, grp")
        return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))

    def _top_from_raw(self, r: Rollup, covered: Ranges, window: Window, dim: Dimension, groups: Sequence[str],
                      where: Filters, bind: _Binder) -> str:
        total = self._source(r, covered, window, (), where, bind)
        rest = bind(cq.OTHER, "String")
        tag = queries._expr(dim, bind)
        match = " OR ".join(f"{tag} = {bind(g, 'String')}" for g in groups)  # OR of equalities: bloom filter
        cols = ", ".join(f"{m} * sg.1 AS {o}" for m, o in zip(_RAW_MEASURES, _OUT, strict=True))
        return (f"SELECT t, {rest} AS g0, {', '.join(_OUT)} FROM ({total}) UNION ALL "
                f"SELECT received_at AS t, sg.2 AS g0, {cols} FROM {self._db}.{BY_TIME_TABLE} FINAL "
                f"ARRAY JOIN [(toInt8(1), CAST({tag} AS String)), (toInt8(-1), {rest})] AS sg "
                f"WHERE {_conditions(window, where, bind)} AND ({match})")

    def cumulative(self, window: Window, step_s: int, where: Filters = ()) -> Query:
        raw = cq.cumulative(self._db, window, step_s, where)
        plan = self._plan((), where, window, step_s)
        if plan is None:
            return raw
        bind = _Binder()
        src = self._source(plan[0], plan[1], window, (), where, bind)
        sql = (f"SELECT toUnixTimestamp64Micro(toDateTime64(toStartOfInterval(t, INTERVAL {bind(step_s, 'UInt32')} "
               "SECOND), 6, 'UTC')) AS bucket_us, sum(r_cost) AS cost, sum(cost) OVER (ORDER BY bucket_us) AS running "
               f"FROM ({src}) GROUP BY bucket_us HAVING sum(r_requests) > 0 ORDER BY bucket_us")
        return Query(sql, bind.parameters, dict(BY_TIME_SETTINGS))
