"""OpenAI Chat Completions dialect (pure): request parsing and response rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Reply, RequestError, ToolSpec, Turn, default_message
from .reply import last_text_has_trigger
from .sse import DONE, data_event

NAME = "openai"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
FINGERPRINT = "fp_fakeprovider"


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def content_text(content: Any) -> str:
    """Text of a message `content`: a string, or a list of parts (only text parts count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(f"Invalid '{name}': expected an integer >= 1, got {value!r}.", name)
    return value


def _choose_tool(body: Mapping[str, Any], triggered: bool) -> ToolSpec | None:
    tools = [
        t["function"] for t in body.get("tools") or () if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}} forces that tool
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t.get("name") == wanted] or tools
    elif choice != "required" and not triggered:
        return None
    return ToolSpec(name=str(tools[0].get("name", "tool")), schema=tools[0].get("parameters") or {})


def parse_chat(body: Any) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("We could not parse the JSON body of your request: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("'messages' must be a non-empty array of message objects.", "messages")
    texts: list[str] = []
    for message in messages:
        texts.append(content_text(message.get("content")))
        for call in message.get("tool_calls") or ():  # the model's earlier tool calls are input too
            fn = call.get("function") if isinstance(call, dict) else None
            fn = fn if isinstance(fn, dict) else {}
            texts.append(f"{fn.get('name', '')}{fn.get('arguments', '')}")
    users = [m for m in messages if m.get("role") == "user"]
    prompt = content_text(users[-1].get("content")) if users else ""
    # Only a *final* user message triggers a tool, so agent loops end after the tool result.
    triggered = messages[-1].get("role") == "user" and last_text_has_trigger(prompt)
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise RequestError("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    return Turn(
        model=model,
        stream=stream,
        input_text="\n".join(texts),
        prompt=prompt,
        tool=_choose_tool(body, triggered),
        max_tokens=_positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens"),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool else "length" if reply.truncated else "stop"


def completion(turn: Turn, reply: Reply, rid: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.tool is None else None,
        "refusal": None,
    }
    if reply.tool is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{rid}",
                "type": "function",
                "function": {"name": reply.tool.name, "arguments": reply.tool.arguments},
            }
        ]
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": created,
        "model": turn.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(reply)}],
        "usage": usage(reply),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    """Framed SSE events: role chunk, deltas, finish chunk, [usage chunk], [DONE]."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": turn.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if turn.include_usage:
        base["usage"] = None  # OpenAI sends an explicit null on every chunk when usage is requested

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return data_event({**base, "choices": [choice]})

    if reply.tool is None:
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": text}) for text in reply.chunks]
    else:
        head = {
            "index": 0,
            "id": f"call_{rid}",
            "type": "function",
            "function": {"name": reply.tool.name, "arguments": ""},
        }
        events = [chunk({"role": "assistant", "content": None, "tool_calls": [head], "refusal": None})]
        events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in reply.tool.fragments]
    events.append(chunk({}, finish_reason(reply)))
    if turn.include_usage:
        events.append(data_event({**base, "choices": [], "usage": usage(reply)}))
    events.append(DONE)
    return events


_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message or default_message(status), "type": kind, "param": param, "code": code}}


def models_list(models: tuple[str, ...], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "fakeprovider"} for m in models],
    }
