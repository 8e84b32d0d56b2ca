"""What every dialect provides. Pure code: bytes and dicts in, values out, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = False  # the provider's final figure (vs. partial, or estimated by us)


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


class Dialect(Protocol):
    name: str

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        """`kind` is a dialect-neutral error class (see ErrorKind)."""
        ...

    def stream_error_event(self, kind: str, message: str) -> bytes: ...

    def usage_from_body(self, body: dict[str, Any]) -> Usage: ...

    def stream_scanner(self, strip_usage: bool = False) -> StreamUsageScanner:
        """strip_usage: the gateway asked the provider for usage the client did not; hide it from the client."""
        ...

    def max_output_tokens(self, body: dict[str, Any]) -> int | None: ...


class ErrorKind:
    """Dialect-neutral error classes; each dialect maps them to its own `type` strings."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    UPSTREAM = "upstream_error"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
