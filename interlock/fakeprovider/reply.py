"""Deterministic reply generation and token counting (pure).

Token rules, which every dialect reports exactly:
  * input tokens  = max(1, ceil(utf8_bytes(turn.input_text) / 4))
  * text output   = one token per word; each word is one stream chunk, so
                    output tokens == number of content chunks
  * tool output   = ceil(utf8_bytes(tool_name + arguments_json) / 4)

  * reasoning     = one token per thinking word (reported apart from the output
                    where the API does so: Gemini thoughtsTokenCount)

Text reply: "Echo:" + the words of the first 40 characters of the final user
message, padded with lorem words (or cut) to the requested token count.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from .model import Reply, ToolCall, ToolSpec, Turn

LOREM: tuple[str, ...] = tuple(
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua".split()
)
ECHO_CHARS = 40
REASONING_WORDS = 8
ARGUMENT_FRAGMENT = 8  # chars per streamed tool-argument delta, roughly what OpenAI sends


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text.encode()) // 4))


def reply_words(prompt: str, count: int) -> list[str]:
    words = ["Echo:", *prompt[:ECHO_CHARS].split()]
    words.extend(LOREM[i % len(LOREM)] for i in range(max(0, count - len(words))))
    return words[:count]


def example_value(schema: Any, text: str) -> Any:
    """A value that satisfies simple JSON schemas, so agents' argument validation passes."""
    if not isinstance(schema, Mapping):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = [name for name in schema.get("required") or () if name in props]
        return {name: example_value(props[name], text) for name in required}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(str(kind), text)


def tool_call(tool: ToolSpec, prompt: str) -> ToolCall:
    if tool.custom:
        arguments = prompt[:ECHO_CHARS] or "input"
    else:
        args = example_value(dict(tool.schema) or {"type": "object"}, prompt[:ECHO_CHARS])
        arguments = orjson.dumps(args if isinstance(args, dict) else {}).decode()
    fragments = tuple(arguments[i : i + ARGUMENT_FRAGMENT] for i in range(0, len(arguments), ARGUMENT_FRAGMENT))
    return ToolCall(name=tool.name, arguments=arguments, fragments=fragments, custom=tool.custom)


def reasoning_words(turn: Turn) -> tuple[str, ...]:
    if not turn.reasoning:
        return ()
    return ("Thinking", "about:", *turn.prompt[:ECHO_CHARS].split())[:REASONING_WORDS]


def build_reply(turn: Turn, output_tokens: int, cached_tokens: int = 0) -> Reply:
    input_tokens = estimate_tokens(turn.input_text)
    cached = min(cached_tokens, input_tokens)
    thinking = reasoning_words(turn)
    if turn.tool is not None:
        call = tool_call(turn.tool, turn.prompt)
        tokens = estimate_tokens(call.name + call.arguments)
        return Reply((), call, input_tokens, tokens, cached, truncated=False, reasoning=thinking)
    limit = output_tokens if turn.max_tokens is None else min(output_tokens, turn.max_tokens)
    words = reply_words(turn.prompt, limit)
    chunks = (words[0], *(" " + w for w in words[1:]))
    return Reply(chunks, None, input_tokens, len(chunks), cached, truncated=limit < output_tokens, reasoning=thinking)


def signature(text: str) -> str:
    """An opaque, deterministic stand-in for a provider's reasoning signature / encrypted content."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest() * 2).decode()


def valid_signature(sig: Any, text: str | None = None) -> bool:
    """Did `sig` come back intact? With `text`, it must also sign exactly that text."""
    if not isinstance(sig, str):
        return False
    if text is not None:
        return sig == signature(text)
    try:  # bytes fields in Google's JSON may come back in the URL-safe alphabet
        raw = base64.b64decode(sig.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        return False
    return len(raw) == 64 and raw[:32] == raw[32:]


def last_text_has_trigger(text: str) -> bool:
    return "use tool" in text.lower()
