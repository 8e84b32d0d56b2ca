"""FinOps query latency over a large usage_events table in embedded chDB.

    python benchmarks/finops_queries.py            # 10M events (~2-4 min on 4 cores)
    python benchmarks/finops_queries.py --quick    # 1M events
    python benchmarks/finops_queries.py --rows 20000000 --data-dir /tmp/finops --keep
    python benchmarks/finops_queries.py --compare  # also time the old reads of usage_events FINAL

Creates the schema with `ingest.clickhouse_writer.open_clickhouse` (real migrations, so the
spend_daily view fires too), inserts synthetic events generated server-side with
INSERT ... SELECT FROM numbers() in 1M-row batches (Python row conversion would dominate
and is measured by tests/test_usage_clickhouse.py), then times each query of
`ingest.query_service.UsageQueryService` - the same path the admin API uses, including
row conversion - and every query of the web console (controlplane/console/data.py: overview
periods, request health with p50/p99, spend series, request trail and detail, burn-down), as the
median and p95 of --runs runs (default 10). The bar: each at most 1 s p95 over 10M events, and
the overview page's queries together (what /ui/ runs before it renders) at most 2 s p95.
Baseline in the same run: a plain full scan `SELECT count(), sum(cost_usd)` without FINAL.

Exactness under redelivery: after the bulk insert, the first REDELIVER events are inserted
again as one more batch (not dropped by insert dedup: a different block), so both
usage_events and usage_by_time hold unmerged duplicates while the queries run. Before timing,
the run asserts that the whole-window spend total, a 7d per-team breakdown and one task's
bill equal the distinct events' sums (GROUP BY event_id), i.e. nothing is double counted.
With --compare, each query is also timed the old way (same SQL over `usage_events FINAL`,
as before schema v4). Exit status 0 when every query meets the bar, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from controlplane.console.data import ConsoleData
from ingest import queries
from ingest.clickhouse_writer import open_clickhouse
from ingest.queries import parse_group_by, parse_where
from ingest.query_service import UsageQueryService

BAR_S = 1.0
OVERVIEW_BAR_S = 2.0
BATCH = 1_000_000
DAYS = 30
DB = "finops_bench"
REDELIVER = 100_000

# Synthetic distribution: 20 teams, 400 users, 2000 keys, 12 models on 4 providers, 50k tasks of 1-8 steps.
_INSERT = """
INSERT INTO {db}.usage_events (event_id, received_at, first_byte_at, done_at, node_id, key_id, team_id, user_id,
    project_id, tags, dialect, endpoint, requested_model, alias, provider, upstream_model, model, route_rule, attempts,
    fallback, status, error_class, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, usage_estimated,
    cost_usd, price_version, latency_ms, ttfb_ms, stream, client_disconnected, policy_version, guardrail_outcome,
    request_bytes, response_bytes)
SELECT
    lower(hex(MD5(toString(n)))) AS event_id,
    fromUnixTimestamp64Micro(toInt64({end_us:Int64} - (cityHash64(n, 1) % {span_us:UInt64})), 'UTC') AS received_at,
    received_at + toIntervalMillisecond(100) AS first_byte_at,
    received_at + toIntervalMillisecond(900) AS done_at,
    concat('node-', toString(n % 4)) AS node_id,
    concat('vk_', toString(k)) AS key_id,
    concat('team-', toString(k % 20)) AS team_id,
    concat('user-', toString(k % 400)) AS user_id,
    concat('proj-', toString(k % 40)) AS project_id,
    map('task', concat('T-', toString(cityHash64(n, 2) % 50000)), 'step', concat('s', toString(n % 8)),
        'env', if(n % 3 = 0, 'prod', 'dev')) AS tags,
    'openai' AS dialect, '/v1/chat/completions' AS endpoint,
    concat('model-', toString(m)) AS requested_model, if(m < 3, 'fast', '') AS alias,
    concat('provider-', toString(m % 4)) AS provider, concat('model-', toString(m), '-2025') AS upstream_model,
    concat('model-', toString(m)) AS model, if(m < 3, 'fast->cheapest', '') AS route_rule,
    [] AS attempts, n % 50 = 0 AS fallback,
    if(n % 41 = 0, 429, 200) AS status, if(n % 41 = 0, 'rate_limited', '') AS error_class,
    cityHash64(n, 3) % 40000 AS input_tokens, cityHash64(n, 4) % 4000 AS output_tokens,
    0 AS cached_input_tokens, 0 AS reasoning_tokens, false AS usage_estimated,
    toDecimal128(input_tokens * (m + 1), 12) / 1000000 + toDecimal128(output_tokens * (m + 1) * 4, 12) / 1000000
        AS cost_usd,
    'p1' AS price_version, toUInt32(cityHash64(n, 5) % 5000) AS latency_ms, toUInt32(100) AS ttfb_ms,
    n % 2 = 0 AS stream, n % 97 = 0 AS client_disconnected, 1 AS policy_version, '' AS guardrail_outcome,
    toUInt32(1000) AS request_bytes, toUInt32(2000) AS response_bytes
