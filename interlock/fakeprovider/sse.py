"""Server-sent-event framing (pure). The dialects differ only in the details:
OpenAI sends bare `data:` lines ending in `[DONE]`, Anthropic names every event,
Gemini uses CRLF line endings."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def data_event(payload: Any, newline: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(payload) + newline + newline


def named_event(name: str, payload: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
