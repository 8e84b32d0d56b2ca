"""OpenAI chat completion (response and SSE stream) -> Gemini GenerateContentResponse shapes. Pure.

Tool calls become functionCall parts with the provider's call id (Gemini clients send it back in
functionResponse.id). Gemini streams a functionCall whole, so streamed argument fragments are
collected and each call is sent complete when the model moves on or finishes. Reasoning tokens
the provider reports are `thoughtsTokenCount` (Gemini's candidatesTokenCount excludes them).
Dropped: reasoning text some OpenAI-compatible servers add, logprobs, choices beyond the first.
"""

from __future__ import annotations

from typing import Any

from dataplane.dialects.usage_fields import from_openai, to_gemini

from .base import ChatStreamTranslator, Event, Params
from .mapping import parse_arguments

FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "function_call": "STOP",
          "content_filter": "SAFETY"}


def usage_metadata(u: Any) -> dict[str, int]:
    return to_gemini(from_openai(u))


def _call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": name, "args": parse_arguments(arguments)}
    if call_id:
        fc["id"] = call_id
    return {"functionCall": fc}


def translate_response(body: dict[str, Any], p: Params) -> dict[str, Any]:
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    parts: list[dict[str, Any]] = []
    text = msg.get("content") or msg.get("refusal")
    if text:
        parts.append({"text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(_call_part(call.get("id"), fn.get("name"), fn.get("arguments")))
    return {
        "candidates": [{"content": {"role": "model", "parts": parts or [{"text": ""}]},
                        "finishReason": FINISH.get(choice.get("finish_reason") or "stop", "STOP"), "index": 0}],
        "usageMetadata": usage_metadata(body.get("usage")),
        "modelVersion": p.client_model,
        "responseId": body.get("id") or "interlock",
    }


class OpenAIToGeminiStream(ChatStreamTranslator):
    """OpenAI chunks -> Gemini stream chunks: a chunk per text delta, functionCall parts whole, and a
    last chunk with finishReason and usageMetadata once the provider's usage chunk (or [DONE]) arrives."""

    __slots__ = ("_calls", "_id", "_p")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._id = "interlock"
        self._calls: dict[int, list[Any]] = {}  # OpenAI tool index -> [id, name, argument fragments]
        self._finish = None
        self._usage = None
        self._usage_final = False
        self._done = False

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None, usage: Any = None) -> Event:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        out: dict[str, Any] = {"candidates": [cand]}
        if finish:
            out["usageMetadata"] = usage_metadata(usage)
        out["modelVersion"] = self._p.client_model
        out["responseId"] = self._id
        return None, out

    def _flush_calls(self) -> list[dict[str, Any]]:
        parts = [_call_part(c[0], c[1], "".join(c[2])) for _, c in sorted(self._calls.items())]
        self._calls.clear()
        return parts

    def _error_event(self, message: str) -> Event:
        return (None, {"error": {"code": 500, "message": message, "status": "INTERNAL"}})

    def _chunk_start(self, data: dict[str, Any]) -> list[Event]:
        if data.get("id"):
            self._id = data["id"]
        return []

    def _text(self, text: str) -> list[Event]:
        return [self._chunk([{"text": text}])]

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        idx = tc.get("index", 0)
        fn = tc.get("function") or {}
        slot = self._calls.get(idx)
        if slot is None or (tc.get("id") and tc["id"] != slot[0]):
            if slot is not None:  # a server reusing index 0 for the next parallel call
                out.append(self._chunk(self._flush_calls()))
            slot = self._calls[idx] = [tc.get("id"), fn.get("name"), []]
        if fn.get("arguments"):
            slot[2].append(fn["arguments"])
        return out

    def _close(self) -> list[Event]:
        self._done = True
        finish = FINISH.get(self._finish or "stop", "STOP")
        return [self._chunk(self._flush_calls() or [{"text": ""}], finish, self._usage)]
