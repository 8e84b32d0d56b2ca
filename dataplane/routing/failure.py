"""Failure classes of one attempt, and which of them count against a deployment's circuit breaker."""

from __future__ import annotations

import aiohttp

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.upstream_pool import UpstreamConnectError

RATE_LIMITED, OVERLOADED, UPSTREAM_5XX, UPSTREAM_4XX = "rate_limited", "overloaded", "upstream_5xx", "upstream_4xx"
TIMEOUT, CONNECT, CONTEXT_LENGTH, BROKEN = "timeout", "connect", "context_length", "upstream_error"

# policy condition -> failure classes it covers
CONDITIONS: dict[str, frozenset[str]] = {
    "429": frozenset({RATE_LIMITED}),
    "529": frozenset({OVERLOADED}),
    "5xx": frozenset({UPSTREAM_5XX, BROKEN}),
    "timeout": frozenset({TIMEOUT}),
    "connect": frozenset({CONNECT}),
    "context_length": frozenset({CONTEXT_LENGTH}),
}
# Failures that say the deployment is unhealthy (a 4xx says the request was wrong, not the deployment).
UNHEALTHY = frozenset({RATE_LIMITED, OVERLOADED, UPSTREAM_5XX, BROKEN, TIMEOUT, CONNECT})

# How providers word "the prompt does not fit" (OpenAI code, Anthropic and Gemini messages, vLLM).
_CONTEXT_MARKERS = (b"context_length_exceeded", b"prompt is too long", b"maximum context length",
                    b"input is too long", b"exceeds the context window", b"too many tokens")


def retryable_classes(conditions: list[str] | tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for c in conditions:
        out |= CONDITIONS.get(c, frozenset())
    return frozenset(out)


def status_class(status: int, body: bytes = b"") -> str:
    if status == 429:
        return RATE_LIMITED
    if status == 529:
        return OVERLOADED
    if status >= 500:
        return UPSTREAM_5XX
    if status in (400, 413) and body:
        low = body[:4096].lower()
        if any(m in low for m in _CONTEXT_MARKERS):
            return CONTEXT_LENGTH
    return UPSTREAM_4XX


def exception_class(exc: BaseException) -> str:
    """The class of an upstream exception (a GatewayError translated by dataplane.pipeline.upstream, or a raw timeout)."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    cause = exc.__cause__
    if isinstance(cause, (UpstreamConnectError, aiohttp.ClientConnectorError)):
        return CONNECT
    if isinstance(exc, GatewayError) and exc.kind == ErrorKind.TIMEOUT:
        return TIMEOUT
    return BROKEN
