"""Gemini generateContent dialect (pure): request parsing and response rendering.

Streaming chunks carry cumulative usageMetadata (as the real API does); the last
chunk has the final counts and the finishReason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .model import Reply, RequestError, ToolSpec, Turn, default_message
from .reply import estimate_tokens, last_text_has_trigger, signature, valid_signature
from .sse import data_event

NAME = "gemini"
STREAM_CONTENT_TYPE = "text/event-stream"


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("x-goog-api-key", "").strip() or query.get("key", "").strip() or None


def field(obj: dict[str, Any], camel: str) -> Any:
    """Google's JSON accepts both spellings (the SDK sends e.g. `parameters_json_schema`, `thinking_budget`)."""
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def parts_text(content: Any, *, text_only: bool = True) -> str:
    """Text of a content's parts; unless text_only, function calls and responses count too (as input)."""
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    texts = []
    for p in parts:
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str) and not p.get("thought"):
            texts.append(p["text"])
        elif not text_only and isinstance(call := field(p, "functionCall"), dict):
            texts.append(str(call.get("name", "")) + orjson.dumps(call.get("args", {})).decode())
        elif not text_only and isinstance(result := field(p, "functionResponse"), dict):
            texts.append(orjson.dumps(result.get("response", {})).decode())
    return "\n".join(texts)


