"""The data plane's Prometheus series, recorded once per request from the finished RequestRecord.

Names follow the OpenTelemetry GenAI semantic conventions where they exist (gen_ai.client.token.usage,
gen_ai.client.operation.duration, gen_ai.client.operation.time_to_first_chunk, dots become underscores),
interlock_* otherwise. Labels come from bounded sets only: dialect, endpoint template, the policy's model,
provider and deployment names, status classes and error classes. Key ids and tags never become labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dataplane.usage_event import RequestRecord
from interlock.metrics.exposition import DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS, Labels, Registry

_STATUS_CLASS = ("error", "1xx", "2xx", "3xx", "4xx", "5xx")
# OTel gen_ai.operation.name per endpoint path (dataplane/router.py); Gemini's are templates ending in the method
_OPERATIONS = (("/v1/embeddings", "embeddings"), ("count_tokens", "count_tokens"), (":countTokens", "count_tokens"),
               ("GenerateContent", "generate_content"), (":generateContent", "generate_content"))


def genai_operation(endpoint: str) -> str:
    for suffix, op in _OPERATIONS:
        if endpoint.endswith(suffix):
            return op
    return "chat"


def status_class(status: int) -> str:
    i = status // 100
    return _STATUS_CLASS[i] if 0 < i < 6 else "error"


class RequestMetrics:
    """Per-request series. record() is on the request path: a handful of dict updates, no allocation beyond
    the label tuples."""

    def __init__(self, reg: Registry) -> None:
        self.requests = reg.counter("interlock_requests", "Proxied requests by dialect, endpoint, served model and "
                                    "status class.", ("dialect", "endpoint", "model", "status_class"))
        self.duration = reg.histogram("interlock_request_duration_seconds", "Time from request received to last "
                                      "byte sent, per dialect, endpoint and status class.",
                                      ("dialect", "endpoint", "status_class"), DURATION_BUCKETS)
        self.ttfb = reg.histogram("interlock_request_ttfb_seconds", "Time from request received to the first "
                                  "response byte, per dialect and endpoint.", ("dialect", "endpoint"), TTFT_BUCKETS)
        self.op_duration = reg.histogram(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration (OTel gen_ai.client.operation."
            "duration) as the gateway saw it, per operation, provider, model and error type.",
            ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"), DURATION_BUCKETS)
        self.first_chunk = reg.histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds", "Streaming only: time to the first chunk (OTel "
            "gen_ai.client.operation.time_to_first_chunk).",
            ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"), TTFT_BUCKETS)
        self.token_usage = reg.histogram(
            "gen_ai_client_token_usage", "Tokens per request (OTel gen_ai.client.token.usage), by token type.",
            ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"),
            TOKEN_BUCKETS)
        self.tokens = reg.counter("interlock_tokens", "Tokens billed, by provider, model and type (input, output, "
                                  "cached_input, reasoning).", ("provider", "model", "type"))
        self.cost = reg.counter("interlock_cost_usd", "Cost billed in USD, by provider and model.",
                                ("provider", "model"))
        self.attempts = reg.counter("interlock_upstream_attempts", "Upstream attempts by provider, deployment and "
                                    "outcome (ok or the error class).", ("provider", "deployment", "outcome"))
        self.fallbacks = reg.counter("interlock_fallbacks", "Requests that needed more than one upstream attempt "
                                     "(retry or fallback), by requested model's served model.", ("model",))
        self.disconnects = reg.counter("interlock_client_disconnects", "Requests the client abandoned before the "
                                       "end, by dialect.", ("dialect",))
        self._ops: dict[str, str] = {}

    def record(self, rec: RequestRecord) -> None:
        cls = status_class(rec.status)
        dialect, endpoint, model, provider = rec.dialect, rec.endpoint, rec.model, rec.provider
        self.requests.inc((dialect, endpoint, model, cls))
        received = rec.received_s
        elapsed = rec.done_s - received
        self.duration.observe((dialect, endpoint, cls), elapsed)
        if rec.first_byte_s:
            self.ttfb.observe((dialect, endpoint), rec.first_byte_s - received)
        if rec.client_disconnected:
            self.disconnects.inc((dialect,))
        attempts = rec.attempts
        if not attempts:
            return  # refused before any upstream call: no GenAI operation took place
        for a in attempts:
            self.attempts.inc((a.provider, a.deployment, a.error_class or "ok"))
        if len(attempts) > 1:
            self.fallbacks.inc((model,))
        op = self._ops.get(endpoint)
        if op is None:
            op = self._ops[endpoint] = genai_operation(endpoint)
        self.op_duration.observe((op, provider, model, rec.error_class), elapsed)
        if rec.stream and rec.first_byte_s:
            self.first_chunk.observe((op, provider, model), rec.first_byte_s - received)
        u = rec.usage
        if u.input_tokens:
            self.token_usage.observe((op, provider, model, "input"), u.input_tokens)
            self.tokens.inc((provider, model, "input"), u.input_tokens)
        if u.output_tokens:
            self.token_usage.observe((op, provider, model, "output"), u.output_tokens)
            self.tokens.inc((provider, model, "output"), u.output_tokens)
        if u.cached_input_tokens:
            self.tokens.inc((provider, model, "cached_input"), u.cached_input_tokens)
        if u.reasoning_tokens:
            self.tokens.inc((provider, model, "reasoning"), u.reasoning_tokens)
        if rec.cost_pico:
            self.cost.inc((provider, model), rec.cost_pico / 1e12)


def states(items: Callable[[], Iterable[tuple[str, str]]]) -> Callable[[], Iterable[tuple[Labels, float]]]:
    """An enum gauge: one series per (name, state), 1 for the current state, 0 for the others."""
    def collect() -> Iterable[tuple[Labels, float]]:
        for name, current in items():
            for s in ("closed", "half_open", "open"):
                yield (name, s), float(s == current)
    return collect
