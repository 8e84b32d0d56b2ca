"""Anthropic message (response and SSE stream) -> OpenAI chat.completion / chat.completion.chunk. Pure.

Thinking and redacted_thinking blocks are dropped (their signatures are only meaningful to Anthropic
and the OpenAI shape has no field for them). When json_schema output is emulated with a forced tool
(see openai_to_anthropic_request), that tool's input becomes the message text and finish_reason "stop".
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import DONE, Event, Params
from .mapping import ANTHROPIC_TO_OPENAI_STOP, anthropic_to_openai_usage


def completion_id(anthropic_id: Any) -> str:
    return f"chatcmpl-{anthropic_id}" if anthropic_id else "chatcmpl-interlock"


def translate_response(body: dict[str, Any], p: Params, json_tool: str | None) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    stop = ANTHROPIC_TO_OPENAI_STOP.get(body.get("stop_reason") or "end_turn", "stop")
    for block in body.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use" and json_tool is not None and block.get("name") == json_tool:
            texts.append(orjson.dumps(block.get("input") or {}).decode())
            stop = "stop"
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id(body.get("id")),
        "object": "chat.completion",
        "created": p.created,
        "model": p.client_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": stop}],
        "usage": anthropic_to_openai_usage(body.get("usage")),
    }


class AnthropicToOpenAIStream:
    """Anthropic stream events -> OpenAI chunks: one role chunk, then content / tool_calls deltas
    (tool calls numbered in order of appearance), a finish chunk, the usage chunk if the client
    asked for it (stream_options.include_usage), and `[DONE]`."""

    __slots__ = ("_base", "_blocks", "_done", "_include_usage", "_json_tool", "_p", "_tools", "_usage")

    def __init__(self, p: Params, include_usage: bool, json_tool: str | None) -> None:
        self._p = p
        self._include_usage = include_usage
        self._json_tool = json_tool
        self._base: dict[str, Any] = {"id": completion_id(None), "object": "chat.completion.chunk",
                                      "created": p.created, "model": p.client_model}
        if include_usage:
            self._base["usage"] = None  # as OpenAI: an explicit null on every chunk but the last
        self._blocks: dict[int, tuple[str, int]] = {}  # Anthropic block index -> ("text"|"tool"|"json", tool index)
        self._tools = 0
        self._usage: dict[str, Any] = {}
        self._done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Event:
        return None, {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, name: str | None, data: Any) -> list[Event]:
        if self._done or not isinstance(data, dict):
            return []
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_start":
            msg = data.get("message") or {}
            self._base["id"] = completion_id(msg.get("id"))
            self._usage.update(msg.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": "", "refusal": None})]
        if kind == "content_block_start":
            return self._start(data)
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            reason = (data.get("delta") or {}).get("stop_reason")
            finish = ANTHROPIC_TO_OPENAI_STOP.get(reason or "end_turn", "stop")
            if reason == "tool_use" and self._json_tool is not None and self._tools == 0:
                finish = "stop"
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            self._done = True
            out: list[Event] = []
            if self._include_usage:
                out.append((None, {**self._base, "choices": [], "usage": anthropic_to_openai_usage(self._usage)}))
            out.append((None, DONE))
            return out
        if kind == "error":
            self._done = True
            err = data.get("error") or {}
            return [(None, {"error": {"message": err.get("message") or "provider error",
                                      "type": err.get("type") or "api_error", "param": None, "code": None}})]
        return []  # ping, and event types added later

    def _start(self, data: dict[str, Any]) -> list[Event]:
        block = data.get("content_block") or {}
        idx = data.get("index", 0)
        kind = block.get("type")
        if kind == "text":
            self._blocks[idx] = ("text", 0)
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "tool_use":
            if self._json_tool is not None and block.get("name") == self._json_tool:
                self._blocks[idx] = ("json", 0)
                return []
            n = self._tools
            self._tools += 1
            self._blocks[idx] = ("tool", n)
            return [self._chunk({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                                 "function": {"name": block.get("name"), "arguments": ""}}]})]
        return []  # thinking, redacted_thinking: dropped

    def _delta(self, data: dict[str, Any]) -> list[Event]:
        kind, n = self._blocks.get(data.get("index", 0), ("", 0))
        delta = data.get("delta") or {}
        if kind == "text" and delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        partial = delta.get("partial_json") if delta.get("type") == "input_json_delta" else None
        if not partial:
            return []
        if kind == "json":
            return [self._chunk({"content": partial})]
        if kind == "tool":
            return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": partial}}]})]
        return []
