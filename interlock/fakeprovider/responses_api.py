"""OpenAI Responses dialect (pure): request parsing and response rendering.

Covers what Codex CLI sends: string or item-list `input` (user/developer/system/assistant
messages, function/custom tool calls and their outputs, reasoning items), `instructions`,
function tools, custom tools with grammars, hosted tools (accepted, never called),
`reasoning` + `include: ["reasoning.encrypted_content"]`, `store`, `prompt_cache_key`.
Streams are typed SSE (`event: response.output_text.delta`), each event numbered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Reply, RequestError, ToolSpec, Turn
from .openai_api import content_text
from .reply import last_text_has_trigger, signature, valid_signature
from .sse import named_event

NAME = "openai"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
ENCRYPTED = "reasoning.encrypted_content"
_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Request fields a response object echoes back.
_ECHO = ("instructions", "max_output_tokens", "previous_response_id", "prompt_cache_key", "reasoning",
         "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user", "metadata",
         "parallel_tool_calls")


def _item_text(item: Mapping[str, Any]) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        return content_text(item.get("content"))
    if kind == "function_call":
        return f"{item.get('name', '')}{item.get('arguments', '')}"
    if kind == "custom_tool_call":
        return f"{item.get('name', '')}{item.get('input', '')}"
    if kind in ("function_call_output", "custom_tool_call_output"):
        out = item.get("output")
        return out if isinstance(out, str) else content_text(out)
    return ""  # reasoning items and hosted-tool results: opaque, not counted


def _items(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw or not all(isinstance(i, dict) for i in raw):
        raise RequestError("Invalid 'input': expected a string or a non-empty array of input items.", "input")
    for i, item in enumerate(raw):
        if item.get("type") == "reasoning" and "encrypted_content" in item \
                and not valid_signature(item["encrypted_content"]):
            raise RequestError(f"The encrypted content for item {item.get('id')} could not be verified.", f"input[{i}]")
        if item.get("type", "message") == "message" and item.get("role") not in _ROLES:
            raise RequestError(f"Invalid value for 'input[{i}].role': expected one of {sorted(_ROLES)}.", f"input[{i}].role")
    return raw


def _choose_tool(body: Mapping[str, Any], triggered: bool) -> ToolSpec | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") in ("function", "custom")]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):  # {"type": "function"|"custom", "name": ...} forces that tool
        tools = [t for t in tools if t.get("name") == choice.get("name")] or tools
    elif choice != "required" and not triggered:
        return None
    tool = tools[0]
    return ToolSpec(name=str(tool.get("name", "tool")), schema=tool.get("parameters") or {},
                    custom=tool.get("type") == "custom")


def parse_responses(body: Any) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("We could not parse the JSON body of your request: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("Missing required parameter: 'model'.", "model")
    items = _items(body.get("input"))
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    texts += [_item_text(i) for i in items]
    messages = [i for i in items if i.get("type", "message") == "message"]
    users = [m for m in messages if m.get("role") == "user"]
    prompt = content_text(users[-1].get("content")) if users else ""
    last = items[-1]
    triggered = last.get("type", "message") == "message" and last.get("role") == "user" and last_text_has_trigger(prompt)
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError("Invalid 'max_output_tokens': expected an integer >= 1.", "max_output_tokens")
    options = body.get("stream_options")
    for name in options if isinstance(options, dict) else ():
        if name != "include_obfuscation":  # the Responses API rejects chat's include_usage
            raise RequestError(f"Unknown parameter: 'stream_options.{name}'.", f"stream_options.{name}")
    include = body.get("include") or []
    if not isinstance(include, list):
        raise RequestError("Invalid 'include': expected an array of strings.", "include")
    reasoning = body.get("reasoning")
    echo = {k: body[k] for k in _ECHO if k in body}
    echo["include_encrypted"] = ENCRYPTED in include
    echo["summarize"] = isinstance(reasoning, dict) and reasoning.get("summary") in ("auto", "concise", "detailed")
    return Turn(
        model=model,
        stream=body.get("stream") is True,
        input_text="\n".join(texts),
        prompt=prompt,
        tool=_choose_tool(body, triggered),
        max_tokens=max_tokens,
        reasoning=isinstance(reasoning, dict) and reasoning.get("effort") != "none",
        extra=echo,
    )


def usage(reply: Reply) -> dict[str, Any]:
    out = reply.output_tokens + reply.reasoning_tokens  # OpenAI counts reasoning inside output_tokens
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.input_tokens + out,
    }


def _summary(turn: Turn, reply: Reply) -> list[dict[str, Any]]:
    return [{"type": "summary_text", "text": reply.reasoning_text}] if turn.extra.get("summarize") else []


def _reasoning_item(turn: Turn, reply: Reply, rid: str) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": f"rs_{rid}", "summary": _summary(turn, reply)}
    if turn.extra.get("include_encrypted"):
        item["encrypted_content"] = signature(reply.reasoning_text)
    return item


def _message_item(reply: Reply, rid: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": f"msg_{rid}", "status": status, "role": "assistant",
            "content": [part] if status == "completed" else []}


def _tool_item(reply: Reply, rid: str, done: bool = True) -> dict[str, Any]:
    assert reply.tool is not None
    if reply.tool.custom:
        return {"type": "custom_tool_call", "id": f"ctc_{rid}", "call_id": f"call_{rid}", "name": reply.tool.name,
                "input": reply.tool.arguments if done else ""}
    return {"type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}", "name": reply.tool.name,
            "arguments": reply.tool.arguments if done else "", "status": "completed" if done else "in_progress"}


def output(turn: Turn, reply: Reply, rid: str) -> list[dict[str, Any]]:
    items = [_reasoning_item(turn, reply, rid)] if reply.reasoning else []
    items.append(_message_item(reply, rid) if reply.tool is None else _tool_item(reply, rid))
    return items


def response(turn: Turn, reply: Reply, rid: str, created: int, *, final: bool = True) -> dict[str, Any]:
    echo = {k: v for k, v in turn.extra.items() if k not in ("include_encrypted", "summarize")}
    status = ("incomplete" if reply.truncated else "completed") if final else "in_progress"
    return {
        "id": f"resp_{rid}", "object": "response", "created_at": created, "status": status,
        "error": None, "incomplete_details": {"reason": "max_output_tokens"} if final and reply.truncated else None,
        "model": turn.model, "output": output(turn, reply, rid) if final else [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}},
        "reasoning": {"effort": None, "summary": None}, "store": True, "truncation": "disabled", "metadata": {},
        **echo,
        "usage": usage(reply) if final else None,
    }


class _Events:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def add(self, kind: str, **payload: Any) -> None:
        self.out.append(named_event(kind, {"type": kind, "sequence_number": len(self.out), **payload}))


def stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    ev = _Events()
    ev.add("response.created", response=response(turn, reply, rid, created, final=False))
    ev.add("response.in_progress", response=response(turn, reply, rid, created, final=False))
    index = 0
    if reply.reasoning:
        item = _reasoning_item(turn, reply, rid)
        ev.add("response.output_item.added", output_index=0, item={**item, "summary": [], "encrypted_content": None})
        for part in item["summary"]:  # summary text streams word by word, like the answer
            where = {"item_id": item["id"], "output_index": 0, "summary_index": 0}
            ev.add("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
            for i, word in enumerate(reply.reasoning):
                ev.add("response.reasoning_summary_text.delta", **where, delta=word if i == 0 else " " + word)
            ev.add("response.reasoning_summary_text.done", **where, text=part["text"])
            ev.add("response.reasoning_summary_part.done", **where, part=part)
        ev.add("response.output_item.done", output_index=0, item=item)
        index = 1
    if reply.tool is None:
        item_id = f"msg_{rid}"
        ev.add("response.output_item.added", output_index=index, item=_message_item(reply, rid, "in_progress"))
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        ev.add("response.content_part.added", **where, part={"type": "output_text", "text": "", "annotations": []})
        for text in reply.chunks:
            ev.add("response.output_text.delta", **where, delta=text, logprobs=[])
        ev.add("response.output_text.done", **where, text=reply.text, logprobs=[])
        done_part = {"type": "output_text", "text": reply.text, "annotations": []}
        ev.add("response.content_part.done", **where, part=done_part)
        ev.add("response.output_item.done", output_index=index, item=_message_item(reply, rid))
    else:
        item = _tool_item(reply, rid, done=False)
        ev.add("response.output_item.added", output_index=index, item=item)
        prefix = "response.custom_tool_call_input" if reply.tool.custom else "response.function_call_arguments"
        for fragment in reply.tool.fragments if not reply.tool.custom else (reply.tool.arguments,):
            ev.add(f"{prefix}.delta", item_id=item["id"], output_index=index, delta=fragment)
        field = "input" if reply.tool.custom else "arguments"
        ev.add(f"{prefix}.done", item_id=item["id"], output_index=index, **{field: reply.tool.arguments})
        ev.add("response.output_item.done", output_index=index, item=_tool_item(reply, rid))
    final = response(turn, reply, rid, created)
    ev.add("response.incomplete" if reply.truncated else "response.completed", response=final)
    return ev.out

