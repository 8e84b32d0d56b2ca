"""Anthropic /v1/messages request -> AWS Bedrock Converse request. Pure.

Converse is block-based like Anthropic, so most of the mapping is renaming:
- text/image/document/tool_use/tool_result blocks -> text/image/document/toolUse/toolResult;
  `thinking`/`redacted_thinking` -> reasoningContent (kept: on Bedrock they go back to the same
  Claude family that signed them; a non-Claude Bedrock model ignores or refuses them, never silently
  rewrites them).
- `system` (and the `system`-role messages Claude Code puts in `messages`) -> `system` text blocks.
- consecutive same-role turns are merged (Converse requires alternation).
- max_tokens/temperature/top_p/stop_sequences -> inferenceConfig; `top_k` and `thinking` go to
  additionalModelRequestFields (Claude on Bedrock reads them there).
- `cache_control` markers become Converse `cachePoint` blocks after the marked block.
- tool_choice none -> tools kept, no toolChoice (Converse has no "none"; the model may still call one).
- Hosted/server tools, `mcp_servers` and URL images/documents cannot be expressed: 400 (Untranslatable).
"""

from __future__ import annotations

from typing import Any

from .base import Params, Untranslatable

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_CACHE_POINT = {"cachePoint": {"type": "default"}}


def translate_request(body: dict[str, Any], p: Params) -> dict[str, Any]:
    if body.get("mcp_servers"):
        raise Untranslatable("mcp_servers (MCP connectors run by Anthropic) cannot be served by Bedrock Converse")
    system: list[dict[str, Any]] = _system_blocks(body.get("system"), "system")
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(body.get("messages") or ()):
        if not isinstance(m, dict):
            raise Untranslatable(f"messages[{i}] must be an object")
        role = m.get("role")
        if role == "system":  # Claude Code sends one inside `messages`
            system += _system_blocks(m.get("content"), f"messages[{i}].content")
            continue
        if role not in ("user", "assistant"):
            raise Untranslatable(f"messages[{i}].role {role!r} is not one of user, assistant, system")
        blocks = _blocks(m.get("content"), f"messages[{i}].content")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        elif blocks:
            turns.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    for src, dst in (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            inference[dst] = body[src]
    if body.get("stop_sequences"):
        inference["stopSequences"] = list(body["stop_sequences"])
    if "maxTokens" not in inference and p.max_output_tokens:
        inference["maxTokens"] = p.max_output_tokens
    if inference:
        out["inferenceConfig"] = inference
    extra = {k: body[k] for k in ("top_k", "thinking") if body.get(k) is not None}
    if extra:
        out["additionalModelRequestFields"] = extra
    if body.get("tools"):
        out["toolConfig"] = _tool_config(body["tools"], body.get("tool_choice"))
    return out


def _system_blocks(system: Any, where: str) -> list[dict[str, Any]]:
    if not system:
        return []
    if isinstance(system, str):
        return [{"text": system}]
    if not isinstance(system, list):
        raise Untranslatable(f"{where} must be a string or a list of text blocks")
    out: list[dict[str, Any]] = []
    for b in system:
        if isinstance(b, dict) and isinstance(b.get("text"), str):
            out.append({"text": b["text"]})
            if b.get("cache_control"):
                out.append(_CACHE_POINT)
    return out


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise Untranslatable(f"{where} must be a string or a list of blocks")
    out: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        if not isinstance(b, dict):
            raise Untranslatable(f"{where}[{j}] must be an object")
        out.append(_block(b, f"{where}[{j}]"))
        if b.get("cache_control"):
            out.append(_CACHE_POINT)
    return out


def _block(b: dict[str, Any], where: str) -> dict[str, Any]:
    kind = b.get("type")
    if kind == "text":
        return {"text": b.get("text", "")}
    if kind == "image":
        return {"image": _image(b, where)}
    if kind == "document":
        src = b.get("source") or {}
        if src.get("type") == "text":
            return {"text": str(src.get("data", ""))}
        if src.get("type") != "base64" or src.get("media_type") != "application/pdf":
            raise Untranslatable(f"{where}: only base64 PDF or text documents can be sent to Bedrock Converse")
        return {"document": {"format": "pdf", "name": str(b.get("title") or "document"), "source": {"bytes": src.get("data")}}}
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": b.get("id"), "name": b.get("name"), "input": b.get("input") or {}}}
    if kind == "tool_result":
        return {"toolResult": {"toolUseId": b.get("tool_use_id"), "content": _result_content(b.get("content"), where),
                               "status": "error" if b.get("is_error") else "success"}}
    if kind == "thinking":
        return {"reasoningContent": {"reasoningText": {"text": b.get("thinking", ""), "signature": b.get("signature")}}}
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": b.get("data")}}
    raise Untranslatable(f"{where}: content block type {kind!r} cannot be sent to Bedrock Converse")


def _image(b: dict[str, Any], where: str) -> dict[str, Any]:
    src = b.get("source") or {}
    fmt = _IMAGE_FORMATS.get(src.get("media_type", ""))
    if src.get("type") != "base64" or fmt is None:
        raise Untranslatable(f"{where}: Bedrock Converse takes base64 png/jpeg/gif/webp images, not URLs")
    return {"format": fmt, "source": {"bytes": src.get("data")}}


def _result_content(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    if not isinstance(content, list):
        raise Untranslatable(f"{where}.content must be a string or a list of blocks")
    out: list[dict[str, Any]] = []
    for k, c in enumerate(content):
        kind = c.get("type") if isinstance(c, dict) else None
        if kind == "text":
            out.append({"text": c.get("text", "")})
        elif kind == "image":
            out.append({"image": _image(c, f"{where}.content[{k}]")})
        else:
            raise Untranslatable(f"{where}.content[{k}]: type {kind!r} cannot be a Bedrock tool result")
    return out or [{"text": ""}]


def _tool_config(tools: Any, choice: Any) -> dict[str, Any]:
    specs = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") not in (None, "custom") or "input_schema" not in t:
            kind = t.get("type") if isinstance(t, dict) else None
            raise Untranslatable(f"tools[{i}] ({kind!r}) is a tool hosted by Anthropic; Bedrock Converse can only "
                                 "call client tools (name, description, input_schema)")
        spec: dict[str, Any] = {"name": t.get("name"), "inputSchema": {"json": t.get("input_schema") or {"type": "object"}}}
        if t.get("description"):
            spec["description"] = t["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "any":
        config["toolChoice"] = {"any": {}}
    elif kind == "tool":
        config["toolChoice"] = {"tool": {"name": choice.get("name")}}  # type: ignore[union-attr]
    elif kind == "auto":
        config["toolChoice"] = {"auto": {}}
    return config
