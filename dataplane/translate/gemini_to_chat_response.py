"""Gemini GenerateContentResponse (response and SSE stream) -> OpenAI chat.completion(.chunk). Pure.

`thought` parts are dropped (chat has no place for them); a functionCall's thought signature rides
in the tool call id (see chat_to_gemini_request). Calls without an id get `call_<n>`. Usage:
completion_tokens = candidates + thoughts (OpenAI counts reasoning as output), reasoning_tokens =
thoughts, cached_tokens = cachedContentTokenCount.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.dialects.usage_fields import from_gemini, to_openai_chat

from .base import DONE, Event, Params, stream_error_message
from .chat_to_gemini_request import pack_id

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter"}


def chat_usage(meta: Any) -> dict[str, Any]:
    return to_openai_chat(from_gemini(meta))


class _Parts:
    """Splits candidate parts into answer text and tool calls, numbering calls across chunks."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def split(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
        cands = body.get("candidates") or [{}]
        cand = cands[0] if isinstance(cands[0], dict) else {}
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (cand.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict) or part.get("thought"):
                continue
            fc = part.get("functionCall")
            if isinstance(fc, dict):
                self.calls += 1
                call_id = pack_id(fc.get("id") or f"call_{self.calls}", part.get("thoughtSignature"))
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": fc.get("name"), "arguments": orjson.dumps(fc.get("args") or {}).decode()}})
            elif isinstance(part.get("text"), str):
                text.append(part["text"])
        reason = cand.get("finishReason")
        if reason is None and (body.get("promptFeedback") or {}).get("blockReason"):
            reason = "SAFETY"  # the prompt itself was blocked: no candidates at all
        return "".join(text), calls, reason


def _finish(reason: str | None, had_calls: bool) -> str:
    mapped = FINISH.get(reason or "STOP", "stop")
    return "tool_calls" if had_calls and mapped == "stop" else mapped


def translate_response(body: dict[str, Any], p: Params) -> dict[str, Any]:
    text, calls, reason = _Parts().split(body)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{body.get('responseId') or 'interlock'}", "object": "chat.completion", "created": p.created,
        "model": p.client_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reason, bool(calls))}],
        "usage": chat_usage(body.get("usageMetadata")),
    }


class GeminiToChatStream:
    """Gemini chunks -> chat chunks: role chunk, content deltas, each functionCall as one complete
    tool_calls delta, then on finishReason the finish chunk, the usage chunk (if asked) and [DONE]."""

    __slots__ = ("_base", "_done", "_include_usage", "_meta", "_parts", "_started")

    def __init__(self, p: Params, include_usage: bool) -> None:
        self._base: dict[str, Any] = {"id": "chatcmpl-interlock", "object": "chat.completion.chunk",
                                      "created": p.created, "model": p.client_model}
        if include_usage:
            self._base["usage"] = None
        self._include_usage = include_usage
        self._parts = _Parts()
        self._meta: Any = None
        self._started = False
        self._done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Event:
        return None, {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, name: str | None, data: Any) -> list[Event]:
        if self._done or data is DONE or not isinstance(data, dict):
            return []
        if "error" in data and "candidates" not in data:
            self._done = True
            message = stream_error_message(data)
            return [(None, {"error": {"message": message, "type": "api_error", "param": None, "code": None}})]
        out: list[Event] = []
        if not self._started:
            self._started = True
            if data.get("responseId"):
                self._base["id"] = f"chatcmpl-{data['responseId']}"
            out.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))
        first_call = self._parts.calls
        text, calls, reason = self._parts.split(data)
        if text:
            out.append(self._chunk({"content": text}))
        for k, call in enumerate(calls):
            out.append(self._chunk({"tool_calls": [{"index": first_call + k, **call}]}))
        if data.get("usageMetadata"):
            self._meta = data["usageMetadata"]  # cumulative: the last one is final
        if reason:
            self._done = True
            out.append(self._chunk({}, _finish(reason, self._parts.calls > 0)))
            if self._include_usage:
                out.append((None, {**self._base, "choices": [], "usage": chat_usage(self._meta)}))
            out.append((None, DONE))
        return out
