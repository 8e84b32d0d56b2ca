"""Anthropic Messages dialect (pure): request parsing and response rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .model import Reply, RequestError, ToolSpec, Turn, default_message
from .reply import estimate_tokens, last_text_has_trigger, signature, valid_signature
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
    _check_signatures(messages)
    return Turn(
        model=model,
        stream=body.get("stream") is True,
        input_text="\n".join(texts),
        prompt=prompt,
        tool=_choose_tool(body, triggered, prompt),
        max_tokens=max_tokens,
        reasoning=_thinking(body, max_tokens),
    )


def _thinking(body: Mapping[str, Any], max_tokens: int) -> bool:
    cfg = body.get("thinking")
    if not isinstance(cfg, dict) or cfg.get("type") != "enabled":
        return False
    budget = cfg.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise RequestError("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024", "thinking")
    if budget >= max_tokens:
        raise RequestError("`max_tokens` must be greater than `thinking.budget_tokens`", "max_tokens")
    return True


def _check_signatures(messages: list[dict[str, Any]]) -> None:
    """Earlier thinking blocks must come back byte-for-byte, as the real API verifies."""
    for i, m in enumerate(messages):
        content = m.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, dict) and block.get("type") == "thinking":
                if not valid_signature(block.get("signature"), str(block.get("thinking", ""))):
                    raise RequestError(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block",
                                       f"messages.{i}.content.{j}")


def parse_count_tokens(body: Any) -> Turn:
    """count_tokens takes a messages request without max_tokens."""
    if isinstance(body, dict) and "max_tokens" not in body:
        body = {**body, "max_tokens": 1 << 20}
    return parse_messages(body)


def count_tokens(turn: Turn) -> dict[str, Any]:
    return {"input_tokens": estimate_tokens(turn.input_text)}  # what a messages call would report


def usage(reply: Reply) -> dict[str, Any]:
    # Anthropic's input_tokens excludes cache reads; they are reported separately. Thinking is output.
    # Cache writes are reported apart too, with their split by TTL.
    writes = reply.cache_write_5m + reply.cache_write_1h
    return {
        "input_tokens": reply.input_tokens - reply.cached_tokens - writes,
        "output_tokens": reply.output_tokens + reply.reasoning_tokens,
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": reply.cache_write_5m,
                           "ephemeral_1h_input_tokens": reply.cache_write_1h},
    }


def stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool else "max_tokens" if reply.truncated else "end_turn"


def _thinking_block(reply: Reply) -> dict[str, Any]:
    return {"type": "thinking", "thinking": reply.reasoning_text, "signature": signature(reply.reasoning_text)}


def _content(reply: Reply, rid: str) -> list[dict[str, Any]]:
    thinking = [_thinking_block(reply)] if reply.reasoning else []
    if reply.tool is None:
        return [*thinking, {"type": "text", "text": reply.text}]
    return [
        *thinking,
        {"type": "tool_use", "id": f"toolu_{rid}", "name": reply.tool.name, "input": orjson.loads(reply.tool.arguments)},
    ]


def _thinking_events(reply: Reply) -> list[bytes]:
    """Block 0 of a thinking reply: thinking deltas word by word, then the signature."""
    if not reply.reasoning:
        return []
    words = [w if i == 0 else " " + w for i, w in enumerate(reply.reasoning)]
    deltas = [{"type": "thinking_delta", "thinking": w} for w in words]
    deltas.append({"type": "signature_delta", "signature": signature(reply.reasoning_text)})
    return [
        named_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        *(named_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas),
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
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
    n = 1 if reply.reasoning else 0  # index of the answer block
    return [
        named_event("message_start", {"type": "message_start", "message": start}),
        *_thinking_events(reply),
        named_event("content_block_start", {"type": "content_block_start", "index": n, "content_block": block}),
        named_event("ping", {"type": "ping"}),
        *(named_event("content_block_delta", {"type": "content_block_delta", "index": n, "delta": d}) for d in deltas),
        named_event("content_block_stop", {"type": "content_block_stop", "index": n}),
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens + reply.reasoning_tokens},
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
