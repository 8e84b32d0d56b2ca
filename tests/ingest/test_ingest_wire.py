"""Raw protobuf inserts (ingest.wire) on real chDB: the same rows as ingest.rows, the same dedup."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import wire
from ingest.clickhouse_writer import ClickHouseWriter, open_clickhouse
from ingest.rows import COLUMNS
from interlock_contracts.v1 import usage_pb2

T0 = 1_790_000_000_000_000  # 2026-09-21, well inside the TTL


def varied_events() -> list[usage_pb2.UsageEvent]:
    """Every field set to a non-default value somewhere, plus the defaults that need mapping (0, "", [])."""
    full = usage_pb2.UsageEvent(
        event_id="e-full", received_unix_us=T0 + 123_456, first_byte_unix_us=T0 + 200_001, done_unix_us=T0 + 900_999,
        node_id="node-ü", key_id="k1", team_id="t1", user_id="u1", project_id="p1",
        tags={"agent": "claude-code", "task": "T-1", "émoji": "🚀"}, dialect="anthropic", endpoint="/v1/messages",
        requested_model="sonnet", alias="fast", provider="anthropic", upstream_model="claude-x", model="sonnet",
        route_rule="r1", fallback=True, status=502, error_class="upstream_5xx", input_tokens=2**40 + 1,
        output_tokens=7, cached_input_tokens=3, reasoning_tokens=4, usage_estimated=True,
        cost_usd="12345678901234567890123456.123456789012", price_version="2026-11", latency_ms=4_000_000_000,
        ttfb_ms=12, stream=True, client_disconnected=True, policy_version=2**63 + 5, guardrail_outcome="pass",
        request_bytes=4_294_967_295, response_bytes=1,
    )  # fmt: skip
    full.attempts.add(
        provider="openai", deployment="d1", upstream_model="gpt", status=503, error_class="x", latency_ms=9
    )
    full.attempts.add(provider="bedrock", deployment="", upstream_model="", status=0, error_class="", latency_ms=0)
    bare = usage_pb2.UsageEvent(event_id="e-bare", received_unix_us=T0)  # first byte 0 -> NULL, cost "" -> 0
    costs = [usage_pb2.UsageEvent(event_id=f"e-cost-{i}", received_unix_us=T0 + i, cost_usd=c)
             for i, c in enumerate(("0", "0.000000000001", "-0.5", "007.10", "1", "0.004125"))]  # fmt: skip
    return [full, bare, *costs]


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[tuple[ClickHouseWriter, ClickHouseWriter]]:
    dsn = f"chdb://{tmp_path / 'ch'}"
    with open_clickhouse(dsn, database="by_rows") as rows, open_clickhouse(dsn, database="by_wire") as raw:
        yield rows, raw


def _table(w: ClickHouseWriter) -> list[tuple[object, ...]]:
    cols = ", ".join(COLUMNS)
    return [
        tuple(r) for r in w.client.query(f"SELECT {cols} FROM {w.database}.usage_events ORDER BY event_id").result_rows
    ]


def test_wire_insert_stores_exactly_the_rows_the_python_path_stores(
    writers: tuple[ClickHouseWriter, ClickHouseWriter],
) -> None:
    by_rows, by_wire = writers
    events = varied_events()
    assert all(wire.wire_eligible(e) for e in events)
    assert by_rows.insert_events(events) == len(events)
    zero = wire.zero_cost_field()
    values = [wire.wire_value(e, e.SerializeToString(), zero) for e in events]
    assert by_wire.insert_wire([v for v in values if v is not None]) == len(events)
    expected, got = _table(by_rows), _table(by_wire)
    assert len(got) == len(events) and got == expected
    bare = next(r for r in got if r[COLUMNS.index("event_id")] == "e-bare")
    assert bare[COLUMNS.index("first_byte_at")] is None and str(bare[COLUMNS.index("cost_usd")]) == "0E-12"
    # the views see the same inserts
    for table in ("spend_daily", "usage_by_time"):
        sums = [w.client.query(f"SELECT count(), sum(cost_usd) FROM {w.database}.{table}").result_rows[0]
                for w in writers]  # fmt: skip
        assert sums[0] == sums[1]


def test_wire_retries_and_fallbacks_are_deduplicated_by_token(
    writers: tuple[ClickHouseWriter, ClickHouseWriter],
) -> None:
    _, w = writers
    events = [
        usage_pb2.UsageEvent(event_id=uuid.uuid4().hex, received_unix_us=T0 + i, cost_usd="0.01") for i in range(50)
    ]
    values = [e.SerializeToString() for e in events]
    w.insert_wire(values, dedup_token="usage:0:0-49")
    w.insert_wire(values, dedup_token="usage:0:0-49")  # a retry of the same batch
    w.insert_events(events, dedup_token="usage:0:0-49")  # the row path taking over the same batch
    q = f"SELECT count(), (SELECT sum(requests) FROM {w.database}.spend_daily) FROM {w.database}.usage_events"
    assert tuple(w.client.query(q).result_rows[0]) == (50, 50)


def test_only_events_that_map_exactly_are_wire_eligible() -> None:
    ok = usage_pb2.UsageEvent(event_id="e", received_unix_us=1)
    assert wire.wire_eligible(ok)
    assert wire.wire_value(ok, b"raw", b"+0") == b"raw+0"  # no cost: cost_usd = "0" appended
    assert usage_pb2.UsageEvent.FromString(ok.SerializeToString() + wire.zero_cost_field()).cost_usd == "0"
    for change in ({"event_id": ""}, {"received_unix_us": 0}, {"received_unix_us": -5},
                   {"cost_usd": "0.0000000000015"},  # needs banker's rounding: ingest.rows does it
                   {"cost_usd": "1e3"}, {"cost_usd": "abc"}, {"cost_usd": "NaN"}, {"cost_usd": " 1"},
                   {"cost_usd": "1" * 27}, {"cost_usd": "+1"}, {"cost_usd": "1."}):  # fmt: skip
        ev = usage_pb2.UsageEvent()
        ev.CopyFrom(ok)
        for name, value in change.items():
            setattr(ev, name, value)
        assert not wire.wire_eligible(ev) and wire.wire_value(ev, b"", b"") is None, change


def test_frame_is_length_delimited() -> None:
    values = [b"", b"x" * 5, b"y" * 127, b"z" * 128, b"w" * 300]
    framed = wire.frame(values)
    out, pos = [], 0
    while pos < len(framed):
        size, shift = 0, 0
        while True:
            byte = framed[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append(framed[pos : pos + size])
        pos += size
    assert out == values


def test_schema_text_declares_every_field_of_the_compiled_message() -> None:
    text = wire.schema_text()
    for field in usage_pb2.UsageEvent.DESCRIPTOR.fields:
        assert f" {field.name} = {field.number};" in text
    assert "map<string, string> tags = 10;" in text and "repeated .interlock.v1.Attempt attempts = 19;" in text
    assert "message Attempt {" in text
    assert wire.columns() == tuple(f.name for f in usage_pb2.UsageEvent.DESCRIPTOR.fields)
