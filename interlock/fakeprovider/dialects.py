"""The three wire dialects as plain records, so the HTTP handlers stay dialect-agnostic."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import anthropic_api, gemini_api, openai_api, responses_api
from .model import Reply, Turn

Render = Callable[[Turn, Reply, str, int], dict[str, Any]]
Stream = Callable[[Turn, Reply, str, int], list[bytes]]


@dataclass(frozen=True)
class Dialect:
    name: str
    api_key: Callable[[Mapping[str, str], Mapping[str, str]], str | None]
    error: Callable[[int, str | None, str | None], dict[str, Any]]
    render: Render
    stream: Stream
    stream_content_type: str
    missing_key_status: int = 401
    bad_key_status: int = 401
    request_id_header: str | None = "x-request-id"


OPENAI = Dialect(
    name=openai_api.NAME,
    api_key=openai_api.api_key,
    error=openai_api.error,
    render=openai_api.completion,
    stream=openai_api.stream,
    stream_content_type=openai_api.STREAM_CONTENT_TYPE,
)

# Same keys, errors and request ids as chat completions; its own rendering.
RESPONSES = replace(
    OPENAI,
    name=responses_api.NAME,
    render=responses_api.response,
    stream=responses_api.stream,
    stream_content_type=responses_api.STREAM_CONTENT_TYPE,
)

ANTHROPIC = Dialect(
    name=anthropic_api.NAME,
    api_key=anthropic_api.api_key,
    error=anthropic_api.error,
    render=anthropic_api.message,
    stream=anthropic_api.stream,
    stream_content_type=anthropic_api.STREAM_CONTENT_TYPE,
    request_id_header="request-id",
)

GEMINI = Dialect(
    name=gemini_api.NAME,
    api_key=gemini_api.api_key,
    error=gemini_api.error,
    render=gemini_api.response,
    stream=gemini_api.stream,
    stream_content_type=gemini_api.STREAM_CONTENT_TYPE,
    missing_key_status=403,  # Google rejects unregistered callers with PERMISSION_DENIED
    bad_key_status=400,  # ...and a wrong key with INVALID_ARGUMENT (API_KEY_INVALID)
    request_id_header=None,
)
