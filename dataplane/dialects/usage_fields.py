"""Each API's usage object <-> our Usage, in one place (docs/cost.md has the table).

Upstream numbers are untrusted: `count` turns anything (NaN, 1e400, negatives, strings, lists,
booleans) into a non-negative int, so a hostile or broken usage object can neither kill a stream
nor produce a negative cost. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Usage

MAX_COUNT = 10**12  # no request holds a trillion tokens: larger figures are clamped, not trusted


def count(v: Any) -> int:
    """A token count from JSON: a non-negative int no larger than MAX_COUNT; anything else is 0."""
    if type(v) is int:  # the usual case first (`type is` also keeps bool, an int subclass, out)
        return v if 0 <= v <= MAX_COUNT else (MAX_COUNT if v > 0 else 0)
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return min(v, MAX_COUNT) if v > 0 else 0
    if isinstance(v, float):
        return min(int(v), MAX_COUNT) if math.isfinite(v) and v > 0 else (MAX_COUNT if v == math.inf else 0)
    if isinstance(v, str) and v.isdigit() and len(v) < 20:
        return min(int(v), MAX_COUNT)
    return 0


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


# --- Anthropic messages (and Anthropic on Vertex) ---------------------------------------------------


def merge_anthropic(usage: Usage, u: dict[str, Any]) -> None:
    """Fold one Anthropic usage object into `usage` (message_start, then cumulative message_delta).
    Anthropic's input_tokens excludes cache reads and writes; ours is the total."""
    if "input_tokens" in u:
        read = count(u.get("cache_read_input_tokens"))
        written = count(u.get("cache_creation_input_tokens"))
        detail = _obj(u.get("cache_creation"))
        w1h = count(detail.get("ephemeral_1h_input_tokens"))
        # the split is authoritative when present; an undetailed write is the default 5-minute TTL
        w5m = max(written - w1h, count(detail.get("ephemeral_5m_input_tokens")))
        usage.input_tokens = count(u.get("input_tokens")) + read + w5m + w1h
        usage.cached_input_tokens = read
        usage.cache_write_5m_tokens, usage.cache_write_1h_tokens = w5m, w1h
    if "output_tokens" in u:
        usage.output_tokens = count(u.get("output_tokens"))


def from_anthropic(u: Any) -> Usage:
    usage = Usage(reported=True)
    merge_anthropic(usage, _obj(u) or {"input_tokens": 0, "output_tokens": 0})
    return usage


def to_anthropic(u: Usage) -> dict[str, Any]:
    writes = u.cache_write_5m_tokens + u.cache_write_1h_tokens
    out: dict[str, Any] = {
        "input_tokens": max(u.input_tokens - u.cached_input_tokens - writes, 0),
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    }
    if writes:
        out["cache_creation"] = {"ephemeral_5m_input_tokens": u.cache_write_5m_tokens,
                                 "ephemeral_1h_input_tokens": u.cache_write_1h_tokens}
    return out


# --- OpenAI chat completions and Responses ------------------------------------------------------------

CHAT_FIELDS = ("prompt_tokens", "prompt_tokens_details", "completion_tokens", "completion_tokens_details")
RESPONSES_FIELDS = ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details")


def from_openai(u: Any, fields: tuple[str, str, str, str] = CHAT_FIELDS) -> Usage:
    """Chat's prompt_tokens (Responses' input_tokens) includes cached and audio tokens; completion
    (output) tokens include reasoning and audio tokens, as we count them."""
    if not isinstance(u, dict):
        return Usage()
    inp, inp_details, out, out_details = fields
    di, do = _obj(u.get(inp_details)), _obj(u.get(out_details))
    return Usage(
        input_tokens=count(u.get(inp)), output_tokens=count(u.get(out)), cached_input_tokens=count(di.get("cached_tokens")),
        reasoning_tokens=count(do.get("reasoning_tokens")), audio_input_tokens=count(di.get("audio_tokens")),
        audio_output_tokens=count(do.get("audio_tokens")), reported=True,
    )


def to_openai_chat(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens, "audio_tokens": u.audio_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": u.audio_output_tokens},
    }


# --- Gemini usageMetadata -------------------------------------------------------------------------


def _modality(details: Any, name: str) -> int:
    if not isinstance(details, list):
        return 0
    return sum(count(d.get("tokenCount")) for d in details if isinstance(d, dict) and d.get("modality") == name)


def from_gemini(meta: Any) -> Usage:
    """promptTokenCount includes cachedContentTokenCount; candidatesTokenCount excludes thoughtsTokenCount,
    which Google bills at the output rate: we add it to the output and also report it as reasoning."""
    if not isinstance(meta, dict):
        return Usage()
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount")),
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        cached_input_tokens=count(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
        audio_input_tokens=_modality(meta.get("promptTokensDetails"), "AUDIO"),
        audio_output_tokens=_modality(meta.get("candidatesTokensDetails"), "AUDIO"),
        reported=True,
    )


def to_gemini(u: Usage) -> dict[str, int]:
    meta = {"promptTokenCount": u.input_tokens, "candidatesTokenCount": max(u.output_tokens - u.reasoning_tokens, 0),
            "totalTokenCount": u.input_tokens + u.output_tokens}
    if u.cached_input_tokens:
        meta["cachedContentTokenCount"] = u.cached_input_tokens  # a subset of promptTokenCount, as in ours
    if u.reasoning_tokens:
        meta["thoughtsTokenCount"] = u.reasoning_tokens
    return meta


# --- AWS Bedrock Converse -------------------------------------------------------------------------


def from_converse(u: Any) -> Usage:
    """Converse's inputTokens, like Anthropic's, excludes cache reads and writes. Converse reports
    writes without a TTL split: they are the default (5-minute) TTL."""
    u = _obj(u)
    read, written = count(u.get("cacheReadInputTokens")), count(u.get("cacheWriteInputTokens"))
    return Usage(input_tokens=count(u.get("inputTokens")) + read + written, output_tokens=count(u.get("outputTokens")),
                 cached_input_tokens=read, cache_write_5m_tokens=written, reported=True)
