"""OpenAI chat completion (response and SSE stream) -> Anthropic message shapes. Pure.

Dropped: `reasoning_content`/`reasoning` text some OpenAI-compatible servers add (an Anthropic
thinking block needs a signature we cannot produce), logprobs, and choices beyond the first (the
request never asks for more). A refusal becomes a text block with stop_reason "refusal".
Which stop sequence matched is unknown to OpenAI, so stop_reason is "end_turn" then.
"""

from __future__ import annotations

from typing import Any

from .base import ChatStreamTranslator, Event, Params
from .mapping import OPENAI_TO_ANTHROPIC_STOP, openai_to_anthropic_usage, parse_arguments


def message_id(openai_id: Any) -> str:
    return f"msg_{openai_id}" if openai_id else "msg_interlock"


def translate_response(body: dict[str, Any], p: Params) -> dict[str, Any]:
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = msg.get("content")
    if isinstance(text, list):  # some compatible servers return parts
        text = "".join(x.get("text", "") for x in text if isinstance(x, dict))
    if text:
        content.append({"type": "text", "text": text})
    if msg.get("refusal"):
        content.append({"type": "text", "text": msg["refusal"]})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                        "input": parse_arguments(fn.get("arguments"))})
    stop = "refusal" if msg.get("refusal") and not text else OPENAI_TO_ANTHROPIC_STOP.get(choice.get("finish_reason") or "stop", "end_turn")
    if stop == "end_turn" and msg.get("tool_calls"):
        stop = "tool_use"  # some compatible servers say "stop" after tool calls; Anthropic clients act on tool_use
    return {
        "id": message_id(body.get("id")),
        "type": "message",
        "role": "assistant",
        "model": p.client_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": openai_to_anthropic_usage(body.get("usage")),
    }


class OpenAIToAnthropicStream(ChatStreamTranslator):
    """OpenAI chat.completion.chunk events -> Anthropic message stream events.

    One content block is open at a time: text, or a tool_use per tool call. A tool call starts when
    a new `index` (or, for servers that reuse index 0 in parallel batches, a new `id`) appears.
    message_delta/message_stop wait for the usage chunk (requested with include_usage) so the
    client gets the provider's real counts; `[DONE]` closes the message if usage never came."""

    __slots__ = ("_block", "_blocks", "_calls", "_p", "_started")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._started = False
        self._blocks = 0  # content blocks opened so far
        self._block: tuple[str, int] | None = None  # open block: ("text", idx) or ("tool", idx)
        self._calls: dict[int, tuple[str, int]] = {}  # OpenAI tool index -> (call id, block index)
        self._finish = None
        self._usage = None
        self._usage_final = False
        self._done = False

    def _error_event(self, message: str) -> Event:
        return ("error", {"type": "error", "error": {"type": "api_error", "message": message}})

    def _chunk_start(self, data: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(("message_start", {"type": "message_start", "message": {
                "id": message_id(data.get("id")), "type": "message", "role": "assistant", "model": self._p.client_model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                # OpenAI reports usage only at the end; the final counts arrive in message_delta
                "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                          "output_tokens": 0},
            }}))
        return out

    def _finished(self) -> list[Event]:
        return self._stop_block()

    def _open(self, kind: str, block: dict[str, Any]) -> list[Event]:
        out = self._stop_block()
        idx = self._blocks
        self._blocks += 1
        self._block = (kind, idx)
        out.append(("content_block_start", {"type": "content_block_start", "index": idx, "content_block": block}))
        return out

    def _stop_block(self) -> list[Event]:
        if self._block is None:
            return []
        idx = self._block[1]
        self._block = None
        return [("content_block_stop", {"type": "content_block_stop", "index": idx})]

    def _text(self, text: str) -> list[Event]:
        out = [] if self._block is not None and self._block[0] == "text" else self._open("text", {"type": "text", "text": ""})
        idx = self._block[1]  # type: ignore[index]
        out.append(("content_block_delta", {"type": "content_block_delta", "index": idx,
                                            "delta": {"type": "text_delta", "text": text}}))
        return out

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        oi = tc.get("index", 0)
        fn = tc.get("function") or {}
        known = self._calls.get(oi)
        out: list[Event] = []
        if known is None or (tc.get("id") and tc["id"] != known[0]):
            call_id = tc.get("id") or f"toolu_interlock_{self._blocks}"
            out = self._open("tool", {"type": "tool_use", "id": call_id, "name": fn.get("name") or "", "input": {}})
            known = (call_id, self._block[1])  # type: ignore[index]
            self._calls[oi] = known
        args = fn.get("arguments")
        if args:
            # A delta for an earlier call (interleaved parallel calls) still names that call's block index.
            out.append(("content_block_delta", {"type": "content_block_delta", "index": known[1],
                                                "delta": {"type": "input_json_delta", "partial_json": args}}))
        return out

    def _close(self) -> list[Event]:
        self._done = True
        out = self._stop_block()
        if not self._started:
            return out  # nothing was ever produced: the relay ends the (empty) stream
        u = openai_to_anthropic_usage(self._usage)
        stop = OPENAI_TO_ANTHROPIC_STOP.get(self._finish or "stop", "end_turn")
        if stop == "end_turn" and self._calls:
            stop = "tool_use"  # as in translate_response
        out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": u}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out
