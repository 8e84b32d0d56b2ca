"""OpenTelemetry traces of proxied requests, following the GenAI semantic conventions; off by default.

Off: nothing is imported and the proxy's one `if self._tracing is not None` is the whole cost. On: a head
sampling decision per request (an incoming W3C `traceparent` decides for its trace: sampled flag set =
recorded, so a caller's trace is continued; otherwise a `sample` fraction of requests), then, for sampled
requests only, spans are built from the finished RequestRecord and exported in batches over OTLP/gRPC by the
official opentelemetry-sdk exporter:

    SERVER span  "{gen_ai.operation.name} {requested model}"   the request as the client saw it
      CLIENT span per upstream attempt "{operation} {upstream model}"  provider, deployment, status, error,
                                                                     fallback (attempt index > 0)

Attempt spans are laid end to end from their measured durations, ending when the response began
(the gateway times attempts, not their start instants). No content, headers, tags or secrets are recorded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dataplane.observe.metrics import genai_operation
from dataplane.usage.event import RequestRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the OpenTelemetry SDK is not installed."""


_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class Tracing:
    def __init__(self, *, sample: float, node_id: str, exporter: SpanExporter | None = None, endpoint: str = "",
                 rng: random.Random | None = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import ReadableSpan
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        except ImportError as exc:
            raise TracingUnavailable("INTERLOCK_TRACE_SAMPLE > 0 needs the OpenTelemetry SDK: "
                                     "pip install 'interlock-gateway[tracing]'") from exc

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint or None, insecure=endpoint.startswith("http://"))
        self._sample = sample
        self._rng = rng or random.Random()
        self._resource = Resource.create({"service.name": "interlock-dataplane", "service.instance.id": node_id})
        self._scope = InstrumentationScope("interlock.dataplane")
        # The spans of a request are made when it is over, from measured times: built finished (ReadableSpan)
        # and handed to the SDK's batch processor and OTLP exporter, without the live-span machinery (context,
        # sampler, attribute validation, locks) that would cost several times more per sampled request.
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=1000)
        self._span = ReadableSpan
        self._ctx = SpanContext
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = lambda why: Status(StatusCode.ERROR, why)

    def done(self, rec: RequestRecord, headers: Mapping[str, str]) -> None:
        """Per request: decide (cheap, nothing built), and for a sampled request emit its spans."""
        tp = headers.get("traceparent")
        if tp is not None:
            m = _TRACEPARENT.match(tp.strip().lower())
            if m is not None:
                if int(m.group(3), 16) & 1:  # the caller's trace is sampled: continue it
                    self._emit(rec, (int(m.group(1), 16), int(m.group(2), 16)))
                return
        if self._sample >= 1.0 or self._rng.random() < self._sample:
            self._emit(rec, None)

    def _emit(self, rec: RequestRecord, parent: tuple[int, int] | None) -> None:
        rand = self._rng.getrandbits
        trace_id = parent[0] if parent is not None else (rand(128) or 1)
        parent_ctx = self._ctx(parent[0], parent[1], True, self._sampled) if parent is not None else None
        server_ctx = self._ctx(trace_id, rand(64) or 1, False, self._sampled)
        op = genai_operation(rec.endpoint)
        ns = 1_000_000_000
        start, end = int(rec.received_s * ns), int((rec.done_s or rec.received_s) * ns)
        u = rec.usage
        cost = rec.cost_pico / 1e12
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op, "gen_ai.request.model": rec.requested_model[:200],
            "gen_ai.response.model": rec.model, "gen_ai.provider.name": rec.provider,
            "gen_ai.usage.input_tokens": u.input_tokens, "gen_ai.usage.output_tokens": u.output_tokens,
            "http.request.method": "POST", "url.path": rec.endpoint, "http.response.status_code": rec.status,
            "interlock.request_id": rec.event_id, "interlock.dialect": rec.dialect,
            "interlock.route.rule": rec.route_rule, "interlock.attempts": len(rec.attempts),
            "interlock.fallback": len(rec.attempts) > 1, "interlock.cost_usd": cost,
            "interlock.stream": rec.stream, "interlock.policy_version": rec.policy_version,
        }
        if rec.key is not None:
            attrs["interlock.key_id"] = rec.key.id
            attrs["interlock.team"] = rec.key.team_id
        if rec.error_class:
            attrs["error.type"] = rec.error_class
        spans = []
        t = int((rec.first_byte_s or rec.done_s or rec.received_s) * ns)
        starts = []
        for a in reversed(rec.attempts):  # end to end, the last one ending when the response began
            t -= a.latency_ms * 1_000_000
            starts.append(max(start, t))
        starts.reverse()
        last = len(rec.attempts) - 1
        for i, (a, s) in enumerate(zip(rec.attempts, starts, strict=True)):
            a_attrs: dict[str, Any] = {
                "gen_ai.operation.name": op, "gen_ai.provider.name": a.provider,
                "gen_ai.request.model": a.upstream_model, "interlock.deployment": a.deployment,
                "http.response.status_code": a.status, "interlock.attempt": i, "interlock.fallback": i > 0,
            }
            if a.error_class:
                a_attrs["error.type"] = a.error_class
            if i == last and not a.error_class:
                a_attrs.update({"gen_ai.response.model": a.upstream_model, "gen_ai.usage.input_tokens": u.input_tokens,
                                "gen_ai.usage.output_tokens": u.output_tokens, "interlock.cost_usd": cost})
            spans.append(self._finished(
                f"{op} {a.upstream_model}", self._ctx(trace_id, rand(64) or 1, False, self._sampled), server_ctx,
                self._client, a_attrs, s, min(end, s + a.latency_ms * 1_000_000) if a.latency_ms else s,
                a.error_class))
        spans.append(self._finished(f"{op} {rec.requested_model[:200]}", server_ctx, parent_ctx, self._server, attrs,
                                    start, end, rec.error_class or "error" if rec.status >= 500 or rec.status == 0
                                    else ""))
        for span in spans:
            self._processor.on_end(span)

    def _finished(self, name: str, ctx: Any, parent: Any, kind: Any, attrs: dict[str, Any], start: int, end: int,
                  error: str) -> Any:
        kw: dict[str, Any] = {"status": self._error(error)} if error else {}
        return self._span(name, context=ctx, parent=parent, resource=self._resource, attributes=attrs, kind=kind,
                          instrumentation_scope=self._scope, start_time=start, end_time=end, **kw)

    def shutdown(self) -> None:
        self._processor.shutdown()  # flushes what is batched
