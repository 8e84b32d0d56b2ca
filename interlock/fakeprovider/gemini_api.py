"""Gemini generateContent dialect (pure): request parsing and response rendering.

Streaming chunks carry cumulative usageMetadata (as the real API does); the last
chunk has the final counts and the finishReason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .model import Reply, RequestError, Turn, default_message
from .sse import data_event

NAME = "gemini"
STREAM_CONTENT_TYPE = "text/event-stream"


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("x-goog-api-key", "").strip() or query.get("key", "").strip() or None


def parts_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def parse_generate(body: Any, *, model: str, stream: bool, sse: bool = True) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Invalid JSON payload received: expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        raise RequestError("* GenerateContentRequest.contents: contents is not specified", "contents")
    system = body.get("systemInstruction") or body.get("system_instruction")
    texts = ([parts_text(system)] if system else []) + [parts_text(c) for c in contents]
    users = [c for c in contents if c.get("role", "user") == "user"]
    config = body.get("generationConfig") or body.get("generation_config") or {}
    max_tokens = config.get("maxOutputTokens", config.get("max_output_tokens")) if isinstance(config, dict) else None
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError("generationConfig.maxOutputTokens must be a positive integer", "generationConfig")
    return Turn(
        model=model,
        stream=stream,
        input_text="\n".join(texts),
        prompt=parts_text(users[-1]) if users else "",
        max_tokens=max_tokens,
        sse=sse,
    )


def usage(reply: Reply, output_tokens: int | None = None) -> dict[str, Any]:
    out = reply.output_tokens if output_tokens is None else output_tokens
    meta = {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": reply.input_tokens + out,
    }
    if reply.cached_tokens:
        meta["cachedContentTokenCount"] = reply.cached_tokens  # a subset of promptTokenCount
    return meta


def _candidate(text: str, finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return cand


def finish_reason(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.truncated else "STOP"


def response(turn: Turn, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    return {
        "candidates": [_candidate(reply.text, finish_reason(reply))],
        "usageMetadata": usage(reply),
        "modelVersion": turn.model,
        "responseId": rid,
    }


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    last = len(reply.chunks) - 1
    payloads = [
        {
            "candidates": [_candidate(text, finish_reason(reply) if i == last else None)],
            "usageMetadata": usage(reply, i + 1),
            "modelVersion": turn.model,
            "responseId": rid,
        }
        for i, text in enumerate(reply.chunks)
    ]
    if turn.sse:
        return [data_event(p, b"\r\n") for p in payloads]
    # Without alt=sse the API streams one JSON array, element by element.
    pieces = [(b"[" if i == 0 else b",\r\n") + orjson.dumps(p) for i, p in enumerate(payloads)]
    return [*pieces, b"]"]


_ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    name = _ERROR_STATUS.get(status, "UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message or default_message(status), "status": name}}
