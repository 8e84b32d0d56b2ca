"""FinOps and console query latency over 10M usage events in embedded chDB, rollups vs raw.

    python benchmarks/finops_queries.py            # 10M events over 30 days
    python benchmarks/finops_queries.py --quick    # 1M events
    python benchmarks/finops_queries.py --rows 20000000 --data-dir /tmp/finops --keep
    python benchmarks/finops_queries.py --compare  # also time the old reads of usage_events FINAL

Creates the schema with `ingest.clickhouse_writer.open_clickhouse` (real migrations, so every
materialized view fires: usage_by_time, spend_daily, the rollup marks), inserts synthetic events
generated server-side with INSERT ... SELECT FROM numbers() in 1M-row batches (progress per batch;
2,000 keys on 20 teams, 400 users, 12 models on 4 providers, 50k tasks of up to 8 steps, each within
one hour, 70 at a time, 30 days),
redelivers REDELIVER of them in one more batch, then rebuilds the exact rollups (ingest.rollup, as
`interlock ingest` does; progress per day) and times, as median and p95 of --runs runs:
- each query of `ingest.query_service.UsageQueryService` (spend, top, cost, audit: the admin API's path);
- each query of the web console (controlplane/console/data.py: overview periods, request health,
  spend series, request trail and detail, burn-down);
- the overview page over HTTP: the real /ui app on loopback, signed in, GET /ui/ (all its queries,
  rendered), and - when Debian's chromium and Playwright are there - in headless Chromium until
  every chart is drawn.
Baseline in the same run: every question again with rollups off (`use_rollups=False`: the raw
usage_by_time FINAL path), and a plain full scan. The bar: each query at most 1 s p95 over 10M
events, the overview page at most 2 s.

Exactness: before timing, the run asserts that the whole-window spend, a 7d per-team breakdown, a
30d tag:task breakdown and one task's bill equal the distinct events' sums (GROUP BY event_id: the
data holds REDELIVER duplicates), and that every spend/series answer with rollups equals the raw
answer. Exit status 0 when every query meets the bar, 1 otherwise.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ as a package

from benchmarks.console_page import Browser, http_page_s, serve_console, signed_in
from controlplane.console.data import ConsoleData
from ingest import queries
from ingest.clickhouse_writer import open_clickhouse
from ingest.queries import parse_group_by, parse_where
from ingest.query_service import UsageQueryService
from ingest.rollup import Roller

BAR_S = 1.0
OVERVIEW_BAR_S = 2.0
BATCH = 1_000_000
DAYS = 30
DB = "finops_bench"
REDELIVER = 100_000

# Synthetic distribution: 20 teams, 400 users, 2000 keys, 12 models on 4 providers, 50k tasks of 1-8 steps, each
# task within one hour (like agent runs: 70 at a time), 30 days.
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
    map('task', concat('T-', toString(intDiv(cityHash64(n, 1) % {span_us:UInt64}, 3600000000) * 70 + cityHash64(n, 2) % 70)),
        'step', concat('s', toString(n % 8)),
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
    tasks = svc.spend(parse_group_by("tag:task"), timedelta(days=30), limit=10)
    want_tasks = client.query(
        f"SELECT tags['task'] AS t, count(), sum(cost_usd) AS c FROM {distinct} WHERE received_at >= "
        "fromUnixTimestamp64Micro({start:Int64}, 'UTC') AND received_at < fromUnixTimestamp64Micro({end:Int64}, 'UTC') "
        "GROUP BY t ORDER BY c DESC, t LIMIT 10",
        parameters={"start": tasks.window.start_us, "end": tasks.window.end_us}).result_rows
    assert [(r.group[0], r.requests, r.cost_usd) for r in tasks.rows] == [(t, n, Decimal(c)) for t, n, c in want_tasks]
    print(f"exact under redelivery: whole window, 7d by team, 30d top tasks and task T-7 match the distinct events "
          f"({time.perf_counter() - t0:.1f}s to check)")


def roll(client: Any, now_us: int) -> float:
    """Rebuild every rolled-up day, as the ingest service's rollup loop does, with progress."""
    t0 = time.perf_counter()
    roller = Roller(client, DB, grace_s=0)
    days = roller.due(roller.server_now_us())
    for i, day in enumerate(days, 1):
        roller.roll_day(day)
        print(f"  rolled day {time.strftime('%Y-%m-%d', time.gmtime(day))}  ({i}/{len(days)}, "
              f"{time.perf_counter() - t0:.1f}s)", flush=True)
    return time.perf_counter() - t0


