"""OpenAI dialect (chat completions, embeddings): endpoints, errors, usage, stream usage, model list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .base import EndpointSpec, ErrorKind, ModelInBody, Models, Usage
from .listing import openai_list, openai_model
from .rate_headers import openai_headers
from .sse import SSEScanner, cut, usage_events, write_data
from .usage_fields import CHAT_FIELDS, from_openai

_TYPES = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: ("invalid_request_error", "model_not_allowed"),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.TOO_LARGE: ("invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMIT: ("rate_limit_exceeded", "rate_limit_exceeded"),
    ErrorKind.BUDGET: ("insufficient_quota", "budget_exceeded"),
    ErrorKind.UPSTREAM: ("api_error", "upstream_error"),
    ErrorKind.OVERLOADED: ("api_error", "overloaded"),
    ErrorKind.TIMEOUT: ("api_error", "upstream_timeout"),
    ErrorKind.UNAVAILABLE: ("api_error", "gateway_unavailable"),
    ErrorKind.INTERNAL: ("api_error", "internal_error"),
}


CHAT_USAGE_FIELDS = CHAT_FIELDS


def usage_from_obj(u: Any, fields: tuple[str, str, str, str] = CHAT_FIELDS) -> Usage:
    return from_openai(u, fields)


class OpenAIStreamScanner(SSEScanner):
    __slots__ = ("_strip",)

    def __init__(self, strip_usage: bool = False) -> None:
        super().__init__()
        self._strip = strip_usage

    def feed(self, chunk: bytes) -> bytes:
        done = self._sse.complete(chunk)
        if not done:
            return b"" if self._strip else chunk
        hidden: list[tuple[int, int]] = []
        for start, end, payload in usage_events(done):
            self.usage = usage_from_obj(payload.get("usage"))
            if self._strip and payload.get("choices") == []:
                hidden.append((start, end))
        if not self._strip:
            return chunk
        # Event-aligned forwarding in this mode: the usage-only chunk is cut out whole.
        return cut(done, hidden) if hidden else done


_ENDPOINTS = (EndpointSpec("POST", "/v1/chat/completions", "chat"), EndpointSpec("POST", "/v1/embeddings", "embeddings"))


class OpenAIAPI(ModelInBody):
    """What both OpenAI dialects (chat completions, Responses) share: the family, error JSON, model list and
    rate-limit headers."""

    __slots__ = ()
    family = "openai"

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        etype, code = _TYPES.get(kind, ("api_error", None))
        return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})

    def model_entry(self, name: str, owner: str) -> dict[str, Any]:
        return openai_model(name, owner)

    def model_list(self, models: Models) -> bytes:
        return openai_list(models)

    def rate_limit_headers(self, dim: str, limit: int, remaining: int, reset_ms: int,
                           wait_s: float) -> list[tuple[str, str]]:
        return openai_headers(dim, limit, remaining, reset_ms, wait_s)


class OpenAIDialect(OpenAIAPI):
    __slots__ = ()
    name = "openai"
    models_paths: tuple[str, ...] = ("/v1/models",)

    def endpoints(self) -> Sequence[EndpointSpec]:
        return _ENDPOINTS

    write_events = staticmethod(write_data)  # the writer itself: no extra call per translated chunk

    def stream_error_event(self, kind: str, message: str) -> bytes:
        return b"data: " + self.error_body(0, kind, message) + b"\n\n"

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        return usage_from_obj(body.get("usage"))

    def stream_scanner(self, strip_usage: bool = False) -> OpenAIStreamScanner:
        return OpenAIStreamScanner(strip_usage)

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        v = body.get("max_completion_tokens") or body.get("max_tokens")
        return v if isinstance(v, int) else None
