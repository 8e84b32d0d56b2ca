"""Anthropic dialect (messages, count_tokens): endpoints, errors, usage, stream usage, model list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .base import EndpointSpec, ErrorKind, ModelInBody, Models, Usage
from .listing import anthropic_list, anthropic_model
from .rate_headers import anthropic_headers
from .sse import SSEScanner, usage_events, write_typed
from .usage_fields import merge_anthropic as _merge

_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMIT: "rate_limit_error",
    ErrorKind.BUDGET: "billing_error",
    ErrorKind.UPSTREAM: "api_error",
    ErrorKind.OVERLOADED: "overloaded_error",
    ErrorKind.TIMEOUT: "timeout_error",
    ErrorKind.UNAVAILABLE: "api_error",
    ErrorKind.INTERNAL: "api_error",
}


class AnthropicStreamScanner(SSEScanner):
    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        done = self._sse.complete(chunk)
        if done:
            for _start, _end, payload in usage_events(done):
                u = payload.get("usage")
                if u is None and isinstance(payload.get("message"), dict):
                    u = payload["message"].get("usage")
                if isinstance(u, dict):
                    _merge(self.usage, u)
                    # message_start's usage is provisional (output_tokens: 1); message_delta's is final
                    if payload.get("type") == "message_delta":
                        self.usage.reported = True
        return chunk


_ENDPOINTS = (EndpointSpec("POST", "/v1/messages", "messages"),
              EndpointSpec("POST", "/v1/messages/count_tokens", "count_tokens"))


class AnthropicDialect(ModelInBody):
    __slots__ = ()
    name = family = "anthropic"
    models_paths: tuple[str, ...] = ("/v1/models",)

    def endpoints(self) -> Sequence[EndpointSpec]:
        return _ENDPOINTS

    def claims(self, path: str, headers: Mapping[str, str] | None, query: str) -> bool:
        # Anthropic SDKs always send anthropic-version; OpenAI's share /v1/models
        return path.startswith("/v1/messages") or (headers is not None and "anthropic-version" in headers)

    write_events = staticmethod(write_typed)  # the writer itself: no extra call per translated chunk

    def model_entry(self, name: str, owner: str) -> dict[str, Any]:
        return anthropic_model(name, owner)

    def model_list(self, models: Models) -> bytes:
        return anthropic_list(models)

    def rate_limit_headers(self, dim: str, limit: int, remaining: int, reset_ms: int,
                           wait_s: float) -> list[tuple[str, str]]:
        return anthropic_headers(dim, limit, remaining, reset_ms, wait_s)

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": _TYPES.get(kind, "api_error"), "message": message}})

    def stream_error_event(self, kind: str, message: str) -> bytes:
        return b"event: error\ndata: " + self.error_body(0, kind, message) + b"\n\n"

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        usage = Usage()
        u = body.get("usage")
        if isinstance(u, dict):
            _merge(usage, u)
            usage.reported = True
        return usage

    def stream_scanner(self, strip_usage: bool = False) -> AnthropicStreamScanner:
        return AnthropicStreamScanner()  # Anthropic always reports usage in-stream; nothing is injected

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        v = body.get("max_tokens")
        return v if isinstance(v, int) else None
