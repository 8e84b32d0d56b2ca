"""The data plane's Prometheus series, recorded once per request from the finished RequestRecord.

Names follow the OpenTelemetry GenAI semantic conventions where they exist (gen_ai.client.token.usage,
gen_ai.client.operation.duration, gen_ai.client.operation.time_to_first_chunk, dots become underscores),
interlock_* otherwise. Labels come from bounded sets only: dialect, endpoint template, the policy's model,
provider and deployment names, status classes and error classes. Key ids and tags never become labels.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from dataplane.usage.event import RequestRecord
from interlock_contracts.metrics.exposition import DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS, Labels, Registry

MAX_SHAPES = 4096
_STATUS_CLASS = ("error", "1xx", "2xx", "3xx", "4xx", "5xx")
# OTel gen_ai.operation.name per endpoint path (dataplane/pipeline/router.py); Gemini's are templates ending in the method
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
    """Per-request series. record() is a handful of dict updates, no allocation beyond the label tuples."""

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
        self._shapes: dict[tuple[str, str, str, str, int, str, bool], _Shape] = {}
        self._attempt_rows: dict[Labels, list[float]] = {}

    def _shape(self, key: tuple[str, str, str, str, int, str, bool]) -> _Shape:
        dialect, endpoint, model, provider, status, error_class, stream = key
        cls = status_class(status)
        op = genai_operation(endpoint)
        sh = _Shape()
        sh.requests = self.requests.row((dialect, endpoint, model, cls))
        sh.duration = self.duration.row((dialect, endpoint, cls))
        sh.ttfb = self.ttfb.row((dialect, endpoint))
        sh.disconnects = self.disconnects.row((dialect,))
        sh.genai = (op, provider, model)
        sh.error_class = error_class
        sh.stream = stream
        if len(self._shapes) < MAX_SHAPES:  # statuses are the only open-ended part of the key
            self._shapes[key] = sh
        return sh

    def _genai(self, sh: _Shape) -> _GenAI:
        op, provider, model = sh.genai
        g = _GenAI()
        g.op_duration = self.op_duration.row((op, provider, model, sh.error_class))
        g.first_chunk = self.first_chunk.row((op, provider, model)) if sh.stream else None
        g.tok_in = self.token_usage.row((op, provider, model, "input"))
        g.tok_out = self.token_usage.row((op, provider, model, "output"))
        g.tokens = tuple(self.tokens.row((provider, model, t)) for t in ("input", "output", "cached_input", "reasoning"))
        g.cost = self.cost.row((provider, model))
        g.fallbacks = self.fallbacks.row((model,))
        sh.g = g
        return g

    def record_batch(self, recs: Iterable[RequestRecord]) -> None:
        """Finished requests, in a batch (dataplane/observe/node.py says why)."""
        record = self.record
        for rec in recs:
            record(rec)

    def record(self, rec: RequestRecord) -> None:
        """One request: one dict lookup for the request's shape, then in-place adds to cached rows."""
        key = (rec.dialect, rec.endpoint, rec.model, rec.provider, rec.status, rec.error_class, rec.stream)
        sh = self._shapes.get(key) or self._shape(key)
        sh.requests[0] += 1
        received = rec.received_s
        elapsed = rec.done_s - received
        row = sh.duration
        di = bisect_left(DURATION_BUCKETS, elapsed)  # reused: the GenAI duration has the same buckets
        row[di] += 1
        row[-1] += elapsed
        fb = rec.first_byte_s
        ti = 0
        if fb:
            row = sh.ttfb
            ti = bisect_left(TTFT_BUCKETS, fb - received)
            row[ti] += 1
            row[-1] += fb - received
        if rec.client_disconnected:
            sh.disconnects[0] += 1
        attempts = rec.attempts
        if not attempts:
            return  # refused before any upstream call: no GenAI operation took place
        for a in attempts:
            akey = (a.provider, a.deployment, a.error_class or "ok")
            cell = self._attempt_rows.get(akey)
            if cell is None:
                cell = self._attempt_rows[akey] = self.attempts.row(akey)
            cell[0] += 1
        g = sh.g or self._genai(sh)
        if len(attempts) > 1:
            g.fallbacks[0] += 1
        row = g.op_duration
        row[di] += 1
        row[-1] += elapsed
        if g.first_chunk is not None and fb:
            row = g.first_chunk
            row[ti] += 1
            row[-1] += fb - received
        u = rec.usage
        n = u.input_tokens
        if n:
            row = g.tok_in
            row[bisect_left(TOKEN_BUCKETS, n)] += 1
            row[-1] += n
            g.tokens[0][0] += n
        n = u.output_tokens
        if n:
            row = g.tok_out
            row[bisect_left(TOKEN_BUCKETS, n)] += 1
            row[-1] += n
            g.tokens[1][0] += n
        if u.cached_input_tokens:
            g.tokens[2][0] += u.cached_input_tokens
        if u.reasoning_tokens:
            g.tokens[3][0] += u.reasoning_tokens
        if rec.cost_pico:
            g.cost[0] += rec.cost_pico / 1e12


class _GenAI:
    """Rows of the GenAI series for one (operation, provider, model, error type); made on the first attempt."""

    __slots__ = ("cost", "fallbacks", "first_chunk", "op_duration", "tok_in", "tok_out", "tokens")

    op_duration: list[float]
    first_chunk: list[float] | None
    tok_in: list[float]
    tok_out: list[float]
    tokens: tuple[list[float], ...]
    cost: list[float]
    fallbacks: list[float]


class _Shape:
    """Every series row one kind of request (same labels, status, error class and streaming) adds to."""

    __slots__ = ("disconnects", "duration", "error_class", "g", "genai", "requests", "stream", "ttfb")

    def __init__(self) -> None:
        self.g: _GenAI | None = None

    requests: list[float]
    duration: list[float]
    ttfb: list[float]
    disconnects: list[float]
    genai: tuple[str, str, str]
    error_class: str
    stream: bool


def states(items: Callable[[], Iterable[tuple[str, str]]]) -> Callable[[], Iterable[tuple[Labels, float]]]:
    """An enum gauge: one series per (name, state), 1 for the current state, 0 for the others."""
    def collect() -> Iterable[tuple[Labels, float]]:
        for name, current in items():
            for s in ("closed", "half_open", "open"):
                yield (name, s), float(s == current)
    return collect