FROM (SELECT number AS n, cityHash64(number, 6) % 2000 AS k, cityHash64(number, 7) % 12 AS m
      FROM numbers({start:UInt64}, {count:UInt64}))
"""


def insert(svc_client: Any, rows: int, end_us: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        svc_client.command(_INSERT.replace("{db}", DB), parameters={
            "end_us": end_us, "span_us": DAYS * 86_400 * 10**6, "start": start, "count": count})  # fmt: skip
        done = start + count
        rate = done / (time.perf_counter() - t0)
        print(f"  inserted {done:>12,} / {rows:,} events  ({rate:,.0f} events/s)", flush=True)
    return time.perf_counter() - t0


def legacy(query: queries.Query) -> queries.Query:
    """The same question the pre-v4 way: usage_events FINAL (month partitions, team-first key)."""
    sql = query.sql.replace(f"{DB}.{queries.BY_TIME_TABLE} FINAL", f"{DB}.usage_events FINAL")
    return queries.Query(sql, query.parameters, dict(queries.FINAL_SETTINGS))


def parts(client: Any) -> str:
    rows = client.query(f"SELECT table, count(), uniqExact(partition) FROM system.parts WHERE database = '{DB}' "
                        "AND active AND table IN ('usage_events', 'usage_by_time') GROUP BY table ORDER BY table")
    return ", ".join(f"{t}: {n} parts in {p} partitions" for t, n, p in rows.result_rows)


def timed(fn: Callable[[], object], runs: int = 3) -> tuple[float, float]:
    """(median, p95 by nearest rank) of `runs` runs."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, -(-95 * len(times) // 100) - 1)]


def median_s(fn: Callable[[], object], runs: int = 3) -> float:
    return timed(fn, runs)[0]


def console_questions(svc: UsageQueryService, k: str) -> list[tuple[str, Callable[[], object]]]:
    """What each console page asks (controlplane/console/pages.py), through the same ConsoleData."""
    d = ConsoleData(svc)
    day, week, month = timedelta(hours=24), timedelta(days=7), timedelta(days=30)
    team3 = parse_where(["team=team-3"])
    event = svc.audit(day, parse_where([f"key={k}"]), 1).rows[0].event_id

    def overview() -> None:  # /ui/: the four questions the page gathers
        d.periods()
        d.health(day)
        d.top_series("team", week, "hour")
        d.top_series("model", week, "hour")

    return [
        ("console overview: spend 24h/7d/30d vs previous", d.periods),
        ("console overview: requests, errors, fallbacks, p50/p99 24h", lambda: d.health(day)),
        ("console overview: spend by team, 7d hourly series", lambda: d.top_series("team", week, "hour")),
        ("console overview: spend by model, 7d hourly series", lambda: d.top_series("model", week, "hour")),
        ("console explorer: tag:task 7d hourly series", lambda: d.top_series("tag:task", week, "hour")),
        ("console explorer: tag:task 30d daily series", lambda: d.top_series("tag:task", month, "day")),
        ("console explorer: key where team=team-3 7d hourly", lambda: d.top_series("key", week, "hour", team3)),
        ("console trail: status=error, 24h", lambda: d.trail(day, (), status="error")),
        ("console trail: fallback, team=team-3, 7d", lambda: d.trail(week, team3, fallback=True)),
        ("console request detail", lambda: d.detail(event)),
        ("console budgets: burn-down team-3 30d daily",
         lambda: d.burn(svc.now_us() - 30 * 86_400 * 10**6, team3, 86_400)),
        ("console overview page: all its queries", overview),
    ]


