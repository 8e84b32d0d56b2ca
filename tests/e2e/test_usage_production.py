"""Production FinOps: the one-machine shape (etcd, control plane, 2 data planes -> Kafka -> ingest -> chDB).

After real traffic, `interlock spend/top/cost/audit` against the control plane (which reaches the chDB store
through `interlock ingest`'s query endpoint) agree with what the clients were served and with hand-written SQL
on ClickHouse. The browser tests of the console (tests/controlplane/test_console_browser.py) use the same stack shape.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.finops_stack import PLAN, VIEWER_TOKEN, FinOpsStack


@pytest.fixture
def stack(finops: FinOpsStack) -> FinOpsStack:
    return finops


# PLAN's teams: other tests (the console's) add keys and traffic of their own in team sandbox
TEAMS = ("--where", "team=eng", "--where", "team=ml")


def _sql_by(stack: FinOpsStack, expr: str) -> dict[str, tuple[int, int, int, Decimal]]:
    rows = stack.sql(f"SELECT {expr} AS g, count(), sum(input_tokens), sum(output_tokens), sum(cost_usd) "
                     "FROM interlock.usage_events FINAL WHERE team_id IN ('eng', 'ml') GROUP BY g")
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), Decimal(r[4])) for r in rows}


def _cli_by(out: dict[str, Any], dim: str) -> dict[str, tuple[int, int, int, Decimal]]:
    return {r["group"][dim]: (r["requests"], r["input_tokens"], r["output_tokens"], Decimal(r["cost_usd"]))
            for r in out["rows"]}


def test_spend_and_top_match_sql_and_what_clients_were_served(stack: FinOpsStack) -> None:
    by_team = _cli_by(stack.cli("spend", "--by", "team", "--since", "1h", *TEAMS), "team")
    assert by_team == _sql_by(stack, "team_id")
    for team in ("eng", "ml"):
        s = stack.served[f"team:{team}"]
        assert by_team[team] == (s.requests, s.input_tokens, s.output_tokens, s.cost)
    top = stack.cli("top", "--by", "key", "--since", "1h", "--limit", "2", *TEAMS)
    assert len(top["rows"]) == 2 and top["groups"] == 3
    sql_keys = _sql_by(stack, "key_id")
    assert _cli_by(top, "key") == dict(sorted(sql_keys.items(), key=lambda kv: (-kv[1][3], kv[0]))[:2])
    for name in ("alice", "bob", "carol"):
        s = stack.served[name]
        assert sql_keys[stack.keys[name]["id"]] == (s.requests, s.input_tokens, s.output_tokens, s.cost)
    # a viewer identity reads usage too
    assert _cli_by(stack.cli("spend", "--by", "team", "--since", "1h", *TEAMS, token=VIEWER_TOKEN), "team") == by_team


def test_task_cost_matches_sql(stack: FinOpsStack) -> None:
    out = stack.cli("cost", "--task", "T-1")
    rows = stack.sql("SELECT tags['step'] AS step, model, count(), sum(cost_usd) FROM interlock.usage_events FINAL "
                     "WHERE tags['task'] = 'T-1' GROUP BY step, model")
    assert {(r["step"], r["model"]): (r["requests"], Decimal(r["cost_usd"])) for r in out["rows"]} == \
        {(r[0], r[1]): (int(r[2]), Decimal(r[3])) for r in rows}
    assert Decimal(out["total"]["cost_usd"]) == stack.served["task:T-1"].cost
    assert {(r["step"], r["model"]) for r in out["rows"]} == {("plan", "m-a"), ("code", "m-b")}


def test_audit_matches_sql_and_served_request_ids(stack: FinOpsStack) -> None:
    key = stack.keys["bob"]
    out = stack.cli("audit", "--key", key["id"], "--since", "1h")
    rows = stack.sql(f"SELECT event_id, status, cost_usd, model FROM interlock.usage_events FINAL "
                     f"WHERE key_id = '{key['id']}' ORDER BY received_at DESC")
    assert [(r["event_id"], r["status"], Decimal(r["cost_usd"]), r["model"]) for r in out["rows"]] == \
        [(r[0], int(r[1]), Decimal(r[2]), r[3]) for r in rows]
    assert sorted(r["event_id"] for r in out["rows"]) == sorted(stack.served["bob"].request_ids)


def test_query_endpoint_refuses_writes_and_bad_tokens(stack: FinOpsStack) -> None:
    url = f"http://127.0.0.1:{stack.ingest_port}/query/v1"
    from tests.finops_stack import QUERY_TOKEN

    auth = {"Authorization": f"Bearer {QUERY_TOKEN}"}
    assert httpx.post(url, json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(url, json={"sql": "SELECT 1"}).status_code == 401
    drop = httpx.post(url, json={"sql": "DROP TABLE interlock.usage_events"}, headers=auth)
    assert drop.status_code == 400 and "SELECT" in drop.json()["error"]["message"]
    sneaky = httpx.post(url, json={"sql": "SELECT 1 FROM interlock.usage_events; DROP TABLE x"}, headers=auth)
    assert sneaky.status_code == 400
    ro = httpx.post(url, json={"sql": "SELECT 1", "settings": {"readonly": 0}}, headers=auth)
    assert ro.status_code == 400 and "readonly" in ro.json()["error"]["message"]
    # the data is still all there
    assert stack.sql("SELECT count() FROM interlock.usage_events FINAL WHERE team_id IN ('eng', 'ml')")[0][0] == len(PLAN)


def test_usage_routes_without_a_store_say_what_to_set(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from controlplane.admin_api import create_admin_app
    from controlplane.usage_api import create_usage_router
    from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService

    app = create_admin_app(MemoryPolicyService(), TOKEN.encode(), extra_routers=[create_usage_router(None)])
    r = TestClient(app).get("/admin/v1/usage/spend", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 503 and "INTERLOCK_USAGE_STORE" in r.json()["error"]["message"]
