"""Shared tables: stop reasons and usage between the OpenAI chat and Anthropic messages shapes, and the
fields every translation into an OpenAI chat request sets alike."""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.dialects.usage_fields import from_anthropic, from_openai, to_anthropic, to_openai_chat

from .base import Params

# OpenAI finish_reason -> Anthropic stop_reason
OPENAI_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic stop_reason -> OpenAI finish_reason
ANTHROPIC_TO_OPENAI_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def openai_to_anthropic_usage(u: Any) -> dict[str, Any]:
    """OpenAI's prompt_tokens includes cached tokens; Anthropic's input_tokens excludes cache reads."""
    return to_anthropic(from_openai(u))


def anthropic_to_openai_usage(u: Any) -> dict[str, Any]:
    return to_openai_chat(from_anthropic(u))


def parse_arguments(raw: Any) -> dict[str, Any]:
    """OpenAI tool-call arguments (JSON text) as an object for an Anthropic tool_use `input`.

    Empty means no arguments. Text that is not a JSON object (a model's malformed output) is kept
    whole under `_unparsed_arguments`, so the client's tool validation fails visibly instead of the
    call silently running with different arguments."""
    if isinstance(raw, dict):
        return raw
    if not raw or not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_unparsed_arguments": raw}
    return value if isinstance(value, dict) else {"_unparsed_arguments": raw}


def put_max_tokens(out: dict[str, Any], limit: Any, p: Params) -> None:
    """The output-token limit of an OpenAI chat request, when the client gave one."""
    if isinstance(limit, int):
        # api.openai.com rejects max_tokens for reasoning models; OpenAI-compatible servers know max_tokens
        out["max_completion_tokens" if p.provider_kind == "openai" else "max_tokens"] = limit


def put_chat_sampling(out: dict[str, Any], body: dict[str, Any], limit: Any, p: Params) -> None:
    """The output-token limit, temperature and top_p of an OpenAI chat request from a client body using those names."""
    put_max_tokens(out, limit, p)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
