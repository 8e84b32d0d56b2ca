"""OpenAI chat/completions request -> Anthropic /v1/messages request. Pure.

Rules that are not one-to-one (the README's "Cross-API translation" table lists them all):
- every `system`/`developer` message goes to the top-level `system`, in order (Anthropic has no
  mid-conversation system turns); consecutive same-role messages are merged into one turn.
- `max_tokens` is required by Anthropic: the request's max_completion_tokens/max_tokens, else the
  model's policy limit, else DEFAULT_MAX_TOKENS.
- temperature above 1 is clamped to 1 (Anthropic's range is 0-1).
- `response_format` json_schema becomes a forced tool whose input is the JSON (the response is
  turned back into message text); with other tools present, or for json_object, an instruction is
  appended to the system prompt instead (not enforced by the provider).
- dropped: seed, presence/frequency_penalty, logit_bias, store, metadata, prompt_cache_key,
  service_tier, reasoning_effort, verbosity, prediction, message `name`s, empty messages.
- refused (400): n > 1, logprobs/top_logprobs, audio output, legacy `functions`, web_search_options,
  custom (grammar) tools, audio input and file ids.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import Params, Untranslatable, text_of
from .mapping import parse_arguments

DEFAULT_MAX_TOKENS = 4096  # fits every Claude model's output limit
JSON_TOOL = "json_response"
_JSON_OBJECT_HINT = "Respond with a single valid JSON object and nothing else."


def translate_request(body: dict[str, Any], p: Params) -> tuple[dict[str, Any], str | None]:
    """The Anthropic body, and the name of the forced JSON tool when json_schema output is emulated."""
    _refuse(body)
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(body.get("messages") or ()):
        if not isinstance(m, dict):
            raise Untranslatable(f"messages[{i}] must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            if text := text_of(m.get("content")):
                system.append(text)
        elif role == "user":
            _append(turns, "user", _user_blocks(m.get("content"), i))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(m, i))
        elif role == "tool":
            _append(turns, "user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"),
                                     "content": text_of(m.get("content"))}])
        else:
            raise Untranslatable(f"messages[{i}].role {role!r} cannot be sent to an Anthropic-API provider")
    out: dict[str, Any] = {"model": body.get("model"), "messages": turns}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = limit if isinstance(limit, int) else p.max_output_tokens or DEFAULT_MAX_TOKENS
    temp = body.get("temperature")
    if isinstance(temp, int | float):
        out["temperature"] = min(float(temp), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
        _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), out)
    json_tool = _response_format(body.get("response_format"), out, system)
    if system:
        out["system"] = "\n\n".join(system)
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if p.stream:
        out["stream"] = True
    return out, json_tool


def _refuse(body: dict[str, Any]) -> None:
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise Untranslatable("n > 1 (several choices) cannot be served by an Anthropic-API provider; send n=1")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise Untranslatable("logprobs cannot be served by an Anthropic-API provider")
    if "audio" in (body.get("modalities") or ()) or body.get("audio"):
        raise Untranslatable("audio output cannot be served by an Anthropic-API provider")
    if body.get("functions") or body.get("function_call"):
        raise Untranslatable("legacy `functions`/`function_call` cannot be translated; send `tools` instead")
    if body.get("web_search_options") is not None:  # {} enables it with default settings
        raise Untranslatable("web_search_options (OpenAI's hosted search) cannot be served by an Anthropic-API provider")


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # Anthropic rejects empty turns
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _image(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise Untranslatable(f"{where}: image_url.url must be a string")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media = head[5:].split(";")[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise Untranslatable(f"messages[{i}].content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image((part.get("image_url") or {}).get("url"), where))
        elif kind == "file" and isinstance((part.get("file") or {}).get("file_data"), str):
            data = part["file"]["file_data"]
            head, _, b64 = data.partition(",") if data.startswith("data:") else ("data:application/pdf;base64", "", data)
            blocks.append({"type": "document", "source": {"type": "base64", "media_type": head[5:].split(";")[0],
                                                          "data": b64}})
        else:
            raise Untranslatable(f"{where}: content part {kind!r} cannot be sent to an Anthropic-API provider")
    return blocks


def _assistant_blocks(m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = m.get("content")
    text = content if isinstance(content, str) else "".join(
        p.get("text") or p.get("refusal") or "" for p in content or () if isinstance(p, dict))
    if text:
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(m.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise Untranslatable(f"messages[{i}].tool_calls[{j}] must be a function call")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                       "input": parse_arguments(fn.get("arguments"))})
    return blocks


def _tool(t: Any, i: int) -> dict[str, Any]:
    fn = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
    if not isinstance(fn, dict):
        kind = t.get("type") if isinstance(t, dict) else None
        raise Untranslatable(f"tools[{i}] ({kind!r}) cannot be sent to an Anthropic-API provider; only function tools can")
    out: dict[str, Any] = {"name": fn.get("name"),
                           "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: Any, parallel: Any, out: dict[str, Any]) -> None:
    tc: dict[str, Any] | None = None
    if choice == "auto":
        tc = {"type": "auto"}
    elif choice == "required":
        tc = {"type": "any"}
    elif choice == "none":
        tc = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        tc = {"type": "tool", "name": choice["function"].get("name")}
    if parallel is False:
        tc = tc or {"type": "auto"}
        if tc["type"] != "none":
            tc["disable_parallel_tool_use"] = True
    if tc is not None:
        out["tool_choice"] = tc


def _response_format(fmt: Any, out: dict[str, Any], system: list[str]) -> str | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        system.append(_JSON_OBJECT_HINT)
    elif kind == "json_schema":
        spec = fmt.get("json_schema") or {}  # type: ignore[union-attr]
        schema = spec.get("schema") or {"type": "object"}
        if out.get("tools"):
            system.append(_JSON_OBJECT_HINT + " It must match this JSON schema: " + orjson.dumps(schema).decode())
            return None
        name = spec.get("name") or JSON_TOOL
        out["tools"] = [{"name": name, "description": "Give your answer as this tool's input.", "input_schema": schema}]
        out["tool_choice"] = {"type": "tool", "name": name}
        return name
    return None
