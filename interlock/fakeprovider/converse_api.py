"""AWS Bedrock Converse dialect (pure): request parsing and response/stream rendering.

Stream events are AWS event-stream frames (see eventstream.py), one per Converse event, in the
order the service sends them: messageStart, [contentBlockStart], contentBlockDelta..., contentBlockStop,
messageStop, metadata (usage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .eventstream import encode_message
from .model import Reply, RequestError, ToolSpec, Turn, default_message
from .reply import last_text_has_trigger

NAME = "bedrock_converse"
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"


def _block_text(block: Mapping[str, Any], *, text_only: bool) -> str:
    if isinstance(block.get("text"), str):
        return str(block["text"])
    if text_only:
        return ""
    if isinstance(use := block.get("toolUse"), dict):
        return str(use.get("name", "")) + orjson.dumps(use.get("input", {})).decode()
    if isinstance(result := block.get("toolResult"), dict):
        parts = result.get("content") or []
        return "\n".join(p["text"] if "text" in p else orjson.dumps(p.get("json")).decode()
                         for p in parts if isinstance(p, dict))
    return ""


def _text(content: Any, *, text_only: bool = False) -> str:
    if not isinstance(content, list):
        raise RequestError("messages.content: must be a list of content blocks", "messages")
    return "\n".join(_block_text(b, text_only=text_only) for b in content if isinstance(b, dict))


def _tool(body: Mapping[str, Any], triggered: bool) -> ToolSpec | None:
    config = body.get("toolConfig") or {}
    specs = [t["toolSpec"] for t in config.get("tools") or () if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)]
    choice = config.get("toolChoice") or {"auto": {}}
    if not specs or ("auto" in choice and not triggered):
        return None
    if isinstance(named := choice.get("tool"), dict):
        specs = [s for s in specs if s.get("name") == named.get("name")] or specs
    schema = (specs[0].get("inputSchema") or {}).get("json") or {}
    return ToolSpec(name=str(specs[0].get("name", "tool")), schema=schema)


def parse_converse(body: Any, *, model: str, stream: bool) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Request body must be a JSON object.")
    if "model" in body or "stream" in body:
        raise RequestError("extraneous key [model] is not permitted" if "model" in body
                           else "extraneous key [stream] is not permitted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("messages: at least one message is required", "messages")
    if any(m.get("role") not in ("user", "assistant") for m in messages):
        raise RequestError("messages: roles must be 'user' or 'assistant'", "messages")
    texts = [_text(body.get("system") or [])] + [_text(m.get("content")) for m in messages]
    users = [m for m in messages if m.get("role") == "user"]
    prompt = _text(users[-1].get("content"), text_only=True) if users else ""
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise RequestError("inferenceConfig.maxTokens must be an integer >= 1", "inferenceConfig")
    triggered = messages[-1].get("role") == "user" and last_text_has_trigger(prompt)
    return Turn(model=model, stream=stream, input_text="\n".join(t for t in texts if t), prompt=prompt,
                tool=_tool(body, triggered), max_tokens=max_tokens)


def usage(reply: Reply) -> dict[str, Any]:
    fresh = reply.input_tokens - reply.cached_tokens
    return {"inputTokens": fresh, "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
            "cacheReadInputTokens": reply.cached_tokens, "cacheWriteInputTokens": 0}


def stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool else "max_tokens" if reply.truncated else "end_turn"


def response(turn: Turn, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    if reply.tool is None:
        content: list[dict[str, Any]] = [{"text": reply.text}]
    else:
        content = [{"toolUse": {"toolUseId": f"tooluse_{rid}", "name": reply.tool.name,
                                "input": orjson.loads(reply.tool.arguments)}}]
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason(reply),
            "usage": usage(reply), "metrics": {"latencyMs": 1}}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                          orjson.dumps(payload))


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    events = [_event("messageStart", {"role": "assistant"})]
    if reply.tool is None:
        events += [_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": c}}) for c in reply.chunks]
    else:
        start = {"toolUse": {"toolUseId": f"tooluse_{rid}", "name": reply.tool.name}}
        events.append(_event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        events += [_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": f}}})
                   for f in reply.tool.fragments]
    return [*events, _event("contentBlockStop", {"contentBlockIndex": 0}),
            _event("messageStop", {"stopReason": stop_reason(reply)}),
            _event("metadata", {"usage": usage(reply), "metrics": {"latencyMs": 1}})]


def error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"message": message or default_message(status)}