class OldPath(UsageQueryService):
    """The same service, sending each query the pre-v4 way (see `legacy`). Shares the client: never closed."""

    def _run(self, query: queries.Query, what: str) -> list[Sequence[Any]]:
        return super()._run(legacy(query), what)


def questions(svc: UsageQueryService, client: Any, k: str) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("baseline: SELECT count()", lambda: client.query(f"SELECT count() FROM {DB}.usage_events")),
        ("baseline: count(), sum(cost) full scan",
         lambda: client.query(f"SELECT count(), sum(cost_usd) FROM {DB}.usage_events")),
        ("spend --by team --since 7d", lambda: svc.spend(parse_group_by("team"), timedelta(days=7))),
        ("spend --by model --where team=team-3 --since 7d",
         lambda: svc.spend(parse_group_by("model"), timedelta(days=7), parse_where(["team=team-3"]))),
        ("spend --by team,model --since 30d", lambda: svc.spend(parse_group_by("team,model"), timedelta(30))),
        ("spend --by tag:task --since 7d (50k groups, top 100)",
         lambda: svc.spend(parse_group_by("tag:task"), timedelta(days=7))),
        ("top --by key --since 24h", lambda: svc.top(parse_group_by("key"), timedelta(hours=24))),
        ("top --by user --order tokens --since 7d",
         lambda: svc.top(parse_group_by("user"), timedelta(days=7), order="tokens")),
        ("cost --task T-123 (all data)", lambda: svc.task_cost("T-123")),
        (f"audit --key {k} --since 1h", lambda: svc.audit(timedelta(hours=1), parse_where([f"key={k}"]))),
        (f"audit --key {k} --since 7d --limit 1000",
         lambda: svc.audit(timedelta(days=7), parse_where([f"key={k}"]), 1000)),
    ]


