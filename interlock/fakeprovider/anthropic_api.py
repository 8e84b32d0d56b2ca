"""Anthropic Messages dialect (pure): request parsing and response rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .model import Reply, RequestError, ToolSpec, Turn, default_message
from .reply import last_text_has_trigger
from .sse import named_event

NAME = "anthropic"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    if key := headers.get("x-api-key", "").strip():
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def block_text(content: Any, *, text_only: bool = False) -> str:
    """Text of a `content` (string or blocks). Tool results/uses count as input unless text_only."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif text_only:
            continue
        elif kind == "tool_result":
            parts.append(block_text(block.get("content")))
        elif kind == "tool_use":
            parts.append(str(block.get("name", "")) + orjson.dumps(block.get("input", {})).decode())
    return "\n".join(parts)


def last_text_block(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [b["text"] for b in content or () if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
    return texts[-1] if texts else ""


def _choose_tool(body: Mapping[str, Any], triggered: bool, prompt: str) -> ToolSpec | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    if not tools or kind == "none" or (kind == "auto" and not triggered):
        return None
    if kind == "tool":
        tools = [t for t in tools if t.get("name") == choice.get("name")] or tools
    elif named := [t for t in tools if str(t.get("name")) in prompt.split()]:
        tools = named  # agents send dozens of tools: "use tool Read" picks Read
    return ToolSpec(name=str(tools[0].get("name", "tool")), schema=tools[0].get("input_schema") or {})


def parse_messages(body: Any) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError("max_tokens: Field required (an integer >= 1)", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("messages: at least one message is required", "messages")
    # Claude Code appends a `system`-role message (its environment) after the user's turn.
    if any(m.get("role") not in ("user", "assistant", "system") for m in messages):
        raise RequestError("messages: roles must be 'user', 'assistant' or 'system'", "messages")
    texts = [block_text(body.get("system"))] if body.get("system") else []
    texts += [block_text(m.get("content")) for m in messages]
    turns = [m for m in messages if m.get("role") != "system"]
    users = [m for m in turns if m.get("role") == "user"]
    # The last text block is what the user typed; agents put <system-reminder> blocks before it.
    prompt = last_text_block(users[-1].get("content")) if users else ""
    # Only a final user message with that text triggers a tool: a tool_result turn ends the loop.
    triggered = bool(turns) and turns[-1].get("role") == "user" and last_text_has_trigger(prompt)
    return Turn(
        model=model,
        stream=body.get("stream") is True,
        input_text="\n".join(texts),
        prompt=prompt,
        tool=_choose_tool(body, triggered, prompt),
        max_tokens=max_tokens,
    )


def usage(reply: Reply) -> dict[str, Any]:
    # Anthropic's input_tokens excludes cache reads; they are reported separately.
    return {
        "input_tokens": reply.input_tokens - reply.cached_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cached_tokens,
    }


def stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool else "max_tokens" if reply.truncated else "end_turn"


def _content(reply: Reply, rid: str) -> list[dict[str, Any]]:
    if reply.tool is None:
        return [{"type": "text", "text": reply.text}]
    return [
        {"type": "tool_use", "id": f"toolu_{rid}", "name": reply.tool.name, "input": orjson.loads(reply.tool.arguments)}
    ]


def message(turn: Turn, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    return {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": _content(reply, rid),
        "stop_reason": stop_reason(reply),
        "stop_sequence": None,
        "usage": usage(reply),
    }


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    """The exact event order the API sends for a single-block reply."""
    start = {**message(turn, reply, rid, created), "content": [], "stop_reason": None}
    start["usage"] = {**usage(reply), "output_tokens": 1}  # the API reports a placeholder 1 here
    if reply.tool is None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": text} for text in reply.chunks]
    else:
        block = {"type": "tool_use", "id": f"toolu_{rid}", "name": reply.tool.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in reply.tool.fragments]
    return [
        named_event("message_start", {"type": "message_start", "message": start}),
        named_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        named_event("ping", {"type": "ping"}),
        *(named_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas),
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        ),
        named_event("message_stop", {"type": "message_stop"}),
    ]


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message or default_message(status)}}


def models_list(models: tuple[str, ...], created: int) -> dict[str, Any]:
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
    return {
        "data": data,
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
