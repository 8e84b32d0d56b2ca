"""Dialect-neutral view of a generation request and its reply.

Each dialect module parses its wire format into a `Turn` and renders a
`Reply` back; the reply itself is computed once, in `reply.py`, so all three
APIs produce the same text and token counts for the same conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class RequestError(ValueError):
    """The request body is invalid for its API; rendered as a 400 in that dialect."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ToolSpec:
    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)  # JSON schema of the arguments
    custom: bool = False  # an OpenAI Responses custom (free-form / grammar) tool: the input is plain text


@dataclass(frozen=True)
class Turn:
    model: str
    stream: bool
    input_text: str  # every piece of text that counts as prompt input
    prompt: str  # text of the final user message: the echo source
    tool: ToolSpec | None = None  # set when this turn must answer with a tool call
    max_tokens: int | None = None
    include_usage: bool = False  # OpenAI stream_options.include_usage
    sse: bool = True  # Gemini streamGenerateContent without alt=sse streams a JSON array
    extra: Mapping[str, Any] = field(default_factory=dict)  # dialect-specific request fields the reply echoes
    reasoning: bool = False  # the client asked for thinking/reasoning (Anthropic thinking, Gemini thinkingConfig, ...)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    fragments: tuple[str, ...]  # `arguments` split for streaming; joined == arguments
    custom: bool = False  # free-form input (Responses custom tool): `arguments` is plain text


@dataclass(frozen=True)
class Reply:
    chunks: tuple[str, ...]  # text deltas; "".join(chunks) is the full text
    tool: ToolCall | None
    input_tokens: int  # includes cached_tokens (OpenAI/Gemini semantics)
    output_tokens: int
    cached_tokens: int
    truncated: bool  # stopped by max_tokens
    reasoning: tuple[str, ...] = ()  # thinking words, when the turn asked for reasoning
    cache_write_5m: int = 0  # prompt-cache writes (part of input_tokens), FakeProviderConfig.prompt_cache
    cache_write_1h: int = 0

    @property
    def reasoning_tokens(self) -> int:
        return len(self.reasoning)

    @property
    def reasoning_text(self) -> str:
        return " ".join(self.reasoning)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


_STATUS_MESSAGES = {
    400: "Invalid request (injected by the fake provider).",
    401: "Invalid API key.",
    403: "Permission denied.",
    404: "Not found.",
    408: "Request timed out.",
    413: "Request too large.",
    429: "Rate limit reached (injected by the fake provider). Please retry after a moment.",
    500: "The server had an error while processing your request (injected by the fake provider).",
    502: "Bad gateway (injected by the fake provider).",
    503: "Service unavailable (injected by the fake provider).",
    504: "Gateway timeout (injected by the fake provider).",
    529: "Overloaded (injected by the fake provider).",
}


def default_message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"Error {status} (injected by the fake provider).")
