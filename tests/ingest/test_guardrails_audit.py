"""Guardrail outcomes are queryable: `audit --where guardrail=ID` over what landed in ClickHouse (chDB)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import clickhouse_connect
import orjson
import pytest

from ingest.clickhouse_writer import open_clickhouse
from ingest.queries import InvalidQuery, parse_group_by, parse_where
from ingest.query_service import UsageQueryService
from interlock_contracts.v1 import usage_pb2

NOW_US = (int(time.time()) // 60) * 60 * 10**6


def event(i: int, outcome: list[dict[str, object]]) -> usage_pb2.UsageEvent:
    t = NOW_US - (i + 1) * 10**6
    return usage_pb2.UsageEvent(event_id=uuid.uuid4().hex, received_unix_us=t, done_unix_us=t + 1000, key_id="vk_1",
                                team_id="eng", model="m", status=400 if any(o["action"] == "block" for o in outcome) else 200,
                                guardrail_outcome=orjson.dumps(outcome).decode() if outcome else "")


@pytest.fixture
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsageQueryService]:
    dsn = f"chdb://{tmp_path_factory.mktemp('chdb')}"
    database = "g_" + uuid.uuid4().hex[:12]
    redact = [{"id": "no-secrets", "direction": "input", "action": "redact", "rules": {"github-pat": 1}, "count": 1}]
    block = [{"id": "pii", "direction": "input", "action": "block", "rules": {"email": 2}, "count": 2}]
    both = [{**redact[0], "action": "audit"}, block[0]]  # two guardrails acted: no-secrets first, then pii blocked
    evs = [event(i, redact if i % 3 == 0 else block if i % 3 == 1 else []) for i in range(30)]
    evs += [event(30 + i, both) for i in range(4)]
    with open_clickhouse(dsn, database=database) as writer:
        writer.insert_events(evs)
        with UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=lambda: NOW_US / 1e6) as s:
            yield s


def test_audit_filters_by_guardrail_matching_any_that_acted(svc: UsageQueryService) -> None:
    trail = svc.audit(timedelta(hours=1), parse_where(["guardrail=no-secrets"]), limit=100)
    assert len(trail.rows) == 14 and sorted(r.status for r in trail.rows) == [200] * 10 + [400] * 4
    blocked = svc.audit(timedelta(hours=1), parse_where(["guardrail=pii"]), limit=100)
    assert len(blocked.rows) == 14 and {r.status for r in blocked.rows} == {400}  # incl. where pii acted second
    either = svc.audit(timedelta(hours=1), parse_where(["guardrail=pii", "guardrail=no-secrets"]), limit=100)
    assert len(either.rows) == 24
    assert svc.audit(timedelta(hours=1), parse_where(["guardrail=nope"]), limit=100).rows == []


def test_spend_by_guardrail_says_it_is_an_audit_filter() -> None:
    from ingest import queries
    from ingest.queries import Window

    with pytest.raises(InvalidQuery, match="audit trail only"):
        queries.spend("db", parse_group_by("guardrail"), Window(0, 1))


def test_explain_shows_which_guardrails_apply() -> None:
    import asyncio

    from click.testing import CliRunner

    from controlplane.admin_api import create_admin_app
    from controlplane.explain_api import create_explain_router
    from controlplane.policy.model import PolicyDocument
    from controlplane.service_types import KeySpec
    from interlock.cli.main import cli
    from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService
    from tests.dataplane.test_routing_rules import POLICY
    from tests.fixtures.admin import admin_cli_env, serve_admin

    policy = {**POLICY, "guardrails": [
        {"id": "no-secrets", "detect": ["secrets"], "action": "redact"},
        {"id": "pii-eng", "detect": ["email", "us-ssn"], "action": "block", "direction": "both", "sampling": 25,
         "attach": {"teams": [POLICY["teams"][0]["id"]]}},
        {"id": "other-model", "detect": ["pii"], "mode": "audit_only", "attach": {"models": ["claude-x"]}},
    ]}
    service = MemoryPolicyService()
    asyncio.run(service.apply(PolicyDocument.model_validate(policy)))
    team = POLICY["teams"][0]["id"]
    created = asyncio.run(service.create_key(KeySpec(name="t", team=team)))
    app = create_admin_app(service, TOKEN.encode(), extra_routers=[create_explain_router(service, service.pepper)])
    with serve_admin(app) as url:
        env = admin_cli_env(url, TOKEN, columns=160)
        r = CliRunner().invoke(cli, ["explain", "--key", created.record.id, "--model", "gpt-5", "-o", "json"], env=env)
        assert r.exit_code == 0, r.output
        gs = {g["id"]: g for g in orjson.loads(r.output)["guardrails"]}
        assert gs["no-secrets"]["applies"] and gs["no-secrets"]["why"] == "every request"
        assert gs["pii-eng"]["applies"] and gs["pii-eng"]["why"] == "attached to this team"
        assert gs["pii-eng"]["sampling_percent"] == 25 and gs["pii-eng"]["direction"] == "both"
        assert not gs["other-model"]["applies"]
        table = CliRunner().invoke(cli, ["explain", "--key", created.record.id, "--model", "gpt-5"], env=env)
        assert table.exit_code == 0 and "guardrails" in table.output and "pii-eng" in table.output


def test_the_documented_policy_example_compiles() -> None:
    import re
    from pathlib import Path

    import yaml

    from controlplane.policy.compiler import compile_snapshot
    from controlplane.policy.model import PolicyDocument
    from dataplane.guardrails.compiled import GuardrailSet

    doc_md = (Path(__file__).resolve().parents[2] / "docs" / "guardrails.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc_md, re.S)
    assert block is not None
    policy = {**yaml.safe_load(block.group(1)), "teams": [{"id": "payments"}]}
    snap = compile_snapshot(PolicyDocument.model_validate(policy), [], version=1, now_ms=0)
    gs = GuardrailSet.from_snapshot(snap).guardrails
    assert [g.id for g in gs] == ["no-secrets", "pii-payments"] and gs[1].sampling == 25 and gs[1].audit_only
    assert "custom:internal-host" in gs[1].scanner.rule_ids
