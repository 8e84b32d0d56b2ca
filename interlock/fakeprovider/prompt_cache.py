"""A model of Anthropic prompt caching for the fake provider (opt-in: FakeProviderConfig.prompt_cache).

The cacheable prefix runs in Anthropic's order (tools, system, messages) up to each block marked
`cache_control` ({"type": "ephemeral", "ttl": "5m"|"1h"}). A request reads the longest breakpoint
prefix cached and unexpired, and writes every later breakpoint's segment at that breakpoint's TTL:
the usage then reports `cache_read_input_tokens` and `cache_creation` split by TTL, as the API does.
Tokens are apportioned from the request's input estimate by the prefix's share of the serialized
request, so reads + writes never exceed the input. The fake's own record (stats) keeps each figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .model import Reply

TTL_S = {"5m": 300.0, "1h": 3600.0}


def _blocks(body: dict[str, Any]) -> Iterator[Any]:
    yield from body.get("tools") or ()
    system = body.get("system")
    yield from ([{"type": "text", "text": system}] if isinstance(system, str) else system or ())
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            yield from ({**b, "_role": m.get("role")} for b in content if isinstance(b, dict))
        else:
            yield {"type": "text", "text": content, "_role": m.get("role") if isinstance(m, dict) else None}


def breakpoints(body: Any) -> tuple[list[tuple[int, str, str]], int]:
    """([(prefix length, ttl, prefix hash)] in order, total serialized length)."""
    if not isinstance(body, dict):
        return [], 0
    h = hashlib.sha256(str(body.get("model")).encode())
    length, out = 0, []
    for block in _blocks(body):
        cc = block.get("cache_control") if isinstance(block, dict) else None
        raw = orjson.dumps({k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block,
                           option=orjson.OPT_SORT_KEYS)
        h.update(raw)
        length += len(raw)
        if isinstance(cc, dict):
            out.append((length, "1h" if cc.get("ttl") == "1h" else "5m", h.hexdigest()))
    return out, length


@dataclass
class PromptCache:
    # prefix hash -> (expiry in monotonic seconds, the prefix's token count when it was written)
    entries: dict[str, tuple[float, int]] = field(default_factory=dict)

    def apply(self, body: Any, reply: Reply, now: float) -> Reply:
        points, total = breakpoints(body)
        if not points or not total:
            return reply
        tokens = [reply.input_tokens * n // total for n, _, _ in points]
        hit = max((i for i, (_, _, key) in enumerate(points) if self.entries.get(key, (0.0, 0))[0] > now), default=-1)
        # a hit reads the prefix at the size it was written: the same prefix costs the same every time
        read = min(self.entries[points[hit][2]][1], reply.input_tokens) if hit >= 0 else 0
        w5 = w1 = 0
        done = read
        for i in range(hit + 1, len(points)):
            seg = max(tokens[i] - done, 0)
            done += seg
            tokens[i] = done
            if points[i][1] == "1h":
                w1 += seg
            else:
                w5 += seg
        for i, (_, ttl, key) in enumerate(points):  # a hit refreshes the TTL; a write starts it
            size = self.entries[key][1] if i <= hit else tokens[i]
            self.entries[key] = (max(self.entries.get(key, (0.0, 0))[0], now + TTL_S[ttl]), size)
        return replace(reply, cached_tokens=read, cache_write_5m=w5, cache_write_1h=w1)
