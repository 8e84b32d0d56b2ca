"""OpenAI chat/completions request -> Gemini generateContent request. Pure.

Rules that are not one-to-one (the README's "Cross-API translation" table lists them all):
- system/developer messages -> `systemInstruction`; tool messages -> `functionResponse` parts in a
  user turn (name looked up from the call; content that is a JSON object is sent as the response,
  other text as {"output": text}); consecutive same-role turns are merged.
- Gemini's thought signatures must come back on later turns; the chat shape has no field for them,
  so a signature travels inside the tool call id (`<id>__thought__<urlsafe base64>`) and is restored
  here. Packed ids stay within [A-Za-z0-9_-], so any other provider (after a fallback) takes them as
  opaque ids; only a Gemini request unpacks them.
- image URLs other than data: URLs are refused (Gemini fetches only its own file URIs).
- reasoning_effort low/medium/high -> thinkingConfig.thinkingBudget 1024/8192/24576 (minimal/none are
  dropped: some Gemini models cannot turn thinking off).
- dropped: user, metadata, store, parallel_tool_calls, logit_bias, service_tier.
- refused (400): n > 1, logprobs, audio, web_search_options, legacy functions, custom tools.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from .base import Params, Untranslatable, text_of
from .mapping import parse_arguments

SIGNATURE_SEP = "__thought__"
_THINKING_BUDGET = {"low": 1024, "medium": 8192, "high": 24576}


def pack_id(call_id: str, signature: Any) -> str:
    if not isinstance(signature, str) or not signature:
        return call_id
    return call_id + SIGNATURE_SEP + base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")


def unpack_id(packed: Any) -> tuple[str, str | None]:
    if not isinstance(packed, str) or SIGNATURE_SEP not in packed:
        return packed, None
    call_id, _, enc = packed.partition(SIGNATURE_SEP)
    try:
        return call_id, base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()
    except ValueError:
        return packed, None


def translate_request(body: dict[str, Any], p: Params) -> dict[str, Any]:
    _refuse(body)
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name, for the functionResponse
    for i, m in enumerate(body.get("messages") or ()):
        role = m.get("role")
        if role in ("system", "developer"):
            if text := text_of(m.get("content")):
                system.append(text)
        elif role == "user":
            _append(contents, "user", _user_parts(m.get("content"), i))
        elif role == "assistant":
            _append(contents, "model", _model_parts(m, names))
        elif role == "tool":
            call_id, _ = unpack_id(m.get("tool_call_id"))
            text = text_of(m.get("content"))
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = None
            resp = {"name": names.get(call_id, ""), "response": value if isinstance(value, dict) else {"output": text}}
            if call_id:
                resp["id"] = call_id
            _append(contents, "user", [{"functionResponse": resp}])
        else:
            raise Untranslatable(f"messages[{i}].role {role!r} cannot be sent to a Gemini-API provider")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if body.get("tools"):
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(body["tools"])]}]
        if (config := _tool_config(body.get("tool_choice"))) is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    gen = _generation_config(body)
    if gen:
        out["generationConfig"] = gen
    return out


def _refuse(body: dict[str, Any]) -> None:
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise Untranslatable("n > 1 (several choices) cannot be served through this gateway by a Gemini-API provider")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise Untranslatable("logprobs cannot be served by a Gemini-API provider")
    if "audio" in (body.get("modalities") or ()) or body.get("audio"):
        raise Untranslatable("audio output cannot be served by a Gemini-API provider")
    if body.get("web_search_options") is not None:
        raise Untranslatable("web_search_options (OpenAI's hosted search) cannot be served by a Gemini-API provider")
    if body.get("functions") or body.get("function_call"):
        raise Untranslatable("legacy `functions`/`function_call` cannot be translated; send `tools` instead")


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _inline(url: Any, where: str) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:"):
        head, _, data = url.partition(",")
        return {"inlineData": {"mimeType": head[5:].split(";")[0], "data": data}}
    raise Untranslatable(f"{where}: a Gemini-API provider cannot fetch URLs; send the image as a data: URL")


def _user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            parts.append(_inline((part.get("image_url") or {}).get("url"), where))
        elif kind == "file" and isinstance((part.get("file") or {}).get("file_data"), str):
            parts.append(_inline(part["file"]["file_data"], where))
        else:
            raise Untranslatable(f"{where}: content part {kind!r} cannot be sent to a Gemini-API provider")
    return parts


def _model_parts(m: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if text := text_of(m.get("content"), ""):
        parts.append({"text": text})
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        call_id, sig = unpack_id(call.get("id"))
        fc: dict[str, Any] = {"name": fn.get("name"), "args": parse_arguments(fn.get("arguments"))}
        if call_id:
            fc["id"] = call_id
            names[call_id] = fn.get("name") or ""
        part: dict[str, Any] = {"functionCall": fc}
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _declaration(t: Any, i: int) -> dict[str, Any]:
    fn = t.get("function") if t.get("type", "function") == "function" else None
    if not isinstance(fn, dict):
        raise Untranslatable(f"tools[{i}] ({t.get('type')!r}) cannot be sent to a Gemini-API provider; only function tools can")
    out: dict[str, Any] = {"name": fn.get("name"),
                           "parametersJsonSchema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice in ("auto", "none", "required"):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    return None


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    g: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int):
        g["maxOutputTokens"] = limit
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"),
                     ("frequency_penalty", "frequencyPenalty"), ("seed", "seed")):
        if body.get(src) is not None:
            g[dst] = body[src]
    stop = body.get("stop")
    if stop:
        g["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (budget := _THINKING_BUDGET.get(body.get("reasoning_effort"))) is not None:  # type: ignore[arg-type]
        g["thinkingConfig"] = {"thinkingBudget": budget}
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        g["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema is not None:
            g["responseJsonSchema"] = schema
    return g
