"""AWS Bedrock Converse response and stream -> Anthropic message shapes. Pure.

Stream events arrive as SSE named after the Converse event (dataplane/providers/eventstream.py
decodes AWS's binary framing): messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
messageStop, metadata. Converse reports usage only in the final `metadata` event, so
message_start carries zeros and message_delta (sent on `metadata`) carries the real counts,
input included. An `error` event (a mid-stream AWS exception) is passed on as Anthropic's error event.
"""

from __future__ import annotations

import secrets
from typing import Any

from dataplane.dialects.usage_fields import from_converse, to_anthropic

from .base import DONE, Event, Params

# Converse stopReason -> Anthropic stop_reason
STOP = {
    "end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal", "content_filtered": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}


def anthropic_usage(u: Any) -> dict[str, Any]:
    """Converse's inputTokens, like Anthropic's input_tokens, excludes cache reads and writes."""
    return to_anthropic(from_converse(u))


def message_id() -> str:
    return "msg_bdrk_" + secrets.token_hex(12)  # Converse responses carry no id


def _block(b: Any) -> dict[str, Any] | None:
    if not isinstance(b, dict):
        return None
    if "text" in b:
        return {"type": "text", "text": b["text"]}
    if isinstance(use := b.get("toolUse"), dict):
        return {"type": "tool_use", "id": use.get("toolUseId"), "name": use.get("name"), "input": use.get("input") or {}}
    if isinstance(rc := b.get("reasoningContent"), dict):
        if isinstance(rt := rc.get("reasoningText"), dict):
            return {"type": "thinking", "thinking": rt.get("text", ""), "signature": rt.get("signature") or ""}
        if "redactedContent" in rc:
            return {"type": "redacted_thinking", "data": rc["redactedContent"]}
    return None  # images/documents the model returns, guardrail traces: no Anthropic equivalent


def translate_response(body: dict[str, Any], p: Params) -> dict[str, Any]:
    msg = (body.get("output") or {}).get("message") or {}
    content = [b for b in map(_block, msg.get("content") or ()) if b is not None]
    return {
        "id": message_id(), "type": "message", "role": "assistant", "model": p.client_model, "content": content,
        "stop_reason": STOP.get(body.get("stopReason") or "end_turn", "end_turn"), "stop_sequence": None,
        "usage": anthropic_usage(body.get("usage")),
    }


class ConverseToAnthropicStream:
    __slots__ = ("_done", "_open", "_p", "_started", "_stop")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._started = False
        self._open: set[int] = set()  # content block indexes started and not yet stopped
        self._stop = "end_turn"
        self._done = False

    def feed(self, name: str | None, data: Any) -> list[Event]:
        if self._done or data is DONE or not isinstance(data, dict):
            return []
        out = self._start() if name != "error" else []
        if name == "contentBlockStart":
            start = data.get("start") or {}
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict):
                out += self._open_block(int(data.get("contentBlockIndex") or 0),
                                        {"type": "tool_use", "id": use.get("toolUseId"), "name": use.get("name"), "input": {}})
        elif name == "contentBlockDelta":
            out += self._delta(int(data.get("contentBlockIndex") or 0), data.get("delta") or {})
        elif name == "contentBlockStop":
            index = int(data.get("contentBlockIndex") or 0)
            if index in self._open:
                self._open.discard(index)
                out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        elif name == "messageStop":
            self._stop = STOP.get(data.get("stopReason") or "end_turn", "end_turn")
        elif name == "metadata":
            out += self._finish(data.get("usage"))
        elif name == "error":
            self._done = True
            out.append(("error", data))
        return out

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {"id": message_id(), "type": "message", "role": "assistant", "model": self._p.client_model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(None)}
        return [("message_start", {"type": "message_start", "message": message})]

    def _open_block(self, index: int, block: dict[str, Any]) -> list[Event]:
        if index in self._open:
            return []
        self._open.add(index)
        return [("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})]

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if "text" in delta:
            out += self._open_block(index, {"type": "text", "text": ""})
            d: dict[str, Any] = {"type": "text_delta", "text": delta["text"]}
        elif isinstance(use := delta.get("toolUse"), dict):
            d = {"type": "input_json_delta", "partial_json": use.get("input", "")}
        elif isinstance(rc := delta.get("reasoningContent"), dict):
            out += self._open_block(index, {"type": "thinking", "thinking": "", "signature": ""})
            if "signature" in rc:
                d = {"type": "signature_delta", "signature": rc["signature"]}
            elif "text" in rc:
                d = {"type": "thinking_delta", "thinking": rc["text"]}
            else:
                return out  # redacted reasoning in a stream: no Anthropic delta carries it
        else:
            return out
        out.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}))
        return out

    def _finish(self, usage: Any) -> list[Event]:
        self._done = True
        out: list[Event] = [("content_block_stop", {"type": "content_block_stop", "index": i}) for i in sorted(self._open)]
        self._open.clear()
        out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": self._stop, "stop_sequence": None},
                                      "usage": anthropic_usage(usage)}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out