def check_same(fast: UsageQueryService, raw: UsageQueryService, k: str) -> None:
    """Every spend/series/periods answer with rollups equals the raw path's (after redelivery)."""
    t0 = time.perf_counter()
    pairs = [(fn(fast), fn(raw)) for fn in (
        lambda s: s.spend(parse_group_by("team,model"), timedelta(days=30), limit=10_000),
        lambda s: s.spend(parse_group_by("tag:task"), timedelta(days=7)),
        lambda s: s.spend(parse_group_by("key"), timedelta(days=30), parse_where(["team=team-3"]), limit=10_000),
        lambda s: ConsoleData(s).periods(),
        lambda s: ConsoleData(s).top_series("team", timedelta(days=7), "hour"),
        lambda s: ConsoleData(s).top_series("tag:task", timedelta(days=30), "day"),
        lambda s: ConsoleData(s).burn(s.now_us() - 30 * 86_400 * 10**6, parse_where(["team=team-3"]), 86_400),
    )]  # fmt: skip
    for i, (a, b) in enumerate(pairs):
        assert a == b, f"rollup answer {i} differs from raw"
    print(f"rollups equal raw: {len(pairs)} spend/series/periods/burn answers ({time.perf_counter() - t0:.1f}s)")


def page_cases(fast: UsageQueryService, raw: UsageQueryService, runs: int, browser: bool) -> list[tuple[str, float, float, float, float]]:
    """(name, raw median, raw p95, median, p95) of the overview page over HTTP, and in Chromium."""
    out = []
    with serve_console(fast) as fast_url, serve_console(raw) as raw_url:
        hf, hr = signed_in(fast_url), signed_in(raw_url)
        for h in (hf, hr):
            http_page_s(h)  # warm
        out.append(("overview page /ui/ over HTTP (rendered HTML)", *timed(lambda: http_page_s(hr), runs),
                    *timed(lambda: http_page_s(hf), runs)))
        hf.close()
        hr.close()
        b = Browser.open() if browser else None
        if browser and b is None:
            print("no chromium/playwright: overview page not timed in a browser")
        if b is not None:
            try:
                pf, pr = b.signed_in(fast_url), b.signed_in(raw_url)
                b.page_s(pf, f"{fast_url}/ui/")
                b.page_s(pr, f"{raw_url}/ui/")
                out.append(("overview page /ui/ in Chromium (charts drawn)",
                            *timed(lambda: b.page_s(pr, f"{raw_url}/ui/"), runs),
                            *timed(lambda: b.page_s(pf, f"{fast_url}/ui/"), runs)))
            finally:
                b.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M events")
    ap.add_argument("--data-dir", type=Path, default=None, help="chDB path (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--reuse", action="store_true", help="query the data already in --data-dir (no insert)")
    ap.add_argument("--optimize", action="store_true", help="OPTIMIZE FINAL before querying (fully merged parts)")
    ap.add_argument("--compare", action="store_true", help="also time the pre-v4 queries over usage_events FINAL")
    ap.add_argument("--no-browser", action="store_true", help="do not time the overview page in Chromium")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per query (median and p95)")
    ap.add_argument("--no-check", action="store_true", help="skip the exactness checks (a shorter run)")
    args = ap.parse_args()
    rows = 1_000_000 if args.quick else args.rows
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="finops-chdb-"))
    now_us = time.time_ns() // 1000
    try:
        writer = open_clickhouse(f"chdb://{data_dir.resolve()}", database=DB)
        client = writer.client
        if args.reuse:
            now_us = int(client.query(f"SELECT toUnixTimestamp64Micro(max(received_at)) + 1 FROM {DB}.usage_events"
                                      ).result_rows[0][0])
        clock = lambda: now_us / 1e6  # noqa: E731
        with writer, UsageQueryService(client, DB, clock=clock) as svc:
            raw_svc = UsageQueryService(client, DB, clock=clock, use_rollups=False)  # shares the client: never closed
            if not args.reuse:
                for table in ("usage_events", "usage_by_time", "spend_daily", "usage_rollup_marks"):
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
            print(f"rebuilding rollups (ingest.rollup) for the closed hours of {DAYS + 1} days")
            print(f"rolled in {roll(client, now_us):.1f}s")
            sizes = client.query(f"SELECT table, sum(rows) FROM system.parts WHERE database = '{DB}' AND active AND "
                                 "table LIKE 'usage_rollup_%' GROUP BY table ORDER BY table").result_rows
            print("rollup rows: " + ", ".join(f"{t} {n:,}" for t, n in sizes))
            print(f"active: {parts(client)}")
            if not (args.reuse or args.no_check):
                check_exact(client, svc, rows)
            k = svc.top(parse_group_by("key"), timedelta(days=7), limit=1).rows[0].group[0]
            if not args.no_check:
                check_same(svc, raw_svc, k)
            cases = questions(svc, client, k) + console_questions(svc, k)
            raw_cases = questions(raw_svc, client, k) + console_questions(raw_svc, k)
            for _, fn in (*cases, *raw_cases):
                fn()  # warm: first touch of each column reads it from disk
            results = []
            for (name, fn), (_, raw_fn) in zip(cases, raw_cases, strict=True):
                results.append((name, *timed(raw_fn, args.runs), *timed(fn, args.runs)))
                print(f"  timed {name}: raw p95 {results[-1][2] * 1000:.0f}ms, rollup p95 {results[-1][4] * 1000:.0f}ms",
                      flush=True)
            results += page_cases(svc, raw_svc, args.runs, not args.no_browser)
            before: dict[str, float] = {}
            if args.compare:
                old_cases = questions(OldPath(client, DB, clock=clock, use_rollups=False), client, k)[2:9]
                for _, fn in old_cases:
                    fn()
                before = {name: median_s(fn) for name, fn in old_cases}
    finally:
        if not (args.keep or args.data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)
    base = results[1][3]
    print(f"\nFinOps and console queries over {rows:,} events ({args.runs} runs each; bar {BAR_S:.1f}s p95, overview "
          f"page {OVERVIEW_BAR_S:.1f}s). RAW = rollups off (usage_by_time FINAL, the baseline); ROLLUP = as shipped; "
          "ratio = RAW p95 / ROLLUP p95. Machine shared: compare columns, not runs.")
    print(f"{'QUERY':<56} {'RAW MED':>9} {'RAW P95':>9} {'MEDIAN':>9} {'P95':>9} {'RATIO':>6}  BAR")
    ok = True
    for i, (name, rs, rp, s, p95) in enumerate(results):
        bar = OVERVIEW_BAR_S if "overview page" in name else BAR_S
        verdict = "" if i < 2 else ("ok" if p95 <= bar else "OVER")
        ok &= verdict != "OVER"
        old = f"  (usage_events FINAL: {before[name] * 1000:.0f}ms)" if name in before else ""
        print(f"{name:<56} {rs * 1000:>7.1f}ms {rp * 1000:>7.1f}ms {s * 1000:>7.1f}ms {p95 * 1000:>7.1f}ms "
              f"{rp / p95:>5.1f}x  {verdict}{old}")
    print(f"full-scan baseline median: {base * 1000:.1f}ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
