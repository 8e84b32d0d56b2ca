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


def signature(model: str, body: dict[str, Any]) -> bytes | None:
    """None when the body has no conversation to compare (embeddings, count_tokens without messages)."""
    msgs = body.get("messages") or body.get("contents") or body.get("input")
    if not isinstance(msgs, list) or not msgs:
        return None
    tail = _strip(msgs[-TAIL:])
    raw = orjson.dumps([model, tail], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=16).digest()
