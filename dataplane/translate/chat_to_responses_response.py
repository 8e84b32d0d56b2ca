"""OpenAI chat completion (response and SSE stream) -> OpenAI Responses shapes. Pure.

Output items: a `message` with one output_text part, then a function_call (or custom_tool_call for
tools that were custom in the request) per tool call. finish_reason "length" makes the response
`incomplete` (reason max_output_tokens). Streams follow the Responses event sequence: created,
in_progress, output_item.added / content_part.added / output_text.delta ... done events per item,
function_call_arguments.delta, then response.completed (or .incomplete) with the whole response and
the provider's usage.
"""

from __future__ import annotations

from typing import Any

from dataplane.dialects.usage_fields import from_openai

from .base import ChatStreamTranslator, Event, Params
from .mapping import parse_arguments
from .responses_to_chat_request import CUSTOM_INPUT


def responses_usage(u: Any) -> dict[str, Any]:
    x = from_openai(u)
    return {
        "input_tokens": x.input_tokens,
        "input_tokens_details": {"cached_tokens": x.cached_input_tokens, "cache_write_tokens": 0},  # chat reports no writes
        "output_tokens": x.output_tokens,
        "output_tokens_details": {"reasoning_tokens": x.reasoning_tokens},
        "total_tokens": x.input_tokens + x.output_tokens,
    }


def _message(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call(call_id: Any, name: Any, arguments: str, custom: frozenset[str], status: str = "completed") -> dict[str, Any]:
    if name in custom:
        value = parse_arguments(arguments).get(CUSTOM_INPUT, "") if status == "completed" else ""
        return {"type": "custom_tool_call", "id": f"ctc_{call_id}", "call_id": call_id, "name": name,
                "input": value if isinstance(value, str) else str(value)}
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": arguments if status == "completed" else "", "status": status}


def envelope(rid: str, p: Params, status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {
        "id": rid, "object": "response", "created_at": p.created, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": p.client_model, "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "text": {"format": {"type": "text"}}, "usage": usage,
    }


def translate_response(body: dict[str, Any], p: Params, custom: frozenset[str]) -> dict[str, Any]:
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    rid = f"resp_{body.get('id') or 'interlock'}"
    output: list[dict[str, Any]] = []
    text = msg.get("content") or msg.get("refusal")
    if text:
        output.append(_message(f"msg_{body.get('id') or 'interlock'}", text))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append(_call(call.get("id"), fn.get("name"), fn.get("arguments") or "", custom))
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return envelope(rid, p, status, output, responses_usage(body.get("usage")))


class ChatToResponsesStream(ChatStreamTranslator):
    """Chat chunks -> Responses stream events (typed SSE, each with a sequence_number)."""

    __slots__ = ("_custom", "_items", "_open", "_p", "_rid", "_seq", "_started")

    def __init__(self, p: Params, custom: frozenset[str]) -> None:
        self._p = p
        self._custom = custom
        self._rid = "resp_interlock"
        self._seq = 0
        self._started = False
        self._items: list[dict[str, Any]] = []  # finished output items
        self._open: dict[str, Any] | None = None  # {"kind": "text"|"call", "id", "parts"/"args", "name", "call_id", "oi"}
        self._finish = None
        self._usage = None
        self._usage_final = False
        self._done = False

    def _ev(self, kind: str, **fields: Any) -> Event:
        self._seq += 1
        return kind, {"type": kind, "sequence_number": self._seq - 1, **fields}

    def _error_event(self, message: str) -> Event:
        return self._ev("error", code="upstream_error", message=message, param=None)

    def _chunk_start(self, data: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            self._rid = f"resp_{data.get('id') or 'interlock'}"
            head = envelope(self._rid, self._p, "in_progress", [], None)
            out += [self._ev("response.created", response=head), self._ev("response.in_progress", response=head)]
        return out

    def _text(self, text: str) -> list[Event]:
        out: list[Event] = []
        if self._open is None or self._open["kind"] != "text":
            out += self._end_item()
            oi = len(self._items)
            item_id = f"msg_{self._rid[5:]}_{oi}"
            self._open = {"kind": "text", "id": item_id, "parts": [], "oi": oi}
            out.append(self._ev("response.output_item.added", output_index=oi, item=_message(item_id, "", "in_progress")))
            out.append(self._ev("response.content_part.added", item_id=item_id, output_index=oi, content_index=0,
                                part={"type": "output_text", "text": "", "annotations": []}))
        o = self._open
        o["parts"].append(text)
        out.append(self._ev("response.output_text.delta", item_id=o["id"], output_index=o["oi"], content_index=0,
                            delta=text, logprobs=[]))
        return out

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        fn = tc.get("function") or {}
        out: list[Event] = []
        o = self._open
        if o is None or o["kind"] != "call" or o["index"] != tc.get("index", 0) or (tc.get("id") and tc["id"] != o["call_id"]):
            out += self._end_item()
            oi = len(self._items)
            call_id = tc.get("id") or f"call_interlock_{oi}"
            item = _call(call_id, fn.get("name"), "", self._custom, "in_progress")
            o = self._open = {"kind": "call", "id": item["id"], "call_id": call_id, "name": fn.get("name"), "args": [],
                              "oi": oi, "index": tc.get("index", 0)}
            out.append(self._ev("response.output_item.added", output_index=oi, item=item))
        if fn.get("arguments"):
            o["args"].append(fn["arguments"])
            if o["name"] not in self._custom:  # custom input is sent whole when the call ends (it is JSON-wrapped here)
                out.append(self._ev("response.function_call_arguments.delta", item_id=o["id"], output_index=o["oi"],
                                    delta=fn["arguments"]))
        return out

    def _end_item(self) -> list[Event]:
        o, self._open = self._open, None
        if o is None:
            return []
        oi = o["oi"]
        if o["kind"] == "text":
            text = "".join(o["parts"])
            item = _message(o["id"], text)
            where = {"item_id": o["id"], "output_index": oi, "content_index": 0}
            out = [self._ev("response.output_text.done", **where, text=text, logprobs=[]),
                   self._ev("response.content_part.done", **where, part=item["content"][0])]
        else:
            item = _call(o["call_id"], o["name"], "".join(o["args"]), self._custom)
            if item["type"] == "custom_tool_call":
                out = [self._ev("response.custom_tool_call_input.delta", item_id=o["id"], output_index=oi, delta=item["input"]),
                       self._ev("response.custom_tool_call_input.done", item_id=o["id"], output_index=oi, input=item["input"])]
            else:
                out = [self._ev("response.function_call_arguments.done", item_id=o["id"], output_index=oi,
                                arguments=item["arguments"])]
        self._items.append(item)
        out.append(self._ev("response.output_item.done", output_index=oi, item=item))
        return out

    def _close(self) -> list[Event]:
        self._done = True
        out = self._end_item()
        if not self._started:
            return out
        status = "incomplete" if self._finish == "length" else "completed"
        final = envelope(self._rid, self._p, status, self._items, responses_usage(self._usage))
        out.append(self._ev(f"response.{status}", response=final))
        return out
