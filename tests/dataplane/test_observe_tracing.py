"""OpenTelemetry traces: a data-plane process exports spans over OTLP/gRPC to an in-process receiver; the
request span and one span per attempt carry the GenAI attributes (provider, models, tokens, cost, route rule,
fallback), an incoming traceparent is continued, and a caller's unsampled trace is not recorded."""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.fixtures.cluster import Cluster, chat_body, free_port, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_spans_reach_an_otlp_receiver_with_genai_attributes(cluster_factory: Any) -> None:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        c: Cluster = cluster_factory(nodes=0)
        node = c.add_node(start=False)
        node.proc.env.update(INTERLOCK_TRACE_SAMPLE="1", INTERLOCK_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        c.start_node(node)
        key = c.create_key(team="eng")
        c.wait_in_sync()
        auth = {"Authorization": f"Bearer {key['secret']}"}
        with httpx.Client(timeout=10) as http:
            r = http.post(f"{node.openai_base}/chat/completions", headers={
                **auth, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, json=chat_body("m-a"))
            assert r.status_code == 200, r.text
            usage = r.json()["usage"]
            unsampled = http.post(f"{node.openai_base}/chat/completions", headers={
                **auth, "traceparent": f"00-{'1' * 32}-{'2' * 16}-00"}, json=chat_body("m-b"))
            assert unsampled.status_code == 200
            request_id = r.headers["x-interlock-request-id"]
        wait_until(lambda: len(receiver.spans) >= 2, 15, "spans at the OTLP receiver")
        time.sleep(1.5)  # a batch in flight
    finally:
        server.stop(0)
    spans = receiver.spans
    by_trace = [s for s in spans if s.trace_id.hex() == TRACE_ID]
    server_span = next(s for s in by_trace if s.kind == s.SPAN_KIND_SERVER)
    attempt = next(s for s in by_trace if s.kind == s.SPAN_KIND_CLIENT)
    assert server_span.parent_span_id.hex() == PARENT_ID  # the caller's trace is continued
    assert attempt.parent_span_id == server_span.span_id
    a = _attrs(server_span)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "m-a"
    assert a["gen_ai.provider.name"] == "fake-openai" and a["gen_ai.response.model"] == "m-a"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"])  # what the client was told
    assert a["interlock.cost_usd"] > 0 and a["interlock.route.rule"] == "default" and a["interlock.fallback"] is False
    assert a["interlock.request_id"] == request_id and a["http.response.status_code"] == 200
    b = _attrs(attempt)
    assert b["gen_ai.provider.name"] == "fake-openai" and b["gen_ai.request.model"] == "upstream-a"
    assert b["interlock.deployment"] and b["http.response.status_code"] == 200 and b["interlock.attempt"] == 0
    assert server_span.start_time_unix_nano <= attempt.start_time_unix_nano <= attempt.end_time_unix_nano \
        <= server_span.end_time_unix_nano
    # the unsampled caller's request left no span; nothing carries the key's secret
    assert not [s for s in spans if s.trace_id.hex() == "1" * 32]
    assert all(key["secret"] not in str(_attrs(s)) for s in spans)
