"""OpenAI Responses request (/v1/responses, what Codex CLI sends) -> OpenAI chat/completions request. Pure.

Rules that are not one-to-one (the README's "Cross-API translation" table lists them all):
- `instructions` and system/developer input messages -> system messages (chat-compatible servers
  rarely know the developer role).
- `reasoning` items (and their encrypted_content) are dropped: only OpenAI can read them.
- custom tools (free-form input with a grammar, e.g. Codex's apply_patch) become function tools
  with one string parameter `input`; the grammar goes into the description. Calls come back as
  custom_tool_call items with that string.
- hosted tool definitions (web_search, file_search, code_interpreter, image_generation, mcp,
  local_shell, computer_use) are removed from the tool list: another model cannot run them.
- dropped: reasoning settings, include, store, prompt_cache_key, truncation, metadata, text.verbosity,
  service_tier. Refused (400): previous_response_id and item_reference (state kept at OpenAI), and
  hosted tool calls in the history.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import Params, Untranslatable
from .mapping import put_chat_sampling

CUSTOM_INPUT = "input"  # the one parameter a custom tool becomes
_HOSTED_CALLS = ("web_search_call", "file_search_call", "computer_call", "code_interpreter_call",
                 "image_generation_call", "local_shell_call", "mcp_call", "mcp_list_tools", "mcp_approval_request")


def translate_request(body: dict[str, Any], p: Params) -> tuple[dict[str, Any], frozenset[str]]:
    """The chat body, and the names of the custom tools (their calls go back as custom_tool_call)."""
    if body.get("previous_response_id"):
        raise Untranslatable("previous_response_id refers to a conversation stored at OpenAI; with this model's "
                             "provider send the whole input instead (store: false)")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for i, item in enumerate(items or ()):
        _item(item, messages, i)
    out: dict[str, Any] = {"model": p.client_model, "messages": messages}
    tools, custom = _tools(body.get("tools") or ())
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    put_chat_sampling(out, body, body.get("max_output_tokens"), p)
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user
    if p.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # the terminal event must carry usage
    return out, custom


def _content(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for j, c in enumerate(content or ()):
        kind = c.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": c.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": c.get("refusal", "")})
        elif kind == "input_image" and isinstance(c.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": c["image_url"]}})
        elif kind == "input_file" and isinstance(c.get("file_data"), str):
            parts.append({"type": "file", "file": {"filename": c.get("filename") or "file", "file_data": c["file_data"]}})
        else:
            raise Untranslatable(f"{where}.content[{j}]: {kind!r} (or a file id) cannot be sent to this model's provider")
    return parts


def _text(parts: list[dict[str, Any]]) -> Any:
    return "\n".join(x["text"] for x in parts) if all(x["type"] == "text" for x in parts) else parts


def _assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message tool calls join: the previous one if it is last, else a new one."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    msg: dict[str, Any] = {"role": "assistant", "content": None}
    messages.append(msg)
    return msg


def _item(item: Any, messages: list[dict[str, Any]], i: int) -> None:
    where = f"input[{i}]"
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        parts = _content(item.get("content"), where)
        if role in ("system", "developer"):
            messages.append({"role": "system", "content": "\n".join(x.get("text", "") for x in parts)})
        elif role == "assistant":
            messages.append({"role": "assistant", "content": "".join(x.get("text", "") for x in parts)})
        elif role == "user":
            messages.append({"role": "user", "content": _text(parts)})
        else:
            raise Untranslatable(f"{where}.role {role!r} is not one of user, assistant, system, developer")
    elif kind in ("function_call", "custom_tool_call"):
        args = item.get("arguments") if kind == "function_call" else orjson.dumps({CUSTOM_INPUT: item.get("input", "")}).decode()
        msg = _assistant(messages)
        msg.setdefault("tool_calls", []).append(
            {"id": item.get("call_id"), "type": "function", "function": {"name": item.get("name"), "arguments": args or "{}"}})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        text = output if isinstance(output, str) else "\n".join(
            x.get("text", "") for x in output or () if isinstance(x, dict))
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
    elif kind == "reasoning":
        return  # encrypted for OpenAI only
    elif kind in _HOSTED_CALLS or kind == "item_reference":
        raise Untranslatable(f"{where}: {kind!r} items (hosted tools, stored state) cannot be sent to this model's provider")
    else:
        raise Untranslatable(f"{where}: item type {kind!r} cannot be sent to this model's provider")


def _tools(tools: Any) -> tuple[list[dict[str, Any]], frozenset[str]]:
    out: list[dict[str, Any]] = []
    custom: set[str] = set()
    for t in tools:
        kind = t.get("type")
        if kind == "function":
            fn = {"name": t.get("name"), "parameters": t.get("parameters") or {"type": "object", "properties": {}}}
            if t.get("description"):
                fn["description"] = t["description"]
            if t.get("strict") is not None:
                fn["strict"] = t["strict"]
            out.append({"type": "function", "function": fn})
        elif kind == "custom":
            custom.add(t.get("name"))
            desc = t.get("description") or ""
            fmt = t.get("format") or {}
            if fmt.get("type") == "grammar":
                desc += f"\n\nThe `{CUSTOM_INPUT}` string must follow this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
            out.append({"type": "function", "function": {"name": t.get("name"), "description": desc.strip(), "parameters": {
                "type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}}, "required": [CUSTOM_INPUT]}}})
        # hosted tools (web_search, file_search, ...) are left out: only OpenAI runs them
    return out, frozenset(custom)