def check_exact(client: Any, svc: UsageQueryService, rows: int) -> None:
    """The distinct events' sums (the data holds REDELIVER duplicates) must be what the queries return."""
    t0 = time.perf_counter()
    raw = client.query(f"SELECT count(), uniqExact(event_id) FROM {DB}.usage_events").result_rows[0]
    assert raw == (rows + min(REDELIVER, rows), rows), raw  # the duplicates really are there
    distinct = f"(SELECT any(team_id) AS team_id, any(tags) AS tags, any(received_at) AS received_at, " \
               f"any(cost_usd) AS cost_usd FROM {DB}.usage_events GROUP BY event_id)"
    whole = svc.spend(parse_group_by("team"), timedelta(days=DAYS + 1))
    want = client.query(f"SELECT count(), sum(cost_usd) FROM {distinct}").result_rows[0]
    assert (whole.total.requests, whole.total.cost_usd) == (want[0], Decimal(want[1])), (whole.total, want)
    week = svc.spend(parse_group_by("team"), timedelta(days=7))
    want_week = client.query(
        f"SELECT team_id, count(), sum(cost_usd) FROM {distinct} WHERE received_at >= "
        "fromUnixTimestamp64Micro({start:Int64}, 'UTC') AND received_at < fromUnixTimestamp64Micro({end:Int64}, 'UTC') "
        "GROUP BY team_id", parameters={"start": week.window.start_us, "end": week.window.end_us}).result_rows
    assert {r.group[0]: (r.requests, r.cost_usd) for r in week.rows} == {
        t: (n, Decimal(c)) for t, n, c in want_week}  # fmt: skip
    bill = svc.task_cost("T-7")
    want_task = client.query(f"SELECT count(), sum(cost_usd) FROM {distinct} WHERE tags['task'] = 'T-7'").result_rows[0]
    assert (bill.total.requests, bill.total.cost_usd) == (want_task[0], Decimal(want_task[1])), (bill.total, want_task)
    print(f"exact under redelivery: whole window, 7d by team and task T-7 match the distinct events "
          f"({time.perf_counter() - t0:.1f}s to check)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M events")
    ap.add_argument("--data-dir", type=Path, default=None, help="chDB path (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--optimize", action="store_true", help="OPTIMIZE FINAL before querying (fully merged parts)")
    ap.add_argument("--compare", action="store_true", help="also time the pre-v4 queries over usage_events FINAL")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per query (median and p95)")
    args = ap.parse_args()
    rows = 1_000_000 if args.quick else args.rows
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="finops-chdb-"))
    now_us = time.time_ns() // 1000
    try:
        writer = open_clickhouse(f"chdb://{data_dir.resolve()}", database=DB)
        with writer, UsageQueryService(writer.client, DB, clock=lambda: now_us / 1e6) as svc:
            client = writer.client
            for table in ("usage_events", "usage_by_time", "spend_daily"):
                client.command(f"TRUNCATE TABLE {DB}.{table}")
            print(f"inserting {rows:,} synthetic events over {DAYS} days into {data_dir} (batches of {BATCH:,})")
            took = insert(client, rows, now_us)
            print(f"inserted in {took:.1f}s ({rows / took:,.0f} events/s)")
            again = min(REDELIVER, rows)
            client.command(_INSERT.replace("{db}", DB), parameters={
                "end_us": now_us, "span_us": DAYS * 86_400 * 10**6, "start": 0, "count": again})  # fmt: skip
            print(f"redelivered {again:,} of them in one more batch")
            if args.optimize:
                t0 = time.perf_counter()
                for table in ("usage_events", "usage_by_time"):
                    client.command(f"OPTIMIZE TABLE {DB}.{table} FINAL")
                print(f"optimized in {time.perf_counter() - t0:.1f}s")
            print(f"active: {parts(client)}")
            check_exact(client, svc, rows)
            k = svc.top(parse_group_by("key"), timedelta(days=7), limit=1).rows[0].group[0]
            cases = questions(svc, client, k) + console_questions(svc, k)
            for _, fn in cases:
                fn()  # warm: first touch of each column reads it from disk
            results = [(name, *timed(fn, args.runs)) for name, fn in cases]
            before: dict[str, float] = {}
            if args.compare:
                old_cases = questions(OldPath(client, DB, clock=lambda: now_us / 1e6), client, k)[2:9]
                for _, fn in old_cases:
                    fn()
                before = {name: median_s(fn) for name, fn in old_cases}
    finally:
        if not (args.keep or args.data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)
    base = results[1][1]
    print(f"\nFinOps and console queries over {rows:,} events ({args.runs} runs each; bar {BAR_S:.1f}s p95, overview "
          f"page {OVERVIEW_BAR_S:.1f}s; ratio = median vs full-scan baseline median)")
    print(f"{'QUERY':<58} {'BEFORE':>9} {'MEDIAN':>9} {'P95':>9} {'RATIO':>7}  BAR")
    ok = True
    for i, (name, s, p95) in enumerate(results):
        bar = OVERVIEW_BAR_S if name.startswith("console overview page") else BAR_S
        verdict = "" if i < 2 else ("ok" if p95 <= bar else "OVER")
        ok &= verdict != "OVER"
        old = f"{before[name] * 1000:>7.1f}ms" if name in before else f"{'-':>9}"
        print(f"{name:<58} {old} {s * 1000:>7.1f}ms {p95 * 1000:>7.1f}ms {s / base:>6.2f}x  {verdict}")
    if before:
        print("BEFORE = the same query over usage_events FINAL (schema v3); MEDIAN = usage_by_time FINAL (v4+)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
