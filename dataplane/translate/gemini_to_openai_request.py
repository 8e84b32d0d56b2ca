"""Gemini generateContent request -> OpenAI chat/completions request. Pure.

Rules that are not one-to-one (the README's "Cross-API translation" table lists them all):
- `thought` parts and every `thoughtSignature` are dropped: signatures are only meaningful to Gemini.
- functionCall/functionResponse ids become tool_call ids; calls without an id get `call_<n>` and a
  response without an id answers the oldest unanswered call of the same name.
- a functionResponse's `response` object is sent as the tool message's JSON text.
- `parameters` (Gemini's OpenAPI subset, upper-case types) is converted to JSON Schema;
  `parametersJsonSchema` is sent as is.
- responseMimeType application/json -> response_format json_object, or json_schema when
  responseSchema/responseJsonSchema is given.
- dropped: safetySettings, thinkingConfig, topK, labels, mediaResolution, speechConfig.
- refused (400): hosted tools (googleSearch, codeExecution, urlContext, retrieval...), cachedContent,
  candidateCount > 1, responseLogprobs, non-text response modalities, fileData (Google file URIs),
  executableCode/codeExecutionResult parts.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import Params, Untranslatable
from .mapping import put_max_tokens

_MODE = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "required", "NONE": "none"}
_SCHEMA_KEYS = ("description", "enum", "format", "required", "minimum", "maximum", "minItems", "maxItems",
                       "minLength", "maxLength", "pattern", "title", "default", "minProperties", "maxProperties")


def field(d: dict[str, Any], camel: str, snake: str) -> Any:
    """Google's JSON accepts both spellings (the SDKs send camelCase)."""
    v = d.get(camel)
    return d.get(snake) if v is None else v


def translate_request(body: dict[str, Any], p: Params) -> dict[str, Any]:
    if field(body, "cachedContent", "cached_content"):
        raise Untranslatable("cachedContent refers to a Gemini context cache; it cannot be used with an OpenAI-API provider")
    messages: list[dict[str, Any]] = []
    system = field(body, "systemInstruction", "system_instruction")
    if isinstance(system, dict):
        text = "\n".join(x["text"] for x in system.get("parts") or () if isinstance(x, dict) and isinstance(x.get("text"), str))
        if text:
            messages.append({"role": "system", "content": text})
    elif isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    calls = _CallIds()
    for i, c in enumerate(body.get("contents") or ()):
        if not isinstance(c, dict):
            raise Untranslatable(f"contents[{i}] must be an object")
        if c.get("role") == "model":
            _model_turn(c.get("parts") or (), messages, calls, i)
        else:  # "user", "function" (older clients) or unset
            _user_turn(c.get("parts") or (), messages, calls, i)
    out: dict[str, Any] = {"model": p.client_model, "messages": messages}
    tools = [t for entry in body.get("tools") or () for t in _tools(entry)]
    if tools:
        out["tools"] = tools
        _tool_config(field(body, "toolConfig", "tool_config"), out)
    _generation_config(field(body, "generationConfig", "generation_config") or {}, out, p)
    if p.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # Gemini clients always get usageMetadata
    return out


class _CallIds:
    """Pairs functionResponses with the functionCalls they answer (by id, else by name in order)."""

    def __init__(self) -> None:
        self._n = 0
        self._open: list[tuple[str, str]] = []  # (name, id) of calls not yet answered

    def call(self, name: str, given: Any) -> str:
        self._n += 1
        cid = given if isinstance(given, str) and given else f"call_{self._n}"
        self._open.append((name, cid))
        return cid

    def response(self, name: str, given: Any) -> str:
        for k, (n, cid) in enumerate(self._open):
            if (isinstance(given, str) and given and cid == given) or (not given and n == name):
                del self._open[k]
                return cid
        return given if isinstance(given, str) and given else f"call_unmatched_{name}"


def _media(part: dict[str, Any], where: str) -> dict[str, Any]:
    inline = field(part, "inlineData", "inline_data")
    if isinstance(inline, dict):
        mime, data = field(inline, "mimeType", "mime_type") or "", inline.get("data", "")
        if mime.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
        if mime == "application/pdf":
            return {"type": "file", "file": {"filename": "document.pdf", "file_data": f"data:{mime};base64,{data}"}}
        raise Untranslatable(f"{where}: inline data of type {mime!r} cannot be sent to an OpenAI-API provider")
    raise Untranslatable(f"{where}: fileData (a Google file URI) cannot be fetched by an OpenAI-API provider")


def _user_turn(parts: Any, messages: list[dict[str, Any]], calls: _CallIds, i: int) -> None:
    content: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        where = f"contents[{i}].parts[{j}]"
        if not isinstance(part, dict) or part.get("thought"):
            continue
        resp = field(part, "functionResponse", "function_response")
        if isinstance(resp, dict):
            name = resp.get("name") or ""
            messages.append({"role": "tool", "tool_call_id": calls.response(name, resp.get("id")),
                             "content": orjson.dumps(resp.get("response") or {}).decode()})
        elif isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif field(part, "inlineData", "inline_data") is not None or field(part, "fileData", "file_data") is not None:
            content.append(_media(part, where))
        else:
            _refuse_part(part, where)
    if content:
        simple = all(c["type"] == "text" for c in content)
        messages.append({"role": "user", "content": "\n".join(c["text"] for c in content) if simple else content})