def _choose_tool(body: dict[str, Any], triggered: bool, prompt: str) -> ToolSpec | None:
    decls = [d for t in body.get("tools") or () if isinstance(t, dict)
             for d in field(t, "functionDeclarations") or () if isinstance(d, dict)]
    mode_cfg = field(field(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(mode_cfg.get("mode", "AUTO")).upper()
    if not decls or mode == "NONE" or (mode != "ANY" and not triggered):
        return None
    allowed = field(mode_cfg, "allowedFunctionNames")
    if allowed:
        decls = [d for d in decls if d.get("name") in allowed] or decls
    elif named := [d for d in decls if str(d.get("name")) in prompt.split()]:
        decls = named  # agents declare many functions: "use tool read_file" picks read_file
    decl = decls[0]
    schema = field(decl, "parametersJsonSchema") or decl.get("parameters") or {}
    return ToolSpec(name=str(decl.get("name", "tool")), schema=_lower_types(schema))


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI subset spells types in capitals (STRING, OBJECT)."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _check_signatures(contents: list[dict[str, Any]]) -> None:
    """Thought signatures from earlier model turns must come back intact (the real API rejects altered ones)."""
    for i, c in enumerate(contents):
        for j, part in enumerate(c.get("parts") or ()):
            sig = field(part, "thoughtSignature") if isinstance(part, dict) else None
            if sig is not None and not valid_signature(sig):
                raise RequestError(f"Thought signature is not valid (contents[{i}].parts[{j}]).", "contents")


def _thinking(config: dict[str, Any]) -> tuple[bool, bool]:
    """(thinks, returns thought summaries): thinking is on unless thinkingBudget is 0."""
    cfg = field(config, "thinkingConfig")
    if not isinstance(cfg, dict):
        return False, False
    budget = field(cfg, "thinkingBudget")
    thinks = budget != 0
    return thinks, thinks and bool(field(cfg, "includeThoughts"))


def last_text_part(content: Any) -> str:
    """What the user typed: Gemini CLI puts its <session_context> part before the prompt."""
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return texts[-1] if texts else ""


def _leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _leaves(v)]
    return [orjson.dumps(value).decode()]


def function_results(content: Any) -> str:
    """The results a user turn hands back (functionResponse.response values), e.g. a file's text."""
    parts = content.get("parts") if isinstance(content, dict) else None
    results = [field(p, "functionResponse") for p in parts or () if isinstance(p, dict)]
    return "\n".join(s for r in results if isinstance(r, dict) for s in _leaves(r.get("response", {})))


def parse_generate(body: Any, *, model: str, stream: bool, sse: bool = True) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Invalid JSON payload received: expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        raise RequestError("* GenerateContentRequest.contents: contents is not specified", "contents")
    _check_signatures(contents)
    system = body.get("systemInstruction") or body.get("system_instruction")
    texts = ([parts_text(system)] if system else []) + [parts_text(c, text_only=False) for c in contents]
    users = [c for c in contents if c.get("role", "user") == "user"]
    # A turn that only returns function results is answered about them, so the echo shows the result.
    prompt = (last_text_part(users[-1]) or function_results(users[-1])) if users else ""
    last = contents[-1]
    triggered = last.get("role", "user") == "user" and bool(parts_text(last)) and last_text_has_trigger(prompt)
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        raise RequestError("generationConfig must be an object", "generationConfig")
    max_tokens = config.get("maxOutputTokens", config.get("max_output_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError("generationConfig.maxOutputTokens must be a positive integer", "generationConfig")
    thinks, include_thoughts = _thinking(config)
    return Turn(
        model=model,
        stream=stream,
        input_text="\n".join(texts),
        prompt=prompt,
        tool=_choose_tool(body, triggered, prompt),
        max_tokens=max_tokens,
        sse=sse,
        reasoning=thinks,
        extra={"include_thoughts": include_thoughts},
    )


def parse_count(body: Any, *, model: str) -> Turn:
    """countTokens takes {contents} or {generateContentRequest: {...}}."""
    if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
        body = body["generateContentRequest"]
    return parse_generate(body, model=model, stream=False)


def count(turn: Turn) -> dict[str, Any]:
    return {"totalTokens": estimate_tokens(turn.input_text)}  # what generateContent would report as prompt


def usage(reply: Reply, output_tokens: int | None = None) -> dict[str, Any]:
    out = reply.output_tokens if output_tokens is None else output_tokens
    meta = {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": reply.input_tokens + out + reply.reasoning_tokens,
    }
    if reply.cached_tokens:
        meta["cachedContentTokenCount"] = reply.cached_tokens  # a subset of promptTokenCount
    if reply.reasoning_tokens:
        meta["thoughtsTokenCount"] = reply.reasoning_tokens  # not part of candidatesTokenCount
    return meta


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return cand


def _thought_parts(turn: Turn, reply: Reply) -> list[dict[str, Any]]:
    return [{"text": reply.reasoning_text, "thought": True}] if reply.reasoning and turn.extra.get("include_thoughts") else []


def _answer_parts(reply: Reply, rid: str) -> list[dict[str, Any]]:
    """The answer: a function call (with id) or the text; a thinking turn signs its first answer part."""
    if reply.tool is not None:
        call = {"name": reply.tool.name, "args": orjson.loads(reply.tool.arguments), "id": f"call_{rid}"}
        part: dict[str, Any] = {"functionCall": call}
    else:
        part = {"text": reply.text}
    if reply.reasoning:
        part["thoughtSignature"] = signature(reply.reasoning_text)
    return [part]


def finish_reason(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.truncated else "STOP"


def response(turn: Turn, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    return {
        "candidates": [_candidate(_thought_parts(turn, reply) + _answer_parts(reply, rid), finish_reason(reply))],
        "usageMetadata": usage(reply),
        "modelVersion": turn.model,
        "responseId": rid,
    }


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    # One chunk per word (a function call arrives whole, as Gemini sends it), after any thought summary.
    pieces: list[list[dict[str, Any]]] = [[p] for p in _thought_parts(turn, reply)]
    if reply.tool is not None:
        pieces.append(_answer_parts(reply, rid))
    else:
        pieces += [[{"text": text}] for text in reply.chunks]
        if reply.reasoning:
            pieces[len(pieces) - len(reply.chunks)][0]["thoughtSignature"] = signature(reply.reasoning_text)
    last = len(pieces) - 1
    sent = 0
    payloads = []
    for i, parts in enumerate(pieces):
        sent += sum(1 for p in parts if "text" in p and not p.get("thought"))
        payloads.append({
            "candidates": [_candidate(parts, finish_reason(reply) if i == last else None)],
            "usageMetadata": usage(reply, reply.output_tokens if i == last else sent),
            "modelVersion": turn.model,
            "responseId": rid,
        })
    if turn.sse:
        return [data_event(p, b"\r\n") for p in payloads]
    # Without alt=sse the API streams one JSON array, element by element.
    elements = [(b"[" if i == 0 else b",\r\n") + orjson.dumps(p) for i, p in enumerate(payloads)]
    return [*elements, b"]"]


def model_info(name: str) -> dict[str, Any]:
    return {"name": f"models/{name}", "baseModelId": name, "version": "001", "displayName": name,
            "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "thinking": True,
            "supportedGenerationMethods": ["generateContent", "countTokens"]}


_ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    name = _ERROR_STATUS.get(status, "UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message or default_message(status), "status": name}}
