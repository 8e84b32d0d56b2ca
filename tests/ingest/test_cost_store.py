"""Token classes end to end in the store: events with cache writes/reads, audio and token counts land in
ClickHouse (migrations v140-v143), and `interlock cost` / `interlock audit` show them (json and table)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import clickhouse_connect
import pytest
from click.testing import CliRunner, Result

from ingest.clickhouse_writer import open_clickhouse
from ingest.query_service import UsageQueryService
from interlock.cli.main import cli
from interlock_contracts.v1 import usage_pb2
from tests.controlplane.test_admin_api import TOKEN
from tests.fixtures.admin import admin_cli_env, cli_ok, serve_admin
from tests.ingest.test_usage_queries import NOW_US, admin_app


def event(i: int, **kw: object) -> usage_pb2.UsageEvent:
    t = NOW_US - 60 * 10**6 + i
    return usage_pb2.UsageEvent(
        event_id=uuid.uuid4().hex, received_unix_us=t, done_unix_us=t + 1000, team_id="eng", key_id="vk_1",
        tags={"task": "T-9", "step": "code"}, model="claude-sonnet-4-5", provider="anthropic", status=200,
        price_version="catalog:2026-12-06@abc", **kw)  # type: ignore[arg-type]


EVENTS = [
    event(1, input_tokens=12_000, cached_input_tokens=0, cache_write_5m_tokens=10_000, cache_write_1h_tokens=1_000,
          output_tokens=300, cost_usd="0.050000000000"),
    event(2, input_tokens=12_500, cached_input_tokens=11_000, cache_write_5m_tokens=400, output_tokens=200,
          audio_input_tokens=7, audio_output_tokens=3, reasoning_tokens=50, cost_usd="0.012000000000"),
    event(3, endpoint="/v1/messages/count_tokens", counted_tokens=4_321, count_estimated=True, cost_usd="0"),
]


@pytest.fixture
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn, database = f"chdb://{tmp_path_factory.mktemp('chdb')}", "c_" + uuid.uuid4().hex[:12]
    with open_clickhouse(dsn, database=database) as writer:
        writer.insert_events(EVENTS)
        with UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=lambda: NOW_US / 1e6) as svc, \
                serve_admin(admin_app(svc)) as u:
            yield u


def run(url: str, *args: str, columns: int = 80) -> Result:
    return CliRunner().invoke(cli, list(args), env=admin_cli_env(url, TOKEN, columns=columns))


def test_cost_and_audit_show_every_token_class(url: str) -> None:
    [step] = json.loads(cli_ok(run(url, "cost", "--task", "T-9", "-o", "json")).stdout)["rows"]
    assert (step["cached_input_tokens"], step["cache_write_tokens"]) == (11_000, 11_400)
    assert step["cost_usd"] == "0.062000000000"
    table = cli_ok(run(url, "cost", "--task", "T-9")).stdout
    assert "CACHE R/W" in table and "11,000/11,400" in table

    rows = {r["event_id"]: r for r in json.loads(cli_ok(run(url, "audit", "--since", "1h", "-o", "json")).stdout)["rows"]}
    first, second, counted = (rows[e.event_id] for e in EVENTS)
    assert (first["cache_write_5m_tokens"], first["cache_write_1h_tokens"]) == (10_000, 1_000)
    assert (second["cached_input_tokens"], second["audio_input_tokens"], second["audio_output_tokens"],
            second["reasoning_tokens"]) == (11_000, 7, 3, 50)
    assert first["price_version"] == "catalog:2026-12-06@abc"
    assert (counted["counted_tokens"], counted["count_estimated"], counted["input_tokens"]) == (4_321, True, 0)
    # at 80 columns the token column is dropped by priority (interlock/cli/render.py); a wide terminal shows it
    audit = cli_ok(run(url, "audit", "--since", "1h", columns=200)).stdout
    assert "r 11,000" in audit and "w 400" in audit and "cnt 4,321~" in audit
