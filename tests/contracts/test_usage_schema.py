"""The usage schema declared once (interlock_contracts/usage_schema.py): the column table, the proto descriptor and the
migrated ClickHouse tables agree, and a column added in a temporary schema (a proto field, one metadata line,
one migration; the real proto untouched) flows through every derived layer: event builder -> rows and
protobuf inserts -> chDB -> audit query -> admin API (and its OpenAPI schema) -> CLI json, csv and table."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import clickhouse_connect
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from controlplane.admin_api import create_admin_app
from controlplane.usage_api import AuditOutOf, create_usage_router
from dataplane.dialects.base import Usage
from dataplane.usage.event import EventIds, RequestRecord
from dataplane.usage.event_builder import column_defaults, event_builder
from ingest import schema_check, wire
from ingest.audit_row import audit_row_model
from ingest.clickhouse_writer import ClickHouseWriter, IngestError, open_clickhouse
from ingest.query_service import UsageQueryService
from interlock.cli.usage_cmds import print_audit
from interlock_contracts.usage_schema import USAGE_COLUMNS, Audit, UsageColumn, usage_schema
from interlock_contracts.v1 import usage_pb2
from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService

# The admin API's audit row before the schema was declared once (controlplane/usage_api.py AuditRowOut): the
# contract clients rely on, written out here so a derived layer cannot drift from it unnoticed.
API_AUDIT_FIELDS = [
    "time", "event_id", "team", "user", "key", "requested_model", "alias", "model", "provider", "upstream_model",
    "route_rule", "fallback", "attempts", "status", "error_class", "input_tokens", "output_tokens", "cost_usd",
    "latency_ms", "ttfb_ms", "stream", "client_disconnected", "cached_input_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens", "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "usage_estimated",
    "price_version", "counted_tokens", "count_estimated",
]  # fmt: skip

GPU = UsageColumn("gpu_ms", "UInt32", "GPU time the provider billed", source="gpu_ms", default="0", unit="ms",
                  audit=Audit(cli="GPU>~2"))
GPU_MIGRATION = "ALTER TABLE {db}.usage_events ADD COLUMN IF NOT EXISTS gpu_ms UInt32 DEFAULT 0"


def temp_message() -> type:
    """UsageEvent plus `uint32 gpu_ms = 1130`, in a pool of its own (the generated module is not touched)."""
    fdp = descriptor_pb2.FileDescriptorProto()
    usage_pb2.DESCRIPTOR.CopyToProto(fdp)
    msg = next(m for m in fdp.message_type if m.name == "UsageEvent")
    msg.field.add(name="gpu_ms", number=1130, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("interlock.v1.UsageEvent"))


class GpuRecord(RequestRecord):
    __slots__ = ("gpu_ms",)  # the code that measures the new value sets it on the record


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def database() -> str:
    return "s_" + uuid.uuid4().hex[:12]


@pytest.fixture
def writer(dsn: str, database: str) -> Iterator[ClickHouseWriter]:
    with open_clickhouse(dsn, database=database) as w:
        yield w


def test_column_table_proto_and_migrated_store_agree(writer: ClickHouseWriter, database: str) -> None:
    schema = usage_schema()
    schema_check.check(writer.client, database, schema)  # exact: every column, type, default, ephemeral
    by_time = schema_check.read_tables(writer.client, database)["usage_by_time"]
    assert {c.name for c in schema.columns if c.by_time} <= set(by_time)
    assert [f.serialization_alias or n for n, f in audit_row_model(schema).model_fields.items()] == API_AUDIT_FIELDS


def test_disagreements_are_reported_by_name(writer: ClickHouseWriter, database: str) -> None:
    schema = usage_schema()
    # a metadata line without its migration, and a changed type
    wrong = usage_schema(columns=(*USAGE_COLUMNS[:-1], replace(USAGE_COLUMNS[-1], ch_type="DateTime64(6, 'UTC')")))
    with pytest.raises(schema_check.SchemaMismatch, match=r"inserted_at is DateTime64\(3, 'UTC'\)"):
        schema_check.check(writer.client, database, wrong)
    # a proto field without a metadata line
    message = temp_message().DESCRIPTOR
    assert schema_check.descriptor_problems(usage_schema(message)) == [
        "UsageEvent fields without a column in interlock_contracts/usage_schema.py: ['gpu_ms']"]
    # a metadata line whose field the proto lacks
    assert "has no field 'gpu_ms'" in schema_check.descriptor_problems(usage_schema(columns=(*USAGE_COLUMNS, GPU)))[0]
    # the migrated column without a metadata line: fine for this release's inserts (a newer release's column
    # during a rolling upgrade), reported by the exact check
    writer.client.command(GPU_MIGRATION.format(db=database))
    assert schema_check.table_problems(schema, schema_check.read_tables(writer.client, database), exact=False) == []
    with pytest.raises(schema_check.SchemaMismatch, match=r"usage_events\.gpu_ms .* is not in the usage schema"):
        schema_check.check(writer.client, database, schema)
    # the event builder refuses a field nobody fills
    with pytest.raises(ValueError, match=r"\['gpu_ms'\] have no source"):
        event_builder(usage_schema(message, (*USAGE_COLUMNS, replace(GPU, source=""))), temp_message())


def _record(gpu_ms: int, now: float) -> GpuRecord:
    rec = GpuRecord(EventIds(), "openai", "/v1/chat/completions", 321)
    rec.received_s, rec.first_byte_s, rec.done_s = now - 2, now - 1.5, now - 1
    rec.requested_model = rec.model = "gpt-4o"
    rec.provider, rec.upstream_model, rec.status = "openai", "gpt-4o-2024", 200
    rec.usage = Usage(input_tokens=1000, output_tokens=50)
    rec.usage.reported = True
    rec.cost_pico = 1_234_000_000
    rec.gpu_ms = gpu_ms
    return rec


async def test_a_new_column_flows_through_every_layer(dsn: str, writer: ClickHouseWriter, database: str,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    message = temp_message()
    schema = usage_schema(message.DESCRIPTOR, (*USAGE_COLUMNS, GPU))
    assert schema_check.descriptor_problems(schema) == []
    # the record carries a column the schema copies as is, with the proto default, without editing the record
    assert ("gpu_ms", 0) in column_defaults(schema, RequestRecord.__slots__)

    # event builder: generated from the schema, the new field copied from the record
    now = time.time()
    build = event_builder(schema, message)
    by_rows, by_wire = build(_record(4321, now), "node-a"), build(_record(8765, now), "node-b")
    assert (by_rows.gpu_ms, by_wire.gpu_ms, by_rows.input_tokens, by_rows.cost_usd) == (
        4321, 8765, 1000, "0.001234000000")

    # the store: before its migration a writer for the new schema refuses to start, naming the column
    with pytest.raises(IngestError, match="usage_events lacks column gpu_ms UInt32"):
        ClickHouseWriter(clickhouse_connect.get_client(dsn=dsn), database, schema=schema)
    writer.client.command(GPU_MIGRATION.format(db=database))
    schema_check.check(writer.client, database, schema)
    gpu_writer = ClickHouseWriter(clickhouse_connect.get_client(dsn=dsn), database, schema=schema)
    try:
        # rows (ingest.rows, derived converters) and the raw protobuf insert (ingest.wire, from the descriptor)
        assert gpu_writer.insert_events([by_rows]) == 1
        value = wire.wire_value(by_wire, by_wire.SerializeToString(), wire.zero_cost_field(message.DESCRIPTOR))
        assert value is not None and gpu_writer.insert_wire([value]) == 1
    finally:
        gpu_writer.close()
    landed = writer.client.query(f"SELECT node_id, gpu_ms, input_tokens, cost_usd FROM {database}.usage_events "
                                 "FINAL ORDER BY node_id").result_rows
    assert [(n, g, i, str(c)) for n, g, i, c in landed] == [
        ("node-a", 4321, 1000, "0.001234000000"), ("node-b", 8765, 1000, "0.001234000000")]

    # query service: the audit select and the row type both come from the schema
    qs = UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=lambda: now, schema=schema)
    try:
        trail = qs.audit(timedelta(hours=1))
        assert sorted(r.gpu_ms for r in trail.rows) == [4321, 8765]
        assert {r.event_id for r in trail.rows} == {by_rows.event_id, by_wire.event_id}

        # admin API: the route's response model and its OpenAPI schema carry the column
        app = create_admin_app(MemoryPolicyService(), TOKEN.encode(), extra_routers=[create_usage_router(qs)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            resp = await http.get("/admin/v1/usage/audit", params={"since": "1h"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})
            spec = (await http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    finally:
        qs.close()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [list(r) for r in body["rows"]] == [[*API_AUDIT_FIELDS, "gpu_ms"]] * 2
    assert sorted(r["gpu_ms"] for r in body["rows"]) == [4321, 8765]
    assert body["rows"][0]["cost_usd"] == "0.001234000000" and body["rows"][0]["time"].endswith("Z")
    rows_ref = spec["paths"]["/admin/v1/usage/audit"]["get"]["responses"]["200"]["content"]["application/json"]
    out_schema = spec["components"]["schemas"][rows_ref["schema"]["$ref"].rsplit("/", 1)[1]]
    row_schema = spec["components"]["schemas"][out_schema["properties"]["rows"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert row_schema["properties"]["gpu_ms"]["description"] == "GPU time the provider billed"
    assert "gpu_ms" in row_schema["required"] and row_schema["properties"]["time"]["type"] == "string"

    # CLI: what `interlock audit` prints for that response, read with the schema's row type
    parsed = AuditOutOf[audit_row_model(schema)].model_validate(body)  # type: ignore[misc]
    assert parsed.model_dump(mode="json", by_alias=True) == body  # reads back exactly what the API sent

    def printed(output: str) -> str:
        capsys.readouterr()
        print_audit(parsed, output, 100, schema)
        return capsys.readouterr().out

    table = list(csv.DictReader(io.StringIO(printed("csv"))))
    assert sorted(int(r["gpu_ms"]) for r in table) == [4321, 8765] and list(table[0]) == [*API_AUDIT_FIELDS, "gpu_ms"]
    assert json.loads(printed("json")) == body
    text = printed("table")
    assert "GPU" in text and "4,321ms" in text and "8,765ms" in text
