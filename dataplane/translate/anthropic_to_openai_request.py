"""Anthropic /v1/messages request -> OpenAI chat/completions request. Pure.

Rules that are not one-to-one (the README's "Cross-API translation" table lists them all):
- `thinking` / `redacted_thinking` blocks in the history are dropped: their signatures are only
  valid at Anthropic, and an OpenAI model cannot use them. The `thinking` config is dropped too.
- `cache_control` markers are dropped (OpenAI caches prompt prefixes automatically).
- tool_result blocks become `tool` messages placed right after the assistant's tool calls (OpenAI
  requires that order); text and images of the same user turn follow in one user message. Images a
  tool returned move into that user message (tool messages carry text only). `is_error` results are
  prefixed with "[tool error] " since OpenAI has no error flag.
- `metadata.user_id` becomes `user`; ids longer than 64 characters are replaced by a stable hash.
- `top_k` is dropped (no OpenAI equivalent). Hosted/server tools and `mcp_servers` are refused (400).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .base import Params, Untranslatable
from .mapping import put_chat_sampling

_USER_ID_MAX = 64
_CUSTOM_TOOL_TYPES = (None, "custom")


def translate_request(body: dict[str, Any], p: Params) -> dict[str, Any]:
    if body.get("mcp_servers"):
        raise Untranslatable("mcp_servers (MCP connectors run by Anthropic) cannot be served by an OpenAI-API provider")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _system_text(system)})
    for i, m in enumerate(body.get("messages") or ()):
        if not isinstance(m, dict):
            raise Untranslatable(f"messages[{i}] must be an object")
        role = m.get("role")
        if role == "user":
            _user(m.get("content"), messages, i)
        elif role == "assistant":
            _assistant(m.get("content"), messages, i)
        elif role == "system":  # Claude Code sends these inside `messages`
            messages.append({"role": "system", "content": _system_text(m.get("content"))})
        else:
            raise Untranslatable(f"messages[{i}].role {role!r} is not one of user, assistant, system")
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    put_chat_sampling(out, body, body.get("max_tokens"), p)
    stops = body.get("stop_sequences")
    if stops:
        out["stop"] = list(stops)
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    _tool_choice(body.get("tool_choice"), out)
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user if len(user) <= _USER_ID_MAX else "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:48]
    if p.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # the Anthropic client always gets usage
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    raise Untranslatable("system must be a string or a list of text blocks")


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source") or {}
    kind = src.get("type")
    if kind == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{src.get('media_type')};base64,{src.get('data')}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": src.get("url")}}
    raise Untranslatable(f"{where}: image source type {kind!r} cannot be sent to an OpenAI-API provider")


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source") or {}
    kind = src.get("type")
    if kind == "text":
        return {"type": "text", "text": src.get("data", "")}
    if kind == "base64" and src.get("media_type") == "application/pdf":
        name = block.get("title") or "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": f"data:application/pdf;base64,{src.get('data')}"}}
    raise Untranslatable(f"{where}: document source {kind!r} cannot be sent to an OpenAI-API provider")


def _user(content: Any, messages: list[dict[str, Any]], i: int) -> None:
    if isinstance(content, str):
        messages.append({"role": "user", "content": content})
        return
    if not isinstance(content, list):
        raise Untranslatable(f"messages[{i}].content must be a string or a list of blocks")
    parts: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            parts.append({"type": "text", "text": b.get("text", "")})
        elif kind == "tool_result":
            messages.append(_tool_message(b, parts, where))
        elif kind == "image":
            parts.append(_image(b, where))
        elif kind == "document":
            parts.append(_document(b, where))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise Untranslatable(f"{where}: content block type {kind!r} cannot be sent to an OpenAI-API provider")
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        messages.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if simple else parts})


def _tool_message(b: dict[str, Any], user_parts: list[dict[str, Any]], where: str) -> dict[str, Any]:
    content = b.get("content")
    if isinstance(content, list):
        texts = []
        for k, c in enumerate(content):
            kind = c.get("type") if isinstance(c, dict) else None
            if kind == "text":
                texts.append(c.get("text", ""))
            elif kind == "image":
                user_parts.append(_image(c, f"{where}.content[{k}]"))
            elif kind == "document":
                user_parts.append(_document(c, f"{where}.content[{k}]"))
            else:
                raise Untranslatable(f"{where}.content[{k}]: type {kind!r} cannot be sent to an OpenAI-API provider")
        text = "\n".join(texts)
    else:
        text = content if isinstance(content, str) else ""
    if b.get("is_error"):
        text = "[tool error] " + text
    return {"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": text}


def _assistant(content: Any, messages: list[dict[str, Any]], i: int) -> None:
    if isinstance(content, str):
        messages.append({"role": "assistant", "content": content})
        return
    if not isinstance(content, list):
        raise Untranslatable(f"messages[{i}].content must be a string or a list of blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            texts.append(b.get("text", ""))
        elif kind == "tool_use":
            args = orjson.dumps(b.get("input") or {}).decode()
            calls.append({"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": args}})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed for Anthropic only; never sent elsewhere
        else:
            raise Untranslatable(
                f"messages[{i}].content[{j}]: content block type {kind!r} cannot be sent to an OpenAI-API provider")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    elif not texts:
        return  # only thinking: nothing to send
    messages.append(msg)


def _tool(t: Any, i: int) -> dict[str, Any]:
    if not isinstance(t, dict) or t.get("type") not in _CUSTOM_TOOL_TYPES or "input_schema" not in t:
        kind = t.get("type") if isinstance(t, dict) else None
        raise Untranslatable(
            f"tools[{i}] ({kind!r}) is a tool hosted by Anthropic; an OpenAI-API provider can only call "
            "client tools (name, description, input_schema)")
    fn: dict[str, Any] = {"name": t.get("name"), "parameters": t.get("input_schema") or {"type": "object"}}
    if t.get("description"):
        fn["description"] = t["description"]
    if t.get("strict") is not None:
        fn["strict"] = t["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict) or not out.get("tools"):
        return  # OpenAI refuses tool_choice without tools
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
