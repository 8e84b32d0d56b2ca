"""The normalised signature of a request: what an agent stuck on one failing step sends again and again.

A looping agent's conversation grows every turn, so the whole body never repeats; its *tail* does: the same
tool call and the same tool error. The signature hashes the model and the last two messages (or the last
two Responses input items, or Gemini contents), without the ids that change per call (tool_use_id,
tool_call_id, call_id, id) and without cache_control hints. Cheap: two messages, one blake2b.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_VOLATILE = frozenset({"id", "tool_use_id", "tool_call_id", "call_id", "cache_control"})
TAIL = 2


def _strip(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k not in _VOLATILE}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _is_tool_result(m: Any) -> bool:
    if not isinstance(m, dict):
        return False
    if m.get("role") == "tool" or m.get("type") == "function_call_output":  # OpenAI chat / Responses
        return True
    blocks = m.get("content") if isinstance(m.get("content"), list) else m.get("parts")
    return isinstance(blocks, list) and any(  # Anthropic tool_result blocks, Gemini functionResponse parts
        isinstance(b, dict) and (b.get("type") == "tool_result" or "functionResponse" in b) for b in blocks)


def signature(model: str, body: dict[str, Any]) -> bytes | None:
    """None unless the request ends in a tool result: identical single prompts are batch jobs and load tests,
    not a stuck agent (and never count). Also None without a conversation (embeddings, count_tokens)."""
    msgs = body.get("messages") or body.get("contents") or body.get("input")
    if not isinstance(msgs, list) or not msgs:
        return None
    last = msgs[-1]
    if isinstance(last, dict) and isinstance(last.get("content"), str) and last.get("role") != "tool":
        return None  # a plain prompt last (the common non-agent request): decided without a scan
    if not any(_is_tool_result(m) for m in msgs[-TAIL:]):
        return None
    tail = _strip(msgs[-TAIL:])
    raw = orjson.dumps([model, tail], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=16).digest()
