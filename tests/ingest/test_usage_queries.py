"""FinOps and audit queries (ingest.queries / query_service), their admin routes and CLI, on real chDB.

chDB hosts one engine path per process: the module shares one data dir and gives each test its own database."""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import clickhouse_connect
import httpx
import pytest
from click.testing import CliRunner, Result

from controlplane.admin_api import create_admin_app
from controlplane.usage_api import create_usage_router
from ingest import queries
from ingest.clickhouse_writer import ClickHouseWriter, open_clickhouse
from ingest.queries import InvalidQuery, parse_group_by, parse_where, parse_window
from ingest.query_service import UsageQueryService, UsageStoreMissing
from interlock.cli.main import cli
from interlock.cli.usage_cmds import money
from interlock_contracts.v1 import usage_pb2
from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService
from tests.fixtures.admin import admin_cli_env, cli_ok, serve_admin

NOW_US = (int(time.time()) // 60) * 60 * 10**6  # the services' clock: windows end here
HOUR_US = 3600 * 10**6
TEAMS, MODELS = ("platform", "payments", "search"), ("gpt-4o", "claude-sonnet", "llama-70b")


def make_events(n: int, seed: int = 1) -> list[usage_pb2.UsageEvent]:
    """Events over the 48h before NOW_US; tasks T-0..T-4 with steps plan/code/test; every 13th refused."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t, ok, model = NOW_US - rng.randrange(1, 48 * HOUR_US), i % 13 != 0, MODELS[i % 3]
        tags = {"task": f"T-{i % 5}", "step": ("plan", "code", "test")[i % 3 if i % 7 else 0]} if i % 4 else {}
        out.append(usage_pb2.UsageEvent(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex, received_unix_us=t, done_unix_us=t + 10**6,
            team_id=TEAMS[rng.randrange(3)], user_id=f"u{rng.randrange(5)}", key_id=f"vk_{rng.randrange(6)}",
            tags=tags, requested_model="smart" if i % 2 else model, alias="smart" if i % 2 else "", model=model,
            provider={"gpt-4o": "openai", "claude-sonnet": "anthropic"}.get(model, "bedrock"),
            upstream_model=model + "-2025", route_rule="smart->cheapest" if i % 2 else "",
            status=200 if ok else 429, error_class="" if ok else "rate_limited", stream=bool(i % 3),
            input_tokens=rng.randrange(20_000) if ok else 0, output_tokens=rng.randrange(3_000) if ok else 0,
            cost_usd=format(Decimal(rng.randrange(3 * 10**12)).scaleb(-12), "f") if ok else "",
            latency_ms=rng.randrange(4000), client_disconnected=i % 11 == 0, fallback=i % 9 == 0,
        ))  # fmt: skip
    return out


def cost(e: usage_pb2.UsageEvent) -> Decimal:
    return Decimal(e.cost_usd or "0")


def expected_by(events: list[usage_pb2.UsageEvent], key: str) -> dict[str, tuple[int, int, int, Decimal]]:
    acc: dict[str, list[object]] = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for e in events:
        v = acc[e.tags.get(key[4:], "") if key.startswith("tag:") else getattr(e, key)]
        v[0], v[1], v[2], v[3] = v[0] + 1, v[1] + e.input_tokens, v[2] + e.output_tokens, v[3] + cost(e)  # type: ignore[operator]
    return {k: tuple(v) for k, v in acc.items()}  # type: ignore[misc]


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def events() -> list[usage_pb2.UsageEvent]:
    return make_events(1500)


@pytest.fixture
def svc(dsn: str, events: list[usage_pb2.UsageEvent]) -> Iterator[UsageQueryService]:
    database = "q_" + uuid.uuid4().hex[:12]
    with open_clickhouse(dsn, database=database) as writer:
        writer.insert_events(events[:700])
        writer.insert_events(events[500:])  # 200 redelivered in another batch: FINAL must count them once
        with UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=lambda: NOW_US / 1e6) as s:
            yield s


def test_parsers_validate_and_explain() -> None:
    assert parse_window("30m") == timedelta(minutes=30) and parse_window(" 7d ") == timedelta(days=7)
    assert parse_window("2w") == timedelta(weeks=2) and parse_window("24H") == timedelta(hours=24)
    for bad in ("7", "7x", "-1d", "1.5h", "0d", "401d", "yesterday"):
        with pytest.raises(InvalidQuery, match=r"30m, 24h, 7d or 2w|at most 400d"):
            parse_window(bad)
    assert [d.name for d in parse_group_by("team, tag:task")] == ["team", "tag:task"]
    for bad in ("", "teams", "team,team", "a,b,c,d", "tag:", "tag:x'y"):
        with pytest.raises(InvalidQuery):
            parse_group_by(bad)
    assert [(d.name, v) for d, v in parse_where(["team=a,model=b", "tag:env=prod"])] == [
        ("team", "a"), ("model", "b"), ("tag:env", "prod")]  # fmt: skip
    with pytest.raises(InvalidQuery, match="dimension=value"):
        parse_where(["team"])
    # Values and tag names are bound parameters, never SQL text
    q = queries.spend("db", parse_group_by("tag:task"), queries.Window(0, 1), parse_where(["team=x' OR 1=1 --"]))
    assert "x'" not in q.sql and "task" not in q.sql and "x' OR 1=1 --" in q.parameters.values()
    with pytest.raises(ValueError):
        queries.audit("db; DROP", queries.Window(0, 1))


def test_spend_exact_per_group_with_shares(svc: UsageQueryService, events: list[usage_pb2.UsageEvent]) -> None:
    for by, key in (("team", "team_id"), ("model", "model"), ("tag:task", "tag:task"), ("key", "key_id")):
        report = svc.spend(parse_group_by(by), timedelta(days=3))
        got = {r.group[0]: (r.requests, r.input_tokens, r.output_tokens, r.cost_usd) for r in report.rows}
        assert got == expected_by(events, key), by
        assert report.total.cost_usd == sum(map(cost, events)) and report.total.requests == 1500
        assert report.groups == len(got) and all(isinstance(r.cost_usd, Decimal) for r in report.rows)
        assert [r.cost_usd for r in report.rows] == sorted((r.cost_usd for r in report.rows), reverse=True)
        assert abs(sum((r.share_pct for r in report.rows), Decimal(0)) - 100) <= Decimal("0.01") * len(report.rows)
    untagged = svc.spend(parse_group_by("tag:task"), timedelta(days=3))
    assert {r.group[0] for r in untagged.rows} == {"", "T-0", "T-1", "T-2", "T-3", "T-4"}
    # Two dimensions, a limit smaller than the number of groups: totals still cover every group
    two = svc.spend(parse_group_by("team,model"), timedelta(days=3), limit=4)
    assert len(two.rows) == 4 and two.groups == 9 and two.total.requests == 1500
    # The window ends at the clock: the last 24h only
    day = svc.spend(parse_group_by("team"), timedelta(hours=24))
    recent = [e for e in events if e.received_unix_us >= NOW_US - 24 * HOUR_US]
    assert (day.total.requests, day.total.cost_usd) == (len(recent), sum(map(cost, recent)))


def test_where_filters_and_top(svc: UsageQueryService, events: list[usage_pb2.UsageEvent]) -> None:
    where = parse_where(["team=platform,model=gpt-4o,model=llama-70b", "tag:task=T-2"])
    report = svc.spend(parse_group_by("user"), timedelta(days=3), where)
    match = [e for e in events if e.team_id == "platform" and e.model in ("gpt-4o", "llama-70b")
             and e.tags.get("task") == "T-2"]  # fmt: skip
    assert {r.group[0]: r.cost_usd for r in report.rows} == {k: v[3] for k, v in expected_by(match, "user_id").items()}
    assert svc.spend(parse_group_by("team"), timedelta(days=3), parse_where(["team=x' OR 1=1 --"])).rows == []
    top = svc.top(parse_group_by("key"), timedelta(days=3), limit=2, order="requests")
    counts = sorted(((v[0], k) for k, v in expected_by(events, "key_id").items()), key=lambda c: (-c[0], c[1]))
    assert [(r.requests, r.group[0]) for r in top.rows] == counts[:2] and top.groups == 6


def test_task_cost_by_step_and_model(svc: UsageQueryService, events: list[usage_pb2.UsageEvent]) -> None:
    bill = svc.task_cost("T-3")
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in events:
        if e.tags.get("task") == "T-3":
            expected[(e.tags["step"], e.model)] += cost(e)
    assert {(r.step, r.model): r.cost_usd for r in bill.rows} == expected
    assert bill.total.cost_usd == sum(expected.values())
    assert [r.first_us for r in bill.rows] == sorted(r.first_us for r in bill.rows)  # steps in the order they began
    assert svc.task_cost("T-404").rows == []
    by_model = svc.task_cost("code", tag_key="step", step_key="task")  # the tag keys are configurable
    assert by_model.total.requests == sum(1 for e in events if e.tags.get("step") == "code")


def test_audit_trail_newest_first_with_limit(svc: UsageQueryService, events: list[usage_pb2.UsageEvent]) -> None:
    mine = sorted((e for e in events if e.key_id == "vk_2"), key=lambda e: (e.received_unix_us, e.event_id),
                  reverse=True)  # fmt: skip
    trail = svc.audit(timedelta(days=3), parse_where(["key=vk_2"]), limit=5)
    assert trail.truncated and [r.event_id for r in trail.rows] == [e.event_id for e in mine[:5]]
    row, ev = trail.rows[0], mine[0]
    assert (row.time_us, row.model, row.alias, row.provider, row.route_rule, row.status, row.cost_usd) == (
        ev.received_unix_us, ev.model, ev.alias, ev.provider, ev.route_rule, ev.status, cost(ev))  # fmt: skip
    assert (row.stream, row.client_disconnected, row.fallback) == (ev.stream, ev.client_disconnected, ev.fallback)
    full = svc.audit(timedelta(days=3), parse_where(["key=vk_2"]), limit=10_000)
    assert not full.truncated and len(full.rows) == len(mine)
    hour = svc.audit(timedelta(hours=1), limit=10_000)
    assert len(hour.rows) == sum(1 for e in events if e.received_unix_us >= NOW_US - HOUR_US)


def test_finops_queries_read_the_time_ordered_copy_exactly(dsn: str, svc: UsageQueryService,
                                                          events: list[usage_pb2.UsageEvent]) -> None:
    """spend/top/cost read usage_by_time FINAL (day partitions, time-first key): with merges stopped,
    redeliveries in other batches sit in other parts of the same days, and still count once."""
    db = svc.database
    q = queries.spend(db, parse_group_by("team"), queries.Window(0, 1))
    assert f"{db}.usage_by_time FINAL" in q.sql and q.settings == queries.BY_TIME_SETTINGS
    assert f"{db}.usage_by_time FINAL" in queries.task_cost(db, "T-1").sql
    assert f"{db}.usage_events FINAL" in queries.audit(db, queries.Window(0, 1)).sql  # key-first table serves audit
    with clickhouse_connect.get_client(dsn=dsn) as client:
        client.command(f"SYSTEM STOP MERGES {db}.usage_by_time")
        writer = ClickHouseWriter(client, db)
        writer.insert_events(events[::3])  # more redelivery, each batch a new block: not dropped at insert
        writer.insert_events(events[1::7][::-1])
        raw = client.query(f"SELECT count(), uniqExact(event_id) FROM {db}.usage_by_time").result_rows[0]
        assert raw[0] > 1500 and raw[1] == 1500  # the duplicates really are there
        # the tag filter of `cost --task` is served by the bloom filter on mapValues(tags), under FINAL
        task = queries.task_cost(db, "T-3")
        plan = "\n".join(r[0] for r in client.query("EXPLAIN indexes = 1 " + task.sql, parameters=task.parameters,
                                                    settings=task.settings).result_rows)  # fmt: skip
        assert "tag_values_bf" in plan
    for by, key in (("team", "team_id"), ("tag:task", "tag:task"), ("model", "model")):
        report = svc.spend(parse_group_by(by), timedelta(days=3))
        assert {r.group[0]: (r.requests, r.input_tokens, r.output_tokens, r.cost_usd) for r in report.rows} == (
            expected_by(events, key)), by  # fmt: skip
        assert (report.total.requests, report.total.cost_usd) == (1500, sum(map(cost, events)))
    day = svc.top(parse_group_by("user"), timedelta(hours=24), limit=100)
    recent = [e for e in events if e.received_unix_us >= NOW_US - 24 * HOUR_US]
    assert {r.group[0]: r.cost_usd for r in day.rows} == {k: v[3] for k, v in expected_by(recent, "user_id").items()}
    for name in ("T-3", "T-0"):
        bill = svc.task_cost(name)
        mine = [e for e in events if e.tags.get("task") == name]
        assert (bill.total.requests, bill.total.cost_usd) == (len(mine), sum(map(cost, mine)))
    bill = svc.task_cost("T-3", since=timedelta(hours=24))
    mine = [e for e in recent if e.tags.get("task") == "T-3"]
    assert (bill.total.requests, bill.total.cost_usd) == (len(mine), sum(map(cost, mine)))


def test_missing_store_is_a_clear_error(dsn: str) -> None:
    with UsageQueryService.from_dsn(dsn, "nothing_here") as s, pytest.raises(UsageStoreMissing, match="no usage"):
        s.spend(parse_group_by("team"), timedelta(days=1))


# -- admin API ------------------------------------------------------------------------------


def admin_app(svc: UsageQueryService) -> object:
    return create_admin_app(MemoryPolicyService(), TOKEN.encode(), extra_routers=[create_usage_router(svc)])


async def test_api_requires_token_and_returns_exact_json(svc: UsageQueryService,
                                                         events: list[usage_pb2.UsageEvent]) -> None:
    transport = httpx.ASGITransport(app=admin_app(svc))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        for path in ("spend", "top", "cost?task=T-1", "audit?key=vk_1"):
            resp = await http.get(f"/admin/v1/usage/{path}")
            assert resp.status_code == 401 and "missing admin token" in resp.json()["error"]["message"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await http.get("/admin/v1/usage/spend", params={"by": "team", "since": "3d", "where": "model=gpt-4o"},
                           headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        want = expected_by([e for e in events if e.model == "gpt-4o"], "team_id")
        assert {x["group"]["team"]: Decimal(x["cost_usd"]) for x in body["rows"]} == {k: v[3] for k, v in want.items()}
        assert body["where"] == ["model=gpt-4o"] and body["window"]["since"] == "3d"
        bad = await http.get("/admin/v1/usage/spend", params={"since": "a week"}, headers=auth)
        assert bad.status_code == 422 and "30m, 24h, 7d or 2w" in bad.json()["error"]["message"]
        bad = await http.get("/admin/v1/usage/top", params={"by": "tag:x;y"}, headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "UsageQueryInvalid"
        audit = (await http.get("/admin/v1/usage/audit", params={"key": "vk_1", "since": "3d", "limit": 3},
                                headers=auth)).json()  # fmt: skip
        assert len(audit["rows"]) == 3 and audit["truncated"] and {x["key"] for x in audit["rows"]} == {"vk_1"}
        task = (await http.get("/admin/v1/usage/cost", params={"task": "T-1"}, headers=auth)).json()
        assert Decimal(task["total"]["cost_usd"]) == sum(cost(e) for e in events if e.tags.get("task") == "T-1")


# -- CLI against a real server ------------------------------------------------------------------


@pytest.fixture
def admin_url(svc: UsageQueryService) -> Iterator[str]:
    with serve_admin(admin_app(svc)) as url:
        yield url


def run(url: str, *args: str, token: str | None = TOKEN) -> Result:
    return CliRunner().invoke(cli, list(args), env=admin_cli_env(url, token, columns=120))


def ok(result: Result) -> str:
    return cli_ok(result).stdout


def test_cli_spend_top_cost_audit(admin_url: str, events: list[usage_pb2.UsageEvent]) -> None:
    out = ok(run(admin_url, "spend", "--by", "team", "--since", "3d"))
    by_team = expected_by(events, "team_id")
    for team, (n, _, _, c) in by_team.items():
        assert team in out and f"{n:,}" in out and money(str(c)) in out
    assert "TOTAL" in out and "COST (USD)" in out and "SHARE" in out and "spend by team, last 3d" in out
    data = json.loads(ok(run(admin_url, "spend", "--by", "tag:task", "--since", "3d", "-o", "json")))
    assert {r["group"]["tag:task"]: Decimal(r["cost_usd"]) for r in data["rows"]} == {
        k: v[3] for k, v in expected_by(events, "tag:task").items()}  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(ok(run(admin_url, "spend", "--by", "model", "--where", "team=search",
                                                  "--since", "3d", "-o", "csv")))))  # fmt: skip
    want = expected_by([e for e in events if e.team_id == "search"], "model")
    assert {r["model"]: Decimal(r["cost_usd"]) for r in rows} == {k: v[3] for k, v in want.items()}
    top = ok(run(admin_url, "top", "--by", "key", "--since", "3d", "--limit", "2"))
    assert "showing 2 of 6 groups" in top
    bill = ok(run(admin_url, "cost", "--task", "T-4"))
    assert "task T-4" in bill and "plan" in bill and "code" in bill and "STARTED" in bill
    trail = ok(run(admin_url, "audit", "--key", "vk_3", "--since", "3d", "--limit", "4"))
    newest = max((e for e in events if e.key_id == "vk_3"), key=lambda e: (e.received_unix_us, e.event_id))
    assert newest.event_id in trail and "only the newest 4" in trail


def test_cli_errors_are_helpful(admin_url: str) -> None:
    bad = run(admin_url, "spend", "--since", "7days")
    assert bad.exit_code == 2 and "30m, 24h, 7d or 2w" in bad.stderr
    bad = run(admin_url, "top", "--by", "colour")
    assert bad.exit_code == 2 and "use one of team, user, key" in bad.stderr
    bad = run(admin_url, "spend", token="wrong")
    assert bad.exit_code == 1 and "rejected the admin token" in bad.stderr
    bad = run(admin_url, "audit", "--key", "sk-live-secret")
    assert bad.exit_code == 2 and "pass its id" in bad.stderr
    assert money("12.300000000000") == "$12.300000" and money("0.000000123400") == "$0.0000001234"
    assert money("1.2345674999") == "$1.234567" and money("0") == "$0.000000"
    assert money("1234.5") == "$1,234.500000"
