"""Gemini dialect (generateContent / streamGenerateContent / countTokens): model in the URL,
Google error JSON, usageMetadata.

Usage: promptTokenCount includes cachedContentTokenCount (a subset, as in our Usage);
candidatesTokenCount excludes thoughtsTokenCount, which we add to the output (Google bills
thinking as output) and also report as reasoning. Stream chunks (alt=sse, CRLF-framed) each
carry cumulative usageMetadata; the chunk with a finishReason has the final figures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .base import ClientAPI, EndpointSpec, ErrorKind, Models, Usage
from .listing import gemini_list, gemini_model
from .rate_headers import openai_headers
from .sse import SSEScanner, usage_events, write_crlf
from .usage_fields import from_gemini

# google-genai >= 3 defaults to v1, older SDKs and Gemini CLI to v1beta; POST /v1/models/{m}:{method}
# cannot be an OpenAI path (those have no ':' method suffix), so both are served.
MODEL_PREFIXES = ("/v1beta/models/", "/v1/models/")
STREAM_METHOD = "streamGenerateContent"
_OPERATIONS = {"generateContent": "generate", STREAM_METHOD: "generate", "countTokens": "count_tokens"}
_METHOD_SUFFIXES = tuple(f":{m}" for m in _OPERATIONS)
_USAGE_META = re.compile(rb'"usageMetadata"\s*:\s*\{')

# kind -> (google.rpc status, the HTTP code Google pairs it with: used where no status is given)
_STATUS = {
    ErrorKind.INVALID_REQUEST: ("INVALID_ARGUMENT", 400),
    ErrorKind.AUTHENTICATION: ("UNAUTHENTICATED", 401),
    ErrorKind.PERMISSION: ("PERMISSION_DENIED", 403),
    ErrorKind.NOT_FOUND: ("NOT_FOUND", 404),
    ErrorKind.TOO_LARGE: ("INVALID_ARGUMENT", 413),
    ErrorKind.RATE_LIMIT: ("RESOURCE_EXHAUSTED", 429),
    ErrorKind.BUDGET: ("RESOURCE_EXHAUSTED", 402),  # a spend cap: Google reports quota as RESOURCE_EXHAUSTED
    ErrorKind.BUDGET: ("RESOURCE_EXHAUSTED", 429),  # Google's status for an exhausted quota; the HTTP code stays 402
    ErrorKind.BUDGET: ("RESOURCE_EXHAUSTED", 402),  # a spend cap: Google reports quota as RESOURCE_EXHAUSTED
    ErrorKind.UPSTREAM: ("INTERNAL", 500),
    ErrorKind.OVERLOADED: ("UNAVAILABLE", 503),
    ErrorKind.TIMEOUT: ("DEADLINE_EXCEEDED", 504),
    ErrorKind.UNAVAILABLE: ("UNAVAILABLE", 503),
    ErrorKind.INTERNAL: ("INTERNAL", 500),
}


def split_target(path: str) -> tuple[str, str]:
    """'/v1beta/models/gemini-2.5-pro:generateContent' -> ('gemini-2.5-pro', 'generateContent')."""
    for prefix in MODEL_PREFIXES:
        if path.startswith(prefix):
            model, _, method = path[len(prefix):].rpartition(":")
            return model, method
    return "", ""


def usage_from_meta(meta: Any) -> Usage:
    return from_gemini(meta)


def _finished(payload: dict[str, Any]) -> bool:
    cands = payload.get("candidates")
    return isinstance(cands, list) and any(isinstance(c, dict) and c.get("finishReason") for c in cands)


class GeminiStreamScanner(SSEScanner):
    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        # Scan an LF-only copy (Google frames events with CRLF; JSON never holds a raw CR); forward as is.
        done = self._sse.complete(chunk.replace(b"\r", b""))
        if done:
            for _start, _end, payload in usage_events(done, _USAGE_META):
                usage = usage_from_meta(payload.get("usageMetadata"))
                usage.reported = _finished(payload)  # earlier chunks' counts are running totals
                self.usage = usage
        return chunk


class GeminiDialect(ClientAPI):
    """The model is in the path: /v1beta/models/{model}:{method}; EndpointSpec.path is that template."""

    __slots__ = ("_by_target", "_endpoints")
    name = family = "gemini"
    key_in_query = True  # Google's API takes ?key=
    models_paths: tuple[str, ...] = ("/v1/models", "/v1beta/models")

    def __init__(self) -> None:
        self._by_target = {(prefix, m): EndpointSpec("POST", f"{prefix}{{model}}:{m}", op)
                           for prefix in MODEL_PREFIXES for m, op in _OPERATIONS.items()}
        self._endpoints = tuple(self._by_target.values())

    def endpoints(self) -> Sequence[EndpointSpec]:
        return self._endpoints

    def match(self, method: str, path: str) -> EndpointSpec | None:
        if method == "POST":
            for prefix in MODEL_PREFIXES:
                if path.startswith(prefix):
                    return self._by_target.get((prefix, split_target(path)[1]))
        return None

    def claims(self, path: str, headers: Mapping[str, str] | None, query: str) -> bool:
        return path.startswith("/v1beta/") or (path.startswith("/v1/models/") and path.endswith(_METHOD_SUFFIXES)) or (
            headers is not None and "authorization" not in headers
            and ("x-goog-api-key" in headers or "key=" in query))

    def reject(self, path: str, query: str) -> str | None:
        if split_target(path)[1] == STREAM_METHOD and "alt=sse" not in query.split("&"):
            # Without alt=sse Google streams one JSON array; the gateway relays and meters SSE only.
            return "streamGenerateContent is served as server-sent events only: add ?alt=sse (the Google SDKs do)"
        return None

    def unknown_method(self, method: str, path: str) -> str | None:
        if method == "POST" and (target := split_target(path)[1]):
            return (f"the Gemini method {target!r} is not served by this gateway "
                    f"(served: generateContent, {STREAM_METHOD}, countTokens)")
        return None

    write_events = staticmethod(write_crlf)  # the writer itself: no extra call per translated chunk

    def model_entry(self, name: str, owner: str) -> dict[str, Any]:
        return gemini_model(name, owner)

    def model_list(self, models: Models) -> bytes:
        return gemini_list(models)

    def rate_limit_headers(self, dim: str, limit: int, remaining: int, reset_ms: int,
                           wait_s: float) -> list[tuple[str, str]]:
        return openai_headers(dim, limit, remaining, reset_ms, wait_s)  # Google SDKs read none; OpenAI's are known

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        return split_target(path)[0] or None

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool:
        return split_target(path)[1] == STREAM_METHOD

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        name, code = _STATUS.get(kind, ("INTERNAL", 500))
        return orjson.dumps({"error": {"code": status or code, "message": message, "status": name}})

    def stream_error_event(self, kind: str, message: str) -> bytes:
        return b"data: " + self.error_body(0, kind, message) + b"\r\n\r\n"

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        return usage_from_meta(body.get("usageMetadata"))

    def stream_scanner(self, strip_usage: bool = False) -> GeminiStreamScanner:
        return GeminiStreamScanner()  # every chunk reports usage; nothing is injected

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        config = body.get("generationConfig")
        v = config.get("maxOutputTokens") if isinstance(config, dict) else None
        return v if isinstance(v, int) else None
