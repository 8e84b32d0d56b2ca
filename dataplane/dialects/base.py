"""What every dialect provides. Pure code: bytes and dicts in, values out, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Usage:
    """Token classes as billed. input_tokens counts every input token; cached_input_tokens (cache reads),
    the cache writes and audio_input_tokens are subsets of it. output_tokens counts every output token;
    reasoning and audio_output_tokens are subsets. Field mapping per dialect: docs/cost.md."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = False  # the provider's final figure (vs. partial, or estimated by us)
    cache_write_5m_tokens: int = 0  # prompt-cache writes at the default (5-minute) TTL
    cache_write_1h_tokens: int = 0  # prompt-cache writes with a 1-hour TTL
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


class StreamUsageScanner(Protocol):
    """Fed every upstream SSE byte chunk in order; accumulates usage without parsing every event."""

    usage: Usage

    @property
    def events(self) -> int:
        """Number of SSE data events seen so far (the output estimate when usage never arrives)."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Account for `chunk` and return the bytes to forward to the client (usually `chunk` itself)."""
        ...


class WrappingScanner:
    """Base of scanners that transform the bytes around an inner StreamUsageScanner (wire decoding,
    translation): usage and the event count are the inner scanner's. Subclasses implement `feed`."""

    __slots__ = ("_scanner",)

    def __init__(self, scanner: StreamUsageScanner) -> None:
        self._scanner = scanner

    @property
    def usage(self) -> Usage:
        return self._scanner.usage

    @usage.setter
    def usage(self, value: Usage) -> None:
        self._scanner.usage = value

    @property
    def events(self) -> int:
        return self._scanner.events


class Dialect(Protocol):
    """One client-facing wire API. `name` is the dialect family a provider must speak to serve it
    without translation ("openai", "anthropic", "gemini"); several endpoint dialects can share one
    family (OpenAI chat and Responses). The client API is (name, Endpoint.operation)."""

    name: str

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        """The model the client asked for: from the body, or the URL for APIs that address it there."""
        ...

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool: ...

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        """`kind` is a dialect-neutral error class (see ErrorKind)."""
        ...

    def stream_error_event(self, kind: str, message: str) -> bytes: ...

    def usage_from_body(self, body: dict[str, Any]) -> Usage: ...

    def stream_scanner(self, strip_usage: bool = False) -> StreamUsageScanner:
        """strip_usage: the gateway asked the provider for usage the client did not; hide it from the client."""
        ...

    def max_output_tokens(self, body: dict[str, Any]) -> int | None: ...


class ModelInBody:
    """`requested_model` / `wants_stream` of the APIs that name the model and the stream flag in the body
    (OpenAI chat and Responses, Anthropic); Gemini addresses both in the URL instead."""

    __slots__ = ()

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        model = body.get("model")
        return model if isinstance(model, str) and model else None

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool:
        return body.get("stream") is True


class ErrorKind:
    """Dialect-neutral error classes; each dialect maps them to its own `type` strings."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    BUDGET = "budget_exceeded"  # a spend cap is reached (HTTP 402)
    UPSTREAM = "upstream_error"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
