"""The spans one request produces, in process (the OTLP/gRPC path is tests/dataplane/test_observe_tracing.py): parents,
trace continuation, statuses, times and the head-sampling decision."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dataplane.dialects.base import Usage
from dataplane.observe.tracing import Tracing
from dataplane.routing.report import AttemptRecord
from dataplane.usage.event import EventIds, RequestRecord

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _rec() -> RequestRecord:
    rec = RequestRecord(EventIds(), "openai", "/v1/chat/completions", 10)
    rec.requested_model, rec.model, rec.provider, rec.status, rec.route_rule = "fast", "gpt-t", "fo", 200, "r1"
    rec.first_byte_s, rec.done_s = rec.received_s + 0.5, rec.received_s + 0.6
    rec.usage = Usage(input_tokens=7, output_tokens=9)
    rec.cost_pico = 5_000_000
    rec.attempts = [AttemptRecord("fo", "gpt-t/a", "up-a", 502, "upstream_5xx", 100),
                    AttemptRecord("fo", "gpt-t/b", "up-b", 200, "", 300)]
    return rec


def _spans(sample: float, headers: dict[str, str], n: int = 1) -> list:  # type: ignore[type-arg]
    mem = InMemorySpanExporter()
    tr = Tracing(sample=sample, node_id="n1", exporter=mem, rng=random.Random(7))
    for _ in range(n):
        tr.done(_rec(), headers)
    tr.shutdown()
    return list(mem.get_finished_spans())


def test_a_sampled_traceparent_is_continued_with_one_span_per_attempt() -> None:
    spans = _spans(0.0, {"traceparent": f"00-{TRACE}-{PARENT}-01"})
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(server) == 1 and len(clients) == 2
    srv = server[0]
    assert f"{srv.context.trace_id:032x}" == TRACE and f"{srv.parent.span_id:016x}" == PARENT
    assert srv.name == "chat fast" and srv.resource.attributes["service.instance.id"] == "n1"
    assert srv.attributes["gen_ai.usage.input_tokens"] == 7 and srv.attributes["interlock.fallback"] is True
    assert srv.attributes["interlock.cost_usd"] == pytest.approx(5e-6)
    assert srv.status.status_code == StatusCode.UNSET
    assert all(c.parent.span_id == srv.context.span_id and c.context.trace_id == srv.context.trace_id for c in clients)
    assert len({s.context.span_id for s in spans}) == 3
    first, second = sorted(clients, key=lambda s: s.attributes["interlock.attempt"])
    assert first.status.status_code == StatusCode.ERROR and first.attributes["error.type"] == "upstream_5xx"
    assert second.attributes["gen_ai.response.model"] == "up-b" and second.attributes["interlock.fallback"] is True
    # laid end to end, the last one ending when the response began
    assert second.end_time == srv.start_time + 500_000_000 and first.end_time == second.start_time
    assert first.end_time - first.start_time == 100_000_000


def test_an_unsampled_traceparent_and_sample_zero_record_nothing() -> None:
    assert _spans(1.0, {"traceparent": f"00-{TRACE}-{PARENT}-00"}) == []
    assert _spans(0.0, {}, n=50) == []


def test_head_sampling_keeps_about_the_fraction_asked_for() -> None:
    spans = _spans(0.01, {"traceparent": "garbage"}, n=20_000)  # a malformed header falls back to the rate
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert 120 <= len(servers) <= 280 and len(spans) == 3 * len(servers)


def test_a_failed_request_is_an_error_span() -> None:
    mem = InMemorySpanExporter()
    tr = Tracing(sample=1.0, node_id="n1", exporter=mem)
    rec = _rec()
    rec.status, rec.error_class, rec.attempts = 502, "upstream_5xx", rec.attempts[:1]
    tr.done(rec, {})
    tr.shutdown()
    (client, server) = mem.get_finished_spans()
    assert server.status.status_code == StatusCode.ERROR and server.attributes["error.type"] == "upstream_5xx"
    assert "gen_ai.response.model" not in client.attributes