def _model_turn(parts: Any, messages: list[dict[str, Any]], calls: _CallIds, i: int) -> None:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("thought"):
            continue  # thought summaries are the model's scratchpad, not its answer
        fc = field(part, "functionCall", "function_call")
        if isinstance(fc, dict):
            name = fc.get("name") or ""
            tool_calls.append({"id": calls.call(name, fc.get("id")), "type": "function", "function": {
                "name": name, "arguments": orjson.dumps(fc.get("args") or {}).decode()}})
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            _refuse_part(part, f"contents[{i}].parts[{j}]")
    if not texts and not tool_calls:
        return
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    messages.append(msg)


def _refuse_part(part: dict[str, Any], where: str) -> None:
    kinds = [k for k in part if k not in ("thoughtSignature", "thought_signature", "thought")]
    raise Untranslatable(f"{where}: part {kinds[0] if kinds else '{}'!r} cannot be sent to an OpenAI-API provider")


def json_schema(s: Any) -> Any:
    """Gemini Schema (OpenAPI 3.0 subset, types like "OBJECT") -> JSON Schema."""
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {k: s[k] for k in _SCHEMA_KEYS if k in s}
    t = s.get("type")
    if isinstance(t, str) and t.upper() != "TYPE_UNSPECIFIED":
        out["type"] = [t.lower(), "null"] if s.get("nullable") else t.lower()
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: json_schema(v) for k, v in s["properties"].items()}
    if "items" in s:
        out["items"] = json_schema(s["items"])
    for key in ("anyOf", "any_of"):
        if isinstance(s.get(key), list):
            out["anyOf"] = [json_schema(x) for x in s[key]]
    return out


def _tools(entry: Any) -> list[dict[str, Any]]:
    if not isinstance(entry, dict):
        return []
    decls = field(entry, "functionDeclarations", "function_declarations")
    hosted = [k for k in entry if k not in ("functionDeclarations", "function_declarations")]
    if hosted:
        raise Untranslatable(f"tool {hosted[0]!r} is hosted by Google; an OpenAI-API provider can only call "
                             "functionDeclarations")
    out = []
    for d in decls or ():
        schema = field(d, "parametersJsonSchema", "parameters_json_schema")
        if schema is None:
            schema = json_schema(d.get("parameters")) if d.get("parameters") else {"type": "object", "properties": {}}
        fn: dict[str, Any] = {"name": d.get("name"), "parameters": schema}
        if d.get("description"):
            fn["description"] = d["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_config(config: Any, out: dict[str, Any]) -> None:
    fcc = field(config, "functionCallingConfig", "function_calling_config") if isinstance(config, dict) else None
    if not isinstance(fcc, dict):
        return
    mode = _MODE.get(str(fcc.get("mode") or "AUTO").upper(), "auto")
    allowed = field(fcc, "allowedFunctionNames", "allowed_function_names") or []
    if mode == "required" and len(allowed) == 1:
        out["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
    else:
        out["tool_choice"] = mode


def _generation_config(g: dict[str, Any], out: dict[str, Any], p: Params) -> None:
    if (field(g, "candidateCount", "candidate_count") or 1) > 1:
        raise Untranslatable("candidateCount > 1 cannot be served by this model's provider; send 1")
    if field(g, "responseLogprobs", "response_logprobs"):
        raise Untranslatable("responseLogprobs cannot be served by this model's provider")
    modalities = [str(m).upper() for m in field(g, "responseModalities", "response_modalities") or ()]
    if any(m != "TEXT" for m in modalities):
        raise Untranslatable("only TEXT responseModalities can be served by this model's provider")
    put_max_tokens(out, field(g, "maxOutputTokens", "max_output_tokens"), p)
    for camel, snake, name in (("temperature", "temperature", "temperature"), ("topP", "top_p", "top_p"),
                               ("presencePenalty", "presence_penalty", "presence_penalty"),
                               ("frequencyPenalty", "frequency_penalty", "frequency_penalty"), ("seed", "seed", "seed")):
        v = field(g, camel, snake)
        if v is not None:
            out[name] = v
    stops = field(g, "stopSequences", "stop_sequences")
    if stops:
        out["stop"] = list(stops)
    if field(g, "responseMimeType", "response_mime_type") == "application/json":
        schema = field(g, "responseJsonSchema", "response_json_schema")
        if schema is None and field(g, "responseSchema", "response_schema") is not None:
            schema = json_schema(field(g, "responseSchema", "response_schema"))
        out["response_format"] = ({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
                                  if schema is not None else {"type": "json_object"})
